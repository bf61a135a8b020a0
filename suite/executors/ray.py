"""The Ray executor: one Ray task per cell, asking for the grid file's `cpus_per_cell` and
`gpus_per_cell`, on the cluster at `--ray-address` or on a local one started for the grid.
Records come back to the driver through Ray's object store; workers write nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from kanbench.suite.config import RunConfig
from kanbench.suite.errors import KanbenchError, first_line

if TYPE_CHECKING:  # workers import the runner; the driver need not yet
    from kanbench.suite.runner import CellWork


def run_on_worker(work: CellWork, cfg: RunConfig) -> dict:
    return work(cfg)


class RayExecutor:
    def __init__(self, options: dict):
        self.address = options["ray_address"]
        self.resources = options["resources"]
        self.jobs = options["jobs"] if options["jobs"] > 1 else None  # None: as many as fit

    def connect(self):
        try:
            import ray
        except ImportError:
            raise KanbenchError("--executor ray needs Ray: pip install 'ray[default]'") from None
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as err:
                where = self.address or "a local cluster"
                raise KanbenchError(f"could not connect to Ray at {where} "
                                    f"({first_line(err)})") from None
        return ray

    def map(self, cells: Iterator[RunConfig], work: CellWork
            ) -> Iterator[tuple[RunConfig, dict]]:
        ray = self.connect()
        task = ray.remote(num_cpus=self.resources["cpus_per_cell"],
                          num_gpus=self.resources["gpus_per_cell"],
                          max_retries=0)(run_on_worker)
        in_flight = {}  # ObjectRef -> cell
        cells = iter(cells)
        try:
            while True:
                while self.jobs is None or len(in_flight) < self.jobs:
                    cfg = next(cells, None)
                    if cfg is None:
                        break
                    in_flight[task.remote(work, cfg)] = cfg
                if not in_flight:
                    return
                (ready,), _ = ray.wait(list(in_flight), num_returns=1)
                cfg = in_flight.pop(ready)
                try:
                    record = ray.get(ready)
                except ray.exceptions.RayError as err:  # the worker died: crash, OOM, node lost
                    record = work.failed(cfg, first_line(err))
                yield cfg, record
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=True)
            ray.shutdown()
