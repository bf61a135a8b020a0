"""Plot a grid's records into results/plots/<grid>_<plot>.{png,pdf}: the metric against KAN
bytes per setup (every seed and each method's mean, the Pareto front of the means drawn),
compression-ratio bars (exact: no error bars), latency bars per kernel, and the codebook-size
sweep where the records have one.

Reads only the results store; never trains.

    python scripts/plots.py [--grid quick] [--split test|val] [--results results]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.suite.errors import one_line_errors
from kanbench.suite.report.cli import grid_arguments


@one_line_errors
def main(argv=None) -> int:
    args = grid_arguments(__doc__.split("\n\n")[0], argv)
    from kanbench.suite.report.render import grid_frame, plot_caption, write_plots

    frame = grid_frame(args.results, args.grid, args.split)
    out = Path(args.results) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written = write_plots(frame, args.name, out, plot_caption(frame, args.results, args.grid))
    print(f"{len(written)} plot files written to {out}/ ({args.name}_*)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
