"""Malformed input of every kind a user can give: grid files, overrides, dataset files, stage
checkpoints and model files. Each is refused with one line naming the file or setting and
the problem, exit status 2, and nothing written to the results store."""

import json
import math
import pickle
import re
import shutil

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kanbench.suite import grid
from kanbench.suite.config import parse_override
from kanbench.suite.errors import KanbenchError
from scripts.run_grid import main as run_grid
from tests.datafiles import write_all, write_idx
from tests.suite.test_config import numeric_settings

pytestmark = pytest.mark.slow

CELL = ["--grid", "smoke", "tasks=[feynman]", "methods=[dense]", "measure.latency=false",
        "measure.memory=false"]   # one seconds-long cell
THOUSAND = list(range(1, 1001))
GOOD = "seeds: [0]\nmethods: [dense]\nblocks:\n  - tasks: [feynman]\n"
GRIDS = {  # grid file text -> what the line must say
    "blocks: [\n  - tasks: [feynman": "not valid YAML at line",
    "- a\n- b\n": "a grid must be a mapping",
    "seeds: [0]\nmethods: [dense]\nblocks: []\n": "'blocks' must be a non-empty list",
    GOOD + "colour: red\n": "unknown key 'colour'",
    GOOD.replace("[feynman]", "[]"): "tasks must be a non-empty list",
    GOOD.replace("[0]", "[zero]"): "seeds must be a non-empty list of int",
    GOOD + "    sweep: {task.equation: I.9.18}\n":
        "sweep key task.equation must map to a non-empty list",
    GOOD + "    repeat: 3\n": "unknown key 'repeat'",
    GOOD + "resources: {gpus: 1}\n": "resources: unknown key 'gpus'",
    GOOD + "resources: {gpus_per_cell: -1}\n": "resources.gpus_per_cell must be an int >= 0",
    GOOD + "resources: {time_minutes: soon}\n": "resources.time_minutes must be an int >= 1",
    GOOD + "args: [train]\n": "'args' must be a mapping of sections",
    GOOD.replace("[feynman]", "[feynmann]"): "unknown task 'feynmann'",
    GOOD + "    sweep: 5\n": "blocks[0].sweep must be a mapping",
    GOOD + "    sweep: {5: [1]}\n": "sweep key 5 must be section.name",
    GOOD + "    sweep: {optim.lr: [1]}\n": "sweep key 'optim.lr' must be section.name",
    GOOD + "args: {train: 5}\n": "args.train must be a mapping of settings",
    GOOD + "    args: {train: [1]}\n": "blocks[0].args.train must be a mapping of settings",
    GOOD + "args: {optim: {lr: 1}}\n": "args: unknown section 'optim'",
    "a: &a [*a]\n" + GOOD: "YAML aliases (*name) are not allowed",
    "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n" + GOOD: "YAML aliases",
    GOOD + f"    sweep: {{train.max_epochs: {THOUSAND}, train.batch_size: {THOUSAND}}}\n":
        "expands to 1,000,000 cells, more than the limit of 10,000; pass --max-cells",
    GOOD + "args: {train: {max_epochs: 0}}\n": "train.max_epochs: 0 is out of range",
    GOOD.replace("[0]", "[-5]"): "seed: -5 is out of range",
    GOOD + "    preset: smok\n": "no task has a preset 'smok'",
    GOOD + "    preset: [smoke]\n": "blocks[0].preset must be a preset's name",
    GOOD.replace("methods: [dense]", "methods: every"): "methods must be a non-empty list",
    GOOD.replace("tasks: [feynman]", "tasks: everything"): "tasks must be a non-empty list",
}
OVERRIDES = {  # command-line arguments -> what the line must say
    ("train.max_epochs=many",): "train.max_epochs",
    ("train.nonesuch=1",): "unknown train arg 'nonesuch'",
    ("colour.red=1",): "colour",
    ("train.max_epochs",): "train.max_epochs",
    ("seeds=[a]",): "seeds must be a non-empty list of int",
    ("methods=[nonesuch]",): "unknown method 'nonesuch'",
    ("kan.basis=fourier",): "kan.basis",
    ("--jobs", "0"): "--jobs must be at least 1",
}


def refused(capsys, results, *argv, before_any_cell: bool = False) -> str:
    """Run run_grid; it must exit 2 with one `error:` line and leave no record (and with
    `before_any_cell`, begin no cell)."""
    with pytest.raises(SystemExit) as exit_:
        run_grid([*argv, "--results", str(results), "--cache", str(results / "cache"),
                  "--wandb", "off", "--no-reports"])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not (before_any_cell and " ..." in captured.out), captured.out
    assert not list(results.glob("runs/**/*.json"))
    return lines[0]


@pytest.mark.parametrize("text", list(GRIDS), ids=range(len(GRIDS)))
def test_malformed_grid_files(text, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = refused(capsys, tmp_path / "results", "--grid", str(path))
    assert GRIDS[text] in line and ("unknown task" in line or str(path) in line), line


def test_grid_paths_that_are_not_readable_yaml_files(tmp_path, capsys):
    import os

    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(GOOD.encode() + b"description: caf\xe9\n")
    huge = tmp_path / "huge.yaml"
    huge.write_text(GOOD + "description: " + "x" * (grid.MAX_GRID_BYTES + 1) + "\n")
    for path, message in ((folder, "not a regular file"), (fifo, "not a regular file"),
                          (latin, "not UTF-8 text"), (huge, "a grid file holds at most")):
        line = refused(capsys, tmp_path / "results", "--grid", str(path))
        assert str(path) in line and message in line, line


@pytest.mark.parametrize("argv", list(OVERRIDES), ids=range(len(OVERRIDES)))
def test_malformed_overrides(argv, tmp_path, capsys):
    line = refused(capsys, tmp_path / "results", "--grid", "smoke", "tasks=[feynman]", *argv)
    assert OVERRIDES[argv] in line, line


def corrupt(data, name):
    """Break one dataset file of a copy of the tiny data root; returns (task, file)."""
    voc = data / "VOCdevkit" / "VOC2007" / "Annotations"
    first_xml = sorted(voc.glob("*.xml"))[0]
    coco = data / "coco" / "annotations" / "instances_train2017.json"
    mnist = data / "MNIST" / "raw" / "train-images-idx3-ubyte"
    if name == "idx_truncated":
        mnist.write_bytes(mnist.read_bytes()[:700])
    elif name == "idx_bad_magic":
        mnist.write_bytes(b"\x01\x02" + mnist.read_bytes()[2:])
    elif name == "idx_labels_short":
        write_idx(data / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(5))
    elif name == "idx_images_32x32":
        write_idx(mnist, np.zeros((96, 32, 32)))
    elif name == "idx_label_12":
        labels = data / "MNIST" / "raw" / "train-labels-idx1-ubyte"
        write_idx(labels, np.full(96, 12))
        return "mnist", labels.name
    elif name == "cifar_label_10":
        batch = data / "cifar-10-batches-py" / "data_batch_1"
        batch.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8),
                                        "labels": [3, 10]}))
        return "cifar10", batch.name
    elif name == "cifar_text_labels":
        batch = data / "cifar-10-batches-py" / "data_batch_1"
        batch.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8),
                                        "labels": ["cat", "dog"]}))
        return "cifar10", batch.name
    elif name in ("cifar_runs_code", "cifar_no_data"):
        batch = data / "cifar-10-batches-py" / "data_batch_1"
        entry = {"data": Exploit(), "labels": [0]} if name == "cifar_runs_code" else \
            {"labels": [0]}
        batch.write_bytes(pickle.dumps(entry))
        return "cifar10", batch.name
    elif name == "voc_not_xml":
        first_xml.write_text("this is not <xml")
    elif name == "voc_no_bndbox":
        first_xml.write_text(first_xml.read_text().replace("<bndbox>", "<box>").replace(
            "</bndbox>", "</box>"))
    elif name == "voc_text_coordinate":
        first_xml.write_text(first_xml.read_text().replace("<xmin>", "<xmin>left", 1))
    elif name == "coco_not_json":
        coco.write_text("{'images': ")
    elif name == "coco_no_annotations":
        doc = json.loads(coco.read_text())
        del doc["annotations"]
        coco.write_text(json.dumps(doc))
    elif name == "coco_short_bbox":
        doc = json.loads(coco.read_text())
        for annotation in doc["annotations"]:
            annotation["bbox"] = annotation["bbox"][:3]
        coco.write_text(json.dumps(doc))
    if name.startswith("idx"):
        return "mnist", mnist.name
    if name.startswith("voc"):
        return "voc", first_xml.name
    return "coco", coco.name


class Exploit:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-kanbench",))


DATASET_FAULTS = ["idx_truncated", "idx_bad_magic", "idx_labels_short", "idx_images_32x32",
                  "idx_label_12", "cifar_label_10", "cifar_text_labels", "cifar_runs_code",
                  "cifar_no_data", "voc_not_xml", "voc_no_bndbox", "voc_text_coordinate",
                  "coco_not_json", "coco_no_annotations", "coco_short_bbox"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("pristine"))


@pytest.mark.parametrize("fault", DATASET_FAULTS)
def test_malformed_dataset_files(fault, pristine, tmp_path, capsys):
    data = shutil.copytree(pristine, tmp_path / "data")
    task, name = corrupt(data, fault)
    line = refused(capsys, tmp_path / "results", "--grid", "smoke", f"tasks=[{task}]",
                   "methods=[dense]", "--data-root", str(data), before_any_cell=True)
    assert line.startswith(f"error: {task}: ") and name in line, line


def test_malformed_stage_checkpoints(tmp_path, capsys):
    results = tmp_path / "results"
    cell = CELL
    assert run_grid([*cell, "--results", str(results), "--cache", str(results / "cache"),
                     "--wandb", "off", "--no-reports"]) == 0
    (weights,) = (results / "cache" / "stages").glob("*.safetensors")
    meta = weights.with_suffix(".json")
    for path, damaged in ((weights, weights.read_bytes()[:40]), (meta, b"[1, 2"),
                          (weights, pickle.dumps(Exploit()))):
        saved = path.read_bytes()
        path.write_bytes(damaged)
        shutil.rmtree(results / "runs", ignore_errors=True)  # the first run's record
        line = refused(capsys, results, *cell)
        assert "stage cache" in line and path.name in line, line
        path.write_bytes(saved)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=40))
def test_any_override_text_parses_or_is_one_line(text):
    try:
        parse_override(text)
    except KanbenchError as err:
        assert "\n" not in str(err)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(sorted(grid.TOP_KEYS | grid.BLOCK_KEYS | {"x"})), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])
@given(yaml_values)
def test_any_grid_document_expands_or_is_one_line(tmp_path, doc):
    path = tmp_path / "generated.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        grid.cells(str(path))
    except KanbenchError as err:
        assert "\n" not in str(err)


def outside(bounds, default) -> st.SearchStrategy:
    """Values of a setting's type that its Range refuses: below or at an open low end, above
    the high end, non-finite floats; for list settings, a list holding such a value or of a
    length the range refuses."""
    integer = isinstance(default[0] if isinstance(default, list) and default else default, int)
    scalar = st.nothing()
    if bounds.low > -math.inf:
        scalar |= st.integers(max_value=math.ceil(bounds.low) - (not bounds.open_low)) \
            if integer else st.floats(max_value=bounds.low, exclude_max=not bounds.open_low)
    if bounds.high < math.inf:
        scalar |= st.integers(min_value=math.floor(bounds.high) + (not bounds.open_high)) \
            if integer else st.floats(min_value=bounds.high, exclude_min=not bounds.open_high)
    if not integer:
        scalar |= st.sampled_from([math.nan, math.inf, -math.inf])
    if not isinstance(default, list):
        return scalar
    good = st.just(default[0]) if default else st.just(1)
    lists = st.tuples(st.lists(good, max_size=2), scalar, st.lists(good, max_size=2)).map(
        lambda t: [*t[0], t[1], *t[2]])
    if bounds.min_length:
        lists |= st.just([])
    if bounds.max_length < math.inf:
        lists |= st.lists(good, min_size=int(bounds.max_length) + 1,
                          max_size=int(bounds.max_length) + 2)
    return lists


def yaml_text(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(yaml_text, value)) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
    return repr(value)


SETTINGS = numeric_settings()


@settings(max_examples=200, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_every_numeric_setting_out_of_range_is_refused_before_any_cell(tmp_path_factory,
                                                                     capsys, data):
    section, key, default, bounds, task, method = data.draw(st.sampled_from(SETTINGS))
    value = data.draw(outside(bounds, default))
    results = tmp_path_factory.mktemp("results")
    capsys.readouterr()
    line = refused(capsys, results, "--grid", "smoke", f"tasks=[{task}]", f"methods=[{method}]",
                   f"{section}.{key}={yaml_text(value)}")
    assert f"{section}.{key}: " in line and "out of range" in line, line
    assert not (results / "cache").exists()


@pytest.fixture(scope="module")
def one_record(tmp_path_factory):
    """A results store holding one real record of the smoke grid's Feynman dense cell."""
    results = tmp_path_factory.mktemp("one") / "results"
    assert run_grid([*CELL, "--results", str(results), "--cache", str(results / "cache"),
                     "--wandb", "off", "--no-reports"]) == 0
    (record,) = (results / "runs" / "smoke").glob("*.json")
    return record


STORE_FAULTS = {  # what lies at the cell's own record path -> what the line must say
    "folder": "not a regular file",
    "list": "a JSON list, not an object",
    "no_status": "no 'status' field",
    "other_run_id": "is not its file name",
    "other_grid": "its grid 'elsewhere' is not its folder",
    "bad_primary": "its primary metric 'nonesuch' has no value",
    "not_json": "not valid JSON",
}


def plant(path, fault, record: dict) -> None:
    if fault == "folder":
        path.mkdir()
        return
    doc = {"list": [record], "no_status": {k: v for k, v in record.items() if k != "status"},
           "other_run_id": {**record, "run_id": "0123456789abcdef"},
           "other_grid": {**record, "grid": "elsewhere"},
           "bad_primary": {**record, "metrics": {**record["metrics"], "primary": "nonesuch"}}
           }.get(fault)
    path.write_text(json.dumps(doc) if doc is not None else "{'run_id': ")


@pytest.mark.parametrize("fault", list(STORE_FAULTS))
def test_a_cell_whose_record_path_holds_something_else_is_refused(fault, one_record, tmp_path,
                                                                   capsys):
    results = tmp_path / "results"
    target = results / "runs" / "smoke" / one_record.name
    target.parent.mkdir(parents=True)
    plant(target, fault, json.loads(one_record.read_text()))
    with pytest.raises(SystemExit) as exit_:
        run_grid([*CELL, "--results", str(results), "--cache", str(results / "cache"),
                  "--wandb", "off", "--no-reports"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1, lines
    assert str(target) in lines[0] and STORE_FAULTS[fault] in lines[0], lines[0]
    assert not (results / "cache").exists()


def test_readers_skip_and_list_what_they_cannot_use(one_record, tmp_path, capsys):
    from scripts.claims_table import main as claims_table
    from scripts.plots import main as plots
    from scripts.render_tables import main as render_tables
    from scripts.seed_variance import main as seed_variance

    results = tmp_path / "results"
    folder = results / "runs" / "smoke"
    folder.mkdir(parents=True)
    shutil.copy(one_record, folder)
    record = json.loads(one_record.read_text())
    bad = {}
    for i, fault in enumerate(STORE_FAULTS):
        path = folder / f"{i:016x}.json"
        plant(path, fault, {**record, "run_id": path.stem})
        bad[path] = STORE_FAULTS[fault] if fault != "other_run_id" else "is not its file name"
    for reader in (render_tables, seed_variance, plots):
        assert reader(["--grid", "smoke", "--results", str(results)]) in (0, None)
        err = capsys.readouterr().err
        for path, why in bad.items():
            assert f"skipped {path}: " in err and why in err, (path, err)
    table = (results / "tables" / "smoke_summary.md").read_text()
    assert "from the 1 records" in table and re.search(r"\| feynman \| dense +\| +1 \|", table)
    claims_table(["--results", str(results)])                      # grids it reads: none here


def test_results_and_cache_paths_that_cannot_hold_the_store(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for argv, message in (
            (["--results", str(a_file)], f"--results {a_file}: {a_file} is not a directory"),
            (["--results", str(a_file / "below")], "is not a directory"),
            (["--results", "/proc/kanbench-results"], "cannot write in /proc"),
            (["--cache", str(a_file)], f"--cache {a_file}: {a_file} is not a directory")):
        with pytest.raises(SystemExit) as exit_:
            run_grid(["--grid", "smoke", "tasks=[feynman]", "--results", str(tmp_path / "r"),
                      "--cache", str(tmp_path / "c"), "--wandb", "off", *argv])
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(lines) == 1 and message in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.parametrize("kind", ["folder", "fifo"])
@pytest.mark.parametrize("task,relative", [
    ("mnist", "MNIST/raw/train-labels-idx1-ubyte"),
    ("cifar10", "cifar-10-batches-py/data_batch_1"),
    ("coco", "coco/annotations/instances_train2017.json")])
def test_dataset_files_that_are_folders_or_fifos(kind, task, relative, pristine, tmp_path,
                                                 capsys):
    import os

    data = shutil.copytree(pristine, tmp_path / "data")
    path = data / relative
    path.unlink()
    path.mkdir() if kind == "folder" else os.mkfifo(path)
    line = refused(capsys, tmp_path / "results", "--grid", "smoke", f"tasks=[{task}]",
                   "methods=[dense]", "--data-root", str(data))
    assert line == f"error: {task}: {path}: not a regular file", line


def test_swapped_or_bit_flipped_stage_files_are_refused_or_recomputed(tmp_path, capsys):
    results = tmp_path / "results"
    store = ["--results", str(results), "--cache", str(results / "cache"), "--wandb", "off",
             "--no-reports"]
    assert run_grid([*CELL, "seeds=[0,1]", *store]) == 0
    records = {json.loads(p.read_text())["seed"]: json.loads(p.read_text())
               for p in (results / "runs" / "smoke").glob("*.json")}
    stages = {json.loads(m.read_text())["made_by"]: m.with_suffix(".safetensors")
              for m in (results / "cache" / "stages").glob("*.json")}
    mine, other = stages[records[0]["run_id"]], stages[records[1]["run_id"]]
    pristine = mine.read_bytes()
    flipped = bytearray(pristine)
    flipped[-3] ^= 0x10                                 # one bit of the last weight
    for damaged in (other.read_bytes(), bytes(flipped)):
        mine.write_bytes(damaged)
        shutil.rmtree(results / "runs")
        line = refused(capsys, results, *CELL, "seeds=[0]")
        assert f"stage cache {mine.name}" in line and "damaged (the weights do not hash" in line
        assert run_grid([*CELL, "seeds=[0]", "--recompute-damaged", *store]) == 0
        (again,) = (results / "runs" / "smoke").glob("*.json")
        again = json.loads(again.read_text())
        assert again["metrics"] == records[0]["metrics"]          # recomputed, bit for bit
        assert mine.read_bytes() == pristine


@pytest.mark.parametrize("budget", ["nan", "-1", "0", "inf"])
def test_render_tables_refuses_a_budget_that_is_not_a_positive_number(budget, one_record,
                                                                       tmp_path, capsys):
    from scripts.render_tables import main as render_tables

    results = tmp_path / "results"
    (results / "runs" / "smoke").mkdir(parents=True)
    shutil.copy(one_record, results / "runs" / "smoke")
    with pytest.raises(SystemExit) as exit_:
        render_tables(["--grid", "smoke", "--results", str(results), "--budget-bytes", budget])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and "--budget-bytes: " in lines[0], lines
    assert not (results / "tables").exists()
