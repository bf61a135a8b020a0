"""Render a grid's tables from its records into results/tables/<grid>_<table>.<format>:

    summary       per setup x method: metric, bytes, ratios, memory, latency, time
    compression   the MetaCluster paper's main table: per setup, each method's metric, bytes,
                  KAN and model ratios
    metakan       the MetaKAN paper's: dense vs metakan parameters, memory, time, metric
    leaderboard   per setup, methods ranked by metric (within --budget-bytes), Pareto front
    detection     detection cells: in-domain and transfer mAP, retention, head bytes
    share         SHARe-KAN's: dense / FP32 / Int8 head MB, mAP, transfer mAP, retention

Tables with no rows for the grid are skipped. Reads only the results store; never trains.

    python scripts/render_tables.py [--grid quick] [--format md,tex,csv] [--budget-bytes N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.errors import KanbenchError, one_line_errors
from suite.report import tables
from suite.store import ResultsStore

FORMATS = ("md", "tex", "csv")
NOTES = {
    "summary": "mean and std are over seeds (std needs >= 2 seeds); bytes are the KAN layers' "
               "storage; latency is the median forward time at batch 1.",
    "compression": "Each method's metric is mean ± std over seeds, to the precision the spread "
                   "supports; KAN B are the KAN layers' bytes, ratios are against dense fp32.",
    "metakan": "Training step peak: memory of one forward+backward at the training batch "
               "(median over seeds); s / epoch: the train stage's seconds over its epochs.",
    "leaderboard": "Ranked by the mean primary metric (best first); pareto: no other method "
                   "of the setup is both smaller (KAN bytes) and better.",
    "detection": "mAP50 is VOC mAP@0.5 (the task's voc_variant, area by default), in-domain "
                 "and zero-shot on the transfer set over the mapped classes; COCO mAP is "
                 "mAP@[.5:.95]. Retention is the method's mAP over the dense head's of the same "
                 "setup and seed (mean over seeds). Head bytes and ratio: the KAN head (fc7, "
                 "cls_score, bbox_pred); the detector ratio adds the frozen trunk (backbone, "
                 "RPN, fc6) to both sides.",
    "share": "Head MB: the KAN head's bytes (1e6 B). Retention against dense of the same seed. "
             "Multi-head storage (1, 10, 50 heads) is measured by scripts/bench_multihead.py "
             "(results/bench/multihead*.md).",
}


def render(frame, grid: str, out: Path, formats: list[str], budget: float | None,
           source: str) -> list[Path]:
    """Write every non-empty table of the frame in the formats; returns the files written."""
    made = {"summary": tables.summary(frame), "compression": tables.compression(frame),
            "metakan": tables.metakan_table(frame),
            "leaderboard": tables.leaderboard(frame, budget),
            "detection": tables.detection(frame), "share": tables.share_table(frame)}
    written = []
    for name, table in made.items():
        if table.empty:
            continue
        base = out / f"{grid}_{name}"
        if "csv" in formats:
            table.to_csv(base.with_suffix(".csv"), index=False, float_format="%.6g")
        if "md" in formats:
            base.with_suffix(".md").write_text(
                f"# Grid `{grid}`: {name}\n\n{source}{NOTES[name]}\n\n"
                + table.to_markdown(index=False, floatfmt=".4g") + "\n")
        if "tex" in formats:
            base.with_suffix(".tex").write_text(
                f"% {source.strip()}\n" + table.to_latex(index=False, float_format="%.4g",
                                                                 escape=True, na_rep="--"))
        written += [base.with_suffix(f".{f}") for f in formats]
    return written


@one_line_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="quick")
    p.add_argument("--results", default="results")
    p.add_argument("--format", default="md,csv", help=f"comma-separated: {', '.join(FORMATS)}")
    p.add_argument("--budget-bytes", type=float, default=None,
                   help="leaderboard: only methods whose KAN bytes fit")
    args = p.parse_args(argv)
    formats = args.format.split(",")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise KanbenchError(f"unknown format {unknown[0]!r}; valid: {', '.join(FORMATS)}")
    frame = ResultsStore(args.results).to_frame(args.grid)
    if frame.empty:
        raise KanbenchError(f"no records for grid {args.grid!r} under {args.results}/runs")
    out = Path(args.results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    source = (f"Made by `python scripts/render_tables.py --grid {args.grid}` from the "
              f"{len(frame)} records in `{args.results}/runs/{args.grid}/`, which "
              f"`scripts/run_grid.py --grid {args.grid}` produced on: "
              f"{tables.machines(frame)}.\n")
    written = render(frame, args.grid, out, formats, args.budget_bytes, source)
    print(f"{len(written)} table files written to {out}/ ({args.grid}_*)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
