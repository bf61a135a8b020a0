"""Grid YAML -> cells (RunConfigs).

A grid file:

    description: what the grid is for
    seeds: [0, 1, 2]              # default for every block
    methods: [dense]              # default for every block; `all`: every registered method
    args: {train: {max_epochs: 5}}   # default args for every cell, by section
    blocks:                       # each block is a product tasks x methods x sweep x seeds
      - tasks: [feynman]
        sweep: {task.equation: [I.6.20b, I.9.18]}
        args: {train: {max_epochs: 200}}
      - tasks: all                # every registered task...
        preset: smoke             # ...each with its own `smoke` args (Task.presets)

`method` args (in the file or on the command line) apply to the cells whose method has that
arg, so one grid can tune several methods; each must apply somewhere.
Command-line overrides: `section.key=value` sets an arg (task./method. keys apply to the
cells whose task/method has that key), `tasks=[...]`/`methods=[...]` keep only those cells,
`seeds=[...]` replaces the seeds, `methods+=[...]` adds methods to every block. A sweep from
the command line (`section.key=[a, b]`, kanbench's --sweep) joins every block's sweep.
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path
from typing import Any

import yaml

from kanbench.suite.config import SECTIONS, RunConfig, parse_override, resolve, set_dotted
from kanbench.suite.errors import KanbenchError, regular_file
from kanbench.suite.registry import METHODS, TASKS

GRIDS_DIR = Path(__file__).parent / "grids"
TOP_KEYS = {"description", "seeds", "methods", "args", "blocks", "resources"}
# what each cell asks of a Ray or Slurm executor (never part of a run_id)
RESOURCES = {"cpus_per_cell": 1, "gpus_per_cell": 0, "mem_gb": 8, "partition": "",
             "time_minutes": 60, "array_parallelism": 64}
BLOCK_KEYS = {"tasks", "methods", "seeds", "args", "sweep", "preset"}
FILTERS = ("tasks", "methods", "seeds")
MAX_GRID_BYTES = 1 << 20
ALL = "all"          # `tasks: all`, `methods: all`: every registered one
MAX_CELLS = 10_000   # a grid expanding to more cells needs --max-cells


def presets() -> list[str]:
    return sorted(p.stem for p in GRIDS_DIR.glob("*.yaml"))


def grid_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise KanbenchError(f"grid file {name} does not exist")
        return path
    if name not in presets():
        raise KanbenchError(f"unknown grid {name!r}; presets: {', '.join(presets())} "
                            "(or give a path to a .yaml file)")
    return GRIDS_DIR / f"{name}.yaml"


def load(name: str) -> tuple[Path, dict]:
    """(grid file, parsed document), validated for shape. Only a regular file of at most
    MAX_GRID_BYTES of UTF-8 YAML without aliases is read (an alias can refer to itself or
    multiply a document past any memory)."""
    path = grid_path(name)
    regular_file(path)
    if path.stat().st_size > MAX_GRID_BYTES:
        raise KanbenchError(f"{path}: {path.stat().st_size} bytes; a grid file holds at most "
                            f"{MAX_GRID_BYTES}")
    try:
        text = path.read_bytes().decode("utf-8")
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text)):
            raise KanbenchError(f"{path}: YAML aliases (*name) are not allowed in a grid file; "
                                "write the values out")
        doc = yaml.safe_load(text)
    except UnicodeDecodeError as err:
        raise KanbenchError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise KanbenchError(f"{path}: cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise KanbenchError(f"{path}: not valid YAML{where} ({getattr(err, 'problem', err)})") \
            from None
    _check_shape(path, doc)
    return path, doc


def _list_of(path: Path, where: str, value: Any, kind: type) -> list:
    if not isinstance(value, list) or not value or \
            not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise KanbenchError(f"{path}: {where} must be a non-empty list of {kind.__name__}, "
                            f"got {value!r}")
    return value


def _check_shape(path: Path, doc: Any) -> None:
    if not isinstance(doc, dict):
        raise KanbenchError(f"{path}: a grid must be a mapping with keys {sorted(TOP_KEYS)}")
    for key in sorted(set(doc) - TOP_KEYS):
        raise KanbenchError(f"{path}: unknown key {key!r}; valid: {', '.join(sorted(TOP_KEYS))}")
    blocks = doc.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise KanbenchError(f"{path}: 'blocks' must be a non-empty list")
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict):
            raise KanbenchError(f"{path}: {where} must be a mapping")
        for key in sorted(set(block) - BLOCK_KEYS):
            raise KanbenchError(f"{path}: {where}: unknown key {key!r}; "
                                f"valid: {', '.join(sorted(BLOCK_KEYS))}")
        if block.get("tasks") != ALL:
            _list_of(path, f"{where}.tasks", block.get("tasks"), str)
        if not isinstance(block.get("preset", ""), str):
            raise KanbenchError(f"{path}: {where}.preset must be a preset's name")
        methods = block.get("methods", doc.get("methods"))
        if methods != ALL:
            _list_of(path, f"{where}.methods", methods, str)
        _list_of(path, f"{where}.seeds", block.get("seeds", doc.get("seeds")), int)
        for key in ("args", "sweep"):
            if not isinstance(block.get(key) or {}, dict):
                raise KanbenchError(f"{path}: {where}.{key} must be a mapping")
        for name, values in (block.get("sweep") or {}).items():
            if not isinstance(name, str) or name.partition(".")[0] not in SECTIONS:
                raise KanbenchError(f"{path}: {where}.sweep: sweep key {name!r} must be "
                                    f"section.name with a section of {', '.join(SECTIONS)}")
            if not isinstance(values, list) or not values:
                raise KanbenchError(f"{path}: {where}.sweep: sweep key {name} must map to a "
                                    "non-empty list")
        _check_sections(path, f"{where}.args", block.get("args") or {})
    if not isinstance(doc.get("args") or {}, dict):
        raise KanbenchError(f"{path}: 'args' must be a mapping of sections")
    _check_sections(path, "args", doc.get("args") or {})
    resources = doc.get("resources", {})
    if not isinstance(resources, dict):
        raise KanbenchError(f"{path}: 'resources' must be a mapping")
    for key, value in resources.items():
        if key not in RESOURCES:
            raise KanbenchError(f"{path}: resources: unknown key {key!r}; "
                                f"valid: {', '.join(sorted(RESOURCES))}")
        kind, minimum = type(RESOURCES[key]), 0 if key == "gpus_per_cell" else 1
        if not isinstance(value, kind) or isinstance(value, bool) or \
                (kind is int and value < minimum):
            wanted = f"an int >= {minimum}" if kind is int else "a string"
            raise KanbenchError(f"{path}: resources.{key} must be {wanted}, got {value!r}")


def _check_sections(path: Path, where: str, args: dict) -> None:
    for section, values in args.items():
        if section not in SECTIONS:
            raise KanbenchError(f"{path}: {where}: unknown section {section!r}; valid: "
                                f"{', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise KanbenchError(f"{path}: {where}.{section} must be a mapping of settings, "
                                f"got {values!r}")


def resources(doc: dict) -> dict:
    """A loaded grid's `resources`, over the defaults."""
    return {**RESOURCES, **doc.get("resources", {})}


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for section, values in extra.items():   # both checked by _check_shape
        out.setdefault(section, {}).update(values)
    return out


def cells(name: str, overrides: list[str] = (), max_cells: int = MAX_CELLS
          ) -> list[RunConfig]:
    """Every cell of grid `name` (a preset or a file) with overrides applied."""
    return expand(*load(name), overrides, max_cells)


def expand(path: Path, doc: dict, overrides: list[str] = (), max_cells: int = MAX_CELLS,
           sweeps: list[str] = ()) -> list[RunConfig]:
    """Every cell of a loaded grid with overrides (and command-line sweeps) applied, resolved
    and de-duplicated; a grid of more than `max_cells` cells (counted before expanding) is
    refused."""
    grid = path.stem
    filters, sets, added = {}, [], []
    for text in overrides:
        key, value = parse_override(text)
        if key == "methods+":
            values = value if isinstance(value, list) else [value]
            added += _list_of(Path("override"), "methods+", values, str)
        elif key in FILTERS:
            kind = int if key == "seeds" else str
            values = value if isinstance(value, list) else [value]
            filters[key] = _list_of(Path("override"), key, values, kind)
        else:
            set_dotted({}, key, value)  # validates the key's shape
            sets.append((key, value))
    for name_ in filters.get("tasks", []):
        TASKS.check(name_)
    for name_ in [*filters.get("methods", []), *added]:
        METHODS.check(name_)
    doc = _with_methods(doc, added)
    swept = _command_sweep(sweeps)

    count = sum(len(_kept_pairs(block, doc, filters)) * len(_seeds(block, doc, filters))
                * math.prod(len(v) for v in {**(block.get("sweep") or {}), **swept}.values())
                for block in doc["blocks"])
    if count > max_cells:
        raise KanbenchError(f"{path}: the grid expands to {count:,} cells, more than the limit of "
                            f"{max_cells:,}; pass --max-cells {count} to run it anyway")
    out: dict[str, RunConfig] = {}
    used = {key: False for key in [*(k for k, _ in sets), *swept]}
    for block in doc["blocks"]:
        methods = _methods(block, doc)
        seeds = _seeds(block, doc, filters)
        sweep = {**(block.get("sweep") or {}), **swept}
        base = _merge(doc.get("args") or {}, block.get("args") or {})
        preset = block.get("preset")
        if preset and not any(preset in TASKS.create(t).presets for t in TASKS.names()):
            raise KanbenchError(f"{path}: no task has a preset {preset!r} (a task without the "
                                "block's preset runs at its defaults)")
        for key in base.get("method", {}):
            if not any(_applies(f"method.{key}", "", m) for m in methods):
                raise KanbenchError(f"{path}: arg method.{key} applies to none of the methods "
                                    f"{methods}")
        for task, method in _kept_pairs(block, doc, filters):
            task_args = TASKS.create(task).presets.get(preset, {}) if preset else {}
            for combo in itertools.product(*sweep.values()):
                given = _merge(_merge(doc.get("args") or {}, task_args),
                               block.get("args") or {})
                for key, value in zip(sweep, combo, strict=True):
                    set_dotted(given, key, value)
                    if key in swept and _applies(key, task, method):
                        used[key] = True
                for key, value in sets:
                    if _applies(key, task, method):
                        set_dotted(given, key, value)
                        used[key] = True
                for key in list(given.get("method", {})):
                    if not _applies(f"method.{key}", task, method):
                        del given["method"][key]
                for seed in seeds:
                    try:
                        cfg = resolve(grid, task, method, seed, given)
                    except KanbenchError as err:
                        raise KanbenchError(f"{path} ({task}, {method}, seed {seed}): "
                                            f"{err}") from None
                    out.setdefault(cfg.run_id, cfg)
    unused = [key for key, hit in used.items() if not hit]
    if unused:
        raise KanbenchError(f"arg {unused[0]!r} applies to no cell of grid {grid!r}")
    if not out:
        raise KanbenchError(f"grid {grid!r} has no cells left after the filters {filters}")
    return list(out.values())


def _with_methods(doc: dict, added: list[str]) -> dict:
    """The grid with `added` methods in every block (`methods+=[...]`)."""
    if not added:
        return doc
    doc = copy.deepcopy(doc)
    for block in doc["blocks"]:
        methods = _methods(block, doc)
        block["methods"] = methods + [m for m in added if m not in methods]
    return doc


def _command_sweep(sweeps: list[str]) -> dict[str, list]:
    """--sweep 'section.key=[a, b]' -> {"section.key": [a, b]}."""
    out = {}
    for text in sweeps:
        key, values = parse_override(text)
        set_dotted({}, key, values)  # validates the key's shape
        if not isinstance(values, list) or not values:
            raise KanbenchError(f"--sweep {text!r}: give the values as a list, e.g. "
                                f"'{key}=[1, 2]'")
        out[key] = values
    return out


def _kept_pairs(block: dict, doc: dict, filters: dict) -> list[tuple[str, str]]:
    """The block's (task, method) pairs that the command line's filters keep."""
    tasks = TASKS.names() if block["tasks"] == ALL else block["tasks"]
    return [(t, m) for t, m in itertools.product(tasks, _methods(block, doc))
            if t in filters.get("tasks", [t]) and m in filters.get("methods", [m])]


def _methods(block: dict, doc: dict) -> list[str]:
    methods = block.get("methods", doc.get("methods"))
    return METHODS.names() if methods == ALL else methods


def _seeds(block: dict, doc: dict, filters: dict) -> list[int]:
    return filters.get("seeds", block.get("seeds", doc.get("seeds")))


def _applies(key: str, task: str, method: str) -> bool:
    """task.* and method.* overrides go to cells whose task/method has that arg."""
    section, _, name = key.partition(".")
    if section == "task":
        return name in TASKS.create(task).defaults
    if section == "method":
        return name in METHODS.create(method).defaults
    return True
