"""Training speed of the quick grid's networks, the suite's training path now against the one
it replaced, measured in one run on the same data and initial weights.

For each quick-grid network (Feynman I.6.20b, highdim (100 variables), digits
[64, 32, 10], Fashion-MNIST [784, 64, 10]) trained by dense and MetaKAN layers, it measures

    step_ms   median time of one training step (forward, loss, backward, AdamW) on one
              training batch, outside any loop;
    epoch_s   one epoch of the suite's own fit (`suite.lit.fit`: Lightning, the task's
              DataModule, its validation schedule), over `--epochs` epochs;

under each path, in interleaved rounds (median over rounds), at the torch thread count given
(default: all cores); then the step once more with as many busy processes as cores competing
(`busy` rows: one round, `--busy-repeats` steps, no epochs), where a path that splits many
small operations across threads stalls at every one of them.

Paths (module settings and the training loader, nothing in any config):
    before  the suite's path until the quick grid's records of 2026-12-02: the tensor spline
            term everywhere, MetaKAN's generated activations recomputed in backward in every
            layer, AdamW's per-parameter loop, and a loader of minibatches (one Lightning
            step each; the old loop also logged every step, which is not timed here);
    after   the suite's defaults: the fused C++ spline term for layers up to 64 edges
            (methods.layers.splines.FUSED_MAX_EDGES), the C++ basis expansion and input gradient
            around the tensor path's BLAS products above that (methods.layers.splines.BASES_KERNEL),
            MetaKAN's activations kept for layers under 2^17 edges
            (methods.layers.metakan.CHECKPOINT_MIN_EDGES), AdamW's fused CPU step
            (suite.lit.FUSED_ADAM), and whole in-memory epochs per Lightning step
            (suite.lit.Epoch).

Writes results/bench/train_step.{csv,md}.

    python scripts/bench_train.py [--epochs 2] [--rounds 3] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.methods.layers import metakan, splines
from kanbench.suite import grid, lit
from kanbench.suite.measure import machine
from kanbench.suite.registry import METHODS, TASKS
from kanbench.tasks.common import ResumableShuffle

REPO = Path(__file__).resolve().parent.parent
NETWORKS = [("feynman", ["task.equation=I.6.20b"]), ("highdim", []), ("digits", []),
            ("fashion_mnist", [])]
OWNERS = {"FUSED_MAX_EDGES": splines, "BASES_KERNEL": splines,
          "CHECKPOINT_MIN_EDGES": metakan, "FUSED_ADAM": lit}
PATHS = {
    "before": {"FUSED_MAX_EDGES": 0, "BASES_KERNEL": False, "CHECKPOINT_MIN_EDGES": 0,
               "FUSED_ADAM": False},
    "after": {key: getattr(owner, key) for key, owner in OWNERS.items()},  # the defaults
}
WHOLE_EPOCHS = {"before": False, "after": True}


@contextlib.contextmanager
def training_path(name: str):
    saved = {key: getattr(OWNERS[key], key) for key in PATHS[name]}
    for key, value in PATHS[name].items():
        setattr(OWNERS[key], key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(OWNERS[key], key, value)


def spin(stop) -> None:
    while not stop.is_set():
        pass


@contextlib.contextmanager
def busy_machine(processes: int):
    """`processes` processes spinning on the CPU for the duration (a shared, loaded machine)."""
    stop = mp.Event()
    workers = [mp.Process(target=spin, args=(stop,), daemon=True) for _ in range(processes)]
    for w in workers:
        w.start()
    try:
        yield
    finally:
        stop.set()
        for w in workers:
            w.join()


class Setup:
    """One quick-grid network: its cell's task, method, data and a fixed initial state."""

    def __init__(self, task_name: str, method: str, overrides: list[str], data_root: str,
                 quick: bool):
        (self.cfg,) = grid.cells("quick", [f"tasks=[{task_name}]", f"methods=[{method}]",
                                           "seeds=[0]", *overrides])
        self.task, self.method = TASKS.create(task_name), METHODS.create(method)
        args = self.cfg.args
        if quick:  # tiny data for the test of this script
            args["task"] = {**args["task"], **{k: 256 for k in ("n_train", "n_val", "n_test")
                                               if k in args["task"]}}
        self.datamodule = self.task.datamodule(args["task"], data_root,
                                               args["train"]["batch_size"], 0)
        L.seed_everything(0, verbose=False)
        factory = self.method.factory(args["kan"], args["method"])
        self.net = self.method.prepare(self.task.build(args["task"], factory), factory,
                                       args["method"], 0)
        self.initial = {k: v.clone() for k, v in self.net.state_dict().items()}
        self.batch = next(iter(next(iter(self.datamodule.train_dataloader()))))  # (x, y)
        widths = args["task"].get("widths") or self.task.widths(args["task"])
        self.label = f"{self.cfg.task} {widths}"

    def reset(self) -> None:
        self.net.load_state_dict(self.initial)

    def step_ms(self, repeats: int, warmup: int = 3) -> float:
        self.reset()
        args = self.cfg.args
        opt = lit.optimizer(self.method.param_groups(self.net, args["train"], args["method"]),
                            args["train"]["weight_decay"], args["train"]["optimizer"])

        def step():
            opt.zero_grad()
            loss = self.task.training_loss(self.net, self.batch) + \
                self.method.regularizer(self.net)
            loss.backward()
            opt.step()

        for _ in range(warmup):
            step()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3

    def epoch_s(self, epochs: int, whole_epochs: bool) -> float:
        self.reset()
        args = self.cfg.args
        train = {**args["train"], "max_epochs": epochs}
        module = lit.StageContext(self.cfg, self.task, self.method,
                                  self.datamodule).module(self.net, "bench", train)
        data = self.datamodule
        loader = data.train_dataloader() if whole_epochs else minibatch_loader(data)
        start = time.perf_counter()
        lit.fit(module, epochs, train_dataloaders=loader, val_dataloaders=data.val_dataloader())
        return (time.perf_counter() - start) / epochs


def minibatch_loader(data) -> DataLoader:
    """The training loader the suite used before whole epochs: one minibatch per item."""
    order = ResumableShuffle(len(data.train_set), data.seed)
    return DataLoader(data.train_set, sampler=BatchSampler(order, data.batch_size, False),
                      batch_size=None)


def measure(setups: list[Setup], rounds: int, repeats: int, epochs: int | None,
            load: str) -> list[dict]:
    """Rows of step (and, unless `epochs` is None, epoch) times, every path once per round."""
    rows = []
    for round_ in range(rounds):
        for setup in setups:
            for path in PATHS:
                with training_path(path):
                    rows.append({"network": setup.label, "method": setup.cfg.method,
                                 "path": path, "load": load, "round": round_,
                                 "step_ms": setup.step_ms(repeats, warmup=3 if epochs else 1),
                                 "epoch_s": setup.epoch_s(epochs, WHOLE_EPOCHS[path])
                                 if epochs else float("nan")})
                print(f"{load} round {round_}: {setup.label} {setup.cfg.method} {path} "
                      f"{rows[-1]['step_ms']:.2f} ms/step {rows[-1]['epoch_s']:.2f} s/epoch",
                      flush=True)
    return rows


def report(frame: pd.DataFrame, command: str, threads: int) -> str:
    med = frame.groupby(["load", "network", "method", "path"])[["step_ms", "epoch_s"]] \
        .median().unstack("path")
    table = pd.DataFrame({
        "step ms before": med[("step_ms", "before")],
        "step ms after": med[("step_ms", "after")],
        "step speed-up": med[("step_ms", "before")] / med[("step_ms", "after")],
        "epoch s before": med[("epoch_s", "before")],
        "epoch s after": med[("epoch_s", "after")],
        "epoch speed-up": med[("epoch_s", "before")] / med[("epoch_s", "after")],
    }).reset_index()
    return (f"# Training speed of the quick grid's networks\n\nMade by `{command}` on "
            f"{machine(threads)}. Medians over {frame['round'].nunique()} interleaved rounds; "
            "speed-up = before / after time, measured in this same run. `busy`: as many "
            "spinning processes as cores ran beside it (one round, steps only). `after` is "
            "the suite's training path (the spline term's C++ bases and input gradient around "
            "BLAS, one fused C++ pass on tiny layers, kept MetaKAN activations for small "
            "layers, fused AdamW, whole in-memory epochs per Lightning step); `before`, the one "
            "it replaced: see the script's docstring.\n\n"
            + table.to_markdown(index=False, floatfmt=".3g") + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--step-repeats", type=int, default=30)
    p.add_argument("--busy-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    p.add_argument("--data-root", default=str(REPO / "data"))
    p.add_argument("--no-busy", action="store_true", help="skip the rows under load")
    p.add_argument("--quick", action="store_true", help="tiny data, one round (the test)")
    p.add_argument("--out", default=str(REPO / "results" / "bench"))
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.step_repeats, args.busy_repeats = 1, 1, 3, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    networks = NETWORKS[:1] if args.quick else NETWORKS
    setups = [Setup(task, method, overrides, args.data_root, args.quick)
              for task, overrides in networks for method in ("dense", "metakan")]
    rows = measure(setups, args.rounds, args.step_repeats, args.epochs, "idle")
    if not args.no_busy:
        with busy_machine(os.cpu_count() or 1):
            rows += measure(setups, 1, args.busy_repeats, None, "busy")
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "train_step.csv", index=False)
    command = "python scripts/bench_train.py " + " ".join(argv if argv is not None
                                                          else sys.argv[1:])
    (out / "train_step.md").write_text(report(frame, command.strip(), threads))
    print(f"written {out}/train_step.csv and train_step.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
