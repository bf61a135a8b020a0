"""Bytes of N KAN heads compressed by SHARe-KAN against one shared codebook per layer
(multi-head sharing), measured from the files written, against the N dense heads' files.

Heads are N dense KANs of one architecture (`--widths`), each from its own seed. File sizes
depend only on the architecture, K and the dtypes, not on the weights' values, so the heads
are freshly initialized here with trained-like coefficients (standard normal) rather than
trained: what this measures is bytes, not accuracy. For each N in `--heads` it fits one
shape codebook per layer position on all N heads' edges, writes SHARe-Int8 and SHARe-FP32
files (`methods.share.save_heads`: the codebooks once, then one file per head) and the dense
heads (safetensors), and reads back the tensor payload of every file.

Writes <out>/multihead.csv and <out>/multihead.md (command, machine).

    python scripts/bench_multihead.py [--widths 784,64,10] [--heads 1,10,50] [--codes 256]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_model

from methods.kan import KAN, DenseKANFactory, KANSpec
from methods.share import kan_layers, quantize_heads, save_heads, to_int8
from suite.measure import machine, safetensors_payload_bytes

MB = 1e6


def dense_head(widths: list[int], seed: int) -> KAN:
    torch.manual_seed(seed)
    net = KAN(widths, DenseKANFactory(KANSpec(5, 3)))
    with torch.no_grad():
        for layer in kan_layers(net).values():
            layer.spline_weight.normal_()
    return net


def measure(widths: list[int], heads: int, codes: int, directory: Path) -> list[dict]:
    nets = [dense_head(widths, seed) for seed in range(heads)]
    dense_dir = directory / "dense"
    dense_dir.mkdir(parents=True)
    for i, net in enumerate(nets):
        save_model(net, str(dense_dir / f"head{i}.safetensors"))
    dense = sum(safetensors_payload_bytes(p) for p in dense_dir.glob("*.safetensors"))
    shared = quantize_heads(nets, codes, seed=0)
    rows = []
    for method in ("share_fp32", "share_int8"):
        if method == "share_int8":  # in place, after the fp32 files are written
            books = {}
            shared = [to_int8(h, books) for h in shared]
        files = save_heads(shared, directory / method, method)
        codebooks = files.pop("codebooks.safetensors")
        rows.append({"heads": heads, "method": method, "codebook_bytes": codebooks,
                     "per_head_bytes": files["head0.safetensors"],
                     "total_bytes": codebooks + sum(files.values()), "dense_bytes": dense})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", default="784,64,10")
    p.add_argument("--heads", default="1,10,50")
    p.add_argument("--codes", type=int, default=256)
    p.add_argument("--out", type=Path, default=Path("results/bench"))
    args = p.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for heads in (int(h) for h in args.heads.split(",")):
            rows += measure(widths, heads, args.codes, Path(tmp) / str(heads))
    frame = pd.DataFrame(rows)
    frame["ratio"] = frame.dense_bytes / frame.total_bytes
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "multihead.csv", index=False, float_format="%.4g")
    command = shlex.join(["python", "scripts/bench_multihead.py", *(argv or sys.argv[1:])])
    table = frame.assign(**{"dense MB": frame.dense_bytes / MB, "SHARe MB": frame.total_bytes
                            / MB, "codebooks kB": frame.codebook_bytes / 1e3,
                            "per head kB": frame.per_head_bytes / 1e3})
    table = table[["heads", "method", "dense MB", "SHARe MB", "ratio", "codebooks kB",
                   "per head kB"]]
    (args.out / "multihead.md").write_text(
        f"# Multi-head sharing: bytes from the files written\n\nMade by `{command}` on "
        f"{machine(torch.get_num_threads())}.\n\nHeads: KAN {widths}, G=5, k=3, K={args.codes} "
        f"shapes per layer shared by all heads (file payload bytes; the values of the "
        f"weights do not change them).\n\n{table.to_markdown(index=False, floatfmt='.4g')}\n")
    print((args.out / "multihead.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
