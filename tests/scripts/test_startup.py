"""`--help` of every command-line script imports none of the heavy libraries (torch,
Lightning, pandas, matplotlib, W&B, the plugins, the layer library but KANSpec): the CLI
answers at once. Its time is measured by scripts/bench_startup.py, never asserted here."""

import subprocess
import sys

import pytest

from scripts.bench_startup import SCRIPTS
from tests.conftest import REPO

HEAVY = ("torch", "lightning", "pandas", "matplotlib", "wandb", "sklearn")
# no task; of the methods only KANSpec's module, which the config reads and imports no torch
LIGHT = ("kanbench.methods", "kanbench.methods.layers", "kanbench.methods.layers.spec")

# prints the heavy libraries and plugins that `{call}` imported (nothing when none)
PROBE = """
import contextlib, io, runpy, sys
{setup}
with contextlib.redirect_stdout(io.StringIO()):
    try:
        {call}
    except SystemExit:
        pass
heavy = {{m.split(".")[0] for m in sys.modules}} & set({heavy!r})
plugins = {{m for m in sys.modules
            if m.startswith(("kanbench.tasks", "kanbench.methods"))}} - set({light!r})
print(" ".join(sorted(heavy | plugins)))
"""


@pytest.mark.parametrize("script", (*SCRIPTS, "bench_startup"))
def test_help_imports_no_heavy_library(script):
    path = str(REPO / "scripts" / f"{script}.py")
    probe = PROBE.format(setup=f"sys.argv = [{script!r}, '--help']",
                         call=f"runpy.run_path({path!r}, run_name='__main__')", heavy=HEAVY,
                         light=LIGHT)
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{script} --help imports {done.stdout.strip()}"



@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["compress", "--help"]])
def test_kanbench_help_imports_no_heavy_library(argv):
    probe = PROBE.format(setup="from kanbench.cli import main", call=f"main({argv!r})",
                         heavy=HEAVY, light=LIGHT)
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"kanbench {' '.join(argv)} imports {done.stdout.strip()}"
