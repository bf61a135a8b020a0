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
    assert list(frame.columns) == ["impl", "in", "out", "batch", "G", "k", "weight_mb", "fwd_ms",
                                   "train_fwd_ms", "fwdbwd_ms", "GB/s", "peak_mb", "step_mb",
                                   "threads", "device"]
    assert len(frame) == len(bench.IMPLS) * len(bench.QUICK_SHAPES)  # one G under --quick
    assert sorted(frame.impl) == sorted(bench.IMPLS)
    assert not frame.duplicated(["impl", *bench.KEYS]).any()
    times = frame[["fwd_ms", "train_fwd_ms", "fwdbwd_ms"]].to_numpy()
    assert np.isfinite(times).all() and (times > 0).all()
    assert (frame.peak_mb > 0).all()
    ours = frame[frame.impl == bench.REFERENCE].iloc[0]
    d_in, d_out, _ = bench.QUICK_SHAPES[0]
    # KANLinear holds per edge G+k coefficients, a base weight and a scaler, in fp32
    assert ours.weight_mb * bench.MIB == pytest.approx(d_in * d_out * (5 + 3 + 2) * 4, rel=1e-4)
    assert ours["GB/s"] == pytest.approx(ours.weight_mb * bench.MIB / ours.fwd_ms / 1e6, rel=1e-3)
    md = (tmp_path / "kan_layer.md").read_text()
    assert f"python scripts/bench_kan.py --quick --out {tmp_path}" in md
    assert "pykan" in md and "train fwd / no-grad fwd" in md


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
