"""Plots as pure functions of the results DataFrame: each returns a matplotlib Figure (the
script saves PNG and PDF). One colour per method, the same in every plot; the settings of one
method (codebook sizes K...) get shades of it, in numeric order. Every figure uses matplotlib's
constrained layout, so labels, titles and legends stay inside it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display

import re  # noqa: E402
import textwrap  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from kanbench.suite.report.declared import colour, declared  # noqa: E402
from kanbench.suite.report.tables import done_records, pareto_front, summary  # noqa: E402

METRIC_LABELS = {"accuracy": "test accuracy", "rmse": "test RMSE (lower is better)",
                 "map50": "VOC mAP@0.5", "coco_map": "COCO mAP@[.5:.95]"}
TITLE_WIDTH = 60  # characters per title line


def natural(label: str) -> list:
    """A sort key that puts `k=4` before `k=16` (numbers compared as numbers)."""
    return [(0, float(t), "") if re.fullmatch(r"-?\d+(\.\d+)?", t) else (1, 0.0, t)
            for t in re.split(r"(-?\d+(?:\.\d+)?)", label) if t]


def shades(labels: list[str]) -> dict[str, tuple]:
    """A colour per label: a method's own colour where it has one label, else shades of it
    from light to dark in the labels' numeric order (its K = 4, 8, 16...)."""
    out = {}
    by_method: dict[str, list[str]] = {}
    for label in labels:
        by_method.setdefault(label.split("[", 1)[0], []).append(label)
    for method, group in by_method.items():
        base = to_rgb(colour(method))
        group = sorted(group, key=natural)
        for i, label in enumerate(group):
            # from 55% towards white to 45% towards black: distinct, the same hue
            t = -0.55 + i / max(1, len(group) - 1) if len(group) > 1 else 0.0
            mix = (1.0, 1.0, 1.0) if t < 0 else (0.0, 0.0, 0.0)
            out[label] = tuple(c + abs(t) * (m - c) for c, m in zip(base, mix, strict=True))
    return out


def figure(width: float = 6, height: float = 4):
    return plt.subplots(figsize=(width, height), layout="constrained")


def setup_ticks(ax, setups: list[str], width: float) -> None:
    """Setup names under their groups of bars, wrapped so that long ones leave the axes room."""
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(setups))],
                  ["\n".join(textwrap.wrap(s, 22)) for s in setups], rotation=30, ha="right",
                  fontsize=7)


def title(ax, text: str) -> None:
    ax.set_title("\n".join(textwrap.wrap(text, TITLE_WIDTH)), fontsize=10)



def metric_vs_bytes(df: pd.DataFrame, setup: str) -> Figure:
    """Every seed of every method of one setup (dots) and each method's mean (diamonds):
    primary metric against KAN bytes (log axis), the means on the Pareto front joined."""
    done = done_records(df)
    rows = done[done["setup"] == setup]
    metric = rows["metrics.primary"].iloc[0]
    higher = bool(rows["metrics.higher_is_better"].iloc[0]) \
        if "metrics.higher_is_better" in rows else True
    labels = sorted(rows["label"].unique(), key=natural)
    below = len(labels) + 1 > LEGEND_ROWS          # a long legend goes under the axes
    legend_rows = -(-(len(labels) + 1) // 2) if below else 0
    fig, ax = figure(9 if below else 7, 4.5 + 0.15 * legend_rows)
    colours = shades(labels)
    means = rows.groupby("label").agg(bytes=("storage.kan_bytes", "median"),
                                      value=("value", "mean"))
    for label in labels:
        runs = rows[rows["label"] == label]
        ax.scatter(runs["storage.kan_bytes"], runs["value"], color=colours[label], label=label,
                   alpha=0.6, s=18)
        ax.scatter(means.loc[label, "bytes"], means.loc[label, "value"], color=colours[label],
                   marker="D", s=45, edgecolors="black", linewidths=0.6)
    front = means[pareto_front(means["bytes"], means["value"], higher)].sort_values("bytes")
    ax.plot(front["bytes"], front["value"], "--", color="grey", lw=1,
            label="Pareto front of the means (◆)")
    ax.set_xscale("log")
    ax.set_xlabel("KAN layers' storage (bytes, log scale)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    title(ax, f"{setup}: {metric} against storage (dots: seeds; diamonds: method means)")
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(fontsize=7, loc="outside lower center" if below else "outside right upper",
               ncols=2 if below else 1)
    return fig


LEGEND_ROWS = 24  # more legend entries than this go under the axes, in two columns


def ratio_bars(df: pd.DataFrame, table: pd.DataFrame | None = None) -> Figure:
    """KAN ratio against dense per setup and method: exact byte counts, so no error bars (a
    method's seeds store the same bytes). `table`: the frame's summary, when already made."""
    table = summary(df) if table is None else table
    setups = sorted(table["setup"].unique())
    methods = sorted(table["method"].unique(), key=natural)
    colours = shades(methods)
    width = 0.8 / max(1, len(methods))
    fig, ax = figure(max(7, 1.3 * len(setups)), 4.5)
    for i, method in enumerate(methods):
        rows = table[table["method"] == method].set_index("setup").reindex(setups)
        ax.bar([x + i * width for x in range(len(setups))], rows["KAN ratio"], width,
               color=colours[method], label=method)
    setup_ticks(ax, setups, width)
    ax.set_yscale("log")
    ax.set_ylabel("KAN ratio vs dense (x, log)")
    title(ax, "Compression of the KAN layers (dense fp32 bytes over the method's)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
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
    methods = sorted(done["label"].unique(), key=natural)
    colours = shades(methods)
    width = 0.8 / max(1, len(methods))
    fig, ax = figure(max(7, 1.3 * len(setups)), 4.5)
    for i, method in enumerate(methods):
        ms = [table["ms"].get((s, method), float("nan")) for s in setups]
        kernel = table.xs(method, level="label")["kernel"].iloc[0] if method in \
            table.index.get_level_values("label") else "?"
        ax.bar([x + i * width for x in range(len(setups))], ms, width, color=colours[method],
               label=f"{method} ({kernel} kernel)")
    setup_ticks(ax, setups, width)
    ax.set_ylabel("latency at batch 1 (ms, median)")
    title(ax, "Inference latency of each method's final model")
    ax.grid(True, axis="y", alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
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
    fig, ax = figure(7, 4.5)
    lines = [(method, setup, runs, column) for method, rows, column in swept
             for setup, runs in rows.groupby("setup", sort=True)]
    colours = shades([f"{method}[{setup}]" for method, setup, _, _ in lines])
    several = max(runs.groupby(column)["seed"].nunique().max()
                  for _, _, runs, column in lines) > 1
    for method, setup, runs, column in lines:
        stats = runs.groupby(column)["value"].agg(["mean", "std"]).sort_index()
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0) if several else None,
                    marker="o", capsize=3, color=colours[f"{method}[{setup}]"],
                    label=setup if len(swept) == 1 else f"{method}: {setup}")
    metric = swept[0][1]["metrics.primary"].iloc[0]
    ax.set_xscale("log", base=2)
    ax.set_xlabel("codebook size K (codes, log2 scale)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    names = ", ".join(declared(m, "title") or m for m, _, _ in swept)
    title(ax, f"{names}: metric against codebook size "
              f"({'mean ± std over seeds' if several else 'one seed'})")
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
    return fig


def frontier(table: pd.DataFrame, setup: str) -> Figure:
    """One setup of the frontier table (tables.frontier): each swept setting's KAN ratio (log)
    against its test metric relative to dense (gap in points, or a ratio on a log axis), the
    settings on the validation split's Pareto front filled, joined and named by their values
    (the choice a validation rule can make), the others hollow."""
    rows = table[table["setup"] == setup]
    fig, ax = figure(8, 5)
    names = []
    for method, runs in rows.groupby(rows["method"].str.split("[").str[0], sort=True):
        tint = colour(method)
        front = runs[runs["val pareto"]].sort_values("KAN ratio")
        rest = runs[~runs["val pareto"]]
        ax.scatter(rest["KAN ratio"], rest["test vs dense"], facecolors="none",
                   edgecolors=tint, s=30, label=f"{method}: other settings")
        ax.plot(front["KAN ratio"], front["test vs dense"], "o-", color=tint, lw=1,
                label=f"{method}: Pareto front on validation")
        for _, point in front.iterrows():
            args = [a.split("=", 1) for a in point["method"].partition("[")[2].rstrip("]")
                    .split(",") if "=" in a]
            names = [k for k, _ in args] or names
            ax.annotate("/".join(v for _, v in args), (point["KAN ratio"], point["test vs dense"]),
                        fontsize=6, xytext=(4, 4), textcoords="offset points")
    measure = rows["measure"].iloc[0]
    gap = measure.endswith("(points)")
    ax.axhline(0 if gap else 1, color="grey", lw=1, ls=":", label="dense")
    ax.set_xscale("log")
    if not gap:
        ax.set_yscale("log")
    ax.set_xlabel("KAN ratio vs dense (x, log scale)")
    ax.set_ylabel(f"test {measure} vs dense, mean of per-seed values"
                  + ("" if gap else " (log)"))
    title(ax, f"{setup}: compression against quality, every swept setting"
              + (f" (the front named by {' / '.join(names)})" if names else ""))
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
    return fig
