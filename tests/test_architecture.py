"""The package arrows of docs/architecture.md, checked on every import of every module
(function-level imports included): errors <- layer library <- harness <- tasks, method plugins
<- the public API (the kanbench package's own modules) and scripts, and nothing the other way.
The folders suite/, tasks/ and methods/ are the subpackages kanbench.suite, .tasks, .methods."""

import ast
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# folder -> the package its modules are imported as
PACKAGES = {"suite": "kanbench.suite", "tasks": "kanbench.tasks", "methods": "kanbench.methods",
            "kanbench": "kanbench", "scripts": "scripts"}
# what a plugin may use of the harness: never the store, runner, reports or measurement
PLUGIN_API = {f"kanbench.suite.{m}" for m in ("errors", "config", "interfaces", "registry")}
TASK_API = PLUGIN_API | {"kanbench.suite.lit", "kanbench.suite.cache"}
LEVELS = {"errors": 0, "library": 1, "harness": 2, "task": 3, "plugin": 3, "api": 4,
          "script": 5}


def kind(module: str) -> str:
    if module == "kanbench.suite.errors":
        return "errors"
    if module == "kanbench.methods.layers" or module.startswith("kanbench.methods.layers."):
        return "library"
    if module.split(".")[0] == "scripts":
        return "script"
    return {"suite": "harness", "tasks": "task", "methods": "plugin"}.get(
        module.split(".")[1] if "." in module else "", "api")


def module_name(path: Path) -> str:
    folder, *parts = path.relative_to(REPO).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join([PACKAGES[folder], *parts])


def module_file(module: str) -> Path:
    """Where `module` (one of the repository's) lives, without the .py."""
    for folder, package in sorted(PACKAGES.items(), key=lambda item: -len(item[1])):
        if module == package or module.startswith(package + "."):
            return REPO / folder / Path(*module[len(package):].split(".")[1:])
    raise ValueError(module)


def imports(path: Path) -> set[str]:
    """Every module of the repository's packages that `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from kanbench.methods.layers import kernels` imports the submodule kernels
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if ours(node.module) and (
                          (module_file(node.module) / alias.name).exists()
                          or (module_file(node.module) / f"{alias.name}.py").exists())}
    return {m for m in found if ours(m)}


def ours(module: str) -> bool:
    return module.split(".")[0] in ("kanbench", "scripts")


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
    k = "kanbench."
    assert not allowed(k + "methods.layers.codebook", k + "suite.measure")
    assert not allowed(k + "suite.measure", k + "methods.share")
    assert not allowed(k + "methods.share", k + "suite.store")
    assert not allowed(k + "tasks.images", k + "methods.dense")
    assert not allowed(k + "suite.runner", "kanbench.api")
    assert allowed(k + "suite.measure", k + "methods.layers.kernels")
    assert allowed(k + "tasks.images", k + "methods.layers.architectures")
    assert allowed("kanbench.api", k + "suite.runner")
    assert k + "methods.layers.kernels" in imports(REPO / "suite" / "measure.py")


def test_no_file_cites_anything_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    outside = ("DESIGN" + ".md", "../" + "shared")  # split, so this file does not cite them
    citing = [name for name in tracked if (REPO / name).is_file()
              and any(word in (REPO / name).read_text(errors="replace") for word in outside)]
    assert citing == []
