"""The papers' headline claims beside what kanbench measures: a pure function of the records.

Each method declares its paper's claims (`Method.claims`), each naming the kanbench setting
closest to it (a grid, a task, that method's settings) and what to measure there;
`claims_table` computes that from whatever records the grids hold and says "not run" where
they hold none. Gaps are paired by seed (method minus the baseline, dense, of the same setup
and seed) with a 95% t interval of their mean; ratios are means over seeds.
"""

from __future__ import annotations

import math

import pandas as pd

from kanbench.suite.interfaces import Claim
from kanbench.suite.report.declared import baseline, claims
from kanbench.suite.report.variance import confidence_half_width

HEADS = 50


def paired(method: pd.DataFrame, dense: pd.DataFrame, column: str
           ) -> tuple[pd.Series, pd.Series]:
    """`column` of method and of dense, by seed, over the seeds both have."""
    m = method.set_index("seed")[column].astype(float)
    d = dense.set_index("seed")[column].astype(float)
    seeds = m.index.intersection(d.index)
    return m[seeds], d[seeds]


def gap(method: pd.DataFrame, dense: pd.DataFrame, column: str) -> pd.Series:
    """method minus dense of the same seed."""
    m, d = paired(method, dense, column)
    return m - d


def interval(values: pd.Series, scale: float = 1.0, digits: int = 2) -> str:
    half = confidence_half_width(values)
    mean = values.mean() * scale
    if math.isnan(half):
        return f"{mean:+.{digits}f}"
    return f"{mean:+.{digits}f} [{mean - half * scale:+.{digits}f}, " \
           f"{mean + half * scale:+.{digits}f}]"


def measured(claim: Claim, method: pd.DataFrame, dense: pd.DataFrame) -> str:
    """What kanbench measured for `claim`, in words with numbers."""
    primary = method["metrics.primary"].iloc[0]
    kan_ratio = method["storage.kan_ratio"].mean()
    if claim.measure == "params":
        ratio = dense["trainable_params"].median() / method["trainable_params"].median()
        diff = gap(method, dense, f"metrics.{primary}")
        return (f"{int(method['trainable_params'].median()):,} vs "
                f"{int(dense['trainable_params'].median()):,} parameters (1/{ratio:.1f}); "
                f"accuracy {method[f'metrics.{primary}'].mean():.2%} vs "
                f"{dense[f'metrics.{primary}'].mean():.2%}, gap {interval(diff, 100)} points")
    if claim.measure == "ratio":
        diff = gap(method, dense, f"metrics.{primary}")
        return f"{kan_ratio:.1f}x on the KAN layers; accuracy gap {interval(diff, 100)} points"
    if claim.measure == "rmse_ratio":
        m, d = paired(method, dense, "metrics.rmse")
        ratio = m / d
        return (f"{kan_ratio:.1f}x on the KAN layers; RMSE {method['metrics.rmse'].mean():.4g} "
                f"vs dense {dense['metrics.rmse'].mean():.4g} (ratio {ratio.mean():.2f} mean "
                "over seeds)")
    if claim.measure == "map_gap":
        diff = gap(method, dense, "metrics.map50")
        return f"{kan_ratio:.1f}x on the head; mAP50 gap {interval(diff, 100)} points"
    if claim.measure == "transfer_retention":
        m, d = paired(method, dense, "metrics.transfer_map50")
        retention = m / d
        half = confidence_half_width(retention)
        return f"{100 * retention.mean():.1f}% (± {100 * half:.1f}) of dense transfer mAP50"
    if claim.measure == "heads":
        head, shared = method["storage.kan_bytes"].median(), method["storage.shared_bytes"].median()
        compressed = shared + HEADS * (head - shared)
        full = HEADS * dense["storage.kan_bytes"].median()
        return (f"{HEADS} heads {full / 1e6:.4g} MB -> {compressed / 1e6:.4g} MB "
                f"({full / compressed:.1f}x)")
    raise ValueError(f"unknown measure {claim.measure!r}")


def claims_table(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per claim; `frames` maps a grid name to its records' frame (absent: not run)."""
    reference = baseline()
    rows = []
    for name, claim in claims():
        settings = "".join(f", {k}={v}" for k, v in claim.where)
        row = {"paper": claim.paper, "claim": claim.claim,
               "kanbench setting": f"{claim.grid}: {claim.task}, {name}{settings} "
                                   f"vs {reference}"}
        frame = frames.get(claim.grid, pd.DataFrame())
        done = frame[(frame["status"] == "done") & (frame["task"] == claim.task)] \
            if not frame.empty else frame
        method = done[done["method"] == name] if not done.empty else done
        for key, value in claim.where:
            column = f"config.args.method.{key}"
            method = method[method[column] == value] if column in method else method.iloc[:0]
        dense = done[done["method"] == reference] if not done.empty else done
        if method.empty or dense.empty:
            row.update({"seeds": 0, "measured": f"not run (no records of grid {claim.grid})"})
        else:
            row.update({"seeds": len(method), "measured": measured(claim, method, dense)})
        rows.append(row)
    return pd.DataFrame(rows)
