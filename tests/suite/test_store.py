import json

import pytest

from kanbench.suite.errors import KanbenchError
from kanbench.suite.store import ResultsStore


def record(run_id, grid="g", **extra):
    return {"run_id": run_id, "grid": grid, "task": "t", "method": "m", "seed": 0,
            "config": {}, "status": "done", "storage": {},
            "metrics": {"primary": "accuracy", "accuracy": 0.5}, **extra}


def test_write_get_and_frame(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(record("a"))
    store.write(record("b", metrics={"primary": "accuracy", "accuracy": 0.75}))
    store.write(record("c", grid="other"))
    assert store.get("g", "a")["metrics"]["accuracy"] == 0.5
    assert store.get("g", "zzz") is None
    frame = store.to_frame("g")
    assert sorted(frame["run_id"]) == ["a", "b"]
    assert sorted(frame["metrics.accuracy"]) == [0.5, 0.75]
    assert len(store.to_frame()) == 3


def test_rewrite_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(record("a", note="x" * 10_000))
    store.write(record("a"))
    files = list((tmp_path / "runs" / "g").iterdir())
    assert [f.name for f in files] == ["a.json"]
    assert "note" not in json.loads(files[0].read_text())


def test_an_unusable_record_is_an_error_for_its_cell_and_skipped_by_readers(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(record("good"))
    (tmp_path / "runs" / "g" / "a.json").write_text('{"run_id": "a", "gri')
    store.write(record("b") | {"run_id": "b"})
    (tmp_path / "runs" / "g" / "b.json").rename(tmp_path / "runs" / "g" / "c.json")
    with pytest.raises(KanbenchError, match="a.json: not valid JSON"):
        store.get("g", "a")
    with pytest.raises(KanbenchError, match="c.json: not this cell's record .its run_id 'b' is "
                                            "not its file name"):
        store.get("g", "c")
    assert [r["run_id"] for r in store.records("g")] == ["good"]
    assert sorted(p.name for p, _ in store.skipped) == ["a.json", "c.json"]


@pytest.mark.parametrize("change,problem", [
    (lambda r: [r], "a JSON list, not an object"),
    (lambda r: {k: v for k, v in r.items() if k != "seed"}, "no 'seed' field"),
    (lambda r: r | {"grid": "h"}, "its grid 'h' is not its folder"),
    (lambda r: r | {"status": "running"}, "status 'running' is neither done nor failed"),
    (lambda r: r | {"metrics": {"primary": "rmse"}}, "its primary metric 'rmse' has no value"),
    (lambda r: r | {"metrics": {"primary": "a", "a": True}}, "its primary metric 'a' has no value"),
    (lambda r: r | {"storage": None}, "no storage"),
    (lambda r: r | {"status": "failed", "metrics": None}, None),
])
def test_record_problem_names_what_makes_a_file_unusable(tmp_path, change, problem):
    from pathlib import Path

    from kanbench.suite.store import record_problem

    assert record_problem(Path("runs/g/a.json"), change(record("a"))) == problem
