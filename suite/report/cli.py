"""The report scripts' command line, apart from the report code so that `--help` starts
without pandas, matplotlib or torch."""

from __future__ import annotations

import argparse

FORMATS = ("md", "tex", "csv")
SPLITS = ("test", "val")


def grid_arguments(description: str, argv=None, extra=None) -> argparse.Namespace:
    """The report scripts' command line: --grid, --results, --split, plus what
    `extra(parser)` adds. `args.name` is what the outputs are named after: the grid, with
    `_val` appended for the validation split."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--grid", default="quick")
    parser.add_argument("--results", default="results")
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help="report the test metrics (default) or the validation metrics "
                             "(what a grid's choices are made on)")
    if extra:
        extra(parser)
    args = parser.parse_args(argv)
    args.name = args.grid if args.split == "test" else f"{args.grid}_val"
    return args


def script_command(script: str, args: argparse.Namespace) -> str:
    split = "" if args.split == "test" else f" --split {args.split}"
    return f"python scripts/{script} --grid {args.grid}{split}"
