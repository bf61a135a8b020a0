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
PyTorch without a compiler) in the order `methods.layers.kernels.cpu.pick_order` picks for the
batch. A second table times both compiled orders (outputs, batch) of every compressed layer
at the small batches on [1024->1024], which is where `BATCH_ORDER_FROM` and
`CODES_ONLY_BATCH_ORDER_FROM` come from.

`read_bytes` is what one forward reads of the layer's weights in memory: the kernels' layout
holds indices as uint8 (one byte each, not the file's bit-packing) and the dequantized fp32
codebook; `GB/s` is read_bytes / time, set beside the machine's copy bandwidth (a STREAM-like
copy of 256 MiB, bytes read plus written, measured in the same run) so the distance from
memory speed is visible. Times are torch.utils.benchmark blocked_autorange medians under
inference_mode, taken in `--rounds` interleaved rounds and reduced by the median over rounds.

Writes <out>/gather.csv, <out>/gather_order.csv, <out>/gather.md (command, machine, and
the dense / compressed time ratios of this run) and <out>/gather_summary.md (README's table:
the largest shape's ratios and GB/s).

    python scripts/bench_gather.py [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import math
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

SHAPES = {(784, 64): [1, 32, 256], (1024, 1024): [1, 2, 4, 8, 16, 32, 64, 128, 256],
          (64, 10): [1, 32, 256]}
ORDER_SHAPE, ORDER_BATCHES = (1024, 1024), [1, 2, 4, 8, 16, 32]
COMPRESSED = ("share_int8", "share_fp32", "metacluster")
COPY_FLOATS = 2**26  # the bandwidth probe's 256 MiB
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
    if order is not None:
        return lambda: cpu.ORDERS[order](x, layer, SPEC, activation)
    return lambda: kernels.codebook_linear(x, layer, SPEC, activation)


def copy_gb_per_s(min_run_time: float, floats: int = COPY_FLOATS) -> float:
    """The machine's memory bandwidth as a STREAM-like copy sees it: bytes read plus written
    per second by torch's (threaded) copy of `floats` float32 numbers."""
    source, target = torch.rand(floats), torch.empty(floats)
    seconds = median_ms(lambda: target.copy_(source), min_run_time) / 1e3
    return 2 * floats * 4 / seconds / 1e9


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


def summary(frame: pd.DataFrame, command: str, bandwidth: float) -> str:
    """README's kernel table: on the largest shape, the prescaled dense time over each
    compressed layer's at every batch, and the weight bytes each reads per second."""
    shape = max(frame["shape"], key=lambda s: math.prod(map(int, s.split("->"))))
    rows = frame[frame["shape"] == shape]
    ratio = rows.pivot_table(index="batch", columns="layer", values="dense_prescaled_over_this")
    speed = rows.pivot_table(index="batch", columns="layer", values="GB/s")
    table = pd.DataFrame({"batch": ratio.index}
                         | {f"{k} x": ratio[k].round(2).to_numpy() for k in COMPRESSED}
                         | {"share_int8 GB/s": speed["share_int8"].round(2).to_numpy(),
                            "dense GB/s": speed["dense_prescaled"].round(2).to_numpy()})
    return (f"Forward of one {shape} layer (G=5, k=3), `{command}`: prescaled dense time / "
            f"compressed time (above 1: compressed is faster), and weight bytes read per "
            f"second against this machine's copy bandwidth of {bandwidth:.1f} GB/s.\n\n"
            + table.to_markdown(index=False) + "\n")


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
    shapes = {(20, 6): [1, 40]} if args.quick else SHAPES
    order_shape, order_batches = ((20, 6), [1, 40]) if args.quick else (ORDER_SHAPE,
                                                                       ORDER_BATCHES)
    torch.manual_seed(SEED)
    kernel = kernels.pick_kernel(torch.device("cpu"), SPEC)

    bandwidth = copy_gb_per_s(args.min_run_time, 2**16 if args.quick else COPY_FLOATS)
    cases = []
    for (d_in, d_out), batches in shapes.items():
        dense = KANLinear(d_in, d_out, SPEC).eval()
        prescaled = KANLinear(d_in, d_out, PRESCALED).eval()
        layers = {"dense": dense, "dense_prescaled": prescaled} | {
            k: compressed(k, dense) for k in COMPRESSED}
        for batch in batches:
            x = torch.rand(batch, d_in, generator=torch.Generator().manual_seed(batch)) * 2 - 1
            for name, layer in layers.items():
                dense_layer = name.startswith("dense")
                cases.append({"shape": f"{d_in}->{d_out}", "batch": batch, "layer": name,
                              "kernel": "torch" if dense_layer else kernel,
                              "order": "dense" if dense_layer else cpu.pick_order(
                                  batch, True, SPEC.n_coef, cpu.reads_codes_only(layer)),
                              "read_bytes": read_bytes(layer), "fn": forward_fn(layer, x)})
    frame = timed_rounds(cases, args.rounds, args.min_run_time)
    frame["GB/s"] = frame["read_bytes"] / frame["ms"] / 1e6
    for baseline in ("dense", "dense_prescaled"):
        base_ms = frame[frame.layer == baseline].set_index(["shape", "batch"])["ms"]
        frame[f"{baseline}_over_this"] = [
            base_ms[(s, b)] / ms
            for s, b, ms in zip(frame["shape"], frame["batch"], frame["ms"], strict=True)]

    dense = KANLinear(*order_shape, PRESCALED).eval()
    order_layers = {k: compressed(k, dense) for k in COMPRESSED}
    order_cases = []
    for batch in order_batches:
        x = torch.rand(batch, order_shape[0], generator=torch.Generator().manual_seed(batch))
        for name, layer in order_layers.items():
            for order in ("outputs", "batch"):
                order_cases.append({"shape": f"{order_shape[0]}->{order_shape[1]}",
                                    "batch": batch, "layer": name, "order": order,
                                    "fn": forward_fn(layer, x, order)})
        order_cases.append({"shape": f"{order_shape[0]}->{order_shape[1]}", "batch": batch,
                            "layer": "dense_prescaled", "order": "dense",
                            "fn": forward_fn(dense, x)})
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
    speed = frame.pivot_table(index=["shape", "batch"], columns="layer", values="GB/s")
    by_order = orders.pivot_table(index="batch", columns=["layer", "order"], values="ms")
    read = frame.pivot_table(index="shape", columns="layer", values="read_bytes") / 1e6
    (args.out / "gather.md").write_text(
        f"# Codebook gather benchmark\n\nMade by `{command}` on {machine(torch.get_num_threads())}"
        f".\n\nCompressed layers run the `{kernel}` kernel; batches below "
        f"{cpu.BATCH_ORDER_FROM} ({cpu.CODES_ONLY_BATCH_ORDER_FROM} for MetaCluster's codes-only "
        f"layer) take the outputs order, larger ones the batch order "
        f"(methods/layers/kernels/gather.cpp; the `order` column of gather.csv). Times are "
        f"medians over {args.rounds} interleaved rounds of blocked_autorange medians. This "
        f"machine's copy bandwidth (STREAM-like, "
        f"256 MiB, read + written): {bandwidth:.1f} GB/s.\n\n"
        f"## Dense KANLinear time / compressed time (above 1: compressed is "
        f"faster)\n\n{table.round(2).to_markdown()}\n\n## Dense with prescaled coefficients / "
        f"compressed\n\n{table_prescaled.round(2).to_markdown()}\n\n## Milliseconds per forward\n\n"
        f"{ms.round(3).to_markdown()}\n\n## Weights one forward reads (MB)\n\n"
        f"{read.round(4).to_markdown()}\n\n## Weights read per second (GB/s; the copy "
        f"bandwidth: {bandwidth:.1f})\n\n{speed.round(2).to_markdown()}\n\n"
        f"## Both compiled orders on {order_shape[0]}->{order_shape[1]} (ms)\n\n"
        f"{by_order.round(3).to_markdown()}\n")
    (args.out / "gather_summary.md").write_text(summary(frame, command, bandwidth))
    print((args.out / "gather.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
