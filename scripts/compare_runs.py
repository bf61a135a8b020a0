"""A grid's records set beside the records they replace: per setup x method the primary
metric's mean, std and range over seeds before and after, the change, and whether the new
mean lies within the old seeds' range. Writes results/tables/<grid>_rerun_comparison.{md,csv}.

Reads only two results stores; never trains. The records a commit replaced can be had with
`git archive <commit> results/runs/<grid> | tar -x -C /tmp/before`.

    python scripts/compare_runs.py --before /tmp/before/results [--grid quick] [--results results]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.suite.errors import one_line_errors
from kanbench.suite.report.cli import grid_arguments


def extra(parser) -> None:
    parser.add_argument("--before", required=True,
                        help="the results directory holding the replaced records")


@one_line_errors
def main(argv=None) -> int:
    args = grid_arguments(__doc__.split("\n\n")[0], argv, extra)
    from kanbench.suite.report.render import grid_frame
    from kanbench.suite.report.tables import machines, rerun_comparison

    before = grid_frame(args.before, args.grid, args.split)
    after = grid_frame(args.results, args.grid, args.split)
    table = rerun_comparison(before, after)
    out = Path(args.results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.name}_rerun_comparison"
    table.to_csv(out / f"{name}.csv", index=False)
    split = "" if args.split == "test" else f" --split {args.split}"
    held = int(table["within seed range"].sum())
    (out / f"{name}.md").write_text(
        f"# {args.grid}: the rerun against the records it replaced\n\n"
        f"Made by `python scripts/compare_runs.py --grid {args.grid}{split} --before "
        f"{args.before}`: {len(before)} records before ({machines(before)}), {len(after)} "
        f"after ({machines(after)}). {args.split} split. The new mean lies within the old "
        f"seeds' range in {held} of {len(table)} rows.\n\n"
        + table.to_markdown(index=False, floatfmt=".4g") + "\n")
    print(f"{held} of {len(table)} setups within their old seed range; written "
          f"{out}/{name}.md and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
