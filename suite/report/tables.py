"""Tables as pure functions of the results DataFrame."""

from __future__ import annotations

import pandas as pd

SETUP_SECTIONS = ("task", "kan", "train")


def setup_label(df: pd.DataFrame) -> pd.Series:
    """`task` plus the task, kan and train args that vary among that task's records, e.g.
    `feynman[equation=I.9.18]`, so different setups of one task get their own rows."""
    labels = df["task"].copy()
    arg_cols = [c for c in df.columns
                if any(c.startswith(f"config.args.{s}.") for s in SETUP_SECTIONS)]
    for task, rows in df.groupby("task"):
        varying = [c for c in arg_cols
                   if rows[c].notna().any() and rows[c].astype(str).nunique() > 1]
        if varying:
            parts = rows[varying].astype(str).apply(
                lambda r: ",".join(f"{c.rsplit('.', 1)[1]}={v}" for c, v in r.items()), axis=1)
            labels.loc[rows.index] = task + "[" + parts + "]"
    return labels


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per setup x method over the done records: seeds, primary metric mean and std,
    KAN bytes, KAN and model ratios, batch-1 latency."""
    done = df[df["status"] == "done"].copy()
    if done.empty:
        return pd.DataFrame()
    done["setup"] = setup_label(done)
    done["value"] = [row[f"metrics.{row['metrics.primary']}"] for _, row in done.iterrows()]
    rows = []
    for (setup, method), g in done.groupby(["setup", "method"], sort=True):
        rows.append({
            "setup": setup, "method": method, "seeds": len(g),
            "metric": g["metrics.primary"].iloc[0],
            "mean": g["value"].mean(),
            "std": g["value"].std(ddof=1) if len(g) > 1 else float("nan"),
            "KAN bytes": int(g["storage.kan_bytes"].median()),
            "KAN ratio": g["storage.kan_ratio"].mean(),
            "model ratio": g["storage.model_ratio"].mean(),
            "latency b1 (ms)": g.get("latency.ms.1", pd.Series(dtype=float)).median(),
            "train (s)": g["timing.train.seconds"].median()
            if "timing.train.seconds" in g else float("nan"),
        })
    return pd.DataFrame(rows)
