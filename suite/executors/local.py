"""The local executors: cells in this process, or one worker process per cell."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
from collections.abc import Iterator
from multiprocessing.connection import wait

from suite.config import RunConfig
from suite.runner import CellWork


class InProcess:
    """Every cell in this process, in order."""

    def map(self, cells: Iterator[RunConfig], work: CellWork
            ) -> Iterator[tuple[RunConfig, dict]]:
        for cfg in cells:
            yield cfg, work(cfg)


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies, so a killed driver leaves no workers."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker(work: CellWork, cfg: RunConfig, conn, threads: int) -> None:
    die_with_parent()
    import torch

    torch.set_num_threads(threads)
    with conn:
        conn.send(work(cfg))


class Processes:
    """Up to `jobs` cells at once, each in a fresh worker process forked from a server that
    has imported the suite: a crash, a leak or the OOM killer takes down one cell, which is
    recorded as failed, never the grid."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.threads = max(1, (os.cpu_count() or 1) // jobs)

    def map(self, cells: Iterator[RunConfig], work: CellWork
            ) -> Iterator[tuple[RunConfig, dict]]:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["suite.runner"])
        running = {}  # receiving end -> (cell, process)
        cells = iter(cells)
        try:
            while True:
                while len(running) < self.jobs and (cfg := next(cells, None)) is not None:
                    receive, send = ctx.Pipe(duplex=False)
                    process = ctx.Process(target=worker, args=(work, cfg, send, self.threads),
                                          name=f"kanbench-{cfg.label}", daemon=True)
                    process.start()
                    send.close()
                    running[receive] = (cfg, process)
                if not running:
                    return
                for receive in wait(list(running)):  # a record, or EOF when a worker died
                    cfg, process = running.pop(receive)
                    try:
                        record = receive.recv()
                    except EOFError:
                        record = None
                    receive.close()
                    process.join()
                    if record is None:
                        record = work.failed(cfg, f"WorkerDied: the worker process exited with "
                                                  f"{exit_text(process.exitcode)}")
                    yield cfg, record
        finally:
            for _, process in running.values():
                process.kill()


def exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"signal {name}{hint}"
    return f"code {code}"
