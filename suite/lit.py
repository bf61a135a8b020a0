"""The one LightningModule (task loss + method regularizer) and the fit/evaluate helpers
that methods' stages call through a StageContext."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import nn

from suite.config import RunConfig
from suite.interfaces import Method, Task

logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*Starting from v1\.9\.0, `tensorboardX`.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


class KanbenchModule(L.LightningModule):
    def __init__(self, net: nn.Module, task: Task, method: Method, args: dict, train: dict,
                 stage: str):
        """`args`: the run's resolved sections (`task` and `method` are read here); `train`:
        the train settings of this fit."""
        super().__init__()
        self.net, self.task, self.method = net, task, method
        self.train_args, self.stage = train, stage
        self.method_args = args["method"]
        self.test_metrics = task.metrics(args["task"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        loss = self.task.training_loss(self.net, batch) + self.method.regularizer(self.net)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.stage}: training loss became {loss.item()}")
        self.log(f"{self.stage}/loss", loss, on_step=False, on_epoch=True,
                 batch_size=len(batch[0]))
        return loss

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_metrics.update(self.net(x), y)

    def on_test_epoch_end(self):
        """Every metric at once (a metric may give several values: the detection metrics)."""
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def configure_optimizers(self):
        groups = self.method.param_groups(self.net, self.train_args, self.method_args)
        opt = torch.optim.AdamW(groups, weight_decay=self.train_args["weight_decay"])
        if self.train_args["scheduler"] == "none":
            return opt
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def make_trainer(max_epochs: int, logger=None, gradient_clip: float = 0.0) -> L.Trainer:
    return L.Trainer(max_epochs=max_epochs, accelerator="auto", devices=1,
                     logger=logger if logger is not None else False,
                     enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0,
                     gradient_clip_val=gradient_clip or None, log_every_n_steps=1)


@dataclass
class StageContext:
    """What a method's stage may use: the config, the task, the data and the logger."""

    cfg: RunConfig
    task: Task
    method: Method
    datamodule: L.LightningDataModule
    logger: Any = None

    def fit(self, net: nn.Module, stage: str, **train_overrides) -> nn.Module:
        """Train `net` on the task with the method's regularizer and parameter groups."""
        train = {**self.cfg.args["train"], **train_overrides}
        module = KanbenchModule(net, self.task, self.method, self.cfg.args, train, stage)
        make_trainer(train["max_epochs"], self.logger, train["gradient_clip"]).fit(
            module, datamodule=self.datamodule)
        return net

    def evaluate(self, net: nn.Module) -> dict[str, float]:
        """The task's test metrics of `net`."""
        module = KanbenchModule(net, self.task, self.method, self.cfg.args,
                                self.cfg.args["train"], "test")
        (logged,) = make_trainer(1).test(module, datamodule=self.datamodule, verbose=False)
        return {k: float(v) for k, v in logged.items()}
