"""scripts/bench_kan.py: a quick run end to end, and the layers it compares."""


import numpy as np
import pandas as pd
import pytest
import torch

from scripts import bench_kan as bench
from tests.conftest import run_script


@pytest.mark.slow
def test_quick_run_writes_one_row_per_measurement_and_names_its_command(tmp_path):
    done = run_script("bench_kan.py", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(tmp_path / "kan_layer.csv")
    assert list(frame.columns) == ["impl", "in", "out", "batch", "G", "k", "fwd_ms",
                                   "fwdbwd_ms", "peak_mb", "step_mb", "threads", "device"]
    assert len(frame) == len(bench.IMPLS) * len(bench.QUICK_SHAPES)  # one G under --quick
    assert sorted(frame.impl) == sorted(bench.IMPLS)
    assert not frame.duplicated(["impl", *bench.KEYS]).any()
    times = frame[["fwd_ms", "fwdbwd_ms"]].to_numpy()
    assert np.isfinite(times).all() and (times > 0).all()
    assert (frame.peak_mb > 0).all()
    sparse = pd.read_csv(tmp_path / "sparse_path.csv")
    assert len(sparse) == len(bench.QUICK_SHAPES)
    assert (sparse[["dense_fwd_ms", "sparse_fwd_ms"]].to_numpy() > 0).all()
    assert set(sparse["use_sparse picks"]) <= {"dense", "sparse"}
    md = (tmp_path / "kan_layer.md").read_text()
    assert f"python scripts/bench_kan.py --quick --out {tmp_path}" in md
    assert "pykan" in md


def test_implementations_map_the_same_input_to_outputs_of_the_same_shape():
    outputs, inputs = {}, {}
    for impl in bench.IMPLS:
        model, inputs[impl] = bench.build(impl, d_in=8, d_out=4, batch=16, G=5, k=3)
        outputs[impl] = model(inputs[impl])
    first = next(iter(bench.IMPLS))
    for impl in bench.IMPLS:
        assert torch.equal(inputs[impl], inputs[first])
        # different parametrizations and initializations: shapes agree, values need not
        assert outputs[impl].shape == (16, 4)
        assert torch.isfinite(outputs[impl]).all()
