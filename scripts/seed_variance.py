"""Seed variance of a grid's records: per setup x method the seeds, mean, std, 95% confidence
interval (t distribution) and a Welch t-test against dense, with flags where seeds are few or
the spread is wider than the gap. Writes results/tables/seed_variance.{md,csv}.

Reads only the results store; never trains.

    python scripts/seed_variance.py [--grid quick] [--results results]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.errors import KanbenchError, one_line_errors
from suite.report.tables import machines
from suite.report.variance import seed_variance
from suite.store import ResultsStore


@one_line_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="quick")
    p.add_argument("--results", default="results")
    args = p.parse_args(argv)
    frame = ResultsStore(args.results).to_frame(args.grid)
    if frame.empty:
        raise KanbenchError(f"no records for grid {args.grid!r} under {args.results}/runs")
    table = seed_variance(frame)
    out = Path(args.results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "seed_variance.csv", index=False, float_format="%.6g")
    (out / "seed_variance.md").write_text(
        f"# Grid `{args.grid}`: seed variance\n\nMade by `python scripts/seed_variance.py "
        f"--grid {args.grid}` from the {len(frame)} records in `{args.results}/runs/"
        f"{args.grid}/`, produced on: {machines(frame)}.\nci95: half-width of the 95% "
        "confidence interval of the mean (t distribution). Welch's t-test against dense of "
        "the same setup, two-sided. Flags: `few seeds` (< 3 on either side), `spread > gap` "
        "(a std wider than the gap to dense).\n\n"
        + table.to_markdown(index=False, floatfmt=".4g") + "\n")
    print(f"table written to {out}/seed_variance.md and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
