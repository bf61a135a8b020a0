"""Seed variance of a grid's records: per setup x method the seeds, mean, std, 95% confidence
interval (t distribution) and a Welch t-test against dense, with flags where seeds are few or
the spread is wider than the gap. Writes results/tables/<grid>_seed_variance.{md,csv}.

Reads only the results store; never trains.

    python scripts/seed_variance.py [--grid quick] [--split test|val] [--results results]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.suite.errors import one_line_errors
from kanbench.suite.report.cli import grid_arguments, script_command


@one_line_errors
def main(argv=None) -> int:
    args = grid_arguments(__doc__.split("\n\n")[0], argv)
    from kanbench.suite.report.render import grid_frame, source_line, write_seed_variance
    from kanbench.suite.report.variance import seed_variance

    frame = grid_frame(args.results, args.grid, args.split)
    out = Path(args.results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    source = source_line(script_command("seed_variance.py", args), frame, args.results,
                         args.grid)
    written = write_seed_variance({"seed_variance": seed_variance(frame)}, args.name, out,
                                  source)
    print(f"{len(written)} files written to {out}/ ({args.name}_seed_variance.*)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
