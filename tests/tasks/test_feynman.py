import math

import pytest
import torch

from kanbench.suite.config import resolve
from kanbench.suite.errors import KanbenchError
from kanbench.suite.registry import TASKS


def test_feynman_targets_follow_pykan_equation_in_original_units():
    from kan.feynman import get_feynman_dataset

    task = TASKS.create("feynman")
    args = resolve("g", "feynman", "dense", 0, {"task": {"n_train": 50}}).args["task"]
    dm = task.datamodule(args, "unused", batch_size=10, seed=3)
    x, y = dm.train_set.tensors                                   # x in [-1, 1]
    assert x.shape == (50, 3) and y.shape == (50, 1)
    assert x.min() >= -1 and x.max() < 1
    _, _, fn, ranges = get_feynman_dataset("I.6.20b")
    lo = torch.tensor([r[0] for r in ranges], dtype=torch.float32)
    hi = torch.tensor([r[1] for r in ranges], dtype=torch.float32)
    torch.testing.assert_close(y, fn((x + 1) / 2 * (hi - lo) + lo).float())


def test_feynman_split_depends_on_seed_only():
    task = TASKS.create("feynman")
    args = resolve("g", "feynman", "dense", 0, {}).args["task"]
    a = task.datamodule(args, "", 10, seed=0).test_set.tensors[0]
    b = task.datamodule(args, "", 10, seed=0).test_set.tensors[0]
    c = task.datamodule(args, "", 10, seed=1).test_set.tensors[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_equation_is_a_clear_error():
    task = TASKS.create("feynman")
    args = resolve("g", "feynman", "dense", 0, {"task": {"equation": "I.99.9"}}).args["task"]
    with pytest.raises(KanbenchError, match="unknown Feynman equation 'I.99.9'"):
        task.check_data(args, "")


def test_highdim_function():
    task = TASKS.create("highdim")
    args = resolve("g", "highdim", "dense", 0, {"task": {"n_var": 4}}).args["task"]
    fn, ranges = task.function(args)
    x = torch.tensor([[0.0, 1.0, -1.0, 0.5]])
    expected = math.exp((0 + 1 + 1 + math.sin(math.pi / 4) ** 2) / 4)
    assert fn(x).item() == pytest.approx(expected, rel=1e-6)
    assert ranges == [[-1.0, 1.0]] * 4
    assert task.widths(args) == [4, 5, 5, 1]
