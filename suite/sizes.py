"""A cell's final model built without data or training: every stage's `skeleton` applied in
turn to the network the task builds from the method's factory, so its storage is what the
cell's record would itemize (bytes depend on shapes, never on the weights' values)."""

from __future__ import annotations

import torch

from kanbench.suite import measure
from kanbench.suite.config import RunConfig
from kanbench.suite.registry import METHODS, TASKS


def final_structure(cfg: RunConfig) -> torch.nn.Module:
    """The cell's final model with untrained (zero or random) values."""
    task, method = TASKS.create(cfg.task), METHODS.create(cfg.method)
    args = cfg.args
    torch.manual_seed(cfg.seed)
    factory = method.factory(args["kan"], args["method"])
    net = method.prepare(task.build(args["task"], factory), factory, args["method"], cfg.seed)
    for stage in method.stages(args["method"]):
        net = stage.skeleton(net)
    return net


def cell_sizes(cfg: RunConfig) -> dict:
    """`measure.storage` of the cell's final model, with its trainable parameters."""
    net = final_structure(cfg)
    sizes = measure.storage(net, TASKS.create(cfg.task).frozen_storage(cfg.args["task"]))
    sizes["trainable_params"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return sizes
