"""Epoch checkpoints: a fit killed mid-stage resumes from its last finished epoch."""

import pickle
import shutil

import pytest
import torch

from suite.config import resolve
from suite.lit import KanbenchModule, fit, last_checkpoint, make_trainer
from suite.registry import METHODS, TASKS


def module_and_data(fails_at_epoch=None):
    cfg = resolve("test", "feynman", "dense", 0, {"task": {"n_train": 64, "n_test": 16},
                                                  "train": {"batch_size": 32}})
    task, method = TASKS.create("feynman"), METHODS.create("dense")
    net = task.build(cfg.args["task"], method.factory(cfg.args["kan"], cfg.args["method"]))

    class Failing(KanbenchModule):
        def on_train_epoch_start(self):
            if self.current_epoch == fails_at_epoch:
                raise RuntimeError("killed")

    module = Failing(net, task, method, cfg.args, cfg.args["train"], "train")
    return module, task.datamodule(cfg.args["task"], "", 32, 0)


def test_a_fit_interrupted_at_epoch_2_resumes_there(tmp_path):
    checkpoints = tmp_path / "ckpt"
    module, data = module_and_data(fails_at_epoch=2)
    with pytest.raises(RuntimeError, match="killed"):
        fit(module, 4, checkpoint_dir=checkpoints, datamodule=data)
    assert last_checkpoint(checkpoints)[1] == 2
    module, data = module_and_data()
    assert fit(module, 4, checkpoint_dir=checkpoints, datamodule=data) == 2
    assert module.trainer.current_epoch == 4 and module.trainer.global_step == 4 * 2
    assert not checkpoints.exists()                                  # removed once done


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
    assert fit(module, 1, datamodule=data) == 0
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
