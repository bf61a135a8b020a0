"""The package arrows of docs/architecture.md, checked on every import of every module
(function-level imports included): errors <- layer library <- harness <- tasks, method plugins
<- scripts, and nothing the other way."""

import ast
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("suite", "tasks", "methods", "scripts")
# what a plugin may use of the harness: never the store, runner, reports or measurement
PLUGIN_API = {"suite.errors", "suite.config", "suite.interfaces", "suite.registry"}
TASK_API = PLUGIN_API | {"suite.lit", "suite.cache"}
LEVELS = {"errors": 0, "library": 1, "harness": 2, "task": 3, "plugin": 3, "script": 4}


def kind(module: str) -> str:
    if module == "suite.errors":
        return "errors"
    if module == "methods.layers" or module.startswith("methods.layers."):
        return "library"
    return {"suite": "harness", "tasks": "task", "methods": "plugin",
            "scripts": "script"}[module.split(".")[0]]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module of the repository's packages that `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from methods.layers import kernels` imports the submodule kernels
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if (REPO / Path(*node.module.split("."), alias.name)).exists()
                      or (REPO / Path(*node.module.split("."), f"{alias.name}.py")).exists()}
    return {m for m in found if m.split(".")[0] in PACKAGES}


def allowed(source: str, target: str) -> bool:
    a, b = kind(source), kind(target)
    if a == "plugin" and b == "harness":
        return target in PLUGIN_API
    if a == "task" and b == "harness":
        return target in TASK_API
    if {a, b} == {"task", "plugin"}:
        return False
    return a == b or LEVELS[b] < LEVELS[a]


MODULES = sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_import_runs_down_the_layers(path):
    source = module_name(path)
    upward = sorted(t for t in imports(path) if not allowed(source, t))
    assert not upward, f"{source} ({kind(source)}) imports {upward}"


def test_the_check_sees_an_upward_arrow():
    assert not allowed("methods.layers.codebook", "suite.measure")
    assert not allowed("suite.measure", "methods.share")
    assert not allowed("methods.share", "suite.store")
    assert not allowed("tasks.images", "methods.dense")
    assert allowed("suite.measure", "methods.layers.kernels")
    assert allowed("tasks.images", "methods.layers.architectures")
    assert "methods.layers.kernels" in imports(REPO / "suite" / "measure.py")


def test_no_file_cites_anything_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    outside = ("DESIGN" + ".md", "../" + "shared")  # split, so this file does not cite them
    citing = [name for name in tracked if (REPO / name).is_file()
              and any(word in (REPO / name).read_text(errors="replace") for word in outside)]
    assert citing == []
