"""Start-up time of the command-line scripts: `python scripts/<script>.py --help`, median of
`--repeats` fresh processes each, beside `python -c pass` (the interpreter alone) and
`python -c "import torch"` (what every script paid before its heavy imports moved into its
main), measured in one run. Writes results/bench/startup.{csv,md}.

    python scripts/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = ("run_grid", "render_tables", "claims_table", "plots", "seed_variance",
           "paper_sizes", "prepare_data", "compare_runs")


def seconds(command: list[str], repeats: int) -> float:
    """Median wall time of `repeats` runs of `command` (output discarded)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(REPO / "results" / "bench"))
    args = p.parse_args(argv)
    python = [sys.executable]
    rows = [("python -c pass", seconds(python + ["-c", "pass"], args.repeats)),
            ("python -c 'import torch'", seconds(python + ["-c", "import torch"], args.repeats))]
    rows += [(f"scripts/{s}.py --help",
              seconds(python + [f"scripts/{s}.py", "--help"], args.repeats)) for s in SCRIPTS]
    torch_import = rows[1][1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["command,median_s,over_import_torch"]
    lines += [f"{c},{s:.3f},{s / torch_import:.3f}" for c, s in rows]
    (out / "startup.csv").write_text("\n".join(lines) + "\n")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    table = ["| command | median s | / import torch |", "|---|---:|---:|"]
    table += [f"| `{c}` | {s:.2f} | {s / torch_import:.2f} |" for c, s in rows]
    (out / "startup.md").write_text(
        f"# Start-up of the command-line scripts\n\nMade by `python scripts/bench_startup.py "
        f"--repeats {args.repeats}` on {machine} (median of {args.repeats} fresh processes; "
        "the load of other processes on the machine adds to every row alike). Each script's "
        "`--help` imports no heavy library (tests/scripts/test_startup.py); the torch row is "
        "what each paid before.\n\n" + "\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
