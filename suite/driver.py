"""The grid driver: claims cells, hands them to an executor, writes their records.

Only the driver writes the store. A cell runs only while this driver holds its claim and
only if its record is still the one the driver saw when it started (no other driver has
finished it meanwhile), so drivers sharing a results directory, or a driver rerun after it
was killed, never run a finished cell again. Cells claimed by another driver are waited
for: when that driver finishes them they are done; when it dies, this one runs them.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

from kanbench.suite.claims import Claims
from kanbench.suite.config import RunConfig
from kanbench.suite.errors import KanbenchError
from kanbench.suite.executors import Executor
from kanbench.suite.store import ResultsStore

POLL_SECONDS = 2.0


class Interrupted(BaseException):
    """Ctrl-C in the driver. Not a KeyboardInterrupt: Lightning's fit turns one of those into
    `sys.exit(1)` (and ignores Ctrl-C after it); this passes through it, and through a cell's
    `except Exception`, to `kanbench.run`."""


# Set by the driver's Ctrl-C handler before it raises `Interrupted`. Python drops an exception
# raised while it runs a finalizer (multiprocessing's, as a worker process starts or ends), so
# `run_cells` checks the flag at every cell it hands out and every record it takes back: a
# Ctrl-C that landed there still stops the grid, one cell later at most.
STOP = threading.Event()


def stop_requested() -> None:
    if STOP.is_set():
        raise Interrupted


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """One line per event (cells done / total, the current cell, elapsed and ETA) and, on a
    terminal, a live bar under them. `bar`: "auto" (a bar when `out` is a terminal), "bar" or
    "lines"."""

    def __init__(self, total: int, skipped: int, out=None, bar: str = "auto"):
        self.total, self.done, self.out = total, skipped, out  # out None: sys.stdout
        self.start, self.ran = time.perf_counter(), 0
        stream = out or sys.stdout
        self.bar = None
        if bar == "bar" or (bar == "auto" and stream.isatty()):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=skipped, unit="cell", file=stream,
                            dynamic_ncols=True)

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.out or sys.stdout)
        else:
            print(text, file=self.out, flush=True)

    def skip(self, cfg: RunConfig) -> None:
        self.done += 1
        self.line(f"[{self.done}/{self.total}] {cfg.label} recorded by another driver")
        if self.bar is not None:
            self.bar.update()

    def begin(self, cfg: RunConfig) -> None:
        self.line(f"[{self.done + 1}/{self.total}] {cfg.label} {cfg.run_id} ...")
        if self.bar is not None:
            self.bar.set_postfix_str(cfg.label)

    def end(self, cfg: RunConfig, record: dict) -> None:
        self.done, self.ran = self.done + 1, self.ran + 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.ran * (self.total - self.done)  # cells run concurrently: rough
        metrics = record.get("metrics") or {}
        primary = metrics.get("primary")
        result = (f"{primary}={metrics[primary]:.4g}" if record["status"] == "done"
                  else f"FAILED: {record['error']}")
        self.line(f"[{self.done}/{self.total}] {cfg.label} {record['status']} in "
                  f"{record['timing']['total_seconds']:.1f}s, {result} | elapsed "
                  f"{_clock(elapsed)}, ETA {_clock(eta)}")
        if self.bar is not None:
            self.bar.update()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def finished_at(record: dict | None) -> str | None:
    return record["finished_at"] if record else None


def run_cells(cells: list[RunConfig], executor: Executor, work, store: ResultsStore,
              claims: Claims, progress: Progress, poll: float = POLL_SECONDS,
              seen: dict[str, str | None] | None = None) -> list[dict]:
    """Run `cells` (those the caller found unrecorded, or failed and to retry) to a record each;
    returns the records this driver wrote. `seen`: each cell's record's `finished_at` as the
    caller read it (None: none), read here when not given."""
    if seen is None:
        seen = {cfg.run_id: finished_at(store.get(cfg.grid, cfg.run_id)) for cfg in cells}
    waiting = {cfg.run_id: cfg for cfg in cells}
    written = []

    def claimed() -> Iterator[RunConfig]:
        """Cells this driver claimed whose record nobody wrote since it looked."""
        for run_id, cfg in list(waiting.items()):
            stop_requested()
            if not claims.acquire(run_id):
                continue  # another driver runs it
            if finished_at(store.get(cfg.grid, run_id)) != seen[run_id]:
                claims.release(run_id)  # finished by another driver meanwhile
                del waiting[run_id]
                progress.skip(cfg)
                continue
            del waiting[run_id]
            progress.begin(cfg)
            yield cfg

    try:
        while True:
            for cfg, record in executor.map(claimed(), work):
                if record["status"] == "refused":  # bad input: stop here, store nothing
                    raise KanbenchError(record["error"])
                store.write(record)
                claims.release(cfg.run_id)
                progress.end(cfg, record)
                written.append(record)
                stop_requested()
            if not waiting:
                return written
            time.sleep(poll)
            stop_requested()  # what is left is claimed by other drivers: wait for them
    finally:
        claims.close()
