"""The same smoke cells through every executor: local worker processes, a real local Ray
cluster (loopback only) and submitit's local executor give the same records."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kanbench.suite import executors
from kanbench.suite.config import RunConfig
from kanbench.suite.executors import available_cores
from kanbench.suite.executors.local import Processes, signals_held
from kanbench.suite.measure import MEMORY_PROBE, SHARED_PROBE
from kanbench.suite.runner import CellWork
from kanbench.suite.store import ResultsStore
from scripts.run_grid import main as run_grid
from tests.conftest import REPO

CELLS = ["--grid", "smoke", "tasks=[feynman,digits]", "methods=[dense,metakan,share_int8]",
         "measure.memory=false"]


def run(tmp_path, name, *executor) -> dict[str, dict]:
    results = tmp_path / name
    assert run_grid([*CELLS, *executor, "--results", str(results), "--cache",
                     str(tmp_path / f"{name}-cache"), "--wandb", "off", "--no-reports"]) == 0
    return {r["run_id"]: r for r in ResultsStore(results).records("smoke")}


def same_records(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert set(a) == set(b) and len(a) == 6
    for run_id in a:
        assert a[run_id]["status"] == b[run_id]["status"] == "done"
        assert a[run_id]["storage"] == b[run_id]["storage"]
        primary = a[run_id]["metrics"]["primary"]
        assert a[run_id]["metrics"][primary] == pytest.approx(b[run_id]["metrics"][primary],
                                                              rel=1e-3, abs=1e-4)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    return run(tmp_path_factory.mktemp("in_process"), "in_process")


@pytest.mark.slow
def test_local_worker_processes(in_process, tmp_path):
    records = run(tmp_path, "jobs", "--jobs", "2")
    same_records(in_process, records)
    share = max(1, available_cores() // 2)      # each of 2 workers takes half the cores
    assert {r["env"]["threads"] for r in records.values()} == {share}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_local_ray_cluster(in_process, tmp_path):
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                   check=True, capture_output=True, env=env, timeout=300)
    try:
        records = run(tmp_path, "ray", "--executor", "ray", "--ray-address",
                      f"127.0.0.1:{port}")
        same_records(in_process, records)
        assert {r["env"]["threads"] for r in records.values()} == {1}   # cpus_per_cell
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=300)


@pytest.mark.slow
def test_submitit_local_executor(in_process, tmp_path):
    records = run(tmp_path, "slurm", "--executor", "slurm", "--slurm-cluster", "local")
    same_records(in_process, records)
    assert {r["env"]["threads"] for r in records.values()} == {1}       # cpus_per_cell


@pytest.mark.slow
def test_a_slurm_driver_that_died_is_re_attached(tmp_path):
    """Kill the driver once its job array is out; rerunning the command waits for those jobs
    and collects their records instead of submitting the cells again."""
    argv = [sys.executable, str(REPO / "scripts" / "run_grid.py"), "--grid", "smoke",
            "tasks=[feynman,digits]", "methods=[dense]", "measure.memory=false", "--executor",
            "slurm", "--slurm-cluster", "local", "--results", str(tmp_path), "--cache",
            str(tmp_path / "cache"), "--wandb", "off", "--no-reports"]
    jobs = tmp_path / "slurm" / "smoke"
    first = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (jobs / "jobs.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    first.kill()
    first.wait()
    submitted = json.loads((jobs / "jobs.json").read_text())
    assert len(submitted) == 2 and not list((tmp_path / "runs").glob("*/*.json"))
    again = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    assert json.loads((jobs / "jobs.json").read_text()) == submitted   # nothing resubmitted
    assert len(list((jobs / "jobs").glob("*_submitted.pkl"))) == 2
    records = ResultsStore(tmp_path).records("smoke")
    assert len(records) == 2 and all(r["status"] == "done" for r in records)


class DiesOnSeedOne(CellWork):
    def __call__(self, cfg):
        if cfg.seed == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return {"run_id": cfg.run_id, "status": "done"}


def test_signals_held_run_their_handlers_after_the_block_not_in_it():
    seen = []

    def note(signum, frame):
        seen.append(signum)

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, h) for s, h in ((signal.SIGUSR1, note), (signal.SIGINT, stop))}
    try:
        with signals_held(signal.SIGUSR1):
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(1000):          # bytecode boundaries, where a handler would run
                pass
            assert seen == []
        assert seen == [signal.SIGUSR1] and signal.getsignal(signal.SIGUSR1) is note
        reached = False
        with pytest.raises(KeyboardInterrupt):  # a Ctrl-C's exception, after the block
            with signals_held(signal.SIGINT):
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass
                reached = True
        assert reached and signal.getsignal(signal.SIGINT) is stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_a_worker_that_dies_is_a_failed_record_and_the_others_go_on(tmp_path):
    cells = [RunConfig("g", "feynman", "dense", seed, {}) for seed in range(3)]
    work = DiesOnSeedOne(str(tmp_path), str(tmp_path), "off")
    records = {cfg.seed: record for cfg, record in Processes(2).map(iter(cells), work)}
    assert records[0]["status"] == records[2]["status"] == "done"
    assert records[1]["status"] == "failed"
    assert records[1]["error"] == "WorkerDied: the worker process exited with signal SIGKILL " \
                                  "(out of memory?)"


class NamesItsMemoryProbe(CellWork):
    def __call__(self, cfg):
        return {"run_id": cfg.run_id, "status": "done", "probe": os.environ.get(SHARED_PROBE)}


def test_every_worker_asks_the_one_memory_probe_its_driver_shares(tmp_path):
    cells = [RunConfig("g", "feynman", "dense", seed, {}) for seed in range(3)]
    work = NamesItsMemoryProbe(str(tmp_path), str(tmp_path), "off")
    probes = {record["probe"] for _, record in Processes(2).map(iter(cells), work)}
    assert probes == {MEMORY_PROBE.share()}        # the server this process started, once
    assert os.path.exists(MEMORY_PROBE.share())     # listening


def test_each_cell_gets_its_executor_s_share_of_the_cores():
    resources = {"cpus_per_cell": 3}
    assert executors.threads_per_cell("local", {"jobs": 1}) is None     # torch's default
    assert executors.threads_per_cell("local", {"jobs": 2}) == max(1, available_cores() // 2)
    assert executors.threads_per_cell("local", {"jobs": 10**6}) == 1
    for name in ("ray", "slurm"):
        assert executors.threads_per_cell(name, {"jobs": 1, "resources": resources}) == 3
