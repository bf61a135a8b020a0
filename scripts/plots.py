"""Plot a grid's records into results/plots/<grid>_<plot>.{png,pdf}: the metric against KAN
bytes per setup (every method and seed, the Pareto front drawn), compression-ratio bars with
error bars, latency bars per kernel, and MetaCluster's K sweep where the records have one.

Reads only the results store; never trains.

    python scripts/plots.py [--grid quick] [--split test|val] [--results results]
"""

from __future__ import annotations

import sys
from pathlib import Path

from suite.errors import one_line_errors
from suite.report.cli import grid_arguments


@one_line_errors
def main(argv=None) -> int:
    args = grid_arguments(__doc__.splitlines()[0], argv)
    from suite.report.render import grid_frame, plot_caption, write_plots

    frame = grid_frame(args.results, args.grid, args.split)
    out = Path(args.results) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written = write_plots(frame, args.name, out, plot_caption(frame, args.results, args.grid))
    print(f"{len(written)} plot files written to {out}/ ({args.name}_*)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
