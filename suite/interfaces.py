"""What a task and a method provide to the harness. Subclass these and register them.

Imports no torch: the reports read methods' declarations (and plugin modules import the
layer library only where they use it) on a machine that only renders records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning as L
    import torch
    import torchmetrics
    from torch import nn


class Task:
    """A dataset, an architecture built from a layer factory, a loss and metrics."""

    name: str = ""               # set by @TASKS.register
    metric: str = ""             # the primary metric, a key of `metrics()`
    higher_is_better: bool = True
    defaults: dict[str, Any] = {}        # task args and their default values
    train_defaults: dict[str, Any] = {}  # overrides of suite.config.TRAIN_DEFAULTS
    method_defaults: dict[str, dict[str, Any]] = {}  # method name -> overrides of its defaults
    ranges: dict[str, Any] = {}          # numeric task args -> suite.config.Range
    choices: dict[str, tuple] = {}       # task args restricted to a set of values
    # named args by section that a grid block asks for with `preset: <name>`; "smoke": the
    # sizes that make one cell take seconds (the smoke grid, which runs every task)
    presets: dict[str, dict[str, dict[str, Any]]] = {}

    def check_args(self, args: dict) -> None:
        """Raise KanbenchError where task args that pass their ranges still cannot go
        together (widths against the input size); runs when the grid expands."""

    def check_data(self, args: dict, data_root: str) -> None:
        """Raise KanbenchError (one line: what is missing, where, how to get it)."""

    def datamodule(self, args: dict, data_root: str, batch_size: int, seed: int,
                   cache_dir: str | Path | None = None) -> L.LightningDataModule:
        """`cache_dir`: where the task may cache what it derives from the data once for many
        cells (detection: a trained trunk and its features). A datamodule may report the
        seconds that took in a `timing` dict ({name: {seconds, cached}}), kept in the record."""
        raise NotImplementedError

    def prepare_shared(self, args: dict, data_root: str, cache_dir: str | Path) -> bool:
        """Make, in `cache_dir`, what every cell with these task args derives from the data
        once and shares (detection: the trunk and its features), before any cell runs and
        with all the machine's cores, so that cells do not wait on one another for it.
        True when there was something to make (or load). Default: nothing is shared."""
        return False

    def build(self, args: dict, factory) -> nn.Module:
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def training_loss(self, net: nn.Module, batch) -> torch.Tensor:
        """The loss of one training batch; override where the network takes the targets."""
        x, y = batch
        return self.loss(net(x), y)

    def metrics(self, args: dict) -> torchmetrics.MetricCollection:
        raise NotImplementedError

    def example_input(self, args: dict, batch: int) -> torch.Tensor:
        """A random input batch of the network's input shape (for latency and memory)."""
        raise NotImplementedError

    def frozen_storage(self, args: dict) -> dict[str, int]:
        """Bytes by part of what the deployed model holds besides the network the methods
        build (detection: the frozen trunk); counted in the model ratio, never compressed."""
        return {}


@dataclass
class Stage:
    """One cached step of a method: train, cluster, finetune, quantize...

    `key` holds everything beyond the previous stage's output that determines this stage's
    result (the runner adds task, seed, kan and train settings to the first stage's key), so
    two methods that share a stage with an equal key share its cached output.
    `skeleton` turns the previous stage's model into an untrained model of this stage's
    structure, so a cached state dict can be loaded into it.
    """

    name: str
    run: Callable[[Any, nn.Module], nn.Module]
    key: dict[str, Any] = field(default_factory=dict)
    skeleton: Callable[[nn.Module], nn.Module] = lambda model: model


@dataclass(frozen=True)
class Claim:
    """A paper's headline claim about a method, where kanbench measures it and how that
    setting relates to the paper's: the claims table (suite/report/paper_claims.py) sets
    each beside what the records show and gives a verdict by a stated rule.

    `figure` is the paper's number the measure is checked against, as the paper prints it
    (its decimals are the precision of the comparison); `margin` is how much worse than
    dense the compressed model may be and still be "without loss" / "comparable", in the
    measure's units. What each measure reads and checks:
        params              trainable parameters at most 1/figure of dense's; accuracy gap
                            (points) at least -margin
        ratio               KAN ratio at least figure; metric gap (points) at least -margin
        rmse_ratio          KAN ratio at least figure; RMSE over dense's at most 1 + margin
        map_gap             KAN ratio at least figure; mAP50 gap (points) at least -margin
        transfer_retention  transfer mAP50 over dense's at least figure
        heads               50 heads' bytes, dense over compressed, at least figure
        int8_cost           transfer retention of share_fp32 minus share_int8's (points) at
                            most figure
        collapse            the method loses at least figure points against dense
        memory              the method's training-step peak below dense's at the largest
                            grid size measured (figure unused)
    `chosen`: the claim reads the one of the method's settings in the grid (those left by
    `where`) that `paper_claims.CHOICE_RULE` picks on the validation split (measures
    `ratio` and `rmse_ratio`); unset, it reads all of them as one.
    `sizes`: the claim depends on bytes alone (measure `heads`), so it reads the grid's
    models built without data or training (results/tables/<grid>_sizes.csv, by
    scripts/paper_sizes.py) instead of its records.
    `unmeasurable`: why the claim cannot be measured on this machine at all (the verdict
    then says so instead of "not run"). `authors`: the names of results/authors/<name>.csv,
    the authors' own code run here at the same setting (scripts/authors_*.py), set beside
    kanbench's figure: for `params` their dense and method runs, for `memory` their memory
    table."""

    paper: str
    arxiv: str       # the paper's arXiv number: the claims table lists papers in its order
    claim: str       # the paper's words, with its figure and its own setting
    grid: str        # where kanbench measures it
    task: str
    measure: str
    where: tuple[tuple[str, object], ...] = ()   # (method arg, value): which of the method's
    #                                              settings in that grid the claim reads
    setting: tuple[str, ...] = ("same",)   # how kanbench's setting relates to the paper's:
    #                                        "same", "authors' code", "stand-in: X for Y",
    #                                        "smaller network: ..."
    figure: str = ""
    margin: float = 0.0
    unmeasurable: str = ""
    chosen: bool = False
    sizes: bool = False
    authors: tuple[str, ...] = ()


class Method:
    """A layer factory to build networks with, and the stages that produce the final model.

    What the reports need of a method it declares here; reports name no method. These are
    read from the method's own class body, never inherited (a subclass is another method):
        title               its name in plot titles ("": the registered name)
        baseline            the uncompressed network every other method is compared with
        before_compression  the stage whose model the method compresses (every built-in's
                            first stage, `train`)
        size_arg            the method arg that sets its codebook size (the size sweep plot)
        colour              its colour in every plot ("": one picked from its name)
        paper_tables        the papers' tables it belongs in: "metakan" (parameters, memory
                            and time of the training forms), "share" (detection heads)
        claims              its paper's headline claims (the claims table)
    """

    name: str = ""
    defaults: dict[str, Any] = {}
    ranges: dict[str, Any] = {}     # numeric method args -> suite.config.Range
    choices: dict[str, tuple] = {}  # method args restricted to a set of values
    title: str = ""
    baseline: bool = False
    before_compression: str = "train"
    size_arg: str = ""
    colour: str = ""
    paper_tables: tuple[str, ...] = ()
    claims: tuple[Claim, ...] = ()

    def factory(self, kan: dict, args: dict):
        raise NotImplementedError

    def prepare(self, net: nn.Module, factory, args: dict, seed: int) -> nn.Module:
        """Finish the network the task built from `factory` (e.g. share modules across
        layers); called once per cell, before the first stage."""
        return net

    def stages(self, args: dict) -> list[Stage]:
        raise NotImplementedError

    def regularizer(self, net: nn.Module) -> torch.Tensor | float:
        return 0.0

    def param_groups(self, net: nn.Module, train: dict, args: dict) -> list[dict]:
        """AdamW parameter groups; override for per-group learning rates."""
        return [{"params": [p for p in net.parameters() if p.requires_grad], "lr": train["lr"]}]

    def serialize(self, net: nn.Module, path: Path) -> None:
        """Write the final model as inference reads it (safetensors; the storage record's
        `file_bytes` is this file's tensor payload and must equal the itemized bytes)."""
        from safetensors.torch import save_model

        save_model(net, str(path))
