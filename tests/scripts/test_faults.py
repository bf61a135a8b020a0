"""A grid that loses nothing: drivers killed with SIGKILL or SIGTERM at random moments, serial
and `--jobs 2`, and two drivers at once on one results directory. Evidence comes from the
drivers' own logs (which cells each began), the processes left alive, the store, and the W&B
offline runs."""

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
CELLS = 16
SEEDS_FOR = {"sigkill": 40, "sigterm": 12}  # cells to spare: a trial records one to three
# (more where cells are fast: a trial must never find the grid done and go unkilled)


def kill_grid(seeds: int) -> str:
    return GRID.replace("[0, 1, 2, 3, 4, 5, 6, 7]", str(list(range(seeds))))


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


def record_bytes(tmp_path) -> dict[str, bytes]:
    runs = tmp_path / "results" / "runs" / "faults"
    return {p.stem: p.read_bytes() for p in runs.glob("*.json")} if runs.exists() else {}


def assert_untouched(tmp_path, written: dict[str, bytes]):
    """Records written before stay byte for byte as they were: none is rewritten."""
    now = record_bytes(tmp_path)
    assert {run_id: now.get(run_id) for run_id in written} == written


def check_complete(tmp_path, cells: int):
    done = records(tmp_path)
    assert len(done) == cells
    runs = tmp_path / "results" / "runs" / "faults"
    assert not [p.name for p in runs.iterdir()  # no half-written record left behind
                if p.suffix != ".json" and not p.name.startswith(".")]
    for run_id, record in done.items():  # whole records only
        assert record["run_id"] == run_id and record["status"] == "done", record.get("error")
        assert record["storage"]["kan_bytes"] > 0 and record["finished_at"]
    assert set(wandb_runs(tmp_path)) == set(done)  # one W&B id per cell, its run_id


def kill_when(process, log, how, pattern, events: int, delay: float) -> bool:
    """Send `how` to the driver `delay` s after its log shows `events` matches of `pattern`
    (0 means at once). False when the driver finished first."""
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if len(pattern.findall(log.read_text())) >= events:
            time.sleep(delay)
            break
        time.sleep(0.05)
    if process.poll() is not None:
        assert process.returncode == 0, log.read_text()[-2000:]
        return False
    process.send_signal(how)
    process.wait()
    return True


def check_nothing_left(marker: str, trial: int) -> float:
    """Within 5 s of its driver's death, no process that driver started is alive; returns
    the seconds the last of them took to go."""
    start = time.monotonic()
    while processes_marked(marker) and time.monotonic() < start + 5:
        time.sleep(0.05)
    assert not processes_marked(marker), (trial, processes_marked(marker))
    return time.monotonic() - start


def test_sigkilled_drivers_lose_and_repeat_nothing(tmp_path):
    """SIGKILL lands at random moments: a serial driver's 0-2 s after its k-th cell event (a
    cell begun or recorded, k in 0..3: start-up, training, measuring, record writes), every
    other driver a --jobs 2 one 0.5-2 s after its two workers began training. No driver
    begins a cell already recorded, none leaves a process alive, and a last run records every
    cell exactly once, with one W&B run each."""
    rng, trials, grid = random.Random(0), 20, kill_grid(SEEDS_FOR["sigkill"])
    finished, killed, lingered = set(), {"serial": 0, "--jobs 2": 0}, 0.0
    written: dict[str, bytes] = {}
    start = time.monotonic()
    for trial in range(trials):
        log, marker = tmp_path / f"trial{trial}.log", f"sigkill-{trial}-{os.getpid()}"
        kind = "--jobs 2" if trial % 2 else "serial"
        if kind == "serial":
            process = driver(tmp_path, log, marker=marker, grid_text=grid)
            when = (EVENT, rng.randint(0, 3), rng.uniform(0.0, 2.0))
        else:
            process = driver(tmp_path, log, "--jobs", "2", marker=marker, grid_text=grid)
            when = (BEGUN, 2, rng.uniform(0.5, 2.0))
        killed[kind] += kill_when(process, log, signal.SIGKILL, *when)
        lingered = max(lingered, check_nothing_left(marker, trial))
        begun = set(BEGUN.findall(log.read_text()))
        assert not begun & finished, f"trial {trial} began cells already recorded"
        assert_untouched(tmp_path, written)
        finished |= {run_id for run_id, r in records(tmp_path).items() if r["status"] == "done"}
        written = record_bytes(tmp_path)
    seconds = time.monotonic() - start
    cells = 2 * SEEDS_FOR["sigkill"]
    print(f"\n{trials} trials, drivers killed with SIGKILL: {killed}, {len(finished)} of "
          f"{cells} cells recorded before the final run, the last process gone "
          f"{lingered:.2f} s after its driver at most, {seconds:.0f} s")
    assert killed == {"serial": trials // 2, "--jobs 2": trials // 2}
    log = tmp_path / "final.log"
    assert driver(tmp_path, log, grid_text=grid).wait(timeout=600) == 0, \
        log.read_text()[-2000:]
    assert not set(BEGUN.findall(log.read_text())) & finished
    assert_untouched(tmp_path, written)
    check_complete(tmp_path, cells)
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


# A cell per kind of fit: (its run_grid arguments, needs the data files). Each trains for
# seconds, not tenths, so that the kill 0.3 s after its first checkpoint lands mid-training
# on a fast machine too (30 Feynman epochs once finished inside those 0.3 s).
RESUMED_CELLS = {
    "feynman": (["tasks=[feynman]", "methods=[dense,metakan]", "task.n_train=512",
                 "train.max_epochs=300"], False),
    "fashion_sized": (["tasks=[mnist]", "methods=[dense]", "task.widths=[784,64,10]",
                       "task.n_train=0", "train.max_epochs=30", "train.batch_size=16"], True),
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
    time.sleep(0.05)                              # into the next epoch, not past the last
    os.killpg(process.pid, signal.SIGKILL)                    # the driver and any worker
    process.wait()
    assert run_cell_grid(resumed, argv, data).wait(timeout=600) == 0
    expected, got = smoke_records(straight), smoke_records(resumed)
    assert sorted(got) == sorted(expected)
    assert any(r["timing"]["train"]["resumed_epochs"] > 0 for r in got.values())
    for run_id, record in got.items():
        assert record["metrics"] == expected[run_id]["metrics"], run_id


def test_sigtermed_parallel_drivers_leave_no_process_and_lose_no_cell(tmp_path):
    """--jobs 2 drivers sent SIGTERM while their workers train: within 5 s nothing they
    started is alive (workers, forkserver, W&B helpers), and a rerun records every cell
    exactly once. (SIGKILLed --jobs 2 drivers: half the trials above.)"""
    rng, trials, grid = random.Random(15), 10, kill_grid(SEEDS_FOR["sigterm"])
    started, killed = set(), 0
    for trial in range(trials):
        log, marker = tmp_path / f"trial{trial}.log", f"sigterm-{trial}-{os.getpid()}"
        process = driver(tmp_path, log, "--jobs", "2", marker=marker, grid_text=grid)
        killed += kill_when(process, log, signal.SIGTERM, BEGUN, 2, rng.uniform(0.5, 2.0))
        check_nothing_left(marker, trial)
        started |= set(BEGUN.findall(log.read_text()))
    recorded_before = set(records(tmp_path))
    print(f"\n{trials} trials, drivers killed with SIGTERM: {killed}, {len(recorded_before)} of "
          f"{2 * SEEDS_FOR['sigterm']} cells recorded before the final run")
    assert killed == trials and started
    log = tmp_path / "final.log"
    assert driver(tmp_path, log, "--jobs", "2", grid_text=grid).wait(timeout=600) == 0
    begun = BEGUN.findall(log.read_text())
    assert len(begun) == len(set(begun)) and not set(begun) & recorded_before
    check_complete(tmp_path, 2 * SEEDS_FOR["sigterm"])
