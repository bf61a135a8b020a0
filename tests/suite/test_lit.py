"""The one LightningModule's fit: the steps it takes, and epoch checkpoints (a fit killed
mid-stage resumes from its last finished epoch)."""

import copy
import pickle
import shutil

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader

from kanbench.suite.config import resolve
from kanbench.suite.lit import (
    Epoch,
    KanbenchModule,
    StageContext,
    fit,
    last_checkpoint,
    make_trainer,
    optimizer,
)
from kanbench.suite.registry import METHODS, TASKS
from kanbench.tasks.common import ResumableShuffle


def module_and_data(fails_at_epoch=None, **train):
    cfg = resolve("test", "feynman", "dense", 0, {"task": {"n_train": 64, "n_test": 16},
                                                  "train": {"batch_size": 32, **train}})
    task, method = TASKS.create("feynman"), METHODS.create("dense")
    net = task.build(cfg.args["task"], method.factory(cfg.args["kan"], cfg.args["method"]))

    class Failing(KanbenchModule):
        epochs_run = 0

        def on_train_epoch_start(self):
            if self.current_epoch == fails_at_epoch:
                raise RuntimeError("killed")
            self.epochs_run += 1

    data = task.datamodule(cfg.args["task"], "", 32, 0)
    plain = StageContext(cfg, task, method, data).module(net, "train", cfg.args["train"])
    module = Failing(net, cfg.args["train"], "train", plain.loss, plain.param_groups,
                     lambda: task.metrics(cfg.args["task"]))
    return module, data


def test_a_fit_interrupted_at_epoch_2_resumes_there(tmp_path):
    checkpoints = tmp_path / "ckpt"
    module, data = module_and_data(fails_at_epoch=2)
    with pytest.raises(RuntimeError, match="killed"):
        fit(module, 4, checkpoint_dir=checkpoints, datamodule=data)
    assert last_checkpoint(checkpoints)[1] == 2
    module, data = module_and_data()
    fit(module, 4, checkpoint_dir=checkpoints, datamodule=data)
    assert module.epochs_run == 2                                    # epochs 2 and 3 only
    assert module.trainer.current_epoch == 4 and module.trainer.global_step == 4 * 2
    assert not checkpoints.exists()                                  # removed once done


def test_the_exponential_schedule_steps_once_an_epoch_and_adam_adds_l2_decay():
    """The MetaKAN authors' KAN recipe: Adam with the decay in the gradient, the learning
    rate times lr_gamma after each epoch (two minibatches an epoch here)."""
    module, data = module_and_data(optimizer="adam", scheduler="exponential", lr_gamma=0.5,
                                   lr=0.01, weight_decay=5e-4)
    fit(module, 3, datamodule=data)
    opt = module.optimizers().optimizer
    assert type(opt) is torch.optim.Adam and opt.defaults["weight_decay"] == 5e-4
    assert module.trainer.global_step == 3 * 2
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** 3)
    module, data = module_and_data(lr=0.01)                          # the default: AdamW
    fit(module, 1, datamodule=data)
    assert type(module.optimizers().optimizer) is torch.optim.AdamW


class Exploit:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-kanbench",))


@pytest.mark.parametrize("content", [b"PK\x03\x04 cut short",
                                     pickle.dumps({"epoch": Exploit()}, protocol=2)],
                         ids=["cut_short", "carries_code"])
def test_a_damaged_or_code_carrying_checkpoint_is_set_aside(tmp_path, content):
    (tmp_path / "last.ckpt").write_bytes(content)
    with pytest.warns(UserWarning, match="not a usable checkpoint"):
        assert last_checkpoint(tmp_path) == (None, 0)
    assert not (tmp_path / "last.ckpt").exists()


def test_no_checkpoint_dir_means_no_checkpoints(tmp_path):
    module, data = module_and_data()
    fit(module, 1, datamodule=data)
    assert module.epochs_run == 1
    assert torch.isfinite(next(module.parameters())).all()


@pytest.mark.parametrize("epochs,validations", [(3, 3), (40, 20), (45, 15)])
def test_a_fit_validates_every_epoch_or_twenty_times(epochs, validations):
    """Each validation logs `<stage>/val_<metric>`; long fits validate at most ~20 times."""
    from lightning.pytorch.callbacks import Callback

    seen = []

    class Count(Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            seen.append(trainer.current_epoch)

    module, data = module_and_data()
    trainer = make_trainer(epochs)
    trainer.callbacks.append(Count())
    trainer.fit(module, datamodule=data)
    assert len(seen) == validations
    assert "train/val_rmse" in trainer.callback_metrics


def reference_fit(net, task, data, epochs: int, lr: float, clip: float) -> None:
    """A plain torch loop: RandomSampler's order, AdamW (the suite's), a cosine schedule over
    every step, gradient norm clipping."""
    x, y = data.train_set.tensors
    order = torch.utils.data.RandomSampler(range(len(x)),
                                           generator=torch.Generator().manual_seed(data.seed))
    steps_per_epoch = -(-len(x) // data.batch_size)
    opt = optimizer([{"params": list(net.parameters()), "lr": lr}], 0.0, None)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    for _ in range(epochs):
        for index in torch.tensor(list(order)).split(data.batch_size):
            opt.zero_grad()
            task.training_loss(net, (x[index], y[index])).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            sched.step()


@pytest.mark.parametrize("whole_epochs", [True, False], ids=["whole_epochs", "minibatches"])
def test_a_fit_takes_exactly_the_steps_of_a_plain_loop(whole_epochs):
    """Whole in-memory epochs (`Epoch`) and a loader of minibatches both train exactly as a
    plain torch loop over the same shuffled minibatches: bit-identical weights."""
    cfg = resolve("test", "feynman", "dense", 0, {"task": {"n_train": 100, "n_test": 16},
                                                  "train": {"batch_size": 32, "lr": 0.05,
                                                            "gradient_clip": 0.5}})
    task, method = TASKS.create("feynman"), METHODS.create("dense")
    torch.manual_seed(0)
    net = task.build(cfg.args["task"], method.factory(cfg.args["kan"], cfg.args["method"]))
    reference, initial = copy.deepcopy(net), copy.deepcopy(net.state_dict())
    data = task.datamodule(cfg.args["task"], "", 32, 3)
    module = StageContext(cfg, task, method, data).module(net, "train", cfg.args["train"])

    def loader():
        if whole_epochs:
            return data.train_dataloader()
        sampler = BatchSampler(ResumableShuffle(len(data.train_set), data.seed), 32, False)
        return DataLoader(data.train_set, sampler=sampler, batch_size=None)

    assert isinstance(next(iter(loader())), Epoch) == whole_epochs
    fit(module, 3, train_dataloaders=loader(), val_dataloaders=data.val_dataloader())
    assert module.trainer.global_step == 3 * 4                  # 100 examples: 32, 32, 32, 4
    reference_fit(reference, task, data, 3, 0.05, 0.5)
    for (name, got), want in zip(net.state_dict().items(), reference.state_dict().values(),
                                 strict=True):
        assert torch.equal(got, want), name
    assert not all(torch.equal(initial[k], v) for k, v in net.state_dict().items())  # trained


@pytest.mark.parametrize("method,args", [("dense", {}),
                                         ("dense_kmeans", {"codebook_dtype": "fp16"}),
                                         ("dense_kmeans", {"codebook_dtype": "fp32"})])
def test_after_a_fit_the_layers_caches_hold_the_trained_weights(method, args):
    """A fit validates between epochs (no gradient: a dense layer folds its scalers, a codebook
    layer packs its kernel layout, each cached per parameter version) while fused AdamW
    updates the weights in place; the evaluation after the fit must see the trained weights,
    as a fresh copy of the network (nothing cached) does."""
    from kanbench.methods.layers.codebook import cluster_edges

    cfg = resolve("test", "feynman", method, 0, {"task": {"n_train": 64, "n_test": 16},
                                                 "train": {"batch_size": 32, "lr": 0.05},
                                                 "method": args})
    task, m = TASKS.create("feynman"), METHODS.create(method)
    torch.manual_seed(0)
    net = task.build(cfg.args["task"], m.factory(cfg.args["kan"], cfg.args["method"]))
    if method == "dense_kmeans":
        net = cluster_edges(net, 4, "model", args["codebook_dtype"], seed=0)
    data = task.datamodule(cfg.args["task"], "", 32, 0)
    x = data.val_set.tensors[0]
    with torch.inference_mode():
        before = net(x)                                       # fills the caches
    fit(StageContext(cfg, task, m, data).module(net, "train", cfg.args["train"]), 3,
        datamodule=data)
    copied = copy.deepcopy(net)
    for module in copied.modules():                                   # nothing cached
        if getattr(module, "_folded", None) is not None:
            module._folded = None
    copied.apply(lambda module: module.__dict__.pop("_packed_version", None))
    with torch.inference_mode():
        after, fresh = net(x), copied(x)
    assert not torch.equal(after, before)
    torch.testing.assert_close(after, fresh, rtol=0, atol=0)

