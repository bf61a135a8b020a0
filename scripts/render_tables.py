"""Render a grid's tables from its records into results/tables/<grid>_<table>.<format>:

    summary       per setup x method: metric, bytes, ratios, memory, latency, time
    compression   the MetaCluster paper's main table: per setup, each method's metric, bytes,
                  KAN and model ratios
    metakan       the MetaKAN paper's: dense vs metakan parameters, memory, time, metric
    leaderboard   per setup, methods ranked by metric (within --budget-bytes), Pareto front
    detection     detection cells: in-domain and transfer mAP, retention, head bytes
    share         SHARe-KAN's: dense / FP32 / Int8 head MB, mAP, transfer mAP, retention

Tables with no rows for the grid are skipped. Reads only the results store; never trains.
`--split val` reports the validation metrics instead, into <grid>_val_<table>.<format>.

    python scripts/render_tables.py [--grid quick] [--split test|val] [--format md,tex,csv]
                                    [--budget-bytes N]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.suite.config import POSITIVE
from kanbench.suite.errors import KanbenchError, one_line_errors
from kanbench.suite.report.cli import FORMATS, grid_arguments, script_command


@one_line_errors
def main(argv=None) -> int:
    def options(p):
        p.add_argument("--format", default="md,csv",
                       help=f"comma-separated: {', '.join(FORMATS)}")
        p.add_argument("--budget-bytes", type=float, default=None,
                       help="leaderboard: only methods whose KAN bytes fit")

    args = grid_arguments(__doc__.split("\n\n")[0], argv, options)
    formats = args.format.split(",")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise KanbenchError(f"unknown format {unknown[0]!r}; valid: {', '.join(FORMATS)}")
    if args.budget_bytes is not None:
        POSITIVE.check("--budget-bytes", args.budget_bytes)
    from kanbench.suite.report.render import all_tables, grid_frame, source_line, write_tables

    frame = grid_frame(args.results, args.grid, args.split)
    out = Path(args.results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    source = source_line(script_command("render_tables.py", args), frame, args.results,
                         args.grid)
    written = write_tables(all_tables(frame, args.budget_bytes), args.name, out, formats, source)
    print(f"{len(written)} table files written to {out}/ ({args.name}_*)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
