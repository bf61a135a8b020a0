"""Seed variance: is a method's difference from the baseline (dense) larger than seed noise?
A pure function of the results DataFrame (one row per record, dotted columns)."""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from kanbench.suite.report.declared import baseline
from kanbench.suite.report.tables import done_records, method_label

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
    mean, and against the baseline (dense) of the same setup the gap (mean - its mean) with the
    95% t interval's half-width of the per-seed gaps (the method minus the baseline of the
    same seed, over the seeds both have), Welch's t statistic and two-sided p-value, and
    flags: `few seeds` (< 3 on either side) and `spread > gap` (either side's std exceeds the
    gap, so the gap is within seed noise)."""
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
        dense_rows = done[(done["setup"] == setup) & (done["method"] == reference)]
        dense = dense_rows["value"]
        flags = []
        if len(values) < MIN_SEEDS or len(dense) < MIN_SEEDS:
            flags.append("few seeds")
        if group["method"].iloc[0] != reference and len(dense):
            gap = values.mean() - dense.mean()
            row[f"gap vs {reference}"] = gap
            by_seed = group.set_index("seed")["value"] - dense_rows.set_index("seed")["value"]
            row["paired gap ci95"] = confidence_half_width(by_seed.dropna())
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
               f"gap vs {reference}", "paired gap ci95", "welch t", f"p vs {reference}", "flags"]
    return pd.DataFrame(rows).reindex(columns=columns)


def seed_arg_spread(df: pd.DataFrame) -> pd.DataFrame:
    """The spread a seed-like method arg (one whose name ends in `_seed`, e.g. a k-means seed)
    causes alone: per setup, method (labelled without that arg), arg and training seed, over
    the records that differ only in that arg (an unset one included), the count, mean, std,
    min and max of the primary metric; beside it the std over training seeds of the same
    method with the arg unset, the spread to compare it with."""
    done = done_records(df)
    seed_args = [c for c in done.columns
                 if c.startswith("config.args.method.") and c.endswith("_seed")]
    rows = []
    for column in seed_args:
        for setup, in_setup in done.groupby("setup", sort=True):
            if in_setup[column].isna().all():
                continue
            base = method_label(in_setup, leave_out=(column,))
            for (label, seed), group in in_setup.groupby([base, "seed"], sort=True):
                if group[column].astype(str).nunique(dropna=False) < 2:
                    continue
                values = group["value"]
                unset = in_setup[(base == label) & in_setup[column].isna()]["value"]
                rows.append({"setup": setup, "method": label, "arg": column.rsplit(".", 1)[1],
                             "seed": seed, "values": len(values), "mean": values.mean(),
                             "std": values.std(ddof=1), "min": values.min(),
                             "max": values.max(),
                             "std over seeds, unset": unset.std(ddof=1) if len(unset) > 1
                             else float("nan"), "seeds, unset": len(unset)})
    return pd.DataFrame(rows)
