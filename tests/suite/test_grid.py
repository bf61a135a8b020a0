import subprocess
import sys

import pytest

from kanbench.suite import grid
from kanbench.suite.errors import KanbenchError
from kanbench.suite.registry import METHODS, TASKS
from scripts.run_grid import main as run_grid
from tests.conftest import REPO, run_script


@pytest.mark.parametrize("preset", grid.presets())
def test_every_preset_expands(preset):
    cells = grid.cells(preset)
    assert cells and len({c.run_id for c in cells}) == len(cells)
    assert all(c.grid == preset for c in cells)


@pytest.mark.parametrize("results", sorted(p.name for p in (REPO / "results" / "runs").iterdir()))
def test_committed_records_are_exactly_their_grid_s_cells(results):
    """A committed record whose config drifted from its grid file would be rerun beside it."""
    stems = {p.stem for p in (REPO / "results" / "runs" / results).glob("*.json")}
    assert stems == {c.run_id for c in grid.cells(results)}


def test_smoke_grid_covers_every_registered_task_and_method_at_the_tasks_presets():
    cells = grid.cells("smoke")
    assert {(c.task, c.method) for c in cells} == \
        {(t, m) for t in TASKS.names() for m in METHODS.names()}
    for cfg in cells:
        preset = TASKS.create(cfg.task).presets.get("smoke", {})
        for section, values in preset.items():
            assert {k: cfg.args[section][k] for k in values} == values, cfg.label


def test_quick_grid_is_the_issue_s_main_job():
    cells = grid.cells("quick")
    feynman = {c.args["task"]["equation"] for c in cells if c.task == "feynman"}
    assert len(feynman) >= 3 and "I.6.20b" in feynman
    assert {c.task for c in cells} == {"feynman", "highdim", "digits", "fashion_mnist",
                                       "shapes_voc"}
    assert {c.seed for c in cells} == {0, 1, 2}
    detection = [c for c in cells if c.task == "shapes_voc"]
    assert len(detection) == 15 and all(c.args["task"]["transfer"] for c in detection)
    assert {c.method for c in cells} == {"dense", "metakan", "metacluster", "share_fp32",
                                         "share_int8", "dense_kmeans"}
    assert {c.task for c in cells if c.method == "dense_kmeans"} == {"fashion_mnist"}


def test_method_args_in_a_grid_reach_only_the_methods_that_have_them():
    cells = grid.cells("quick", ["tasks=[digits]", "seeds=[0]", "method.lr_prompt=0.1"])
    by_method = {c.method: c.args["method"] for c in cells}
    assert by_method["dense"] == {}
    assert by_method["share_fp32"] == by_method["share_int8"] == \
        {"codebook_size": 256, "kmeans_iterations": 25, "kmeans_seed": None,
         "index_coding": None}
    assert by_method["metakan"]["lr_prompt"] == by_method["metacluster"]["lr_prompt"] == 0.1
    assert "finetune_epochs" not in by_method["metakan"]


def test_overrides_filter_and_set():
    cells = grid.cells("quick", ["tasks=[digits]", "methods=[dense]", "seeds=[5]",
                                 "train.max_epochs=2"])
    assert [(c.task, c.seed, c.args["train"]["max_epochs"]) for c in cells] == [("digits", 5, 2)]
    # task.* overrides reach only the tasks that have the arg
    cells = grid.cells("quick", ["task.equation=I.9.18"])
    assert {c.args["task"]["equation"] for c in cells if c.task == "feynman"} == {"I.9.18"}
    with pytest.raises(KanbenchError, match="applies to no cell"):
        grid.cells("quick", ["tasks=[digits]", "task.equation=I.9.18"])


def write(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text,message", [
    ("blocks: [\n  - tasks: [digits", "not valid YAML at line"),
    ("- a\n- b\n", "a grid must be a mapping"),
    ("seeds: [0]\nmethods: [dense]\nblocks: []\n", "'blocks' must be a non-empty list"),
    ("seeds: [0]\nmethods: [dense]\nblockz: []\n", "unknown key 'blockz'"),
    ("methods: [dense]\nblocks:\n  - tasks: [digits]\n", "seeds must be a non-empty list"),
    ("seeds: [0]\nmethods: [dense]\nblocks:\n  - tasks: [digits]\n    sweep: {task.x: 3}\n",
     "sweep key task.x must map to a non-empty list"),
    ("seeds: [0]\nmethods: [dense]\nblocks:\n  - tasks: [digits]\n    args: {train: {epochs: 3}}\n",
     "unknown train arg 'epochs'"),
    ("seeds: [0]\nmethods: [dense]\nblocks:\n  - tasks: [digits]\n    args: {method: {K: 3}}\n",
     "arg method.K applies to none of the methods"),
])
def test_malformed_grids_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(KanbenchError, match=message):
        grid.cells(write(tmp_path, text))


@pytest.mark.parametrize("args,message", [
    (["--grid", "nonesuch"], "unknown grid 'nonesuch'; presets:"),
    (["tasks=[nonesuch]"], "unknown task 'nonesuch'; valid:"),
    (["methods=[nonesuch]"], "unknown method 'nonesuch'; valid: dense"),
    (["train.nonesuch=1"], "unknown train arg 'nonesuch'"),
])
def test_run_grid_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    """In this process (the CLI's own exit path is the subprocess test below)."""
    with pytest.raises(SystemExit) as stop:
        run_grid([*args, "--results", str(tmp_path), "--wandb", "off"])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "runs").exists()


def test_run_grid_malformed_yaml_exits_2(tmp_path):
    done = run_script("run_grid.py", "--grid", write(tmp_path, "blocks: [\n"), "--wandb", "off",
                      "--results", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "not valid YAML" in done.stderr


def test_a_dry_run_piped_into_head_ends_quietly(tmp_path):
    """`run_grid.py --dry-run | head`: the listing (here ~100 kB, more than a pipe holds)
    stops when the reader does, with exit status 0 and no traceback."""
    path = tmp_path / "many.yaml"
    path.write_text(f"seeds: {list(range(2000))}\nmethods: [dense]\nblocks:\n"
                    "  - tasks: [feynman]\n")
    listing = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "run_grid.py"), "--grid", str(path),
         "--dry-run", "--results", str(tmp_path / "results")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(3):
        listing.stdout.readline()
    listing.stdout.close()                       # what `head -3` does after its lines
    assert listing.wait(timeout=300) == 0
    assert b"Traceback" not in listing.stderr.read()
