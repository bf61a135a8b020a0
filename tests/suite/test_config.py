import pytest

from kanbench.suite.config import KAN_DEFAULTS, Range, parse_override, resolve, set_dotted
from kanbench.suite.errors import KanbenchError


def test_resolve_fills_every_section_and_hash_is_stable():
    cfg = resolve("g", "digits", "dense", 0, {"train": {"max_epochs": 3}})
    assert cfg.args["train"]["max_epochs"] == 3
    assert cfg.args["kan"] == KAN_DEFAULTS
    assert cfg.args["task"]["widths"] == [64, 32, 10]
    assert cfg.run_id == resolve("g", "digits", "dense", 0, {"train": {"max_epochs": 3}}).run_id
    assert cfg.run_id != resolve("g", "digits", "dense", 1, {"train": {"max_epochs": 3}}).run_id
    assert cfg.run_id != resolve("g", "digits", "dense", 0, {}).run_id


def test_ints_are_accepted_for_floats():
    cfg = resolve("g", "digits", "dense", 0, {"train": {"lr": 1}, "kan": {"grid_range": [-2, 2]}})
    assert cfg.args["train"]["lr"] == 1.0 and isinstance(cfg.args["train"]["lr"], float)
    # YAML reads 1e-3 without a dot as a string; float args accept it
    _, value = parse_override("train.lr=1e-3")
    assert resolve("g", "digits", "dense", 0, {"train": {"lr": value}}).args["train"]["lr"] == 1e-3
    assert cfg.args["kan"]["grid_range"] == [-2.0, 2.0]


@pytest.mark.parametrize("given,message", [
    ({"train": {"max_epoch": 3}}, "unknown train arg 'max_epoch'"),
    ({"train": {"max_epochs": "three"}}, "train.max_epochs: expected int"),
    ({"kan": {"spline_scaler": 1}}, "kan.spline_scaler: expected bool"),
    ({"train": {"scheduler": "step"}}, "train.scheduler: 'step' is not one of"),
    ({"task": {"equation": "I.6.20b"}}, "unknown task arg 'equation' for task 'digits'"),
    ({"optim": {}}, "unknown arg section 'optim'"),
])
def test_bad_args_are_one_line_errors(given, message):
    with pytest.raises(KanbenchError, match=message.replace("(", r"\(")):
        resolve("g", "digits", "dense", 0, given)


def test_an_unset_optional_arg_leaves_the_run_id_as_it_was_before_the_arg_existed():
    from kanbench.suite.config import content_hash

    cfg = resolve("g", "digits", "metacluster", 0, {})
    assert cfg.args["method"]["kmeans_seed"] is None
    without = cfg.to_dict()  # the config a record made before the optional args existed had
    for key in ("kmeans_seed", "index_coding", "conv_layout"):
        del without["args"]["method"][key]
    for key in ("optimizer", "lr_gamma", "init"):
        del without["args"]["train"][key]
    assert cfg.run_id == content_hash(without)
    image = resolve("g", "fashion_mnist", "dense", 0, {})
    without = image.to_dict()
    del without["args"]["task"]["conv_norm"]
    for key in ("optimizer", "lr_gamma", "init"):
        del without["args"]["train"][key]
    assert image.run_id == content_hash(without)
    seeded = resolve("g", "digits", "metacluster", 0, {"method": {"kmeans_seed": 3}})
    assert seeded.run_id not in (cfg.run_id, resolve("g", "digits", "metacluster", 0,
                                                     {"method": {"kmeans_seed": 4}}).run_id)
    for bad in (1.5, -1, "3"):
        with pytest.raises(KanbenchError, match="method.kmeans_seed: .* out of range"):
            resolve("g", "digits", "metacluster", 0, {"method": {"kmeans_seed": bad}})


def test_the_authors_training_recipe_is_checked_as_one():
    recipe = {"optimizer": "adam", "scheduler": "exponential", "lr_gamma": 0.7,
              "init": "metakan_authors"}
    cfg = resolve("g", "digits", "dense", 0, {"train": recipe})
    assert {k: cfg.args["train"][k] for k in recipe} == recipe
    assert cfg.run_id != resolve("g", "digits", "dense", 0, {}).run_id
    for given, message in (({"optimizer": "sgd"}, "train.optimizer: 'sgd' is not one of"),
                           ({"init": "kaiming"}, "train.init: 'kaiming' is not one of"),
                           ({"scheduler": "exponential"}, "needs train.lr_gamma"),
                           ({"lr_gamma": 0.7}, "applies only to 'exponential'"),
                           ({"scheduler": "exponential", "lr_gamma": 1.5}, "out of range"),
                           ({"scheduler": "exponential", "lr_gamma": 0}, "out of range")):
        with pytest.raises(KanbenchError, match=message):
            resolve("g", "digits", "dense", 0, {"train": given})


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(KanbenchError, match="unknown task 'digitz'; valid: .*digits"):
        resolve("g", "digitz", "dense", 0, {})
    with pytest.raises(KanbenchError, match="unknown method 'sparse'; valid: dense"):
        resolve("g", "digits", "sparse", 0, {})


def test_overrides_parse_yaml_values():
    assert parse_override("train.max_epochs=3") == ("train.max_epochs", 3)
    assert parse_override("task.widths=[64, 8, 10]") == ("task.widths", [64, 8, 10])
    assert parse_override("task.equation=I.6.20b") == ("task.equation", "I.6.20b")
    with pytest.raises(KanbenchError, match="not key=value"):
        parse_override("train.max_epochs")
    args = {}
    set_dotted(args, "kan.grid_size", 7)
    assert args == {"kan": {"grid_size": 7}}
    with pytest.raises(KanbenchError, match="section.name"):
        set_dotted(args, "grid_size", 7)


def numeric_settings():
    """(section, key, default, range, task, method) for every numeric setting a cell has."""
    from kanbench.suite.config import (
        KAN_RANGES,
        MEASURE_DEFAULTS,
        MEASURE_RANGES,
        TRAIN_DEFAULTS,
        TRAIN_RANGES,
    )
    from kanbench.suite.registry import METHODS, TASKS

    suite_sections = (("kan", KAN_DEFAULTS, KAN_RANGES), ("train", TRAIN_DEFAULTS, TRAIN_RANGES),
                      ("measure", MEASURE_DEFAULTS, MEASURE_RANGES))
    out = [(section, key, defaults[key], ranges.get(key), "feynman", "dense")
           for section, defaults, ranges in suite_sections for key in defaults]
    for name in TASKS.names():
        task = TASKS.create(name)
        out += [("task", key, value, task.ranges.get(key), name, "dense")
                for key, value in task.defaults.items()]
        out += [("train", key, value, TRAIN_RANGES.get(key), name, "dense")
                for key, value in task.train_defaults.items()]
    for name in METHODS.names():
        method = METHODS.create(name)
        out += [("method", key, value, method.ranges.get(key), "feynman", name)
                for key, value in method.defaults.items()]
    return [s for s in out if is_numeric(s[2])]


def is_numeric(value) -> bool:
    values = value if isinstance(value, list) else [value]
    return not isinstance(value, bool) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def test_every_numeric_setting_declares_a_range_its_default_satisfies():
    settings = numeric_settings()
    assert len(settings) > 40
    for section, key, default, bounds, task, method in settings:
        assert bounds is not None, f"{section}.{key} ({task}, {method}) has no declared range"
        bounds.check(f"{section}.{key}", default)


@pytest.mark.parametrize("bounds,good,bad", [
    (Range(1), [1, 7, 10**9], [0, -1, 0.5, float("nan"), float("inf"), True]),
    (Range(0, 1, open_low=True, open_high=True), [0.5, 1e-9], [0.0, 1.0, -0.1, float("nan")]),
    (Range(min_length=2, max_length=2, increasing=True), [[-1.0, 1.0]],
     [[1.0, -1.0], [0.0, 0.0], [0.0], [0.0, 1.0, 2.0], [0.0, float("inf")]]),
    (Range(1, min_length=1), [[1], [1, 256]], [[], [0], [1, -3]]),
    (Range(0, 10, integer=True), [0, 7, 10], [0.5, 3.0, -1, 11, True]),
])
def test_ranges_accept_inside_and_refuse_outside(bounds, good, bad):
    for value in good:
        bounds.check("x.y", value)
    for value in bad:
        with pytest.raises(KanbenchError, match=r"^x\.y: .* is out of range \(must be "):
            bounds.check("x.y", value)
