"""Plot a grid's records into results/plots/<grid>_<plot>.{png,pdf}: the metric against KAN
bytes per setup (every method and seed, the Pareto front drawn), compression-ratio bars with
error bars, latency bars per kernel, and MetaCluster's K sweep where the records have one.

Reads only the results store; never trains.

    python scripts/plots.py [--grid quick] [--results results]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.errors import one_line_errors
from suite.report.render import grid_frame, write_plots
from suite.report.tables import machines


@one_line_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="quick")
    p.add_argument("--results", default="results")
    args = p.parse_args(argv)
    frame = grid_frame(args.results, args.grid)
    out = Path(args.results) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    caption = (f"python scripts/plots.py --grid {args.grid}: {len(frame)} records of "
               f"{args.results}/runs/{args.grid}, run on {machines(frame)}")
    written = write_plots(frame, args.grid, out, caption)
    print(f"{len(written)} plot files written to {out}/ ({args.grid}_*)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
