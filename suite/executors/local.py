"""The local executors: cells in this process, or one worker process per cell."""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.forkserver
import os
import select
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import wait
from typing import TYPE_CHECKING

from kanbench.suite.config import RunConfig

if TYPE_CHECKING:  # torch, Lightning: the forkserver imports them; this module need not
    from kanbench.suite.runner import CellWork

# what every worker imports before it is forked: the suite, and W&B's launch package (its run
# start imports it, ~1.5 s, which each fresh worker would otherwise pay again)
PRELOAD = ["kanbench.suite.executors.die_with_driver", "kanbench.suite.runner", "wandb.sdk.launch"]


class InProcess:
    """Every cell in this process, in order."""

    def map(self, cells: Iterator[RunConfig], work: CellWork
            ) -> Iterator[tuple[RunConfig, dict]]:
        for cfg in cells:
            yield cfg, work(cfg)


def exit_with_driver(conn) -> None:
    """Kill this worker's process group once the driver is gone, however it died. The worker
    is forked by a forkserver, not by the driver, so the kernel's parent-death signal cannot
    tie them; but the driver holds the only reading end of the worker's result pipe, and a
    pipe whose readers are all gone shows POLLERR at its writing end."""

    def watch():
        poller = select.poll()
        poller.register(conn.fileno(), 0)           # POLLERR and POLLHUP are always reported
        poller.poll()
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="exit-with-driver", daemon=True).start()


def start_forkserver() -> None:
    """Start the server the workers are forked from, which imports PRELOAD (seconds) in the
    background: a driver calls this first thing, so that those imports overlap its own;
    `Processes.map` starts it where nobody has."""
    mp.get_context("forkserver").set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()


@contextmanager
def signals_held(*signums: int):
    """Run the block with these signals' Python handlers held back, then run them for any that
    came. Starting a worker is a conversation with the forkserver (connect, then send the
    pipes); a Ctrl-C between the two made the forkserver die of an EOFError traceback on the
    terminal after the driver's last line. Only the main thread sets handlers: elsewhere the
    block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came = []
    handlers = {signum: signal.signal(signum, lambda n, frame: came.append((n, frame)))
                for signum in signums}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum, frame in came:
            handler = handlers[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def worker(work: CellWork, cfg: RunConfig, conn, memory_probe: str | None) -> None:
    os.setpgrp()                  # the driver kills this group: the worker and its helpers
    exit_with_driver(conn)
    if memory_probe:              # the driver's shared probe server (see measure.MemoryProbe)
        from kanbench.suite.measure import SHARED_PROBE
        os.environ[SHARED_PROBE] = memory_probe
    with conn:
        conn.send(work(cfg))


def kill_group(process) -> None:
    """SIGKILL a worker and its process group (a worker killed before its setpgrp: itself)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


class Processes:
    """Up to `jobs` cells at once, each in a fresh worker process forked from a server that
    has imported the suite: a crash, a leak or the OOM killer takes down one cell, which is
    recorded as failed, never the grid."""

    def __init__(self, jobs: int, share_memory_probe: bool = True):
        """`share_memory_probe`: start one memory probe server for all the workers (when
        their cells measure memory)."""
        self.jobs, self.share_memory_probe = jobs, share_memory_probe

    def map(self, cells: Iterator[RunConfig], work: CellWork
            ) -> Iterator[tuple[RunConfig, dict]]:
        from kanbench.suite.measure import MEMORY_PROBE

        # one probe server for all the workers, not one each
        memory_probe = MEMORY_PROBE.share() if self.share_memory_probe else None
        start_forkserver()
        ctx = mp.get_context("forkserver")
        running = {}  # receiving end -> (cell, process)
        cells = iter(cells)
        try:
            while True:
                while len(running) < self.jobs and (cfg := next(cells, None)) is not None:
                    receive, send = ctx.Pipe(duplex=False)
                    process = ctx.Process(target=worker, args=(work, cfg, send, memory_probe),
                                          name=f"kanbench-{cfg.label}", daemon=True)
                    with signals_held(signal.SIGINT, signal.SIGTERM):  # then `finally` kills it
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
                kill_group(process)


def exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"signal {name}{hint}"
    return f"code {code}"
