import io
import threading

from kanbench.suite.claims import Claims
from kanbench.suite.config import RunConfig
from kanbench.suite.driver import Progress, run_cells
from kanbench.suite.executors.local import InProcess
from kanbench.suite.store import ResultsStore


def cell(seed: int) -> RunConfig:
    return RunConfig("g", "feynman", "dense", seed, {"task": {}})


class Work:
    """Records which cells ran; a record is a few fields, no training."""

    def __init__(self):
        self.ran = []

    def __call__(self, cfg):
        self.ran.append(cfg.seed)
        return {"run_id": cfg.run_id, "grid": cfg.grid, "task": cfg.task, "method": cfg.method,
                "seed": cfg.seed, "config": cfg.to_dict(), "status": "done",
                "finished_at": f"t{len(self.ran)}", "timing": {"total_seconds": 0.0},
                "metrics": {"primary": "rmse", "rmse": 0.5}, "storage": {}}


def drive(tmp_path, cells, work, claims=None):
    store = ResultsStore(tmp_path)
    out = io.StringIO()
    written = run_cells(cells, InProcess(), work, store, claims or Claims(tmp_path, "g"),
                        Progress(len(cells), 0, out), poll=0.05)
    return store, written, out.getvalue()


def test_every_cell_is_run_and_written_once(tmp_path):
    work = Work()
    store, written, log = drive(tmp_path, [cell(s) for s in range(3)], work)
    assert sorted(work.ran) == [0, 1, 2] and len(written) == 3
    assert all(store.get("g", cell(s).run_id)["status"] == "done" for s in range(3))
    assert "[3/3]" in log
    assert not list((tmp_path / "claims" / "g").iterdir())          # every claim released


def test_a_cell_claimed_elsewhere_is_waited_for_and_not_run_again(tmp_path):
    other, busy = Claims(tmp_path, "g"), cell(1)
    other.acquire(busy.run_id)
    store = ResultsStore(tmp_path)

    def finish_elsewhere():  # the other driver writes its record, then lets go
        store.write({**Work()(busy), "finished_at": "elsewhere"})
        other.release(busy.run_id)

    timer = threading.Timer(0.3, finish_elsewhere)
    timer.start()
    work = Work()
    _, written, log = drive(tmp_path, [cell(0), busy, cell(2)], work)
    timer.join()
    other.close()
    assert sorted(work.ran) == [0, 2] and len(written) == 2
    assert store.get("g", busy.run_id)["finished_at"] == "elsewhere"
    assert "recorded by another driver" in log


def test_a_cell_whose_owner_died_is_run_here(tmp_path):
    other, orphan = Claims(tmp_path, "g"), cell(1)
    other.acquire(orphan.run_id)
    threading.Timer(0.3, other.close).start()                        # its driver goes away
    work = Work()
    drive(tmp_path, [cell(0), orphan], work)
    assert sorted(work.ran) == [0, 1]


def test_a_cell_finished_since_the_driver_looked_is_skipped(tmp_path):
    store, late = ResultsStore(tmp_path), cell(0)
    work = Work()

    class Late(Claims):  # another driver writes the record between the look and the claim
        def acquire(self, run_id):
            if run_id == late.run_id and store.get("g", run_id) is None:
                store.write({**Work()(late), "finished_at": "elsewhere"})
            return super().acquire(run_id)

    drive(tmp_path, [late, cell(1)], work, Late(tmp_path, "g"))
    assert work.ran == [1]


def test_a_ctrl_c_whose_exception_python_dropped_still_stops_the_grid(tmp_path):
    """The handler sets STOP before it raises; where the exception is lost (raised inside a
    finalizer), the driver stops at the next cell it would hand out."""
    import pytest

    from kanbench.suite.driver import STOP, Interrupted

    class DroppedCtrlC(Work):
        def __call__(self, cfg):
            STOP.set()                     # the handler ran; its exception went nowhere
            return super().__call__(cfg)

    work = DroppedCtrlC()
    try:
        with pytest.raises(Interrupted):
            drive(tmp_path, [cell(s) for s in range(3)], work)
    finally:
        STOP.clear()
    assert work.ran == [0]                 # the first cell's record is kept, no other runs
    assert ResultsStore(tmp_path).get("g", cell(0).run_id)["status"] == "done"
    assert not list((tmp_path / "claims" / "g").iterdir())          # claims released
