"""Executors run claimed cells and hand their records back to the driver, which alone writes
the store. One interface: `map(cells, work)` takes an iterator of cells (pulled only when a
worker is free, since pulling one claims it) and yields `(cell, record)` as each finishes.

    local   in this process, in order; with --jobs N, N worker processes, one per cell
    ray     one Ray task per cell on a Ray cluster (--ray-address) or a local one
    slurm   submitit job arrays on Slurm (or submitit's local executor); rerun to re-attach
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the CLI lists the executors without importing torch
    from kanbench.suite.config import RunConfig
    from kanbench.suite.runner import CellWork


class Executor(Protocol):
    def map(self, cells: Iterator[RunConfig], work: CellWork
            ) -> Iterator[tuple[RunConfig, dict]]: ...


def create(name: str, options: dict) -> Executor:
    """The executor `name` with the driver's options (jobs, ray_address, resources, whether
    any cell measures memory, ...)."""
    if name == "local":
        from kanbench.suite.executors.local import InProcess, Processes
        return Processes(options["jobs"], options.get("memory", True)) \
            if forks_workers(name, options["jobs"]) else InProcess()
    if name == "ray":
        from kanbench.suite.executors.ray import RayExecutor
        return RayExecutor(options)
    if name == "slurm":
        from kanbench.suite.executors.slurm import SlurmExecutor
        return SlurmExecutor(options)
    raise ValueError(f"unknown executor {name!r}")


NAMES = ("local", "ray", "slurm")


def forks_workers(name: str, jobs: int) -> bool:
    """Whether executor `name` runs cells in local worker processes, forked from a server."""
    return name == "local" and jobs > 1


def start_early(name: str, jobs: int) -> None:
    """Start now what the first cell would wait for: a local pool's forkserver, whose imports
    (seconds) then overlap the driver's own. Nothing for the other executors."""
    if forks_workers(name, jobs):
        from kanbench.suite.executors.local import start_forkserver
        start_forkserver()


def available_cores() -> int:
    """The cores this process may run on (its affinity mask; a Slurm or container limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_cell(name: str, options: dict) -> int | None:
    """Each cell's share of the cores under executor `name`: a Ray task's or Slurm job's
    `cpus_per_cell`; with `--jobs N` local workers, the cores here over N; one cell at a time
    in this process: None (all of them, torch's default)."""
    if name in ("ray", "slurm"):
        return options["resources"]["cpus_per_cell"]
    return max(1, available_cores() // options["jobs"]) \
        if forks_workers(name, options["jobs"]) else None
