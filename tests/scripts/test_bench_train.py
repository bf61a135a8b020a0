"""scripts/bench_train.py: a quick run end to end, and the two training paths it compares."""

import numpy as np
import pandas as pd
import pytest
import torch

from kanbench.methods.layers import metakan, splines
from kanbench.suite import lit
from scripts import bench_train as bench
from tests.conftest import run_script


@pytest.mark.slow
def test_quick_run_writes_every_path_and_names_its_command(tmp_path):
    done = run_script("bench_train.py", "--quick", "--no-busy", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(tmp_path / "train_step.csv")
    assert set(frame.path) == set(bench.PATHS) and set(frame.method) == {"dense", "metakan"}
    assert len(frame) == len(bench.PATHS) * 2
    times = frame[["step_ms", "epoch_s"]].to_numpy()
    assert np.isfinite(times).all() and (times > 0).all()
    md = (tmp_path / "train_step.md").read_text()
    assert "python scripts/bench_train.py --quick --no-busy" in md and "speed-up" in md


def test_the_before_path_differs_in_every_setting_and_the_switch_restores_the_defaults():
    defaults = {key: getattr(bench.OWNERS[key], key) for key in bench.OWNERS}
    assert all(bench.PATHS["before"][key] != value for key, value in defaults.items())
    with bench.training_path("before"):
        assert splines.FUSED_MAX_EDGES == 0 and metakan.CHECKPOINT_MIN_EDGES == 0
        assert not lit.FUSED_ADAM
        assert not splines.use_fused(torch.rand(4, 3), torch.randn(2, 3, 8))
    assert {key: getattr(bench.OWNERS[key], key) for key in defaults} == defaults
    assert splines.use_fused(torch.rand(4, 3), torch.randn(2, 3, 8))
