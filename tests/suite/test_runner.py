"""End to end: every registered task x method through the smoke grid, records, W&B, resume."""

import time

import pytest

from kanbench.suite.interfaces import Task
from kanbench.suite.registry import METHODS, TASKS
from kanbench.suite.store import ResultsStore
from scripts.run_grid import main as run_grid
from tests.conftest import run_script
from tests.suite import wandb_log

CELLS = [(t, m) for t in TASKS.names() for m in METHODS.names()]


@pytest.mark.slow
@pytest.mark.parametrize("task,method", CELLS)
def test_smoke_grid_cell_end_to_end(task, method, data_root, tmp_path):
    results, wandb_dir = tmp_path / "results", tmp_path / "wandb"
    argv = ["--grid", "smoke", f"tasks=[{task}]", f"methods=[{method}]", "--results",
            str(results), "--cache", str(tmp_path / "cache"), "--data-root", str(data_root),
            "--wandb", "offline", "--wandb-dir", str(wandb_dir), "--no-reports"]
    assert run_grid(argv) == 0
    (record,) = ResultsStore(results).records("smoke")
    assert record["status"] == "done", record.get("traceback")
    assert (record["task"], record["method"]) == (task, method)
    metric = record["metrics"]["primary"]
    stages = [s.name for s in METHODS.create(method).stages(record["config"]["args"]["method"])]
    assert set(record["metrics"]["stages"]) == set(stages)
    assert record["metrics"][metric] == record["metrics"]["stages"][stages[-1]][metric]
    assert all(metric in record["metrics"]["stages"][s]["val"] for s in stages)
    storage = record["storage"]
    assert sum(storage["itemized"].values()) == storage["total_bytes"] == storage["file_bytes"]
    assert record["latency"]["ms"]["1"] > 0
    if record["trainable_params"]:  # a post-training method (SHARe) has no training step
        assert record["memory"]["step_bytes"] > 0
    else:
        assert "memory" not in record and method.startswith("share")
    assert record["config"]["args"]["task"] and record["env"]["torch"]
    # what a task's cells share (a detection trunk) the driver made before the cell ran
    shares = type(TASKS.create(task)).prepare_shared is not Task.prepare_shared
    shared = {"trunk", "features"} & set(record["timing"])
    assert bool(shared) == shares and all(record["timing"][n]["cached"] for n in shared)

    # the offline W&B run holds the record's summary metrics
    (run_file,) = (wandb_dir / "wandb").glob(f"offline-run-*-{record['run_id']}/*.wandb")
    summary = wandb_log.summary(run_file)
    assert summary["status"] == "done"
    assert summary[f"metrics/{metric}"] == pytest.approx(record["metrics"][metric])
    assert summary["storage/kan_bytes"] == storage["kan_bytes"]

    # rerunning does no work: same record, no second W&B run
    before = (results / "runs" / "smoke" / f"{record['run_id']}.json").read_bytes()
    assert run_grid(argv) == 0
    assert (results / "runs" / "smoke" / f"{record['run_id']}.json").read_bytes() == before
    assert len(list((wandb_dir / "wandb").glob("offline-run-*"))) == 1


def test_missing_dataset_is_one_line_and_no_record(tmp_path):
    done = run_script("run_grid.py", "--grid", "smoke", "tasks=[mnist]", "--data-root",
                      str(tmp_path / "nothing"), "--results", str(tmp_path / "results"),
                      "--wandb", "off")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "mnist: dataset not found at" in lines[0], done.stderr
    assert str(tmp_path / "nothing" / "MNIST" / "raw") in lines[0]
    assert not (tmp_path / "results" / "runs").exists()


def test_a_failing_cell_is_recorded_and_the_grid_goes_on(tmp_path):
    # a learning rate this large makes the loss inf from the second step on
    argv = ["--grid", "smoke", "tasks=[feynman,highdim]", "methods=[dense]", "--results",
            str(tmp_path),
            "--cache", str(tmp_path / "cache"), "--wandb", "off", "train.lr=1e30",
            "train.max_epochs=3", "measure.memory=false", "measure.latency=false"]
    assert run_grid(argv) == 1
    records = ResultsStore(tmp_path).records("smoke")
    assert len(records) == 2 and {r["status"] for r in records} == {"failed"}
    assert all("loss became" in r["error"] and r["traceback"] for r in records)
    assert run_grid(argv) == 1  # failed cells are not rerun without --retry-failed
    assert [r["finished_at"] for r in ResultsStore(tmp_path).records("smoke")] == \
        [r["finished_at"] for r in records]
    time.sleep(1.1)  # finished_at has whole seconds
    assert run_grid([*argv, "--retry-failed"]) == 1  # they are with it (and fail again)
    again = ResultsStore(tmp_path).records("smoke")
    assert len(again) == 2 and all(a["finished_at"] > r["finished_at"]
                                   for a, r in zip(again, records, strict=True))


def test_a_finished_stage_is_reused_from_the_cache(tmp_path):
    common = ["--grid", "smoke", "tasks=[feynman]", "methods=[dense]", "--cache",
              str(tmp_path / "cache"),
              "--wandb", "off", "measure.memory=false", "measure.latency=false"]
    assert run_grid([*common, "--results", str(tmp_path / "first")]) == 0
    assert run_grid([*common, "--results", str(tmp_path / "second")]) == 0
    (first,) = ResultsStore(tmp_path / "first").records("smoke")
    (second,) = ResultsStore(tmp_path / "second").records("smoke")
    assert first["timing"]["train"]["cached"] is False
    assert second["timing"]["train"]["cached"] is True
    assert second["metrics"] == first["metrics"]


def test_metacluster_reuses_the_metakan_stage_and_records_every_stage(tmp_path):
    argv = ["--grid", "smoke", "tasks=[highdim]", "methods=[metakan,metacluster]", "--results",
            str(tmp_path), "--cache", str(tmp_path / "cache"), "--wandb", "off",
            "measure.memory=false", "measure.latency=false"]
    assert run_grid(argv) == 0
    records = {r["method"]: r for r in ResultsStore(tmp_path).records("smoke")}
    meta, cluster = records["metakan"], records["metacluster"]
    # trained once, for both: by whichever of the two ran first
    assert {meta["timing"]["train"]["cached"], cluster["timing"]["train"]["cached"]} == \
        {False, True}
    assert cluster["metrics"]["stages"]["train"] == meta["metrics"]["stages"]["train"]
    assert set(cluster["metrics"]["stages"]) == {"train", "cluster", "finetune"}
    assert cluster["metrics"]["rmse"] == cluster["metrics"]["stages"]["finetune"]["rmse"]
    for record, last in ((meta, "train"), (cluster, "finetune")):  # val beside test, per stage
        assert record["metrics"]["val"] == record["metrics"]["stages"][last]["val"]
        for stage in record["metrics"]["stages"].values():
            assert stage["val"]["rmse"] > 0 and stage["val"]["rmse"] != stage["rmse"]
    assert "val" not in cluster["metrics"]["retention"]
    assert cluster["storage"]["itemized"].keys() == {"codebook", "indices", "other"}
    assert meta["storage"]["itemized"].keys() == {"meta_learner", "prompts", "other"}
    assert cluster["storage"]["indices_entropy_bytes"] <= cluster["storage"]["itemized"]["indices"]
    assert cluster["trainable_params"] < meta["trainable_params"]


def test_share_reuses_the_dense_checkpoint_and_int8_reuses_fp32(tmp_path):
    argv = ["--grid", "smoke", "tasks=[highdim]", "methods=[dense,share_fp32,share_int8]",
            "--results", str(tmp_path), "--cache", str(tmp_path / "cache"), "--wandb", "off",
            "measure.memory=false"]
    assert run_grid(argv) == 0
    records = {r["method"]: r for r in ResultsStore(tmp_path).records("smoke")}
    dense, fp32, int8 = records["dense"], records["share_fp32"], records["share_int8"]
    assert dense["timing"]["train"]["cached"] is False
    assert fp32["timing"]["train"]["cached"] is int8["timing"]["train"]["cached"] is True
    assert fp32["timing"]["vq"]["cached"] is False and int8["timing"]["vq"]["cached"] is True
    assert int8["metrics"]["stages"]["vq"] == fp32["metrics"]["stages"]["vq"]
    assert set(int8["metrics"]["stages"]) == {"train", "vq", "int8"}
    assert fp32["trainable_params"] == int8["trainable_params"] == 0  # no gradient step
    assert fp32["storage"]["itemized"].keys() == {"codebook", "indices", "gains", "biases",
                                                  "base_weights", "other"}
    assert int8["storage"]["kan_bytes"] < fp32["storage"]["kan_bytes"]
    assert fp32["latency"]["kernel"] == int8["latency"]["kernel"] == "cpu"


TASKS_LEARNED = [t for t in TASKS.names() if t not in ("voc", "coco")]


@pytest.mark.slow
@pytest.mark.parametrize("basis", ["rbf", "gram"])
@pytest.mark.parametrize("task", TASKS_LEARNED)
def test_compression_methods_run_the_smoke_grid_on_every_basis(task, basis, data_root, tmp_path):
    methods = ["metakan", "metacluster", "share_fp32", "share_int8"]
    argv = ["--grid", "smoke", f"tasks=[{task}]", f"methods=[{','.join(methods)}]",
            f"kan.basis={basis}", "--results", str(tmp_path), "--cache", str(tmp_path / "c"),
            "--data-root", str(data_root), "--wandb", "off", "measure.memory=false"]
    assert run_grid(argv) == 0
    records = ResultsStore(tmp_path).records("smoke")
    assert sorted(r["method"] for r in records) == sorted(methods)
    for record in records:
        assert record["status"] == "done", record.get("traceback")
        assert record["config"]["args"]["kan"]["basis"] == basis
        storage = record["storage"]
        assert sum(storage["itemized"].values()) == storage["total_bytes"] == storage["file_bytes"]


def test_the_grid_ends_with_its_reports_and_one_wandb_reports_run(tmp_path):
    import json

    import pandas as pd

    wandb_dir = tmp_path / "wandb"
    argv = ["--grid", "smoke", "tasks=[feynman]", "methods=[dense,share_int8]", "--results",
            str(tmp_path), "--cache", str(tmp_path / "cache"), "--wandb", "offline",
            "--wandb-dir", str(wandb_dir), "measure.memory=false"]
    assert run_grid(argv) == 0
    tables, plots = tmp_path / "tables", tmp_path / "plots"
    assert {"smoke_summary.md", "smoke_compression.csv", "smoke_leaderboard.md",
            "smoke_seed_variance.md"} <= {p.name for p in tables.iterdir()}
    assert (plots / "smoke_bytes_feynman.png").stat().st_size > 1000
    assert "Grid <code>smoke</code>" in (tmp_path / "site" / "index.html").read_text()
    (run,) = (wandb_dir / "wandb").glob("offline-run-*-reports-smoke")
    (logged,) = (run / "files" / "media" / "table" / "tables").glob("compression_*.table.json")
    logged = json.loads(logged.read_text())
    expected = pd.read_csv(tables / "smoke_compression.csv")
    assert logged["columns"] == list(expected.columns)
    assert [row[0] for row in logged["data"]] == list(expected["setup"])
    assert list((run / "files" / "media" / "images" / "plots").glob("smoke_ratios_*.png"))
    # a second run of the grid (a new seed) updates the same reports run: one id per grid
    assert run_grid([*argv, "seeds=[1]"]) == 0
    reports = [wandb_log.run_info(next(d.glob("*.wandb")))
               for d in (wandb_dir / "wandb").glob("offline-run-*-reports-*")]
    assert len(reports) == 2 and {r["id"] for r in reports} == {"reports-smoke"}
    assert {r["job_type"] for r in reports} == {"reports"}
