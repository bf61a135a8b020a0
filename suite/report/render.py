"""Write a grid's reports from its records: the tables (md, tex, csv), the seed-variance table,
the plots (PNG, PDF) and its page of the HTML site, each naming the command and machine that
produced it. What `kanbench report`, the end of `kanbench run` and the report scripts
(render_tables.py, seed_variance.py, plots.py) call."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from kanbench.suite.errors import KanbenchError
from kanbench.suite.report import plots, tables
from kanbench.suite.report.site import write_site
from kanbench.suite.report.variance import seed_arg_spread, seed_variance
from kanbench.suite.store import ResultsStore

NOTES = {
    "summary": "mean and std are over seeds (std needs >= 2 seeds); bytes are the KAN layers' "
               "storage; latency is the median forward time at batch 1.",
    "compression": "Each method's metric is mean ± std over seeds, to the precision the spread "
                   "supports; KAN kB: the KAN layers' storage (1e3 B); ratio: dense fp32 KAN "
                   "bytes over the method's.",
    "metakan": "Training step peak: memory of one forward+backward at the training batch; "
               "training peak (where recorded): the model, the optimizer's state and that "
               "step together (medians over seeds); s / epoch: the train stage's seconds over "
               "its epochs.",
    "leaderboard": "Ranked by the mean primary metric (best first); pareto: no other method "
                   "of the setup is both smaller (KAN bytes) and better.",
    "detection": "mAP50 is VOC mAP@0.5 (the task's voc_variant, area by default), in-domain "
                 "and zero-shot on the transfer set over the mapped classes; COCO mAP is "
                 "mAP@[.5:.95]. Retention is the method's mAP over the dense head's of the same "
                 "setup and seed (mean over seeds). Head bytes and ratio: the KAN head (fc7, "
                 "cls_score, bbox_pred); the detector ratio adds the frozen trunk (backbone, "
                 "RPN, fc6) to both sides.",
    "share": "Head MB: the KAN head's bytes (1e6 B). Retention against dense of the same seed. "
             "N heads MB: N such heads sharing their codebooks (the record's shared bytes "
             "once, the rest N times; dense heads share nothing). scripts/bench_multihead.py "
             "writes such heads to files (results/bench/multihead*.md).",
    "indices": "Codebook indices as stored (bit-packed at ceil(log2 K) bits, or entropy-coded "
               "with `index_coding: ans`) against the empirical-entropy bound N H(p) / 8 of "
               "the same indices; the coder's table is the K int32 counts per layer an "
               "entropy-coded stream is decoded with. Means over seeds.",
    "frontier": "Every setting of a method that sweeps one, beside dense of the same setup: "
                "KAN ratio (mean over seeds) and the metric against dense's of the same seed "
                "(gap in points where higher is better, ratio where lower is), mean over "
                "seeds, on the validation and the test split; val pareto: no other setting "
                "of the method both smaller and better on validation.",
    "seed_args": "The spread a seed-like method arg (e.g. kmeans_seed) causes alone: per "
                 "training seed, the records that differ only in that arg (the unset one "
                 "included); beside it the std over training seeds with the arg unset.",
}


def all_tables(frame: pd.DataFrame, budget: float | None = None) -> dict[str, pd.DataFrame]:
    """Every table of the frame by name, the empty ones left out."""
    summary = tables.summary(frame)
    made = {"summary": summary, "compression": tables.compression(frame),
            "metakan": tables.metakan_table(frame),
            "leaderboard": tables.leaderboard(frame, budget, summary),
            "detection": tables.detection(frame), "share": tables.share_table(frame),
            "indices": tables.index_storage(frame), "frontier": tables.frontier(frame),
            "seed_variance": seed_variance(frame),
            "seed_args": seed_arg_spread(frame)}
    return {name: table for name, table in made.items() if not table.empty}


def write_tables(made: dict[str, pd.DataFrame], grid: str, out: Path, formats: list[str],
                 source: str) -> list[Path]:
    """Write every table of `made` (all_tables) but seed variance in the formats; returns the
    files."""
    written = []
    for name, table in made.items():
        if name == "seed_variance":
            continue
        base = out / f"{grid}_{name}"
        if "csv" in formats:
            table.to_csv(base.with_suffix(".csv"), index=False, float_format="%.6g")
        if "md" in formats:
            base.with_suffix(".md").write_text(
                f"# Grid `{grid}`: {name}\n\n{source}{NOTES[name]}\n\n"
                + table.to_markdown(index=False, floatfmt=".4g") + "\n")
        if "tex" in formats:
            base.with_suffix(".tex").write_text(
                f"% {source.strip()}\n" + table.to_latex(index=False, float_format="%.4g",
                                                                 escape=True, na_rep="--"))
        written += [base.with_suffix(f".{f}") for f in formats]
    return written



def write_seed_variance(made: dict[str, pd.DataFrame], grid: str, out: Path,
                        source: str) -> list[Path]:
    table = made.get("seed_variance")
    if table is None or table.empty:
        return []
    base = out / f"{grid}_seed_variance"
    table.to_csv(base.with_suffix(".csv"), index=False, float_format="%.6g")
    base.with_suffix(".md").write_text(
        f"# Grid `{grid}`: seed variance\n\n{source}ci95: half-width of the 95% confidence "
        "interval of the mean (t distribution); paired gap ci95: the same for the gap, from "
        "the per-seed differences to dense of the same seed. Welch's t-test against dense of "
        "the same setup, two-sided. Flags: `few seeds` (< 3 on either side), `spread > gap` (a std "
        "wider than the gap to dense).\n\n" + table.to_markdown(index=False, floatfmt=".4g")
        + "\n")
    return [base.with_suffix(".csv"), base.with_suffix(".md")]


def file_name(text: str) -> str:
    """A setup label as a file name part: `feynman[equation=I.6.20b]` -> feynman-I.6.20b."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", re.sub(r"\w+=", "", text)).strip("-")


def save_figure(figure, base: Path, caption: str) -> list[Path]:
    """PNG and PDF (no timestamps in either, so reruns rewrite the same bytes)."""
    # a figure label, so the constrained layout keeps it clear of the axes' labels
    figure.supxlabel(caption, x=0.01, ha="left", fontsize=5, color="grey")
    paths = [base.with_name(f"{base.name}.png"), base.with_name(f"{base.name}.pdf")]
    figure.savefig(paths[0], dpi=150, metadata={"Software": None})
    figure.savefig(paths[1], metadata={"CreationDate": None, "Creator": None,
                                       "Producer": None})
    plt.close(figure)
    return paths


def write_plots(frame: pd.DataFrame, grid: str, out: Path, caption: str,
                summary: pd.DataFrame | None = None) -> list[Path]:
    """Every plot of the frame; `summary`: its summary table, when already made."""
    done = tables.done_records(frame)
    if done.empty:
        return []
    written = []
    for setup in sorted(done["setup"].unique()):
        written += save_figure(plots.metric_vs_bytes(frame, setup),
                        out / f"{grid}_bytes_{file_name(setup)}", caption)
    written += save_figure(plots.ratio_bars(frame, summary), out / f"{grid}_ratios", caption)
    for name, figure in (("latency", plots.latency_bars(frame)),
                         ("codebook_sweep", plots.codebook_sweep(frame))):
        if figure is not None:  # only where the records hold what it shows
            written += save_figure(figure, out / f"{grid}_{name}", caption)
    swept = tables.frontier(frame)
    for setup in sorted(swept["setup"].unique()) if not swept.empty else []:
        written += save_figure(plots.frontier(swept, setup),
                               out / f"{grid}_frontier_{file_name(setup)}", caption)
    return written



def grid_frame(results: str, grid: str, split: str = "test") -> pd.DataFrame:
    """The grid's records as a frame, its metric columns those of `split`; no records is a
    one-line error."""
    store = ResultsStore(results)
    frame = store.to_frame(grid)
    store.report_skipped()
    if frame.empty:
        raise KanbenchError(f"no records for grid {grid!r} under {results}/runs")
    return frame if split == "test" else validation_view(frame)


def validation_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with each metric column holding its validation value: `metrics.val.X` as
    `metrics.X`, `metrics.stages.S.val.X` as `metrics.stages.S.X`; test-only metrics (the
    transfer set, retention) are dropped, so no table can mix the two splits."""
    bookkeeping = {"metrics.primary", "metrics.higher_is_better"}
    metric_columns = [c for c in frame.columns
                      if c.startswith("metrics.") and c not in bookkeeping]
    kept = frame.drop(columns=[c for c in metric_columns if ".val." not in c])
    renamed = {c: c.replace(".val.", ".", 1) for c in metric_columns if ".val." in c}
    return kept.rename(columns=renamed)


def source_line(command: str, frame: pd.DataFrame, results: str, grid: str) -> str:
    return (f"Made by `{command}` from the {len(frame)} records in `{results}/runs/{grid}/`, "
            f"which `kanbench run {grid}` produced on: {tables.machines(frame)}.\n")


def plot_caption(frame: pd.DataFrame, results: str, grid: str) -> str:
    return (f"kanbench report {grid}: {len(frame)} records of "
            f"{results}/runs/{grid}, run on {tables.machines(frame)}")


def write_reports(frame: pd.DataFrame, made: dict[str, pd.DataFrame], grid: str,
                  results: str, split: str = "test") -> list[Path]:
    """Everything: tables (md, csv), seed variance, plots and the site page, as `kanbench
    report` writes them; `made`: the frame's tables (all_tables). The validation split gets
    its tables only, named `<grid>_val_*` (what a grid's choices are read from)."""
    out = Path(results) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    command = f"kanbench report {grid}" + ("" if split == "test" else f" --split {split}")
    source = source_line(command, frame, results, grid)
    name = grid if split == "test" else f"{grid}_{split}"
    written = write_tables(made, name, out, ["md", "csv"], source)
    if split != "test":
        return written
    written += write_seed_variance(made, name, out, source)
    figures = Path(results) / "plots"
    figures.mkdir(parents=True, exist_ok=True)
    pictures = write_plots(frame, name, figures, plot_caption(frame, results, grid),
                           made.get("summary"))
    return written + pictures + write_site(frame, made, grid, results, pictures, source.strip())
