"""Seed variance: is a method's difference from the baseline (dense) larger than seed noise?
A pure function of the results DataFrame (one row per record, dotted columns)."""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from kanbench.suite.report.declared import baseline
from kanbench.suite.report.tables import done_records

CONFIDENCE = 0.95
MIN_SEEDS = 3


def confidence_half_width(values: pd.Series, confidence: float = CONFIDENCE) -> float:
    """Half-width of the t-distribution confidence interval of the mean (nan below 2 values)."""
    n = len(values)
    if n < 2:
        return float("nan")
    return float(stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))


def seed_variance(df: pd.DataFrame) -> pd.DataFrame:
    """One row per setup x method over the done records: seeds, mean, std, the 95% CI of the
    mean, and against the baseline (dense) of the same setup the gap (mean - its mean), Welch's
    t statistic
    and two-sided p-value, and flags: `few seeds` (< 3 on either side) and `spread > gap`
    (either side's std exceeds the gap, so the gap is within seed noise)."""
    done = done_records(df)
    if done.empty:
        return pd.DataFrame()
    reference = baseline()
    rows = []
    for (setup, label), group in done.groupby(["setup", "label"], sort=True):
        values = group["value"]
        row = {"setup": setup, "method": label, "metric": group["metrics.primary"].iloc[0],
               "seeds": len(values), "mean": values.mean(),
               "std": values.std(ddof=1) if len(values) > 1 else float("nan"),
               "ci95": confidence_half_width(values)}
        dense = done[(done["setup"] == setup) & (done["method"] == reference)]["value"]
        flags = []
        if len(values) < MIN_SEEDS or len(dense) < MIN_SEEDS:
            flags.append("few seeds")
        if group["method"].iloc[0] != reference and len(dense):
            gap = values.mean() - dense.mean()
            row[f"gap vs {reference}"] = gap
            if len(values) > 1 and len(dense) > 1:
                test = stats.ttest_ind(values, dense, equal_var=False)
                row["welch t"] = float(test.statistic)
                row[f"p vs {reference}"] = float(test.pvalue)
            spreads = [s for s in (row["std"], dense.std(ddof=1)) if not math.isnan(s)]
            if spreads and max(spreads) > abs(gap):
                flags.append("spread > gap")
        row["flags"] = ", ".join(flags)
        rows.append(row)
    columns = ["setup", "method", "metric", "seeds", "mean", "std", "ci95",
               f"gap vs {reference}", "welch t", f"p vs {reference}", "flags"]
    return pd.DataFrame(rows).reindex(columns=columns)
