"""Train / validation / test: disjoint, fixed by the task's settings, the same for every
method, and evaluated into every stage's record."""

import pytest
import torch

from kanbench.suite import grid
from kanbench.suite.config import resolve
from kanbench.suite.errors import KanbenchError
from kanbench.suite.registry import TASKS
from kanbench.tasks.common import stratified_holdout
from kanbench.tasks.detection import DetectionTask
from tests.datafiles import write_mnist_like


def args_of(task, **given):
    return resolve("g", task, "dense", 0, {"task": given}).args["task"]


def rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x.reshape(len(x), -1)}


def test_stratified_holdout_is_disjoint_complete_stratified_and_seeded():
    x = torch.arange(200.0).unsqueeze(1)                               # row i holds i
    y = torch.arange(200) % 4
    (xtr, ytr), (xval, yval) = stratified_holdout(x, y, 0.1, seed=3)
    assert len(xval) == 20 and not rows(xtr) & rows(xval)
    assert sorted(torch.cat([xtr, xval]).squeeze(1).tolist()) == list(range(200))
    assert torch.bincount(yval).tolist() == [5, 5, 5, 5]
    assert torch.equal(stratified_holdout(x, y, 0.1, seed=3)[1][0], xval)
    assert not torch.equal(stratified_holdout(x, y, 0.1, seed=4)[1][0], xval)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.001])
def test_an_empty_split_is_refused(fraction):
    with pytest.raises(KanbenchError, match="val_fraction"):
        stratified_holdout(torch.zeros(50, 2), torch.zeros(50, dtype=torch.long), fraction, 0)


def test_digits_splits_are_disjoint_and_do_not_depend_on_the_run_seed():
    task = TASKS.create("digits")
    args = args_of("digits")
    a, b = task.datamodule(args, "", 64, seed=0), task.datamodule(args, "", 64, seed=1)
    train, val, test = (set(map(tuple, s.tensors[0].tolist()))
                        for s in (a.train_set, a.val_set, a.test_set))
    assert len(a.train_set) + len(a.val_set) + len(a.test_set) == 1797
    assert len(a.val_set) == round(0.1 * (1797 - len(a.test_set)))
    # digits holds a few duplicate images; the splits share no index, so at most those
    assert len(train & val) + len(val & test) + len(train & test) < 10
    assert torch.equal(a.val_set.tensors[0], b.val_set.tensors[0])


def test_idx_validation_comes_out_of_the_training_files(tmp_path):
    write_mnist_like(tmp_path, "FashionMNIST", n_train=100, n_test=20)
    data = TASKS.create("fashion_mnist").datamodule(args_of("fashion_mnist"), str(tmp_path),
                                                    32, seed=0)
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (90, 10, 20)
    assert not rows(data.train_set.tensors[0]) & rows(data.val_set.tensors[0])
    assert sorted(data.val_set.tensors[1].tolist()) == list(range(10))     # stratified


def test_regression_splits_are_three_independent_samples():
    task = TASKS.create("feynman")
    data = task.datamodule(args_of("feynman", n_train=50, n_val=30, n_test=40), "", 16, 0)
    sets = (data.train_set, data.val_set, data.test_set)
    assert [len(s) for s in sets] == [50, 30, 40]
    train, val, test = (rows(s.tensors[0]) for s in sets)
    assert not train & val and not val & test and not train & test


def test_detection_holdout_is_disjoint_and_fixed_by_split_seed():
    images = list(range(50))
    train, val = DetectionTask.holdout(images, {"n_val": 8, "split_seed": 0})
    assert len(val) == 8 and sorted(train + val) == images and not set(train) & set(val)
    assert DetectionTask.holdout(images, {"n_val": 8, "split_seed": 0})[1] == val
    assert DetectionTask.holdout(images, {"n_val": 8, "split_seed": 1})[1] != val
    assert DetectionTask.train_pool({"n_train": 40, "n_val": 8}) == 48
    with pytest.raises(KanbenchError, match="n_val"):
        DetectionTask.holdout(images, {"n_val": 50, "split_seed": 0})


@pytest.mark.parametrize("preset", ["quick", "metakan_authors"])
def test_every_method_of_a_setup_gets_the_same_datamodule_inputs(preset):
    """`Task.datamodule` sees the task args, the data root, the batch size and the seed,
    never the method: in the committed grids those agree across a setup's methods."""
    data_of = {}
    for cell in grid.cells(preset):
        key = (cell.task, repr(sorted(cell.args["task"].items())), cell.seed)
        data_of.setdefault(key, set()).add(repr(cell.args["train"]["batch_size"]))
    assert all(len(sizes) == 1 for sizes in data_of.values())
