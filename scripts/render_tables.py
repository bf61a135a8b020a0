"""Render a grid's summary table from its records: results/tables/<grid>_summary.{md,csv}.

Reads only the results store; never trains.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.errors import KanbenchError, one_line_errors
from suite.report.tables import summary
from suite.store import ResultsStore


def machines(frame) -> str:
    cols = ["env.platform", "env.cpu_count", "env.device"]
    found = frame[cols].drop_duplicates().astype(str).agg(
        lambda r: f"{r.iloc[0]}, {r.iloc[1]} CPUs, device {r.iloc[2]}", axis=1)
    return "; ".join(sorted(found))


@one_line_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="quick")
    p.add_argument("--results", default="results")
    args = p.parse_args(argv)
    frame = ResultsStore(args.results).to_frame(args.grid)
    if frame.empty:
        raise KanbenchError(f"no records for grid {args.grid!r} under {args.results}/runs")
    table = summary(frame)
    out = Path(args.results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{args.grid}_summary.csv", index=False, float_format="%.6g")
    header = (f"# Grid `{args.grid}`: summary\n\n"
              f"Made by `python scripts/render_tables.py --grid {args.grid}` from the "
              f"{len(frame)} records in `{args.results}/runs/{args.grid}/`, which "
              f"`scripts/run_grid.py --grid {args.grid}` produced on: {machines(frame)}.\n"
              "mean and std are over seeds (std needs >= 2 seeds); bytes are the KAN layers' "
              "storage; latency is the median forward time at batch 1.\n\n")
    (out / f"{args.grid}_summary.md").write_text(
        header + table.to_markdown(index=False, floatfmt=".4g") + "\n")
    print(f"tables written to {out}/{args.grid}_summary.md and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
