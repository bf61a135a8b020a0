"""Run a grid of (task, method, seed) cells, skipping those already recorded; then render the
grid's tables and plots from all its records and log them to a W&B reports run.

    python scripts/run_grid.py --grid quick train.max_epochs=2 tasks=[digits]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

# only what `--help` needs here: torch, Lightning and the plugins are imported in main
from suite import executors, grid, tracking
from suite.errors import KanbenchError, one_line_errors


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="quick", help=f"a preset ({', '.join(grid.presets())}) "
                   "or a path to a grid .yaml")
    p.add_argument("overrides", nargs="*", help="section.key=value, tasks=[..], methods=[..], "
                   "seeds=[..]")
    p.add_argument("--results", default="results", help="results directory (records in runs/)")
    p.add_argument("--cache", default=".cache/kanbench", help="stage artifact cache")
    p.add_argument("--data-root", default=os.environ.get("KANBENCH_DATA", "data"),
                   help="where datasets live (default $KANBENCH_DATA or ./data)")
    p.add_argument("--wandb", default="auto", choices=tracking.MODES,
                   help="auto = online with credentials, else offline")
    p.add_argument("--wandb-dir", default="wandb")
    p.add_argument("--executor", default="local", choices=executors.NAMES,
                   help="local (this machine), ray (a Ray cluster) or slurm (submitit)")
    p.add_argument("--jobs", type=int, default=1, help="cells at once: local worker processes, "
                   "or Ray tasks in flight (default: local 1, ray as many as the cluster runs)")
    p.add_argument("--ray-address", default=None,
                   help="a running Ray cluster (host:port or ray://...); default: start one here")
    p.add_argument("--slurm-cluster", default=None, choices=["slurm", "local", "debug"],
                   help="submitit backend (default: slurm where sbatch exists, else local)")
    p.add_argument("--retry-failed", action="store_true", help="rerun cells recorded as failed")
    p.add_argument("--recompute-damaged", action="store_true",
                   help="recompute a cached stage whose files are damaged (default: refuse)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and stop")
    p.add_argument("--max-cells", type=int, default=grid.MAX_CELLS,
                   help=f"refuse a grid of more cells than this (default {grid.MAX_CELLS:,})")
    p.add_argument("--no-reports", action="store_true",
                   help="skip rendering the grid's tables and plots at the end")
    return p.parse_intermixed_args(argv)


def one_per_task_setting(cells):
    """The first cell of each task with each setting of its task args."""
    seen = set()
    for cfg in cells:
        key = (cfg.task, repr(sorted(cfg.args["task"].items())))
        if key not in seen:
            seen.add(key)
            yield cfg


def preflight(cells, data_root: str) -> None:
    """Everything that can be checked before the first cell runs: names, settings, data."""
    from suite.registry import METHODS, TASKS

    for cfg in cells:
        METHODS.create(cfg.method).factory(cfg.args["kan"], cfg.args["method"])
    for cfg in one_per_task_setting(cells):
        TASKS.create(cfg.task).check_data(cfg.args["task"], data_root)


def prepare_shared(cells, data_root: str, cache_dir: str) -> None:
    """What the cells of a task share (a detection trunk), made once here before they run; a
    failure is left to the cells, which record it; bad input stops the driver (one line)."""
    import time

    from suite.registry import TASKS

    for cfg in one_per_task_setting(cells):
        start = time.perf_counter()
        try:
            made = TASKS.create(cfg.task).prepare_shared(cfg.args["task"], data_root, cache_dir)
        except KanbenchError:
            raise
        except Exception as err:  # noqa: BLE001 - each cell meets it again and records it
            print(f"preparing {cfg.task}'s shared inputs failed ({type(err).__name__}: {err}); "
                  "its cells will record it", flush=True)
            continue
        if made:
            print(f"{cfg.task}: shared inputs ready in {time.perf_counter() - start:.1f}s",
                  flush=True)


def exit_on_sigterm() -> None:
    """SIGTERM ends the driver as Ctrl-C does: its `finally` blocks kill the workers it runs
    and release its claims (a SIGKILLed driver's workers see its pipes close and exit)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


@one_line_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    from suite.store import ResultsStore, check_writable_dir

    if args.jobs < 1:
        raise KanbenchError(f"--jobs must be at least 1, got {args.jobs}")
    if not args.dry_run:
        executors.start_early(args.executor, args.jobs)
    path, doc = grid.load(args.grid)
    cells = grid.expand(path, doc, args.overrides, args.max_cells)
    check_writable_dir(Path(args.results), "--results")
    check_writable_dir(Path(args.cache), "--cache")
    store = ResultsStore(args.results)
    existing = {cfg.run_id: store.get(cfg.grid, cfg.run_id) for cfg in cells}
    todo = [cfg for cfg in cells if existing[cfg.run_id] is None
            or (args.retry_failed and existing[cfg.run_id]["status"] == "failed")]
    grid_name = cells[0].grid
    print(f"grid {grid_name}: {len(cells)} cells, {len(cells) - len(todo)} already recorded, "
          f"{len(todo)} to run", flush=True)
    if args.dry_run:
        try:
            for cfg in cells:
                state = "todo" if cfg in todo else existing[cfg.run_id]["status"]
                print(f"  {cfg.run_id} {cfg.label} {state}", flush=True)
        except BrokenPipeError:  # `--dry-run | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    preflight(todo, args.data_root)
    # Lightning, the report stack: only once every check has passed, so bad input is quick
    from suite.claims import Claims
    from suite.driver import Progress, finished_at, run_cells
    from suite.report.render import all_tables, write_reports
    from suite.report.tables import summary
    from suite.runner import CellWork

    exit_on_sigterm()
    prepare_shared(todo, args.data_root, args.cache)
    options = {"jobs": args.jobs, "ray_address": args.ray_address,
               "cluster": args.slurm_cluster, "resources": grid.resources(doc),
               "folder": str(Path(args.results) / "slurm" / grid_name),
               "memory": any(cfg.args["measure"]["memory"] for cfg in todo)}
    work = CellWork(args.cache, args.data_root, args.wandb, args.wandb_dir,
                    args.recompute_damaged, executors.threads_per_cell(args.executor, options))
    executor = executors.create(args.executor, options)
    run_cells(todo, executor, work, store, Claims(args.results, grid_name),
              Progress(len(cells), len(cells) - len(todo)),
              seen={cfg.run_id: finished_at(existing[cfg.run_id]) for cfg in todo})

    ids = {cfg.run_id for cfg in cells}
    grid_frame = store.to_frame(grid_name)
    store.report_skipped()
    frame = grid_frame[grid_frame["run_id"].isin(ids)]
    made = all_tables(grid_frame)
    table = made.get("summary") if len(frame) == len(grid_frame) else summary(frame)
    if table is not None and not table.empty:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if todo and not args.no_reports:  # the whole grid's reports, from its records
        written = write_reports(grid_frame, made, grid_name, args.results)
        tracking.log_reports(grid_name, made, [p for p in written if p.suffix == ".png"],
                             args.wandb, args.wandb_dir)
        print(f"reports: {len(written)} files in {args.results}/tables and "
              f"{args.results}/plots ({grid_name}_*)")
    failed = int((frame["status"] == "failed").sum())
    if failed:
        print(f"{failed} cell(s) failed; see 'error' in their records under "
              f"{store.runs / grid_name}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
