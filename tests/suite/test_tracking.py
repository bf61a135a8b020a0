"""W&B as its users expect: unique readable names, tags, job_type, the project and tags from
the command line or WANDB_* variables, per-epoch validation metric and learning rate, the
model file as an artifact, and README's sync command matching where offline runs land. Read
from the offline run files."""

import re

from kanbench.cli import main as kanbench
from kanbench.suite import grid, tracking
from kanbench.suite.store import ResultsStore
from tests.conftest import REPO
from tests.suite import wandb_log


def test_every_run_name_of_the_quick_grid_is_unique_and_readable():
    cells = grid.cells("quick")
    names = tracking.run_names(cells)
    assert len(set(names.values())) == len(cells) == len(names)
    for cfg in cells:
        assert names[cfg.run_id].startswith(f"{cfg.task}-{cfg.method}")
        assert names[cfg.run_id].endswith(f"-s{cfg.seed}")
    feynman = [n for n in names.values() if n.startswith("feynman-metacluster")]
    assert any("equation=I.9.18" in n for n in feynman)


def test_settings_come_from_flags_then_wandb_variables(monkeypatch):
    import argparse

    parser = argparse.ArgumentParser()
    tracking.add_arguments(parser)
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.setenv("WANDB_TAGS", "a,b")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    settings = tracking.Settings.from_args(parser.parse_args([]))
    assert (settings.project, settings.tags, settings.mode) == ("from-env", ("a", "b"), "off")
    settings = tracking.Settings.from_args(parser.parse_args(
        ["--wandb-project", "flag", "--wandb-tags", "c", "--wandb", "offline"]))
    assert (settings.project, settings.tags, settings.mode) == ("flag", ("c",), "offline")


def test_an_offline_grid_logs_what_a_wandb_user_looks_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # W&B's default directory: ./wandb
    monkeypatch.setenv("WANDB_PROJECT", "kanbench-test")
    assert kanbench(["run", "smoke", "tasks=[digits]", "methods=[dense,metacluster]",
                     "--wandb", "offline", "--wandb-tags", "mine", "--no-reports",
                     "measure.memory=false", "train.max_epochs=2"]) == 0
    records = {r["run_id"]: r for r in ResultsStore("results").records("smoke")}
    names = tracking.run_names(grid.cells("smoke", ["tasks=[digits]",
                                                   "methods=[dense,metacluster]",
                                                   "measure.memory=false",
                                                   "train.max_epochs=2"]))
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == len(records) == 2
    for run in runs:
        path = next(run.glob("*.wandb"))
        info = wandb_log.run_info(path)
        record = records[info["id"]]
        assert info["name"] == names[info["id"]]
        assert info["project"] == "kanbench-test" and info["group"] == "smoke"
        assert {"digits", record["method"], "bspline", "grid:smoke", "mine"} <= set(info["tags"])
        assert info["job_type"] == ("baseline" if record["method"] == "dense" else "compress")
        history = wandb_log.history_keys(path)
        assert "train/val_accuracy" in history and "train/loss" in history
        assert any(key.startswith("lr-AdamW") for key in history)
        (artifact,) = wandb_log.artifacts(path)
        assert artifact["type"] == "model" and artifact["name"] == f"model-{info['id']}"
        assert artifact["metadata"]["total_bytes"] == record["storage"]["total_bytes"]
        assert artifact["files"]["model.safetensors"] > record["storage"]["total_bytes"]
        summary = wandb_log.summary(path)
        assert summary["trainable_params"] == record["trainable_params"]
        assert summary["storage/kan_ratio"] == record["storage"]["kan_ratio"]
    # README's sync command names exactly these directories
    (command,) = re.findall(r"wandb sync ([^\s`]+)", (REPO / "README.md").read_text())
    assert sorted(tmp_path.glob(command)) == runs
