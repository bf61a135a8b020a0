"""Render a grid's tables from its records: results/tables/<grid>_summary.{md,csv}, and
<grid>_detection.{md,csv} when the grid has detection cells.

Reads only the results store; never trains.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.errors import KanbenchError, one_line_errors
from suite.report.tables import detection, machines, summary
from suite.store import ResultsStore

NOTES = {
    "summary": "mean and std are over seeds (std needs >= 2 seeds); bytes are the KAN layers' "
               "storage; latency is the median forward time at batch 1.",
    "detection": "mAP50 is VOC mAP@0.5 (the task's voc_variant, area by default), in-domain "
                 "and zero-shot on the transfer set over the mapped classes; COCO mAP is "
                 "mAP@[.5:.95]. Retention is the method's mAP over the dense head's of the same "
                 "setup and seed (mean over seeds). Head bytes and ratio: the KAN head (fc7, "
                 "cls_score, bbox_pred); the detector ratio adds the frozen trunk (backbone, "
                 "RPN, fc6) to both sides.",
}


@one_line_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="quick")
    p.add_argument("--results", default="results")
    args = p.parse_args(argv)
    frame = ResultsStore(args.results).to_frame(args.grid)
    if frame.empty:
        raise KanbenchError(f"no records for grid {args.grid!r} under {args.results}/runs")
    out = Path(args.results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    source = (f"Made by `python scripts/render_tables.py --grid {args.grid}` from the "
              f"{len(frame)} records in `{args.results}/runs/{args.grid}/`, which "
              f"`scripts/run_grid.py --grid {args.grid}` produced on: {machines(frame)}.\n")
    tables = {"summary": summary(frame), "detection": detection(frame)}
    for name, table in tables.items():
        if table.empty:
            continue
        table.to_csv(out / f"{args.grid}_{name}.csv", index=False, float_format="%.6g")
        (out / f"{args.grid}_{name}.md").write_text(
            f"# Grid `{args.grid}`: {name}\n\n{source}{NOTES[name]}\n\n"
            + table.to_markdown(index=False, floatfmt=".4g") + "\n")
        print(f"table written to {out}/{args.grid}_{name}.md and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
