"""RunConfig (task, method, seed, args), argument resolution and the content-hash run_id.

`args` has five sections: `task`, `method`, `kan`, `train`, `measure`. Each key must exist in
that section's defaults (the task's, the method's, or the suite's below), keep its type and,
if numeric, lie in its declared `Range` (the task's, the method's, or the suite's below:
every numeric setting has one, a test checks). The fully resolved args are stored in every
record and hashed into the run_id. An optional arg defaults to None ("unset"): unset, it is
left out of the hash, so adding one to a plugin keeps the run_id of every earlier record.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from kanbench.methods.layers.spec import ACTIVATIONS, BASIS_NAMES, KANSpec
from kanbench.suite.errors import KanbenchError


@dataclass(frozen=True)
class Range:
    """Where a numeric setting may lie: low <= value <= high, an open end excluding its
    bound; floats must be finite. A list setting: every element, the list's length in
    [min_length, max_length], strictly increasing when `increasing`."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    min_length: int = 0
    max_length: float = math.inf
    increasing: bool = False
    integer: bool = False

    def __str__(self) -> str:
        low = f"{'(' if self.open_low or self.low == -math.inf else '['}{_number(self.low)}"
        high = f"{_number(self.high)}{')' if self.open_high or self.high == math.inf else ']'}"
        text = f"in {low}, {high}"
        if self.min_length == self.max_length:
            text = f"{self.min_length} values {text}"
        elif self.min_length:
            text = f"at least {self.min_length} value{'s' * (self.min_length > 1)} {text}"
        text = f"an integer {text}" if self.integer else text
        return f"{text}, increasing" if self.increasing else text

    def check(self, where: str, value: Any) -> None:
        values = value if isinstance(value, list) else [value]
        ok = (not isinstance(value, list) or self.min_length <= len(values) <= self.max_length) \
            and all(map(self.contains, values)) \
            and (not self.increasing or all(a < b for a, b in zip(values, values[1:],
                                                                  strict=False)))
        if not ok:
            raise KanbenchError(f"{where}: {value!r} is out of range (must be {self})")

    def contains(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if self.integer and not isinstance(v, int):
            return False
        above = v > self.low if self.open_low else v >= self.low
        below = v < self.high if self.open_high else v <= self.high
        return above and below


def _number(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


AT_LEAST_ONE = Range(1)                                   # counts, sizes, epochs
NON_NEGATIVE = Range(0)                                   # weight decays, "0 = all" counts
POSITIVE = Range(0, open_low=True)                        # learning rates
FRACTION = Range(0, 1, open_low=True, open_high=True)     # held-out fractions
SEED = Range(0, 2**32 - 1, integer=True)                  # numpy's and Lightning's seed range
INTERVAL = Range(min_length=2, max_length=2, increasing=True)   # [lo, hi] of a grid range

KAN_DEFAULTS = KANSpec().as_args()  # the layer library's KANSpec is their one source
# optimizer None: AdamW (decoupled weight decay); "adam": Adam with the weight decay added
# to the gradient (L2), as the MetaKAN authors' KAN baseline trains. scheduler "exponential"
# multiplies every learning rate by lr_gamma after each epoch (their ExponentialLR); init
# None: each layer's own initialization; "metakan_authors": the dense KAN layers drawn as
# their KAN baseline draws them (methods.layers.inits.init_as_metakan_authors).
TRAIN_DEFAULTS = {"max_epochs": 10, "batch_size": 128, "lr": 1e-3, "weight_decay": 1e-4,
                  "scheduler": "cosine", "gradient_clip": 0.0, "optimizer": None,
                  "lr_gamma": None, "init": None}
MEASURE_DEFAULTS = {"latency": True, "latency_batches": [1, 256], "memory": True}
KAN_RANGES = {"grid_size": AT_LEAST_ONE, "spline_order": NON_NEGATIVE, "grid_range": INTERVAL,
              "rbf_centers": AT_LEAST_ONE, "rbf_range": INTERVAL, "gram_degree": NON_NEGATIVE}
TRAIN_RANGES = {"max_epochs": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "lr": POSITIVE,
                "weight_decay": NON_NEGATIVE, "gradient_clip": NON_NEGATIVE,
                "lr_gamma": Range(0, 1, open_low=True)}
MEASURE_RANGES = {"latency_batches": Range(1, min_length=1)}
SECTIONS = ("task", "method", "kan", "train", "measure")
CHOICES = {"train.scheduler": ("cosine", "none", "exponential"),
           "train.optimizer": ("adamw", "adam"), "train.init": ("metakan_authors",),
           "kan.base_activation": tuple(ACTIVATIONS), "kan.basis": BASIS_NAMES}


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
        """The hash of the config less its unset optional args (those at None): adding an
        optional arg to a plugin keeps every earlier run_id, and its records stay valid."""
        config = asdict(self)
        config["args"] = {section: {k: v for k, v in args.items() if v is not None}
                          for section, args in self.args.items()}
        return content_hash(config)

    @property
    def label(self) -> str:
        return f"{self.task}-{self.method}-s{self.seed}"

    def to_dict(self) -> dict:
        return asdict(self)


def _coerce(where: str, default: Any, value: Any) -> Any:
    """Check `value` against the type of `default`; ints are accepted where floats are."""
    if value is None:
        return value
    if default is None:  # an optional setting: its choices, or a number where it has a range
        if where in CHOICES and value not in CHOICES[where]:
            raise KanbenchError(f"{where}: {value!r} is not one of {', '.join(CHOICES[where])}")
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


def merge(section: str, defaults: dict, given: dict, owner: str, ranges: dict) -> dict:
    """defaults updated by given; unknown keys, wrong types and values outside their range
    are KanbenchErrors."""
    if not isinstance(given, dict):
        raise KanbenchError(f"args section {section!r} must be a mapping, got {given!r}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        valid = ", ".join(sorted(defaults)) or "none"
        raise KanbenchError(f"unknown {section} arg {unknown[0]!r} for {owner}; valid: {valid}")
    out = {k: _coerce(f"{section}.{k}", defaults[k], given.get(k, defaults[k]))
           for k in defaults}
    for key, bounds in ranges.items():
        if key in out and out[key] is not None:  # None: an optional arg left unset
            bounds.check(f"{section}.{key}", out[key])
    return out


def plugin_args(section: str, plugin, given: dict, owner: str, defaults: dict | None = None
                ) -> dict:
    """A task's or method's args: its defaults (or `defaults`) updated by `given`, typed,
    range-checked and within its choices."""
    args = merge(section, plugin.defaults if defaults is None else defaults, given, owner,
                 plugin.ranges)
    for key, allowed in plugin.choices.items():
        if args[key] is not None and args[key] not in allowed:  # None: left unset
            raise KanbenchError(f"{section}.{key}: {args[key]!r} is not one of "
                                f"{', '.join(map(str, allowed))}")
    return args


def resolve(grid: str, task: str, method: str, seed: int, given: dict) -> RunConfig:
    """Fill every section from its defaults; `given` is {section: {key: value}}."""
    from kanbench.suite.registry import METHODS, TASKS

    for section in given:
        if section not in SECTIONS:
            raise KanbenchError(f"unknown arg section {section!r}; valid: {', '.join(SECTIONS)}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise KanbenchError(f"seed must be an integer, got {seed!r}")
    SEED.check("seed", seed)
    t, m = TASKS.create(task), METHODS.create(method)
    args = {
        "task": plugin_args("task", t, given.get("task", {}), f"task {task!r}"),
        "method": plugin_args("method", m, given.get("method", {}), f"method {method!r}",
                              {**m.defaults, **t.method_defaults.get(method, {})}),
        "kan": merge("kan", KAN_DEFAULTS, given.get("kan", {}), "the kan settings",
                     KAN_RANGES),
        "train": merge("train", {**TRAIN_DEFAULTS, **t.train_defaults},
                       given.get("train", {}), "the train settings", TRAIN_RANGES),
        "measure": merge("measure", MEASURE_DEFAULTS, given.get("measure", {}),
                         "the measure settings", MEASURE_RANGES),
    }
    t.check_args(args["task"])
    check_train(args["train"])
    return RunConfig(grid, task, method, seed, args)


def check_train(train: dict) -> None:
    """Train settings that pass their ranges but not together: an exponential schedule
    needs its lr_gamma, and an lr_gamma needs that schedule (else it would be ignored)."""
    exponential = train["scheduler"] == "exponential"
    if exponential and train["lr_gamma"] is None:
        raise KanbenchError("train.scheduler: 'exponential' needs train.lr_gamma (the factor "
                            "applied to the learning rate after each epoch, e.g. 0.7)")
    if not exponential and train["lr_gamma"] is not None:
        raise KanbenchError(f"train.lr_gamma: set, but train.scheduler is "
                            f"{train['scheduler']!r}; it applies only to 'exponential'")


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
