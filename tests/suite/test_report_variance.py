"""Seed variance on synthetic records with known values, against scipy's Welch test."""

import math

import pandas as pd
import pytest
from scipy import stats

from kanbench.suite.report.tables import done_records
from kanbench.suite.report.variance import seed_arg_spread, seed_variance


def record(method, seed, value, status="done"):
    return {"task": "digits", "method": method, "seed": seed, "status": status,
            "metrics.primary": "accuracy", "metrics.accuracy": value}


DENSE = [0.90, 0.92, 0.94]
META = [0.80, 0.83, 0.86]


def frame(extra=()):
    rows = [record("dense", s, v) for s, v in enumerate(DENSE)]
    rows += [record("metakan", s, v) for s, v in enumerate(META)]
    return pd.DataFrame(rows + list(extra))


def test_means_stds_and_t_confidence_intervals():
    table = seed_variance(frame()).set_index("method")
    assert table.loc["dense", "mean"] == pytest.approx(0.92)
    assert table.loc["dense", "std"] == pytest.approx(0.02)
    # t(0.975, 2 dof) = 4.302653 times std / sqrt(3)
    assert table.loc["dense", "ci95"] == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert table.loc["metakan", "ci95"] == pytest.approx(4.302653 * 0.03 / math.sqrt(3),
                                                         rel=1e-6)


def test_welch_test_against_dense_equals_scipys():
    table = seed_variance(frame()).set_index("method")
    expected = stats.ttest_ind(META, DENSE, equal_var=False)
    assert table.loc["metakan", "gap vs dense"] == pytest.approx(0.83 - 0.92)
    assert table.loc["metakan", "welch t"] == pytest.approx(expected.statistic)
    assert table.loc["metakan", "p vs dense"] == pytest.approx(expected.pvalue)
    assert math.isnan(table.loc["dense", "p vs dense"])
    assert table.loc["metakan", "flags"] == ""                          # gap 0.09 > std 0.03


def test_flags_few_seeds_and_a_spread_wider_than_the_gap_and_skips_failed_runs():
    noisy = [record("share_int8", s, v) for s, v in enumerate([0.85, 0.99])]
    failed = [record("share_int8", 2, float("nan"), status="failed")]
    table = seed_variance(frame(noisy + failed)).set_index("method")
    assert table.loc["share_int8", "seeds"] == 2
    assert table.loc["share_int8", "flags"] == "few seeds, spread > gap"


def test_no_done_records_give_an_empty_table():
    assert seed_variance(frame()[:0]).empty
    assert seed_variance(pd.DataFrame([record("dense", 0, 1.0, "failed")])).empty


def clustered(seed, value, kmeans_seed=None, size=16):
    return {**record("metacluster", seed, value), "config.args.method.kmeans_seed": kmeans_seed,
            "config.args.method.codebook_size": size}


def test_a_seed_arg_alone_gets_its_own_spread_beside_the_training_seeds_spread():
    by_kmeans = [0.70, 0.72, 0.75, 0.71]                # training seed 0, k-means seeds 1 to 4
    rows = [clustered(0, 0.74), clustered(1, 0.80), clustered(2, 0.77)]    # unset: 3 seeds
    rows += [clustered(0, v, k) for k, v in enumerate(by_kmeans, start=1)]
    rows += [clustered(0, 0.5, 1, size=8), clustered(0, 0.6, None, size=8)]  # another K
    table = seed_arg_spread(frame(rows))
    assert list(table["method"]) == ["metacluster[codebook_size=16]",
                                     "metacluster[codebook_size=8]"]
    first = table.iloc[0]
    values = pd.Series([0.74, *by_kmeans])
    assert first["arg"] == "kmeans_seed" and first["seed"] == 0 and first["values"] == 5
    assert first["mean"] == pytest.approx(values.mean())
    assert first["std"] == pytest.approx(values.std(ddof=1))
    assert (first["min"], first["max"]) == (0.70, 0.75)
    assert first["std over seeds, unset"] == pytest.approx(pd.Series([0.74, 0.80, 0.77]).std())
    assert table.iloc[1]["values"] == 2 and math.isnan(table.iloc[1]["std over seeds, unset"])
    # no seed arg varies: no table
    assert seed_arg_spread(frame()).empty


def test_labels_name_set_args_only():
    rows = [clustered(0, 0.74), clustered(0, 0.71, 3)]
    labels = set(done_records(frame(rows))["label"])
    assert labels == {"dense", "metakan", "metacluster", "metacluster[kmeans_seed=3]"}


def test_the_paired_gap_interval_is_the_t_interval_of_the_per_seed_differences():
    table = seed_variance(frame([record("metakan", 3, 0.99)])).set_index("method")
    diffs = pd.Series(META) - pd.Series(DENSE)                     # seed 3 has no dense
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert table.loc["metakan", "paired gap ci95"] == pytest.approx(half)
    assert math.isnan(table.loc["dense", "paired gap ci95"])
