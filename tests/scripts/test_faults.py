"""A grid that loses nothing: drivers killed with SIGKILL at random moments, and two drivers at
once on one results directory. Evidence comes from the drivers' own logs (which cells each
began), the store, and the W&B offline runs."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

GRID = """\
description: the fault tests' grid, seconds per cell
seeds: [0, 1, 2, 3, 4, 5, 6, 7]
methods: [dense, share_int8]
args:
  train: {max_epochs: 4}
  measure: {latency_batches: [1, 4], memory: false}
blocks:
  - tasks: [feynman]
    args: {task: {n_train: 64, n_test: 64}}
"""
TRIALS, CELLS = 20, 16
PARALLEL_GRID = GRID.replace("seeds: [0, 1, 2, 3, 4, 5, 6, 7]", "seeds: [0, 1]")
PARALLEL_CELLS = 4
BEGUN = re.compile(r"^\[\d+/\d+\] \S+ ([0-9a-f]{16}) \.\.\.$", re.M)
EVENT = re.compile(r"^\[\d+/\d+\] \S+ (?:[0-9a-f]{16} \.\.\.|done in )", re.M)


def driver(tmp_path, log, *extra, marker: str = "", grid_text: str = GRID):
    """A run_grid driver in its own process; its stdout goes to `log`. `marker` is set in its
    environment, which every process it starts inherits (see `processes_marked`)."""
    grid = tmp_path / "faults.yaml"
    grid.write_text(grid_text)
    return subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "run_grid.py"), "--grid", str(grid),
         "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache"),
         "--wandb", "offline", "--wandb-dir", str(tmp_path / "wandb"), "--no-reports", *extra],
        cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "KANBENCH_FAULT_MARKER": marker})


def processes_marked(marker: str) -> list[str]:
    """`pid name` of every live process whose environment carries `marker`: a driver's
    workers, its forkserver, W&B's helpers, whatever session or group they moved to."""
    needle = f"KANBENCH_FAULT_MARKER={marker}".encode() + b"\0"
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and needle in (proc / "environ").read_bytes() and \
                    (proc / "stat").read_text().split(")")[-1].split()[0] != "Z":
                found.append(f"{proc.name} {(proc / 'comm').read_text().strip()}")
        except OSError:
            continue                                 # gone meanwhile
    return found


def records(tmp_path) -> dict[str, dict]:
    runs = tmp_path / "results" / "runs" / "faults"
    return {p.stem: json.loads(p.read_text()) for p in runs.glob("*.json")} \
        if runs.exists() else {}


def wandb_runs(tmp_path) -> list[str]:
    """The run id of every W&B offline run directory (one per cell started with W&B)."""
    return [p.name.rsplit("-", 1)[1] for p in (tmp_path / "wandb" / "wandb").glob(
        "offline-run-*")]


def check_complete(tmp_path, cells: int):
    done = records(tmp_path)
    assert len(done) == cells
    for run_id, record in done.items():  # whole records only
        assert record["run_id"] == run_id and record["status"] == "done", record.get("error")
        assert record["storage"]["kan_bytes"] > 0 and record["finished_at"]
    assert set(wandb_runs(tmp_path)) == set(done)  # one W&B id per cell, its run_id


def kill_at_a_random_point(process, log, rng) -> bool:
    """SIGKILL the driver 0-2 s after its k-th cell event (a cell begun or recorded), k random
    in 0..3, so kills land in start-up, in training, in measuring and around record writes.
    False when the driver finished first."""
    events, delay = rng.randint(0, 3), rng.uniform(0.0, 2.0)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if len(EVENT.findall(log.read_text())) >= events:
            time.sleep(delay)
            break
        time.sleep(0.05)
    if process.poll() is not None:
        assert process.returncode == 0, log.read_text()[-2000:]
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def test_sigkilled_drivers_lose_and_repeat_nothing(tmp_path):
    rng = random.Random(0)
    finished, killed = set(), 0
    start = time.monotonic()
    for trial in range(TRIALS):
        log = tmp_path / f"trial{trial}.log"
        killed += kill_at_a_random_point(driver(tmp_path, log), log, rng)
        begun = set(BEGUN.findall(log.read_text()))
        assert not begun & finished, f"trial {trial} began cells already recorded"
        finished |= {run_id for run_id, r in records(tmp_path).items() if r["status"] == "done"}
    seconds = time.monotonic() - start
    print(f"\n{TRIALS} trials, {killed} drivers killed with SIGKILL, {len(finished)} of "
          f"{CELLS} cells recorded before the final run, {seconds:.0f} s")
    assert killed >= TRIALS // 2
    log = tmp_path / "final.log"
    assert driver(tmp_path, log).wait(timeout=600) == 0, log.read_text()[-2000:]
    assert not set(BEGUN.findall(log.read_text())) & finished
    check_complete(tmp_path, CELLS)
    assert not list((tmp_path / "results" / "claims" / "faults").iterdir())


def test_two_drivers_at_once_run_each_cell_once(tmp_path):
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    drivers = [driver(tmp_path, log) for log in logs]
    assert [d.wait(timeout=600) for d in drivers] == [0, 0]
    begun = [BEGUN.findall(log.read_text()) for log in logs]
    assert len(set(begun[0] + begun[1])) == len(begun[0]) + len(begun[1]) == CELLS
    assert begun[0] and begun[1]  # both drivers did some of the work
    check_complete(tmp_path, CELLS)
    assert sorted(wandb_runs(tmp_path)) == sorted(records(tmp_path))  # each started once


RESUMED_CELLS = {  # a cell per kind of fit: (its run_grid arguments, needs the data files)
    "feynman": (["tasks=[feynman]", "methods=[dense,metakan]", "task.n_train=512",
                 "train.max_epochs=30"], False),
    "fashion_sized": (["tasks=[mnist]", "methods=[dense]", "task.widths=[784,64,10]",
                       "task.n_train=0", "train.max_epochs=12", "train.batch_size=16"], True),
}


def run_cell_grid(results, argv, data_root) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "run_grid.py"), "--grid", "smoke", *argv,
         "measure.latency=false", "measure.memory=false", "--results", str(results),
         "--cache", str(results / "cache"), "--wandb", "off", "--no-reports",
         "--data-root", str(data_root)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def smoke_records(results) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (results / "runs" / "smoke").glob("*")}


@pytest.mark.parametrize("name", list(RESUMED_CELLS))
def test_a_cell_killed_mid_training_resumes_to_the_uninterrupted_record(name, tmp_path):
    from tests.datafiles import write_all

    argv, needs_data = RESUMED_CELLS[name]
    data = write_all(tmp_path / "data") if needs_data else tmp_path / "data"
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run_cell_grid(straight, argv, data).wait(timeout=600) == 0
    process = run_cell_grid(resumed, argv, data)
    deadline = time.monotonic() + 300
    while not list((resumed / "cache" / "checkpoints").glob("*/last.ckpt")):
        assert process.poll() is None and time.monotonic() < deadline, "finished unkilled"
        time.sleep(0.02)
    time.sleep(0.3)                                           # into the next epoch
    os.killpg(process.pid, signal.SIGKILL)                    # the driver and any worker
    process.wait()
    assert run_cell_grid(resumed, argv, data).wait(timeout=600) == 0
    expected, got = smoke_records(straight), smoke_records(resumed)
    assert sorted(got) == sorted(expected)
    assert any(r["timing"]["train"]["resumed_epochs"] > 0 for r in got.values())
    for run_id, record in got.items():
        assert record["metrics"] == expected[run_id]["metrics"], run_id


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_killed_parallel_driver_leaves_no_process_and_loses_no_cell(how, tmp_path):
    """--jobs 2 drivers killed while their workers train: within 5 s nothing they started is
    alive (workers, forkserver, W&B helpers), and a rerun records every cell exactly once."""
    rng, trials, started = random.Random(int(how)), 10, set()
    for trial in range(trials):
        log, marker = tmp_path / f"trial{trial}.log", f"{how.name}-{trial}-{os.getpid()}"
        process = driver(tmp_path, log, "--jobs", "2", marker=marker, grid_text=PARALLEL_GRID)
        deadline = time.monotonic() + 120
        while process.poll() is None and len(BEGUN.findall(log.read_text())) < 2 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.5, 2.0))                      # the workers are training
        if process.poll() is not None:
            break                                              # every cell done already
        assert len(processes_marked(marker)) >= 2              # the driver and its helpers
        process.send_signal(how)
        process.wait()
        gone_by = time.monotonic() + 5
        while processes_marked(marker) and time.monotonic() < gone_by:
            time.sleep(0.1)
        assert not processes_marked(marker), (trial, processes_marked(marker))
        started |= set(BEGUN.findall(log.read_text()))
    assert started, "no trial got as far as a cell"
    recorded_before = set(records(tmp_path))
    log = tmp_path / "final.log"
    assert driver(tmp_path, log, "--jobs", "2", grid_text=PARALLEL_GRID).wait(timeout=600) == 0
    begun = BEGUN.findall(log.read_text())
    assert len(begun) == len(set(begun)) and not set(begun) & recorded_before
    check_complete(tmp_path, PARALLEL_CELLS)
