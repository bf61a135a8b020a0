"""`kanbench run GRID`: run a grid's (task, method, seed) cells, skipping those already
recorded, then render the grid's tables, plots and site from all its records and log them to
the grid's W&B reports run. Ctrl-C stops it; the same command resumes."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from kanbench.suite import executors, grid, tracking
from kanbench.suite.errors import KanbenchError


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
    from kanbench.suite.registry import METHODS, TASKS

    for cfg in cells:
        METHODS.create(cfg.method).factory(cfg.args["kan"], cfg.args["method"])
    for cfg in one_per_task_setting(cells):
        TASKS.create(cfg.task).check_data(cfg.args["task"], data_root)


def prepare_shared(cells, data_root: str, cache_dir: str) -> None:
    """What the cells of a task share (a detection trunk), made once here before they run; a
    failure is left to the cells, which record it; bad input stops the driver (one line)."""
    from kanbench.suite.registry import TASKS

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


def interrupted(signum, frame):
    from kanbench.suite.driver import STOP, Interrupted

    STOP.set()          # kept, should Python drop the exception (suite.driver.STOP)
    raise Interrupted


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM end the driver: its `finally` blocks kill the workers it runs and
    release its claims (a SIGKILLed driver's workers see its pipes close and exit); Ctrl-C
    then says what finished and how to resume."""
    from kanbench.suite.driver import STOP

    STOP.clear()        # a Ctrl-C of an earlier run in this process is not this one's
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, interrupted)


def list_cells(cells, todo, existing) -> None:
    try:
        for cfg in cells:
            state = "todo" if cfg in todo else existing[cfg.run_id]["status"]
            print(f"  {cfg.run_id} {cfg.label} {state}", flush=True)
    except BrokenPipeError:  # `--dry-run | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run(args: argparse.Namespace) -> int:
    from kanbench.suite.store import ResultsStore, check_writable_dir

    if args.jobs < 1:
        raise KanbenchError(f"--jobs must be at least 1, got {args.jobs}")
    if not args.dry_run:
        executors.start_early(args.executor, args.jobs)
    path, doc = grid.load(args.grid)
    cells = grid.expand(path, doc, args.overrides, args.max_cells, args.sweep)
    check_writable_dir(Path(args.results), "--results")
    check_writable_dir(Path(args.cache), "--cache")
    wandb = tracking.Settings.from_args(args)
    store = ResultsStore(args.results)
    existing = {cfg.run_id: store.get(cfg.grid, cfg.run_id) for cfg in cells}
    todo = [cfg for cfg in cells if existing[cfg.run_id] is None
            or (args.retry_failed and existing[cfg.run_id]["status"] == "failed")]
    grid_name = cells[0].grid
    print(f"grid {grid_name}: {len(cells)} cells, {len(cells) - len(todo)} already recorded, "
          f"{len(todo)} to run", flush=True)
    if args.dry_run:
        list_cells(cells, todo, existing)
        return 0
    preflight(todo, args.data_root)
    # Lightning, the report stack: only once every check has passed, so bad input is quick
    from kanbench.suite.claims import Claims
    from kanbench.suite.driver import Interrupted, Progress, finished_at, run_cells
    from kanbench.suite.runner import CellWork

    stop_on_signals()
    prepare_shared(todo, args.data_root, args.cache)
    options = {"jobs": args.jobs, "ray_address": args.ray_address,
               "cluster": args.slurm_cluster, "resources": grid.resources(doc),
               "folder": str(Path(args.results) / "slurm" / grid_name),
               "memory": any(cfg.args["measure"]["memory"] for cfg in todo)}
    work = CellWork(args.cache, args.data_root, wandb, args.recompute_damaged,
                    executors.threads_per_cell(args.executor, options),
                    names=tracking.run_names(cells))
    executor = executors.create(args.executor, options)
    progress = Progress(len(cells), len(cells) - len(todo), bar=args.progress)
    try:
        run_cells(todo, executor, work, store, Claims(args.results, grid_name), progress,
                  seen={cfg.run_id: finished_at(existing[cfg.run_id]) for cfg in todo})
    except (Interrupted, KeyboardInterrupt):
        progress.close()
        print(f"\ninterrupted: {progress.done} of {len(cells)} cells of grid {grid_name} are "
              f"recorded ({progress.ran} by this run); rerun the same command to resume",
              file=sys.stderr, flush=True)
        return 130
    progress.close()
    return finish(args, cells, todo, store, grid_name, wandb)


def finish(args, cells, todo, store, grid_name: str, wandb: tracking.Settings) -> int:
    """Print the grid's summary, write its reports (when it ran cells) and say what failed."""
    from kanbench.suite.report.render import all_tables, write_reports
    from kanbench.suite.report.tables import summary

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
        tracking.log_reports(grid_name, made, [p for p in written if p.suffix == ".png"], wandb)
        print(f"reports: {len(written)} files in {args.results}/tables, {args.results}/plots "
              f"and {args.results}/site ({grid_name})")
    failed = int((frame["status"] == "failed").sum())
    if failed:
        print(f"{failed} cell(s) failed; see 'error' in their records under "
              f"{store.runs / grid_name}", file=sys.stderr)
    return 1 if failed else 0
