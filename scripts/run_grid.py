"""`kanbench run` under its older name: `python scripts/run_grid.py --grid quick [overrides]`
is `kanbench run quick [overrides]` (see `kanbench run --help`), run from this checkout."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's kanbench

from kanbench.cli import main as kanbench


def main(argv: list[str] | None = None) -> int:
    """`--grid NAME` (default quick) becomes `kanbench run`'s first argument."""
    argv = sys.argv[1:] if argv is None else list(argv)
    grid = "quick"
    for i, arg in enumerate(argv):
        if arg == "--grid" and i + 1 < len(argv):
            grid = argv[i + 1]
            argv = argv[:i] + argv[i + 2:]
            break
        if arg.startswith("--grid="):
            grid = arg.split("=", 1)[1]
            argv = argv[:i] + argv[i + 1:]
            break
    return kanbench(["run", grid, *argv])


if __name__ == "__main__":
    sys.exit(main())
