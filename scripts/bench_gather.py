"""CPU benchmark of the compressed forward of a codebook KAN layer (methods.layers.kernels) against
the dense `KANLinear` forward of the same layer, at the batch sizes inference uses.

Layers, all on the same input, G=5, k=3:
    dense        methods.layers.kan.KANLinear (coefficients, base weights and scalers in fp32);
                 at inference it folds the scalers into the coefficients once per weight
                 version, so it does dense_prescaled's work plus a cache check
    dense_prescaled  a layer stored without scalers (folded in beforehand): the strongest
                 dense baseline
    share_int8   SHARe-KAN Int8: K=256 shapes, uint8 indices, int8 gains/biases/base weights
    share_fp32   the same with fp32 gains/biases/base weights
    metacluster  K=16 codes carrying the base weight, no per-edge numbers
The compressed layers run the kernel `pick_kernel` chooses here (the compiled gather, or
PyTorch without a compiler) in the order `methods.layers.kernels.cpu` picks for the batch. A second
table times both orders (table-and-gather, rebuilt tiles) at every batch on [1024->1024],
which is where `GATHER_MAX_BATCH` comes from.

`read_bytes` is what one forward reads of the layer's weights in memory: the kernels' layout
holds indices as uint8 (one byte each, not the file's bit-packing) and the dequantized fp32
codebook. Times are torch.utils.benchmark blocked_autorange medians under inference_mode,
taken in `--rounds` interleaved rounds and reduced by the median over rounds.

Writes <out>/gather.csv, <out>/gather_order.csv and <out>/gather.md (command, machine, and
the dense / compressed time ratios of this run).

    python scripts/bench_gather.py [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.methods.layers import kernels
from kanbench.methods.layers.kan import KANLinear, KANSpec
from kanbench.methods.layers.kernels import cpu
from kanbench.suite.measure import machine

SHAPES = [(784, 64), (1024, 1024), (64, 10)]
BATCHES = [1, 32, 256]
ORDER_SHAPE, ORDER_BATCHES = (1024, 1024), [1, 2, 4, 8, 16, 32, 64]
SPEC = KANSpec(5, 3)
PRESCALED = KANSpec(5, 3, spline_scaler=False)
SEED = 0


def compressed(kind: str, dense: KANLinear) -> kernels.PackedCodebookLayer:
    """A packed layer of the dense layer's shape (random codes: timing does not depend on
    the values, only on the shapes and dtypes)."""
    g = torch.Generator().manual_seed(SEED)
    edges = dense.edge_shape
    if kind == "metacluster":
        return kernels.pack(torch.randn(16, SPEC.n_coef + 1, generator=g),
                            torch.randint(0, 16, edges, generator=g))
    codes, indices = torch.randn(256, SPEC.n_coef, generator=g), torch.randint(0, 256, edges,
                                                                             generator=g)
    if kind == "share_int8":
        numbers = [(torch.randint(-127, 128, edges, generator=g, dtype=torch.int8), 0.01)
                   for _ in range(3)]
    else:
        numbers = [torch.randn(edges, generator=g) for _ in range(3)]
    return kernels.pack(codes, indices, *numbers)


def read_bytes(layer) -> int:
    """Bytes of weights one forward reads (see the module docstring)."""
    if isinstance(layer, KANLinear):  # inference reads the folded coefficients and base weights
        with torch.inference_mode():
            folded = layer.scaled_spline_weight()
        return (folded.numel() * folded.element_size()
                + layer.base_weight.numel() * layer.base_weight.element_size())
    parts = [layer.codes, layer.indices] + [v.data for v in (layer.gains, layer.biases,
                                                             layer.base) if v is not None]
    return sum(t.numel() * t.element_size() for t in parts)


def forward_fn(layer, x, order: str | None = None):
    activation = nn.SiLU()
    if isinstance(layer, KANLinear):
        return lambda: layer(x)
    if order == "gather":
        return lambda: cpu.gather(x, layer, SPEC, activation, cpu.compiled() is not None)
    if order == "rebuilt":
        return lambda: cpu.rebuilt_matmul(x, layer, SPEC, activation)
    return lambda: kernels.codebook_linear(x, layer, SPEC, activation)


def median_ms(fn, min_run_time: float) -> float:
    with torch.inference_mode():
        fn()
        timer = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def timed_rounds(cases: list[dict], rounds: int, min_run_time: float) -> pd.DataFrame:
    """Each case's median over `rounds` interleaved rounds."""
    times = [[median_ms(c["fn"], min_run_time) for c in cases] for _ in range(rounds)]
    rows = [{k: v for k, v in c.items() if k != "fn"} for c in cases]
    for row, samples in zip(rows, zip(*times, strict=True), strict=True):
        row["ms"] = float(pd.Series(samples).median())
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-run-time", type=float, default=0.3)
    p.add_argument("--out", type=Path, default=Path("results/bench"))
    p.add_argument("--quick", action="store_true",
                   help="tiny shapes, one round, short timings (tests)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.min_run_time = 1, 0.01
    shapes, batches = (([(20, 6)], [1, 40]) if args.quick else (SHAPES, BATCHES))
    order_shape, order_batches = ((20, 6), [1, 40]) if args.quick else (ORDER_SHAPE,
                                                                       ORDER_BATCHES)
    torch.manual_seed(SEED)
    kernel = kernels.pick_kernel(torch.device("cpu"), SPEC)

    cases = []
    for d_in, d_out in shapes:
        dense = KANLinear(d_in, d_out, SPEC).eval()
        prescaled = KANLinear(d_in, d_out, PRESCALED).eval()
        layers = {"dense": dense, "dense_prescaled": prescaled} | {
            k: compressed(k, dense) for k in ("share_int8", "share_fp32", "metacluster")}
        for batch in batches:
            x = torch.rand(batch, d_in, generator=torch.Generator().manual_seed(batch)) * 2 - 1
            for name, layer in layers.items():
                order = None if name.startswith("dense") else \
                    "gather" if batch <= cpu.GATHER_MAX_BATCH else "rebuilt"
                cases.append({"shape": f"{d_in}->{d_out}", "batch": batch, "layer": name,
                              "kernel": "torch" if name.startswith("dense") else kernel,
                              "order": order or "dense", "read_bytes": read_bytes(layer),
                              "fn": forward_fn(layer, x)})
    frame = timed_rounds(cases, args.rounds, args.min_run_time)
    for baseline in ("dense", "dense_prescaled"):
        base_ms = frame[frame.layer == baseline].set_index(["shape", "batch"])["ms"]
        frame[f"{baseline}_over_this"] = [
            base_ms[(s, b)] / ms
            for s, b, ms in zip(frame["shape"], frame["batch"], frame["ms"], strict=True)]

    dense = KANLinear(*order_shape, SPEC).eval()
    layer = compressed("share_int8", dense)
    order_cases = []
    for batch in order_batches:
        x = torch.rand(batch, order_shape[0], generator=torch.Generator().manual_seed(batch))
        for order in ("gather", "rebuilt"):
            order_cases.append({"shape": f"{order_shape[0]}->{order_shape[1]}", "batch": batch,
                                "layer": "share_int8", "order": order,
                                "fn": forward_fn(layer, x, order)})
        order_cases.append({"shape": f"{order_shape[0]}->{order_shape[1]}", "batch": batch,
                            "layer": "dense", "order": "dense", "fn": forward_fn(dense, x)})
    orders = timed_rounds(order_cases, args.rounds, args.min_run_time)

    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "gather.csv", index=False, float_format="%.4g")
    orders.to_csv(args.out / "gather_order.csv", index=False, float_format="%.4g")
    command = shlex.join(["python", "scripts/bench_gather.py", *(argv or sys.argv[1:])])
    compressed_rows = frame[~frame.layer.str.startswith("dense")]
    table = compressed_rows.pivot_table(index=["shape", "batch"], columns="layer",
                                        values="dense_over_this")
    table_prescaled = compressed_rows.pivot_table(index=["shape", "batch"], columns="layer",
                                                  values="dense_prescaled_over_this")
    ms = frame.pivot_table(index=["shape", "batch"], columns="layer", values="ms")
    by_order = orders.pivot_table(index="batch", columns="order", values="ms")
    read = frame.pivot_table(index="shape", columns="layer", values="read_bytes") / 1e6
    (args.out / "gather.md").write_text(
        f"# Codebook gather benchmark\n\nMade by `{command}` on {machine(torch.get_num_threads())}"
        f".\n\nCompressed layers run the `{kernel}` kernel; batches <= "
        f"{cpu.GATHER_MAX_BATCH} take the table-and-gather order, larger ones the rebuilt-tile "
        f"matmul. Times are medians over {args.rounds} interleaved rounds of blocked_autorange "
        f"medians.\n\n## Dense KANLinear time / compressed time (above 1: compressed is "
        f"faster)\n\n{table.round(2).to_markdown()}\n\n## Dense with prescaled coefficients / "
        f"compressed\n\n{table_prescaled.round(2).to_markdown()}\n\n## Milliseconds per forward\n\n"
        f"{ms.round(3).to_markdown()}\n\n## Weights one forward reads (MB)\n\n"
        f"{read.round(4).to_markdown()}\n\n## Both orders on {order_shape[0]}->{order_shape[1]} "
        f"(share_int8, ms)\n\n{by_order.round(3).to_markdown()}\n")
    print((args.out / "gather.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
