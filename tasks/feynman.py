"""Symbolic regression tasks: Feynman equations (from pykan) and a high-dimensional function.

Inputs are sampled uniformly in each variable's range and mapped linearly onto the KAN grid
range [-1, 1]; the metric is the test RMSE of the (unscaled) target. Train, test and
validation sets are independent samples of one seeded generator, drawn in that order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchmetrics

from kanbench.methods.layers.architectures import KAN
from kanbench.suite.config import AT_LEAST_ONE
from kanbench.suite.errors import KanbenchError
from kanbench.suite.interfaces import Task
from kanbench.suite.registry import TASKS
from kanbench.tasks.common import TensorDataModule


def feynman_equation(name: str):
    """(function of a (N, n_var) tensor, [[lo, hi]] per variable) from pykan's table."""
    from kan.feynman import get_feynman_dataset

    try:
        _, _, fn, ranges = get_feynman_dataset(name)
    except UnboundLocalError:  # pykan's table falls through for unknown names
        raise KanbenchError(f"unknown Feynman equation {name!r}; names are those of "
                            "kan.feynman.get_feynman_dataset, e.g. I.6.20b, I.9.18, II.2.42") \
            from None
    return fn, ranges


class RegressionTask(Task):
    metric, higher_is_better = "rmse", False
    train_defaults = {"max_epochs": 200, "batch_size": 128, "lr": 1e-2, "weight_decay": 0.0}
    # MetaKAN's meta-learner width for equations; MetaCluster's fine-tune at the task's lr, and
    # long enough to matter: 100 epochs of 1000 samples are 800 steps (a quarter of training)
    method_defaults = {"metakan": {"hidden_dim": 16},
                       "metacluster": {"hidden_dim": 16, "finetune_epochs": 100,
                                       "finetune_lr": 1e-2}}
    ranges = {"n_train": AT_LEAST_ONE, "n_val": AT_LEAST_ONE, "n_test": AT_LEAST_ONE,
              "widths": AT_LEAST_ONE}

    def function(self, args: dict):
        """(fn, ranges): fn maps (N, n_var) in the ranges to (N, 1)."""
        raise NotImplementedError

    def widths(self, args: dict) -> list[int]:
        n_var = len(self.function(args)[1])
        widths = args["widths"] or [n_var, 5, 5, 1]
        if len(widths) < 2 or widths[0] != n_var or widths[-1] != 1:
            raise KanbenchError(f"task.widths {widths} must start with n_var={n_var} and end "
                                "with 1")
        return widths

    def check_data(self, args, data_root):
        self.widths(args)

    def sample(self, args: dict, n: int, generator: torch.Generator):
        fn, ranges = self.function(args)
        lo = torch.tensor([float(r[0]) for r in ranges])
        hi = torch.tensor([float(r[1]) for r in ranges])
        u = torch.rand(n, len(ranges), generator=generator)              # (n, n_var) in [0, 1)
        y = fn(lo + u * (hi - lo)).reshape(n, 1).float()                 # (n, 1)
        return 2 * u - 1, y                                              # x in [-1, 1)

    def datamodule(self, args, data_root, batch_size, seed, cache_dir=None):
        generator = torch.Generator().manual_seed(seed)
        train = self.sample(args, args["n_train"], generator)
        test = self.sample(args, args["n_test"], generator)
        val = self.sample(args, args["n_val"], generator)
        return TensorDataModule(train, val, test, batch_size, seed)

    def build(self, args, factory):
        return KAN(self.widths(args), factory)

    def loss(self, output, target):
        return F.mse_loss(output, target)

    def metrics(self, args):
        return torchmetrics.MetricCollection(
            {"rmse": torchmetrics.MeanSquaredError(squared=False)})

    def example_input(self, args, batch):
        return torch.rand(batch, self.widths(args)[0]) * 2 - 1


@TASKS.register("feynman")
class Feynman(RegressionTask):
    presets = {"smoke": {"task": {"n_train": 64, "n_val": 32, "n_test": 64}}}
    defaults = {"equation": "I.6.20b", "n_train": 1000, "n_val": 1000, "n_test": 1000,
                "widths": []}

    def function(self, args):
        return feynman_equation(args["equation"])


@TASKS.register("highdim")
class HighDim(RegressionTask):
    presets = {"smoke": {"task": {"n_var": 8, "n_train": 64, "n_val": 32, "n_test": 64}}}
    """f(x) = exp(mean_i sin^2(pi x_i / 2)) on [-1, 1]^n_var: the KAN paper's 100-variable
    example (Liu et al. 2024), kanbench's stand-in for the papers' high-dimensional
    equations (grid `highdim` says which network)."""

    defaults = {"n_var": 100, "n_train": 1000, "n_val": 1000, "n_test": 1000,
                "widths": []}
    ranges = {**RegressionTask.ranges, "n_var": AT_LEAST_ONE}

    def check_args(self, args):
        self.widths(args)

    def function(self, args):
        def fn(x):                                                      # (N, n_var)
            return torch.exp(torch.sin(math.pi * x / 2).square().mean(1, keepdim=True))

        return fn, [[-1.0, 1.0]] * args["n_var"]
