"""A checkout's scripts import that checkout's kanbench, not the one the venv was installed
from; and `kanbench` is the only top-level name the distribution installs."""

import shutil
import subprocess
import sys

import tomllib

from tests.conftest import REPO

PROBE = """
import contextlib, io, runpy, sys
sys.argv = ["run_grid.py", "--help"]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        runpy.run_path({script!r}, run_name="__main__")
    except SystemExit:
        pass
print(sys.modules["kanbench"].__file__)
print(sys.modules["kanbench.suite.grid"].__file__)
"""


def test_a_copied_checkout_s_script_imports_the_copy(tmp_path):
    for folder in ("kanbench", "suite", "tasks", "methods", "scripts"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    script = str(tmp_path / "scripts" / "run_grid.py")
    done = subprocess.run([sys.executable, "-c", PROBE.format(script=script)], cwd=tmp_path.parent,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    package, grid = done.stdout.split()
    assert package == str(tmp_path / "kanbench" / "__init__.py")
    assert grid == str(tmp_path / "suite" / "grid.py")


def test_the_distribution_installs_one_top_level_name():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {p.split(".")[0] for p in config["packages"]} == {"kanbench"}
    assert set(config["package-dir"]) == {"kanbench", "kanbench.suite", "kanbench.tasks",
                                          "kanbench.methods"}
