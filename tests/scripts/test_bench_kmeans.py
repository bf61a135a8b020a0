"""scripts/bench_kmeans.py: a quick run end to end, its inertia and its data."""


import numpy as np
import pandas as pd
import pytest
import torch

from scripts import bench_kmeans as bench
from tests.conftest import run_script


@pytest.mark.slow
def test_quick_run_writes_one_row_per_measurement_and_names_its_command(tmp_path):
    done = run_script("bench_kmeans.py", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(tmp_path / "kmeans.csv")
    assert list(frame.columns) == bench.COLUMNS
    assert len(frame) == len(bench.IMPLS) * len(bench.QUICK_SIZES) * len(bench.QUICK_CODES)
    assert not frame.duplicated(["impl", "N", "K"]).any()
    assert set(frame.impl) == set(bench.IMPLS)
    assert set(frame.N) == set(bench.QUICK_SIZES) and set(frame.K) == set(bench.QUICK_CODES)
    assert (frame.D == bench.DIM).all() and frame.skipped.isna().all()
    values = frame[["time_s", "inertia"]].to_numpy()
    assert np.isfinite(values).all() and (values > 0).all()
    assert (frame.codes_used <= frame.K).all()
    # both should find similar clusterings of the same data: a real check on methods.layers.codebook
    pairs = frame.pivot(index=["N", "K"], columns="impl", values="inertia")
    assert (pairs["ours"] <= 1.5 * pairs["sklearn"]).all(), pairs
    md = (tmp_path / "kmeans.md").read_text()
    assert f"python scripts/bench_kmeans.py --quick --out {tmp_path}" in md
    assert "n_init=1" in md and "sklearn time / ours" in md


def test_inertia_matches_a_brute_force_float64_sum():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(7, 3)).astype(np.float32)             # (N, D)
    codebook = rng.normal(size=(3, 3)).astype(np.float32)            # (K, D)
    assignments = np.array([0, 2, 1, 1, 0, 2, 2])                    # (N,)
    expected = 0.0
    for vector, code in zip(vectors, assignments, strict=True):
        for j in range(vectors.shape[1]):
            expected += (float(vector[j]) - float(codebook[code, j])) ** 2
    got = bench.inertia(torch.from_numpy(vectors), codebook, torch.from_numpy(assignments))
    assert got == pytest.approx(expected, rel=1e-12)
    assert bench.inertia(vectors, vectors, np.arange(7)) == 0.0


def test_meta_vectors_are_seeded_and_not_degenerate():
    a, b = bench.meta_vectors(500, seed=3), bench.meta_vectors(500, seed=3)
    assert a.shape == (500, bench.DIM) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, bench.meta_vectors(500, seed=4))
    assert (a.std(0) > 0).all() and torch.isfinite(a).all()
