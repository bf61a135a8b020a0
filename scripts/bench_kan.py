"""CPU benchmark of one KAN layer: our `methods.layers.kan.KANLinear` against baselines:
efficient-kan's formulation (`methods.layers.kan.RecursiveKANLinear`) and pykan's `KANLayer`.

For every implementation x shape x grid size G (spline order k) it measures
    fwd_ms        median time of `model(x)` in eval mode under torch.no_grad (inference),
    train_fwd_ms  median time of `model(x)` in train mode with gradients on (no backward),
    fwdbwd_ms     median time of `zero_grad(set_to_none); model(x).sum().backward()`,
    weight_mb     the layer's parameters and buffers (MiB), which every forward reads,
    GB/s          weight bytes / fwd_ms: how close inference comes to memory speed,
    peak_mb       the resident set (MiB) at the peak of one training step in a fresh process,
    step_mb       that peak minus the resident set just before the step.
Times are `torch.utils.benchmark.Timer(...).blocked_autorange` medians, whose block-size search
doubles as warm-up, taken in `--rounds` interleaved rounds (every implementation once per round)
and reduced by the median over rounds, so a slow spell of a shared machine hits all alike.
Memory is measured by this script re-run as a child (`--child`), so the parent's imports and
earlier layers do not count: the child builds the layer and input, resets the RSS high-water
mark (/proc/self/clear_refs, Linux only), runs one step and reads VmHWM.
Every measurement uses the same seed and torch thread count (default: the machine's cores).

Writes <out>/kan_layer.csv (one row per measurement) and <out>/kan_layer.md (the command, the
machine, how many times faster and leaner ours is than each baseline in this same run, and
each implementation's train-mode forward over its inference forward).

    python scripts/bench_kan.py [--grids 5,10,20] [--shapes 784x64@1024,...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.methods.layers.kan import KANLinear, KANSpec, RecursiveKANLinear
from kanbench.suite.measure import machine
from kanbench.suite.memprobe import reset_peak, status_bytes

SHAPES = [  # (in, out, batch)
    (784, 64, 1024),
    (64, 10, 1024),
    (1024, 1024, 256),
    (784, 256, 4096),
]
QUICK_SHAPES = [(8, 4, 16)]
SPLINE_ORDER = 3
SEED = 0
MIB = 2**20
# threading settings this was launched with (read now: importing pykan's sklearn adds KMP_*)
THREADING_ENV = [f"{k}={v}" for k, v in sorted(os.environ.items())
                 if k.startswith(("OMP_", "MKL_", "KMP_"))]


class PykanLayer(nn.Module):
    """pykan's KANLayer, returning only its output (it also returns per-edge activations)."""

    def __init__(self, d_in: int, d_out: int, G: int, k: int):
        from kan.KANLayer import KANLayer  # imports all of pykan (~180 MB): only where used

        super().__init__()
        self.layer = KANLayer(d_in, d_out, num=G, k=k, device="cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)[0]                                      # (batch, out)


REFERENCE = "ours"
IMPLS = {  # name -> (in, out, G, k) -> module mapping (batch, in) to (batch, out)
    REFERENCE: lambda d_in, d_out, G, k: KANLinear(d_in, d_out, KANSpec(G, spline_order=k)),
    "efficient-kan": lambda d_in, d_out, G, k: RecursiveKANLinear(d_in, d_out, KANSpec(G, k)),
    "pykan": PykanLayer,
}
KEYS = ["in", "out", "batch", "G", "k"]
# pykan keeps several (batch, in, out) float32 tensors alive per step; past this many elements
# in one of them (1.6 GB) a step needs more memory than these 24 GB machines have.
PYKAN_MAX_EDGE_ACTIVATIONS = 4 * 10**8


def build(impl: str, d_in: int, d_out: int, batch: int, G: int, k: int):
    """The layer and its input, seeded so every implementation sees the same x."""
    torch.manual_seed(SEED)
    x = torch.rand(batch, d_in) * 2 - 1                              # (batch, in) in [-1, 1]
    return IMPLS[impl](d_in, d_out, G, k), x


def median_ms(stmt: str, model: nn.Module, x: torch.Tensor, threads: int, min_run_time: float):
    timer = benchmark.Timer(stmt, globals={"model": model, "x": x}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def child(config: dict, threads: int) -> None:
    """Prints the resident set before and at the peak of one training step, in bytes."""
    torch.set_num_threads(threads)
    model, x = build(**config)
    if not reset_peak():
        raise SystemExit("peak memory needs Linux: cannot write /proc/self/clear_refs")
    before = status_bytes("VmRSS")
    model(x).sum().backward()
    print(json.dumps({"before": before, "peak": status_bytes("VmHWM")}))


def skip_reason(config: dict) -> str | None:
    size = config["batch"] * config["d_in"] * config["d_out"]
    if config["impl"] == "pykan" and size > PYKAN_MAX_EDGE_ACTIVATIONS:
        return f"pykan would hold (batch, in, out) tensors of {size * 4 / 1e9:.1f} GB each"
    return None


def memory(config: dict, threads: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(config),
                           "--threads", str(threads)], capture_output=True, text=True, check=True)
    mem = json.loads(proc.stdout.splitlines()[-1])
    return {"peak_mb": mem["peak"] / MIB, "step_mb": (mem["peak"] - mem["before"]) / MIB}


def measure(configs: list[dict], threads: int, min_run_time: float, rounds: int) -> list[dict]:
    """One row per implementation of the same shape and G, timed in interleaved rounds."""
    rows = [{"impl": c["impl"], "in": c["d_in"], "out": c["d_out"], "batch": c["batch"],
             "G": c["G"], "k": c["k"]} for c in configs]
    timed = []
    for config, row in zip(configs, rows, strict=True):
        if reason := skip_reason(config):
            row["skipped"] = reason
        else:
            timed.append((config, row, []))
    for _ in range(rounds):
        for config, row, times in timed:
            model, x = build(**config)
            row["weight_mb"] = sum(t.numel() * t.element_size() for t in
                                   [*model.parameters(), *model.buffers()]) / MIB
            with torch.no_grad():
                fwd = median_ms("model(x)", model.eval(), x, threads, min_run_time)
            train_fwd = median_ms("model(x)", model.train(), x, threads, min_run_time)
            fwdbwd = median_ms("model.zero_grad(set_to_none=True); model(x).sum().backward()",
                               model, x, threads, min_run_time)
            times.append((fwd, train_fwd, fwdbwd))
            del model, x
    for config, row, times in timed:
        fwd, train_fwd, fwdbwd = torch.tensor(times).median(0).values.tolist()
        row.update(fwd_ms=fwd, train_fwd_ms=train_fwd, fwdbwd_ms=fwdbwd,
                   **{"GB/s": row["weight_mb"] * MIB / fwd / 1e6}, **memory(config, threads),
                   threads=threads, device="cpu")
    return rows


def ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """baseline / ours for every baseline, shape and G: how many times faster/leaner ours is."""
    measured = frame.dropna(subset=["fwd_ms"])
    both = measured[measured.impl != REFERENCE].merge(measured[measured.impl == REFERENCE],
                                                      on=KEYS, suffixes=("", "_ours"))
    return pd.DataFrame({
        "shape": both["in"].astype(str) + "->" + both["out"].astype(str),
        "batch": both["batch"], "G": both["G"], "baseline": both["impl"],
        "fwd x": both["fwd_ms"] / both["fwd_ms_ours"],
        "fwd+bwd x": both["fwdbwd_ms"] / both["fwdbwd_ms_ours"],
        "step mem x": both["step_mb"] / both["step_mb_ours"],
        "peak mem x": both["peak_mb"] / both["peak_mb_ours"],
    })


def parse_shape(text: str) -> tuple[int, int, int]:
    """'784x64@1024' -> (784, 64, 1024)."""
    dims, batch = text.split("@")
    d_in, d_out = dims.split("x")
    return int(d_in), int(d_out), int(batch)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/bench")
    p.add_argument("--min-run-time", type=float, default=0.5, help="seconds per timing")
    p.add_argument("--grids", default="5,10,20", help="comma-separated grid sizes G")
    p.add_argument("--shapes", help="comma-separated IN x OUT @ BATCH, e.g. 784x64@1024")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--quick", action="store_true", help="tiny shape, G=5, short timings")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="torch threads (default: the machine's core count)")
    args = p.parse_args(argv)
    if args.child:
        child(json.loads(args.child), args.threads)
        return 0

    shapes = [parse_shape(s) for s in args.shapes.split(",")] if args.shapes else SHAPES
    grids = [int(g) for g in args.grids.split(",")]
    if args.quick:
        shapes, grids, args.min_run_time, args.rounds = QUICK_SHAPES, [5], 0.01, 1
    torch.set_num_threads(args.threads)
    rows = []
    for d_in, d_out, batch in shapes:
        for G in grids:
            configs = [{"impl": impl, "d_in": d_in, "d_out": d_out, "batch": batch, "G": G,
                        "k": SPLINE_ORDER} for impl in IMPLS]
            rows += measure(configs, args.threads, args.min_run_time, args.rounds)
            for row in rows[-len(configs):]:
                print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in row.items()), flush=True)
    frame = pd.DataFrame(rows)
    measured = frame.dropna(subset=["fwd_ms"])
    inference = pd.DataFrame({
        "impl": measured["impl"],
        "shape": measured["in"].astype(str) + "->" + measured["out"].astype(str),
        "batch": measured["batch"], "G": measured["G"],
        "train fwd / no-grad fwd": measured["train_fwd_ms"] / measured["fwd_ms"],
        "GB/s": measured["GB/s"]})

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "kan_layer.csv", index=False, float_format="%.6g")
    command = shlex.join([*THREADING_ENV, "python", "scripts/bench_kan.py", *argv])
    (out / "kan_layer.md").write_text(
        f"# KAN layer benchmark\n\nMade by `{command}` on {machine(args.threads)}.\n\n"
        f"Times are medians over {args.rounds} interleaved rounds of torch.utils.benchmark "
        f"blocked_autorange medians (min_run_time {args.min_run_time} s); memory is one "
        "forward+backward in a fresh process (MiB). Ratios are baseline / ours from this run: "
        "how many times faster or leaner ours is.\n\n"
        + ratios(frame).to_markdown(index=False, floatfmt=".3g")
        + "\n\n## Inference against a training forward\n\nEach implementation's train-mode "
        "forward (gradients on) over its eval-mode no-grad forward (at least 1: inference is "
        "not the slower path), and the weights its inference forward reads per second.\n\n"
        + inference.to_markdown(index=False, floatfmt=".3g") + "\n\n## Measurements\n\n"
        + frame.fillna({"skipped": ""}).to_markdown(index=False, floatfmt=".4g") + "\n")
    print(f"wrote kan_layer.csv and kan_layer.md to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
