"""Executors hand cells to workers and report progress. `local` runs them in order here."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from suite.config import RunConfig


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """One line per event: cells done / total, the current cell, elapsed and ETA."""

    def __init__(self, total: int, skipped: int, out=sys.stdout):
        self.total, self.done, self.out = total, skipped, out
        self.start, self.ran = time.perf_counter(), 0

    def begin(self, cfg: RunConfig) -> None:
        print(f"[{self.done + 1}/{self.total}] {cfg.label} {cfg.run_id} ...", file=self.out,
              flush=True)

    def end(self, cfg: RunConfig, record: dict) -> None:
        self.done, self.ran = self.done + 1, self.ran + 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.ran * (self.total - self.done)
        metrics = record.get("metrics") or {}
        primary = metrics.get("primary")
        result = (f"{primary}={metrics[primary]:.4g}" if record["status"] == "done"
                  else f"FAILED: {record['error']}")
        print(f"[{self.done}/{self.total}] {cfg.label} {record['status']} in "
              f"{record['timing']['total_seconds']:.1f}s, {result} | elapsed {_clock(elapsed)}, "
              f"ETA {_clock(eta)}", file=self.out, flush=True)


class LocalExecutor:
    """Every cell in this process, in order."""

    def run(self, cells: list[RunConfig], work: Callable[[RunConfig], dict],
            progress: Progress) -> list[dict]:
        records = []
        for cfg in cells:
            progress.begin(cfg)
            record = work(cfg)
            progress.end(cfg, record)
            records.append(record)
        return records


EXECUTORS = {"local": LocalExecutor}
