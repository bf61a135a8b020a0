"""The grid driver: claims cells, hands them to an executor, writes their records.

Only the driver writes the store. A cell runs only while this driver holds its claim and
only if its record is still the one the driver saw when it started (no other driver has
finished it meanwhile), so drivers sharing a results directory, or a driver rerun after it
was killed, never run a finished cell again. Cells claimed by another driver are waited
for: when that driver finishes them they are done; when it dies, this one runs them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from suite.claims import Claims
from suite.config import RunConfig
from suite.errors import KanbenchError
from suite.executors import Executor
from suite.store import ResultsStore

POLL_SECONDS = 2.0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """One line per event: cells done / total, the current cell, elapsed and ETA."""

    def __init__(self, total: int, skipped: int, out=None):  # None: sys.stdout when printing
        self.total, self.done, self.out = total, skipped, out
        self.start, self.ran = time.perf_counter(), 0

    def skip(self, cfg: RunConfig) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {cfg.label} recorded by another driver", file=self.out,
              flush=True)

    def begin(self, cfg: RunConfig) -> None:
        print(f"[{self.done + 1}/{self.total}] {cfg.label} {cfg.run_id} ...", file=self.out,
              flush=True)

    def end(self, cfg: RunConfig, record: dict) -> None:
        self.done, self.ran = self.done + 1, self.ran + 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.ran * (self.total - self.done)  # cells run concurrently: rough
        metrics = record.get("metrics") or {}
        primary = metrics.get("primary")
        result = (f"{primary}={metrics[primary]:.4g}" if record["status"] == "done"
                  else f"FAILED: {record['error']}")
        print(f"[{self.done}/{self.total}] {cfg.label} {record['status']} in "
              f"{record['timing']['total_seconds']:.1f}s, {result} | elapsed {_clock(elapsed)}, "
              f"ETA {_clock(eta)}", file=self.out, flush=True)


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
            if not waiting:
                return written
            time.sleep(poll)  # what is left is claimed by other drivers: wait for them
    finally:
        claims.close()
