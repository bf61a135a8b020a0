"""Plots as pure functions of the results DataFrame: each returns a matplotlib Figure (the
script saves PNG and PDF). One colour per method, the same in every plot."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from suite.report.declared import colour, declared  # noqa: E402
from suite.report.tables import done_records, pareto_front, summary  # noqa: E402

METRIC_LABELS = {"accuracy": "test accuracy", "rmse": "test RMSE (lower is better)",
                 "map50": "VOC mAP@0.5", "coco_map": "COCO mAP@[.5:.95]"}


def metric_vs_bytes(df: pd.DataFrame, setup: str) -> Figure:
    """Every seed of every method of one setup: primary metric against KAN bytes (log axis),
    method means joined along the Pareto front."""
    done = done_records(df)
    rows = done[done["setup"] == setup]
    metric = rows["metrics.primary"].iloc[0]
    higher = bool(rows["metrics.higher_is_better"].iloc[0]) \
        if "metrics.higher_is_better" in rows else True
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, runs in rows.groupby("label", sort=True):
        ax.scatter(runs["storage.kan_bytes"], runs["value"], color=colour(label), label=label,
                   alpha=0.8, s=30)
    means = rows.groupby("label").agg(bytes=("storage.kan_bytes", "median"),
                                      value=("value", "mean"))
    front = means[pareto_front(means["bytes"], means["value"], higher)].sort_values("bytes")
    ax.plot(front["bytes"], front["value"], "--", color="grey", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("KAN layers' storage (bytes, log scale)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{setup}: {metric} against storage (every seed)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def ratio_bars(df: pd.DataFrame, table: pd.DataFrame | None = None) -> Figure:
    """KAN ratio against dense per setup and method, mean with the std over seeds. `table`:
    the frame's summary, when already made."""
    table = summary(df) if table is None else table
    done = done_records(df)
    std = done.groupby(["setup", "label"])["storage.kan_ratio"].std(ddof=1)
    setups = sorted(table["setup"].unique())
    methods = sorted(table["method"].unique())
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(setups)), 4))
    for i, method in enumerate(methods):
        rows = table[table["method"] == method].set_index("setup").reindex(setups)
        errors = [std.get((s, method), 0.0) for s in setups]
        ax.bar([x + i * width for x in range(len(setups))], rows["KAN ratio"], width,
               yerr=errors, color=colour(method), label=method, capsize=2)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(setups))], setups, rotation=30,
                  ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("KAN compression ratio vs dense (x, log scale)")
    ax.set_title("Compression of the KAN layers (mean ± std over seeds)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def latency_bars(df: pd.DataFrame) -> Figure | None:
    """Median batch-1 forward latency per setup and method, labelled by the kernel that ran
    (None when no record measured latency)."""
    done = done_records(df)
    if "latency.ms.1" not in done or done["latency.ms.1"].isna().all():
        return None
    done = done[done["latency.ms.1"].notna()]
    table = done.groupby(["setup", "label"]).agg(ms=("latency.ms.1", "median"),
                                                 kernel=("latency.kernel", "first"))
    setups = sorted(done["setup"].unique())
    methods = sorted(done["label"].unique())
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(setups)), 4))
    for i, method in enumerate(methods):
        ms = [table["ms"].get((s, method), float("nan")) for s in setups]
        kernel = table.xs(method, level="label")["kernel"].iloc[0] if method in \
            table.index.get_level_values("label") else "?"
        ax.bar([x + i * width for x in range(len(setups))], ms, width, color=colour(method),
               label=f"{method} ({kernel} kernel)")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(setups))], setups, rotation=30,
                  ha="right", fontsize=8)
    ax.set_ylabel("forward latency at batch 1 (ms, median)")
    ax.set_title("Inference latency of each method's final model")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def codebook_sweep(df: pd.DataFrame) -> Figure | None:
    """The metric against the codebook size K of every method whose records hold two or more
    values of its size argument (`Method.size_arg`), per setup, mean ± std over seeds (None
    when no method's does)."""
    done = done_records(df)
    swept = []
    for method, runs in done.groupby("method", sort=True):
        column = f"config.args.method.{declared(method, 'size_arg')}"
        if column in runs and runs[column].nunique() >= 2:
            swept.append((method, runs[runs[column].notna()], column))
    if not swept:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, rows, column in swept:
        for setup, runs in rows.groupby("setup", sort=True):
            stats = runs.groupby(column)["value"].agg(["mean", "std"]).sort_index()
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o",
                        capsize=3, color=colour(method),
                        label=setup if len(swept) == 1 else f"{method}: {setup}")
    metric = swept[0][1]["metrics.primary"].iloc[0]
    ax.set_xscale("log", base=2)
    ax.set_xlabel("codebook size K (codes, log2 scale)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    names = ", ".join(declared(m, "title") or m for m, _, _ in swept)
    ax.set_title(f"{names}: metric against codebook size (mean ± std over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
