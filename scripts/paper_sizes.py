"""Every setup of the `paper` grid built without data or training, for every method: its
trainable parameters and KAN bytes, beside the papers' own figures where they give one.
Writes results/tables/paper_sizes.{md,csv}. Runs on a CPU in a few minutes.

    python scripts/paper_sizes.py [--grid paper] [--results results]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.suite import grid
from kanbench.suite.errors import one_line_errors

# The papers' figures for a setup and method, with where each comes from.
PAPER_FIGURES = {
    ("voc", "dense"): "58.67 MB dense KAN head (SHARe-KAN, arXiv 2512.15742v2 abstract)",
    ("voc", "share_int8"): "6.32 MB Int8 head, 9.3x (SHARe-KAN, arXiv 2512.15742v2 abstract)",
    ("fashion_mnist[784, 32, 10]", "dense"):
        "254,080 parameters (MetaKAN authors' results.csv, KAN row)",
    ("fashion_mnist[784, 32, 10]", "metakan"):
        "25,778 (hidden 16) / 26,130 (hidden 32) parameters (MetaKAN authors' results.csv)",
    ("mnist[784, 32, 10]", "dense"): "254,080 parameters (same architecture as Fashion-MNIST)",
}
# the papers' figures in bytes, where they give the model's size (MB = 1e6 B)
PAPER_BYTES = {("voc", "dense"): 58.67e6, ("voc", "share_int8"): 6.32e6}


def setup_name(cfg) -> str:
    """`feynman[I.9.18]`, `mnist[784, 32, 10]`, `cifar10[conv4]`, or the task alone."""
    task_args = cfg.args["task"]
    for key in ("equation", "widths", "arch"):
        value = task_args.get(key)
        if value:
            return f"{cfg.task}[{', '.join(map(str, value)) if key == 'widths' else value}]"
    return cfg.task


@one_line_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default="paper")
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    import pandas as pd

    from kanbench.suite.sizes import cell_sizes

    rows, seen = [], set()
    for cfg in grid.cells(args.grid):
        setup = setup_name(cfg)
        if (setup, cfg.method) in seen:   # seeds share one structure
            continue
        seen.add((setup, cfg.method))
        sizes = cell_sizes(cfg)
        rows.append({"setup": setup, "method": cfg.method,
                     "trainable params": sizes["trainable_params"],
                     "KAN bytes": sizes["kan_bytes"], "dense KAN bytes": sizes["dense_kan_bytes"],
                     "shared bytes": sizes["shared_bytes"],
                     "KAN ratio": round(sizes["kan_ratio"], 2),
                     "paper": PAPER_FIGURES.get((setup, cfg.method), ""),
                     "KAN bytes / paper's": round(sizes["kan_bytes"]
                                                  / PAPER_BYTES[(setup, cfg.method)], 4)
                     if (setup, cfg.method) in PAPER_BYTES else ""})
    table = pd.DataFrame(rows)
    out = Path(args.results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{args.grid}_sizes.csv", index=False)
    (out / f"{args.grid}_sizes.md").write_text(
        f"# Grid `{args.grid}`: model sizes without training\n\n"
        f"Made by `python scripts/paper_sizes.py --grid {args.grid}`: each setup's final "
        "model per method, built from its stages' skeletons (no data, no training); bytes "
        "depend only on shapes. KAN bytes as every record counts them (README: storage "
        "accounting); shared bytes: those of the KAN bytes that several layers or heads "
        "share (codebooks); trainable params: of the final model (for SHARe, which trains "
        "nothing after its dense stage, only the non-KAN ones such as BatchNorm's).\n\n"
        + table.to_markdown(index=False) + "\n")
    print(f"{len(table)} rows written to {out}/{args.grid}_sizes.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
