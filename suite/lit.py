"""The one LightningModule (task loss + method regularizer) and the fit/evaluate helpers
that methods' stages call through a StageContext."""

from __future__ import annotations

import logging
import math
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchmetrics
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, Sampler

from kanbench.suite.config import RunConfig
from kanbench.suite.interfaces import Method, Task

logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*Starting from v1\.9\.0, `tensorboardX`.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
# the detection trunk's fit has no validation set (nothing is chosen on it); every task's
# cells do, and `StageContext.evaluate` fails loudly on a datamodule without one
warnings.filterwarnings("ignore", message=r".*`validation_step` but have no `val_dataloader`.*")


class Epoch:
    """A whole training epoch over tensors held in memory, handed to the module as one batch:
    `tensors` (each (N, ...)) and `batches`, the index tensors of its minibatches in order.
    The module takes one optimizer step per minibatch itself, so a tiny network's epoch pays
    Lightning's per-batch machinery (hooks, logging, a DataLoader fetch) once, not per step;
    the steps are those of a loader yielding the same minibatches."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batches: list[torch.Tensor]):
        self.tensors, self.batches = tensors, batches

    def __iter__(self):
        for index in self.batches:
            yield tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return len(self.batches)

    def to(self, device, **kwargs) -> Epoch:  # Lightning moves a batch by its `to`
        return Epoch(tuple(t.to(device, **kwargs) for t in self.tensors), self.batches)


class EpochSampler(Sampler):
    """One item per epoch: the minibatch index tensors of the next permutation drawn from
    `order` (a sampler of all N indices with `set_epoch`, which Lightning calls before each
    epoch), split into `batch_size`s, the last one short."""

    def __init__(self, order: Sampler[int], n: int, batch_size: int):
        self.order, self.batch_size = order, batch_size
        self.steps_per_epoch = math.ceil(n / batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        yield list(torch.as_tensor(list(self.order)).split(self.batch_size))


class _WholeEpochs:
    def __init__(self, tensors: tuple[torch.Tensor, ...]):
        self.tensors = tensors

    def __getitem__(self, batches: list[torch.Tensor]) -> Epoch:
        return Epoch(self.tensors, batches)


def epoch_loader(tensors: tuple[torch.Tensor, ...], order: Sampler[int], batch_size: int
                 ) -> DataLoader:
    """A training loader of in-memory `tensors` whose every item is a whole `Epoch`."""
    return DataLoader(_WholeEpochs(tensors), sampler=EpochSampler(order, len(tensors[0]),
                                                                   batch_size), batch_size=None)


class KanbenchModule(L.LightningModule):
    """The one LightningModule. It optimizes by hand (Lightning's manual optimization) so that
    a batch may be a whole in-memory `Epoch`; a batch from any other loader is one step.

    What it fits is given, not looked up: `loss(net, batch)` (a task's training loss plus a
    method's regularizer), `param_groups(net, train)` (AdamW groups; default: every trainable
    parameter at `train["lr"]`) and `metrics()` (a fresh MetricCollection for validation and
    test; default: none, for a fit without evaluation such as the detection trunk's).
    """

    def __init__(self, net: nn.Module, train: dict, stage: str,
                 loss: Callable[[nn.Module, Any], torch.Tensor],
                 param_groups: Callable[[nn.Module, dict], list[dict]] | None = None,
                 metrics: Callable[[], torchmetrics.MetricCollection] | None = None):
        super().__init__()
        self.net, self.train_args, self.stage = net, train, stage
        self.loss = loss
        self.param_groups = param_groups or all_parameters
        metrics = metrics or (lambda: torchmetrics.MetricCollection({}))
        self.val_metrics, self.test_metrics = metrics(), metrics()
        self.automatic_optimization = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        """One optimizer step per minibatch: zero, loss, backward, clip, step, lr schedule
        (the order of Lightning's automatic loop); logs the epoch's example-weighted mean."""
        optimizer, schedule = self.optimizers(), self.lr_schedulers()
        clip = self.train_args["gradient_clip"]
        total, examples = 0.0, 0
        for minibatch in batch if isinstance(batch, Epoch) else [batch]:
            loss = self.loss(self.net, minibatch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{self.stage}: training loss became {loss.item()}")
            optimizer.zero_grad()
            self.manual_backward(loss)
            if clip:
                self.clip_gradients(optimizer, gradient_clip_val=clip,
                                    gradient_clip_algorithm="norm")
            optimizer.step()
            if schedule is not None and self.train_args["scheduler"] == "cosine":
                schedule.step()
            size = len(minibatch[0])
            total, examples = total + loss.detach() * size, examples + size
        self.log(f"{self.stage}/loss", total / examples, on_step=False, on_epoch=True,
                 batch_size=examples)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_metrics.update(self.net(x), y)

    def on_validation_epoch_end(self):
        """`<stage>/val_<metric>` after every epoch of a fit (the W&B history)."""
        self.log_dict({f"{self.stage}/val_{k}": v for k, v in self.val_metrics.compute().items()})
        self.val_metrics.reset()

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_metrics.update(self.net(x), y)

    def on_test_epoch_end(self):
        """Every metric at once (a metric may give several values: the detection metrics)."""
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def on_train_epoch_end(self):
        """An epoch-wise schedule (`exponential`) steps here; the cosine one steps per step."""
        schedule = self.lr_schedulers()
        if schedule is not None and self.train_args["scheduler"] == "exponential":
            schedule.step()

    def configure_optimizers(self):
        train = self.train_args
        opt = optimizer(self.param_groups(self.net, train), train["weight_decay"],
                        train["optimizer"])
        if train["scheduler"] == "none":
            return opt
        if train["scheduler"] == "exponential":
            sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=train["lr_gamma"])
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        steps = int(self.trainer.estimated_stepping_batches)  # loader batches (sets it up)
        steps *= getattr(self.trainer.train_dataloader.sampler, "steps_per_epoch", 1)
        steps = max(1, steps)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def all_parameters(net: nn.Module, train: dict) -> list[dict]:
    return [{"params": [p for p in net.parameters() if p.requires_grad], "lr": train["lr"]}]


# Adam's fused CPU kernel: one call per step instead of a dozen small operations per
# parameter (scripts/bench_train.py).
FUSED_ADAM = True


def optimizer(groups: list[dict], weight_decay: float, name: str | None
              ) -> torch.optim.Optimizer:
    """The suite's optimizer over a method's parameter groups: AdamW (`name` None or
    "adamw"), or Adam with the weight decay added to the gradient (`"adam"`)."""
    kind = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return kind(groups, weight_decay=weight_decay, fused=FUSED_ADAM or None)


# A fit validates after every epoch, or every max_epochs / 20 epochs when longer: the loop's
# fixed cost (about 80 ms on a 2-core CPU) would otherwise double a 400-epoch equation fit.
# Nothing is chosen during a fit; each stage's final validation metrics come from `evaluate`.
VALIDATIONS_PER_FIT = 20


def make_trainer(max_epochs: int, logger=None, checkpoint_dir: Path | None = None
                 ) -> L.Trainer:
    """A quiet single-device Trainer; with `checkpoint_dir`, one saving `last.ckpt` there at
    the end of every epoch."""
    callbacks = [ModelCheckpoint(dirpath=checkpoint_dir, filename="last", save_top_k=1,
                                 every_n_epochs=1, enable_version_counter=False)
                 ] if checkpoint_dir else []
    if logger is not None:  # the learning rate of every parameter group, per epoch
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    return L.Trainer(max_epochs=max_epochs, accelerator="auto", devices=1,
                     logger=logger if logger is not None else False, callbacks=callbacks,
                     enable_checkpointing=checkpoint_dir is not None, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0,
                     log_every_n_steps=1,
                     check_val_every_n_epoch=max(1, math.ceil(max_epochs / VALIDATIONS_PER_FIT)))


def last_checkpoint(checkpoint_dir: Path | None) -> tuple[Path | None, int]:
    """The last epoch checkpoint of an interrupted fit and how many epochs it holds, when it
    loads as plain tensors and containers (`weights_only`); one cut short is discarded."""
    path = checkpoint_dir / "last.ckpt" if checkpoint_dir else None
    if path is None or not path.exists():
        return None, 0
    try:
        epochs = int(torch.load(path, map_location="cpu", weights_only=True)["epoch"]) + 1
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint: start the fit over
        warnings.warn(f"{path}: not a usable checkpoint ({type(err).__name__}); the stage "
                      "starts over", stacklevel=2)
        path.unlink()
        return None, 0
    return path, epochs


def fit(module: L.LightningModule, max_epochs: int, logger=None,
        checkpoint_dir: Path | None = None, **data) -> None:
    """`Trainer.fit`, resuming from `checkpoint_dir`'s last epoch checkpoint when there is one
    (a killed run), and removing the checkpoints when done."""
    path, _ = last_checkpoint(checkpoint_dir)
    make_trainer(max_epochs, logger, checkpoint_dir).fit(
        module, ckpt_path=path, weights_only=True, **data)
    if checkpoint_dir:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


@dataclass(frozen=True)
class StageContext:
    """What a method's stage may use: the config, the task, the data, the logger and where
    its fit keeps epoch checkpoints. The runner makes one per stage; a stage only reads it."""

    cfg: RunConfig
    task: Task
    method: Method
    datamodule: L.LightningDataModule
    logger: Any = None
    checkpoint_dir: Path | None = None

    def module(self, net: nn.Module, stage: str, train: dict) -> KanbenchModule:
        """The LightningModule of this cell's task loss, method regularizer, parameter groups
        and task metrics."""
        args = self.cfg.args
        return KanbenchModule(
            net, train, stage,
            loss=lambda n, batch: self.task.training_loss(n, batch) + self.method.regularizer(n),
            param_groups=lambda n, fit: self.method.param_groups(n, fit, args["method"]),
            metrics=lambda: self.task.metrics(args["task"]))

    def fit(self, net: nn.Module, stage: str, **train_overrides) -> nn.Module:
        """Train `net` on the task with the method's regularizer and parameter groups,
        resuming from the stage's last epoch checkpoint when a killed run left one."""
        train = {**self.cfg.args["train"], **train_overrides}
        fit(self.module(net, stage, train), train["max_epochs"], self.logger,
            self.checkpoint_dir, datamodule=self.datamodule)
        return net

    def evaluate(self, net: nn.Module) -> dict[str, Any]:
        """The task's test metrics of `net`, with its validation metrics under `val`."""
        module = self.module(net, "evaluate", self.cfg.args["train"])
        trainer = make_trainer(1)
        (val,) = trainer.validate(module, datamodule=self.datamodule, verbose=False)
        (test,) = trainer.test(module, datamodule=self.datamodule, verbose=False)
        prefix = "evaluate/val_"
        return {**{k: float(v) for k, v in test.items()},
                "val": {k.removeprefix(prefix): float(v) for k, v in val.items()}}
