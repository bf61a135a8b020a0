"""`kanbench run` under its older name: `python scripts/run_grid.py --grid quick [overrides]`
is `kanbench run quick [overrides]` (see `kanbench run --help`), run from this checkout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.cli import main as kanbench


def main(argv: list[str] | None = None) -> int:
    """`--grid NAME` (default quick) becomes `kanbench run`'s first argument."""
    legacy = argparse.ArgumentParser(add_help=False)   # --help goes on to `kanbench run`
    legacy.add_argument("--grid", default="quick")
    known, rest = legacy.parse_known_args(argv)
    return kanbench(["run", known.grid, *rest])


if __name__ == "__main__":
    sys.exit(main())
