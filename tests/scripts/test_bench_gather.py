"""scripts/bench_gather.py: a quick run end to end, and the bytes it says a forward reads."""

import re

import pandas as pd
import pytest
import torch

from kanbench.methods.layers.kan import KANLinear
from scripts import bench_gather as bench
from tests.conftest import run_script


@pytest.mark.slow
def test_quick_run_times_every_layer_against_both_dense_baselines(tmp_path):
    done = run_script("bench_gather.py", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(tmp_path / "gather.csv")
    layers = {"dense", "dense_prescaled", "share_int8", "share_fp32", "metacluster"}
    assert set(frame.layer) == layers and len(frame) == len(layers) * 2   # 2 batches
    assert (frame.ms > 0).all()
    dense = frame[frame.layer == "dense"].set_index("batch").ms
    for row in frame.itertuples():
        assert row.dense_over_this == pytest.approx(dense[row.batch] / row.ms, rel=1e-3)
    assert set(frame[frame.batch == 1].order) == {"dense", "outputs"}
    assert set(frame[frame.batch == 40].order) == {"dense", "batch"}
    assert frame["GB/s"].to_numpy() == pytest.approx((frame.read_bytes / frame.ms / 1e6).to_numpy(),
                                                      rel=1e-3)
    orders = pd.read_csv(tmp_path / "gather_order.csv")
    assert set(orders.order) == {"dense", "outputs", "batch"}
    assert set(orders[orders.order != "dense"].layer) == set(bench.COMPRESSED)
    md = (tmp_path / "gather.md").read_text()
    assert f"python scripts/bench_gather.py --quick --out {tmp_path}" in md
    bandwidth = float(re.search(r"copy bandwidth \(STREAM-like.*?\): ([\d.]+) GB/s", md).group(1))
    assert bandwidth > 0 and "Weights read per second" in md
    summary = (tmp_path / "gather_summary.md").read_text()
    assert "20->6" in summary and f"{bandwidth:.1f} GB/s" in summary
    assert summary.count("\n|") == 2 + 2                       # header, rule, two batches


def test_read_bytes_counts_the_kernel_layout():
    dense = KANLinear(20, 6, bench.SPEC)
    # inference reads the folded coefficients and the base weights, not the scalers
    assert bench.read_bytes(dense) == 20 * 6 * (bench.SPEC.n_coef + 1) * 4
    int8 = bench.compressed("share_int8", dense)
    assert bench.read_bytes(int8) == 256 * bench.SPEC.n_coef * 4 + 20 * 6 * (1 + 3)
    carry = bench.compressed("metacluster", dense)
    assert carry.indices.dtype == torch.uint8
    assert bench.read_bytes(carry) == 16 * (bench.SPEC.n_coef + 1) * 4 + 20 * 6
