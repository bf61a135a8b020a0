"""Bytes of N KAN heads compressed by SHARe-KAN against one shared codebook per layer
(multi-head sharing), measured from the files written, against the N dense heads' files.

Heads are N dense heads of one architecture, each from its own seed: `--arch kan`, a KAN MLP
of `--widths` (G=5, k=3); `--arch detection`, the detection tasks' KAN head (fc7, cls_score,
bbox_pred of tasks.detection_model.KANHead) of `--head-width` and `--classes` at G=10, k=3,
the paper preset's (1024 wide, 20 VOC classes). File sizes depend only on the architecture,
K and the dtypes, not on the weights' values, so the heads are freshly initialized with
trained-like coefficients (standard normal) rather than trained: this measures bytes, not
accuracy. For each N in `--heads` it fits one shape codebook per layer position on all N
heads' edges (`--kmeans-iterations`, default 25; bytes do not depend on it), writes
SHARe-Int8 and SHARe-FP32 files (`methods.share.save_heads`: the codebooks once, then one
file per head) and the dense heads (safetensors), and reads back every file's tensor payload.

Writes <out>/multihead[_<arch>].csv and .md (command, machine).

    python scripts/bench_multihead.py [--widths 784,64,10] [--heads 1,10,50] [--codes 256]
    python scripts/bench_multihead.py --arch detection --kmeans-iterations 2
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.methods.layers.architectures import KAN
from kanbench.methods.layers.files import safetensors_payload_bytes
from kanbench.methods.layers.kan import DenseKANFactory, KANSpec, kan_layers
from kanbench.methods.layers.share import quantize_heads, save_heads, to_int8
from kanbench.suite.measure import machine
from kanbench.tasks.detection_model import KANHead

MB = 1e6


def dense_head(args: argparse.Namespace, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    if args.arch == "detection":
        net = KANHead(args.head_width, args.classes, DenseKANFactory(KANSpec(10, 3)))
    else:
        net = KAN([int(w) for w in args.widths.split(",")], DenseKANFactory(KANSpec(5, 3)))
    with torch.no_grad():
        for layer in kan_layers(net).values():
            layer.spline_weight.normal_()
    return net


def measure(args: argparse.Namespace, heads: int, directory: Path) -> list[dict]:
    nets = [dense_head(args, seed) for seed in range(heads)]
    dense_dir = directory / "dense"
    dense_dir.mkdir(parents=True)
    for i, net in enumerate(nets):
        save_model(net, str(dense_dir / f"head{i}.safetensors"))
    dense = sum(safetensors_payload_bytes(p) for p in dense_dir.glob("*.safetensors"))
    shared = quantize_heads(nets, args.codes, seed=0, iterations=args.kmeans_iterations)
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
    p.add_argument("--arch", choices=("kan", "detection"), default="kan")
    p.add_argument("--widths", default="784,64,10", help="--arch kan: the KAN's widths")
    p.add_argument("--head-width", type=int, default=1024, help="--arch detection")
    p.add_argument("--classes", type=int, default=20, help="--arch detection")
    p.add_argument("--heads", default="1,10,50")
    p.add_argument("--codes", type=int, default=256)
    p.add_argument("--kmeans-iterations", type=int, default=25)
    p.add_argument("--out", type=Path, default=Path("results/bench"))
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for heads in (int(h) for h in args.heads.split(",")):
            rows += measure(args, heads, Path(tmp) / str(heads))
            print(f"{heads} heads measured", flush=True)
    frame = pd.DataFrame(rows)
    frame["ratio"] = frame.dense_bytes / frame.total_bytes
    args.out.mkdir(parents=True, exist_ok=True)
    name = "multihead" if args.arch == "kan" else f"multihead_{args.arch}"
    frame.to_csv(args.out / f"{name}.csv", index=False, float_format="%.4g")
    command = shlex.join(["python", "scripts/bench_multihead.py", *(argv or sys.argv[1:])])
    table = frame.assign(**{"dense MB": frame.dense_bytes / MB, "SHARe MB": frame.total_bytes
                            / MB, "codebooks kB": frame.codebook_bytes / 1e3,
                            "per head kB": frame.per_head_bytes / 1e3})
    table = table[["heads", "method", "dense MB", "SHARe MB", "ratio", "codebooks kB",
                   "per head kB"]]
    what = (f"KAN [{args.widths}], G=5, k=3" if args.arch == "kan" else
            f"the detection KAN head (fc7 {args.head_width}x{args.head_width}, cls_score "
            f"{args.head_width}x{args.classes + 1}, bbox_pred {args.head_width}x"
            f"{4 * (args.classes + 1)}), G=10, k=3")
    (args.out / f"{name}.md").write_text(
        f"# Multi-head sharing: bytes from the files written\n\nMade by `{command}` on "
        f"{machine(torch.get_num_threads())}.\n\nHeads: {what}; K={args.codes} shapes per "
        f"layer shared by all heads (file payload bytes; the values of the weights do not "
        f"change them).\n\n{table.to_markdown(index=False, floatfmt='.4g')}\n")
    print((args.out / f"{name}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
