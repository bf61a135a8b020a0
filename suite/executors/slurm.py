"""The Slurm executor: the claimed cells go out as one submitit job array (partition, time,
GPUs, CPUs, memory and array parallelism from the grid file's `resources`); each job writes
its record as JSON into `<folder>/records/`, and the driver moves it into the store.

The driver keeps `<folder>/jobs.json` (run_id -> job id), so a driver that died can be
re-attached by running the same command again: cells whose record is waiting are collected,
cells whose job is still queued or running are waited for, and only the rest are submitted.
The driver never unpickles a job's result: records travel as JSON.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kanbench.suite.config import RunConfig
from kanbench.suite.errors import KanbenchError
from kanbench.suite.store import read_json, write_json_atomic

if TYPE_CHECKING:  # workers import the runner; the driver need not yet
    from kanbench.suite.runner import CellWork

POLL_SECONDS = 2.0
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
            "BOOT_FAIL", "DEADLINE", "INTERRUPTED", "FINISHED"}


def run_and_stage(work: CellWork, cfg: RunConfig, staged: str) -> None:
    """On the node: run the cell and leave its record as JSON for the driver."""
    write_json_atomic(Path(staged), work(cfg))


class SlurmExecutor:
    def __init__(self, options: dict):
        self.folder = Path(options["folder"])
        self.cluster = options["cluster"] or ("slurm" if shutil.which("sbatch") else "local")
        self.resources = options["resources"]

    def staged(self, run_id: str) -> Path:
        return self.folder / "records" / f"{run_id}.json"

    def executor(self):
        try:
            import submitit
        except ImportError:
            raise KanbenchError("--executor slurm needs submitit: pip install submitit") \
                from None
        r = self.resources
        executor = submitit.AutoExecutor(folder=self.folder / "jobs", cluster=self.cluster)
        executor.update_parameters(
            name="kanbench", timeout_min=r["time_minutes"], cpus_per_task=r["cpus_per_cell"],
            gpus_per_node=r["gpus_per_cell"], mem_gb=r["mem_gb"],
            slurm_array_parallelism=r["array_parallelism"],
            **({"slurm_partition": r["partition"]} if r["partition"] else {}))
        return executor

    def alive(self, job_id: str) -> bool:
        """Whether a job a previous driver submitted is still queued or running."""
        if self.cluster == "slurm":
            import submitit

            return submitit.SlurmJob(self.folder / "jobs", job_id).state not in FINISHED
        # submitit's local jobs are processes of this machine (job id = pid), orphaned when
        # their driver died: alive unless gone or a zombie nobody has reaped yet
        try:
            stat = Path(f"/proc/{int(job_id)}/stat").read_text()
        except (OSError, ValueError):
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"

    def map(self, cells: Iterator[RunConfig], work: CellWork
            ) -> Iterator[tuple[RunConfig, dict]]:
        cells = {cfg.run_id: cfg for cfg in cells}
        state_file = self.folder / "jobs.json"
        known = read_json(state_file) if state_file.exists() else {}
        pending = {run_id: known[run_id] for run_id in cells
                   if run_id in known and (self.staged(run_id).exists() or
                                           self.alive(known[run_id]))}
        new = [cfg for run_id, cfg in cells.items() if run_id not in pending]
        jobs = {}
        if new:
            executor = self.executor()
            for run_id in (cfg.run_id for cfg in new):
                self.staged(run_id).unlink(missing_ok=True)
            with executor.batch():
                submitted = [executor.submit(run_and_stage, work, cfg,
                                             str(self.staged(cfg.run_id))) for cfg in new]
            jobs = {cfg.run_id: job for cfg, job in zip(new, submitted, strict=True)}
            pending.update({run_id: job.job_id for run_id, job in jobs.items()})
            write_json_atomic(state_file, {**known, **pending})
        while pending:
            for run_id, job_id in list(pending.items()):
                staged = self.staged(run_id)
                ended = jobs[run_id].done() if run_id in jobs else not self.alive(job_id)
                if staged.exists():  # looked at after `ended`: a job writes, then ends
                    record = read_json(staged)
                elif ended:
                    record = work.failed(cells[run_id], f"JobDied: job {job_id} ended without "
                                                        f"a record (see {self.folder / 'jobs'})")
                else:
                    continue
                del pending[run_id]
                yield cells[run_id], record
                staged.unlink(missing_ok=True)
            if pending:
                time.sleep(POLL_SECONDS)
