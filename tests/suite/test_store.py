import json

import pytest

from suite.errors import KanbenchError
from suite.store import ResultsStore


def record(run_id, grid="g", **extra):
    return {"run_id": run_id, "grid": grid, "status": "done", "metrics": {"accuracy": 0.5},
            **extra}


def test_write_get_and_frame(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(record("a"))
    store.write(record("b", metrics={"accuracy": 0.75}))
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


def test_unreadable_record_is_a_clear_error(tmp_path):
    store = ResultsStore(tmp_path)
    (tmp_path / "runs" / "g").mkdir(parents=True)
    (tmp_path / "runs" / "g" / "a.json").write_text('{"run_id": "a", "gri')
    with pytest.raises(KanbenchError, match="a.json: not valid JSON"):
        store.records("g")
