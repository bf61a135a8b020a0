"""The `kanbench` console command: help, config (resolved cells, methods+=, --sweep), run,
compress, the progress bar, and Ctrl-C's one line that says how to resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import save_file

from kanbench.cli import main as kanbench
from kanbench.suite import grid
from kanbench.suite.store import ResultsStore
from tests.conftest import REPO
from tests.methods.layers.test_convert import efficient_kan

CONSOLE = Path(sys.executable).parent / "kanbench"


def console(*args, cwd=REPO, timeout=300):
    return subprocess.run([str(CONSOLE), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_the_console_command_answers_help_with_every_command():
    done = console("--help")
    assert done.returncode == 0, done.stderr
    for command in ("run", "config", "report", "compress"):
        assert command in done.stdout
    for command in ("run", "config", "report", "compress"):
        assert console(command, "--help").returncode == 0
    done = console("frobnicate")
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_config_prints_every_resolved_cell_as_yaml(capsys):
    assert kanbench(["config", "quick"]) == 0
    cells = yaml.safe_load(capsys.readouterr().out)
    assert len(cells) == len(grid.cells("quick"))
    assert len({c["name"] for c in cells}) == len(cells)
    assert {"run_id", "name", "task", "method", "seed", "args"} <= set(cells[0])


def test_methods_can_be_added_and_settings_swept_from_the_command_line(capsys):
    base = ["config", "smoke", "tasks=[digits]", "methods=[dense]"]
    assert kanbench([*base]) == 0
    assert [c["method"] for c in yaml.safe_load(capsys.readouterr().out)] == ["dense"]
    assert kanbench(["config", "smoke", "tasks=[digits]", "methods=[metacluster]",
                     "--sweep", "method.codebook_size=[4, 8]", "--sweep",
                     "train.lr=[0.1,0.01]"]) == 0
    cells = yaml.safe_load(capsys.readouterr().out)
    assert sorted((c["args"]["method"]["codebook_size"], c["args"]["train"]["lr"])
                  for c in cells) == [(4, 0.01), (4, 0.1), (8, 0.01), (8, 0.1)]
    doc = REPO / "suite" / "grids" / "smoke.yaml"
    assert doc.exists()
    plain = {c.method for c in grid.cells("smoke", ["tasks=[digits]"])}
    added = {c.method for c in grid.cells("smoke", ["tasks=[digits]", "methods+=[dense_kmeans]"])}
    assert "dense_kmeans" in added and plain <= added


def test_run_runs_every_swept_value(tmp_path, capsys):
    argv = ["run", "smoke", "tasks=[feynman]", "methods=[prune]", "--sweep",
            "method.sparsity=[0.3, 0.9]", "--results", str(tmp_path), "--cache",
            str(tmp_path / "c"), "--wandb", "off", "--no-reports", "measure.memory=false",
            "measure.latency=false", "method.finetune_epochs=0"]
    assert kanbench(["run", *argv[1:], "--dry-run"]) == 0
    assert "2 cells, 0 already recorded, 2 to run" in capsys.readouterr().out
    assert kanbench(argv) == 0
    records = ResultsStore(tmp_path).records("smoke")
    assert sorted(r["config"]["args"]["method"]["sparsity"] for r in records) == [0.3, 0.9]


def test_bad_command_lines_are_one_line(capsys):
    for argv, message in (
            (["config", "smoke", "methods+=[nope]"], "unknown method 'nope'"),
            (["config", "smoke", "--sweep", "train.lr=0.1"], "give the values as a list"),
            (["config", "smoke", "tasks=[digits]", "--sweep", "method.nope=[1,2]"],
             "applies to no cell"),
            (["config", "nogrid"], "unknown grid 'nogrid'")):
        with pytest.raises(SystemExit) as stopped:
            kanbench(argv)
        assert stopped.value.code == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)


def test_compress_writes_a_compressed_file_from_an_efficient_kan_state_dict(tmp_path):
    save_file(efficient_kan([64, 8, 10]).state_dict(), tmp_path / "model.safetensors")
    done = console("compress", str(tmp_path / "model.safetensors"), "share_int8",
                   "codebook_size=16", "--out", str(tmp_path / "small.safetensors"),
                   "--task", "digits")
    assert done.returncode == 0, done.stderr
    assert "small.safetensors: KAN layers" in done.stdout and "digits accuracy" in done.stdout
    assert (tmp_path / "small.safetensors").stat().st_size > 0
    moved = efficient_kan([4, 2]).state_dict()
    moved["layers.0.grid"][:, 3] += 0.1
    save_file(moved, tmp_path / "moved.safetensors")
    done = console("compress", str(tmp_path / "moved.safetensors"), "share_int8", "--out",
                   str(tmp_path / "x.safetensors"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "not uniform" in done.stderr


def test_the_progress_bar_draws_when_asked_and_lines_stay_in_logs(tmp_path, capsys):
    argv = ["run", "smoke", "tasks=[feynman]", "methods=[dense]", "--results", str(tmp_path),
            "--cache", str(tmp_path / "c"), "--wandb", "off", "--no-reports",
            "measure.memory=false", "measure.latency=false"]
    assert kanbench([*argv, "--progress", "bar"]) == 0
    out = capsys.readouterr()
    assert "100%|" in out.out + out.err and "[1/1] feynman-dense-s0 done" in out.out
    assert kanbench([*argv, "seeds=[1]"]) == 0        # not a terminal: lines only
    out = capsys.readouterr().out
    assert "[1/1] feynman-dense-s1 done" in out and "%|" not in out


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_says_what_finished_and_that_the_same_command_resumes(jobs, tmp_path):
    argv = ["run", "smoke", "tasks=[feynman]", "methods=[dense,metakan]", "seeds=[0,1,2]",
            "--jobs", jobs,
            "--results", str(tmp_path), "--cache", str(tmp_path / "c"), "--wandb", "off",
            "--no-reports", "measure.memory=false", "measure.latency=false"]
    driver = subprocess.Popen([str(CONSOLE), *argv], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    line = ""
    while " done in " not in line and time.time() < deadline:
        line = driver.stdout.readline()
    os.killpg(driver.pid, signal.SIGINT)     # what a terminal's Ctrl-C sends
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err
    finished = len(ResultsStore(tmp_path).records("smoke"))
    assert 1 <= finished < 6
    assert err.strip().splitlines()[-1] == (
        f"interrupted: {finished} of 6 cells of grid smoke are recorded ({finished} by this "
        "run); rerun the same command to resume")
    done = console(*argv)
    assert done.returncode == 0, done.stderr
    assert f"{finished} already recorded, {6 - finished} to run" in done.stdout
    assert len(ResultsStore(tmp_path).records("smoke")) == 6
