import pytest

from suite.config import KAN_DEFAULTS, parse_override, resolve, set_dotted
from suite.errors import KanbenchError


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
