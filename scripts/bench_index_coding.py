"""CPU benchmark of entropy-coded codebook indices against bit-packed ones: bytes, and the time
to code, decode and load a model file.

For each network it clusters a freshly initialized dense KAN (`cluster_edges`, faiss k-means,
seeded) and stores the indices both ways: bit-packed at ceil(log2 K) bits (`pack_indices`) and
range-ANS coded under each layer's histogram (`ans_encode`, constriction). It measures
    index_bytes    the indices as the file stores them (packed, or the ANS stream),
    table_bytes    the ANS coder's table (K int32 counts per layer; 0 when packed),
    entropy_bytes  the empirical-entropy bound N H(p) / 8 of the same indices,
    encode_ms      coding every layer's indices (pack, or ANS encode),
    decode_ms      decoding them back (unpack, or ANS decode with its checks),
    load_ms        `load_compressed` of the whole model file into its skeleton (decode, checks,
                   copies), the time a user waits at load,
each the median of --rounds rounds, after one warm-up. Freshly initialized edges cluster into
nearly equal groups, so the ANS gain here is small; the trained models' gains are in the
questions grid's records (docs/questions.md).

Writes <out>/index_coding.csv and <out>/index_coding.md (the command, the machine, and ANS
against packed in this same run).

    python scripts/bench_index_coding.py [--rounds 7] [--quick] [--out results/bench]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.methods.layers.architectures import KAN
from kanbench.methods.layers.codebook import (
    ans_decode,
    ans_encode,
    cluster_edges,
    code_indices,
    codebook_skeleton,
    entropy_bytes,
    pack_indices,
    unpack_indices,
)
from kanbench.methods.layers.files import load_compressed, save_compressed
from kanbench.methods.layers.kan import DenseKANFactory, KANSpec, kan_layers
from kanbench.suite.measure import machine

# (name, widths, K, codebook scope): the quick grid's Fashion-MNIST KAN, a 1024->1024 layer
NETWORKS = [("fashion_mnist [784, 64, 10]", [784, 64, 10], 16, "layer"),
            ("1024->1024", [1024, 1024], 256, "layer")]
QUICK_NETWORKS = [("tiny [12, 8, 3]", [12, 8, 3], 5, "model")]
# coding -> (encode(indices, K) -> stored, decode(stored, N, K) -> indices)
CODERS = {"packed": (lambda i, k: (pack_indices(i, k),),
                     lambda s, n, k: unpack_indices(s[0], n, k)),
          "ans": (ans_encode, lambda s, n, k: ans_decode(*s, n, k))}
CODINGS = tuple(CODERS)
COLUMNS = ["network", "edges", "K", "coding", "index_bytes", "table_bytes", "entropy_bytes",
           "encode_ms", "decode_ms", "load_ms", "rounds"]


def median_ms(fn, rounds: int) -> float:
    fn()                                                               # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def encode_all(encode, sizes: list[tuple]) -> list[tuple]:
    return [encode(indices, codes) for indices, _, codes in sizes]


def decode_all(decode, stored: list[tuple], sizes: list[tuple]) -> list[torch.Tensor]:
    return [decode(s, count, codes) for s, (_, count, codes) in zip(stored, sizes, strict=True)]


def measure(name: str, widths: list[int], codes: int, scope: str, rounds: int,
            folder: Path) -> list[dict]:
    torch.manual_seed(0)
    net = cluster_edges(KAN(widths, DenseKANFactory(KANSpec())), codes, scope, "fp32", seed=0)
    layers = list(kan_layers(net).values())
    sizes = [(m.indices.flatten(), m.indices.numel(), m.codebook.size) for m in layers]
    rows = []
    for coding in CODINGS:
        encode, decode = CODERS[coding]
        stored = encode_all(encode, sizes)
        decoded = decode_all(decode, stored, sizes)
        assert all(torch.equal(d, i) for d, (i, _, _) in zip(decoded, sizes, strict=True))
        path = folder / f"{coding}.safetensors"
        save_compressed(code_indices(net, coding), path, method="bench")
        skeleton = codebook_skeleton(KAN(widths, DenseKANFactory(KANSpec())), codes, scope,
                                     "fp32")
        rows.append({
            "network": name, "edges": sum(n for _, n, _ in sizes), "K": codes,
            "coding": coding, "index_bytes": sum(s[0].numel() for s in stored),
            "table_bytes": sum(s[1].numel() * s[1].element_size() for s in stored
                               if coding == "ans"),
            "entropy_bytes": round(sum(entropy_bytes(i, k) for i, _, k in sizes), 1),
            "encode_ms": median_ms(partial(encode_all, encode, sizes), rounds),
            "decode_ms": median_ms(partial(decode_all, decode, stored, sizes), rounds),
            "load_ms": median_ms(partial(load_compressed, path, skeleton), rounds),
            "rounds": rounds})
    return rows


def report(frame: pd.DataFrame, command: str) -> str:
    where = machine(torch.get_num_threads())
    lines = [f"# Entropy-coded indices\n\nMade by `{command}` on {where}."
             "\n\nANS / packed in the same run (bytes: indices plus the coder's table):\n",
             "| network | K | packed bytes | ANS bytes | entropy bound | ANS / bound | "
             "decode ms packed | decode ms ANS | load ms packed | load ms ANS |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, g in frame.groupby("network", sort=False):
        p, a = (g[g.coding == c].iloc[0] for c in CODINGS)
        ans_bytes = a.index_bytes + a.table_bytes
        lines.append(f"| {name} | {a.K} | {p.index_bytes} | {ans_bytes} | {a.entropy_bytes:.0f}"
                     f" | {a.index_bytes / a.entropy_bytes:.4f} | {p.decode_ms:.2f} | "
                     f"{a.decode_ms:.2f} | {p.load_ms:.2f} | {a.load_ms:.2f} |")
    return "\n".join(lines) + "\n\nEvery row: `index_coding.csv`.\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="one tiny network (tests)")
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for network in QUICK_NETWORKS if args.quick else NETWORKS:
            rows += measure(*network, args.rounds, Path(folder))
            print(rows[-1]["network"], "done", flush=True)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.to_csv(out / "index_coding.csv", index=False)
    argv_text = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "scripts/bench_index_coding.py", *argv_text])
    (out / "index_coding.md").write_text(report(frame, command))


if __name__ == "__main__":
    main()
