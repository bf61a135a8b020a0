"""RunConfig (task, method, seed, args), argument resolution and the content-hash run_id.

`args` has five sections: `task`, `method`, `kan`, `train`, `measure`. Each key must exist in
that section's defaults (the task's, the method's, or the suite's below) and keep its type.
The fully resolved args are stored in every record and hashed into the run_id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from suite.errors import KanbenchError

KAN_DEFAULTS = {"grid_size": 5, "spline_order": 3, "grid_range": [-1.0, 1.0],
                "base_activation": "silu", "spline_scaler": True, "basis": "bspline",
                "rbf_centers": 8, "rbf_range": [-2.0, 2.0], "gram_degree": 3}
TRAIN_DEFAULTS = {"max_epochs": 10, "batch_size": 128, "lr": 1e-3, "weight_decay": 1e-4,
                  "scheduler": "cosine", "gradient_clip": 0.0}
MEASURE_DEFAULTS = {"latency": True, "latency_batches": [1, 256], "memory": True}
SECTIONS = ("task", "method", "kan", "train", "measure")
CHOICES = {"train.scheduler": ("cosine", "none"),
           "kan.base_activation": ("silu", "gelu", "relu", "tanh", "identity"),
           "kan.basis": ("bspline", "rbf", "gram")}


def content_hash(obj: Any, length: int = 16) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class RunConfig:
    grid: str
    task: str
    method: str
    seed: int
    args: dict  # resolved: {section: {key: value}}

    @property
    def run_id(self) -> str:
        return content_hash(asdict(self))

    @property
    def label(self) -> str:
        return f"{self.task}-{self.method}-s{self.seed}"

    def to_dict(self) -> dict:
        return asdict(self)


def _coerce(where: str, default: Any, value: Any) -> Any:
    """Check `value` against the type of `default`; ints are accepted where floats are."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise KanbenchError(f"{where}: expected {type(default).__name__}, got {value!r}")
    if where in CHOICES and value not in CHOICES[where]:
        raise KanbenchError(f"{where}: {value!r} is not one of {', '.join(CHOICES[where])}")
    if isinstance(default, list) and default and all(isinstance(d, float) for d in default):
        value = [_coerce(f"{where}[{i}]", 0.0, v) for i, v in enumerate(value)]
    return value


def merge(section: str, defaults: dict, given: dict, owner: str) -> dict:
    """defaults updated by given; unknown keys and wrong types are KanbenchErrors."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        valid = ", ".join(sorted(defaults)) or "none"
        raise KanbenchError(f"unknown {section} arg {unknown[0]!r} for {owner}; valid: {valid}")
    return {k: _coerce(f"{section}.{k}", defaults[k], given.get(k, defaults[k]))
            for k in defaults}


def resolve(grid: str, task: str, method: str, seed: int, given: dict) -> RunConfig:
    """Fill every section from its defaults; `given` is {section: {key: value}}."""
    from suite.registry import METHODS, TASKS

    for section in given:
        if section not in SECTIONS:
            raise KanbenchError(f"unknown arg section {section!r}; valid: {', '.join(SECTIONS)}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise KanbenchError(f"seed must be an integer, got {seed!r}")
    t, m = TASKS.create(task), METHODS.create(method)
    args = {
        "task": merge("task", t.defaults, given.get("task", {}), f"task {task!r}"),
        "method": merge("method", {**m.defaults, **{k: v for k, v in t.method_defaults.items()
                                                    if k in m.defaults}},
                        given.get("method", {}), f"method {method!r}"),
        "kan": merge("kan", KAN_DEFAULTS, given.get("kan", {}), "the kan settings"),
        "train": merge("train", {**TRAIN_DEFAULTS, **t.train_defaults},
                       given.get("train", {}), "the train settings"),
        "measure": merge("measure", MEASURE_DEFAULTS, given.get("measure", {}),
                         "the measure settings"),
    }
    for key, allowed in m.choices.items():
        if args["method"][key] not in allowed:
            raise KanbenchError(f"method.{key}: {args['method'][key]!r} is not one of "
                                f"{', '.join(allowed)}")
    return RunConfig(grid, task, method, seed, args)


def parse_override(text: str) -> tuple[str, Any]:
    """`train.max_epochs=3` -> ("train.max_epochs", 3); values are YAML scalars or lists."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise KanbenchError(f"override {text!r} is not key=value")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        raise KanbenchError(f"override {text!r}: value is not valid YAML") from None
    return key.strip(), value


def set_dotted(args: dict, key: str, value: Any) -> None:
    """args["train"]["max_epochs"] = value for key "train.max_epochs"."""
    section, dot, name = key.partition(".")
    if not dot or not name:
        raise KanbenchError(f"override key {key!r} must be section.name, e.g. train.max_epochs")
    if section not in SECTIONS:
        raise KanbenchError(f"unknown arg section {section!r} in {key!r}; "
                            f"valid: {', '.join(SECTIONS)}")
    args.setdefault(section, {})[name] = value
