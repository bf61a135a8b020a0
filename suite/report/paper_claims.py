"""The papers' headline claims beside what kanbench measures: a pure function of the records.

Each method declares its paper's claims (`Method.claims`), each naming the kanbench setting
closest to it (a grid, a task, that method's settings), how that setting relates to the
paper's, the paper's figure and what to measure there; `claims_table` computes that from
whatever records the grids hold and gives a verdict by `VERDICT_RULE` (printed under the
table). Gaps are paired by seed (method minus the baseline, dense, of the same setup and
seed) with a 95% t interval of their mean; ratios are means over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from kanbench.suite.interfaces import Claim
from kanbench.suite.report.declared import baseline, claims
from kanbench.suite.report.tables import method_label
from kanbench.suite.report.variance import confidence_half_width

HEADS = 50
MET, NOT_MET, OPEN = "met", "not met", "inconclusive"
VERDICT_RULE = (
    "Verdict: a figure (ratio, fraction of parameters) is reached when the measured mean, "
    "rounded to the decimals the paper prints, is at least the paper's; a quality check (a gap "
    "no worse than the margin the paper's words allow, stated in the row) holds when the whole "
    "95% interval is on the claimed side, fails when the whole interval is on the other side, "
    "and is inconclusive when it straddles the margin. Any check failed: not reproduced; else "
    "any inconclusive: inconclusive; else reproduced.")
CHOICE_RULE = (
    "Where a row says \"chosen on validation\", it reads the one of the method's settings in "
    "its grid with the largest KAN ratio among those whose mean validation metric is within "
    "the row's margin of dense's (RMSE at most 1 + margin times dense's; accuracy at most "
    "margin points under), or the best validation metric when none is; the test split "
    "plays no part in the choice.")


@dataclass(frozen=True)
class Measured:
    """What kanbench measured for a claim, in words with numbers, and each check of it:
    (what was checked, MET | NOT_MET | OPEN)."""

    text: str
    checks: tuple[tuple[str, str], ...]


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


def at_least(values: pd.Series, bound: float) -> str:
    """Whether the mean of `values` is at least `bound`, judged by its 95% t interval."""
    mean, half = values.mean(), confidence_half_width(values)
    if math.isnan(half):
        return OPEN
    return MET if mean - half >= bound else NOT_MET if mean + half < bound else OPEN


def at_most(values: pd.Series, bound: float) -> str:
    return at_least(-values, -bound)


def reaches(value: float, figure: str) -> str:
    """`value` rounded to the decimals of the paper's `figure` is at least that figure."""
    decimals = len(figure.partition(".")[2])
    return MET if round(value, decimals) >= float(figure) else NOT_MET


def _points(x: float) -> str:
    return f"{x:g}"


def measure_params(claim, method, dense, done) -> Measured:
    primary = method["metrics.primary"].iloc[0]
    ratio = dense["trainable_params"].median() / method["trainable_params"].median()
    diff = gap(method, dense, f"metrics.{primary}")
    text = (f"{int(method['trainable_params'].median()):,} vs "
            f"{int(dense['trainable_params'].median()):,} parameters (1/{ratio:.1f}); "
            f"accuracy {method[f'metrics.{primary}'].mean():.2%} vs "
            f"{dense[f'metrics.{primary}'].mean():.2%}, gap {interval(diff, 100)} points")
    return Measured(text, ((f"parameters <= 1/{claim.figure}", reaches(ratio, claim.figure)),
                           (f"gap >= -{_points(claim.margin)} points",
                            at_least(100 * diff, -claim.margin))))


def measure_ratio(claim, method, dense, done) -> Measured:
    primary = method["metrics.primary"].iloc[0]
    kan_ratio = method["storage.kan_ratio"].mean()
    diff = gap(method, dense, f"metrics.{primary}")
    return Measured(f"{kan_ratio:.1f}x on the KAN layers; {primary} gap "
                    f"{interval(diff, 100)} points",
                    ((f"ratio >= {claim.figure}x", reaches(kan_ratio, claim.figure)),
                     (f"gap >= -{_points(claim.margin)} points",
                      at_least(100 * diff, -claim.margin))))


def measure_rmse_ratio(claim, method, dense, done) -> Measured:
    kan_ratio = method["storage.kan_ratio"].mean()
    m, d = paired(method, dense, "metrics.rmse")
    ratio = m / d
    half = confidence_half_width(ratio)
    spread = "" if math.isnan(half) else f" ± {half:.2f}"
    return Measured(f"{kan_ratio:.1f}x on the KAN layers; RMSE "
                    f"{method['metrics.rmse'].mean():.4g} vs dense "
                    f"{dense['metrics.rmse'].mean():.4g} (ratio {ratio.mean():.2f}{spread})",
                    ((f"ratio >= {claim.figure}x", reaches(kan_ratio, claim.figure)),
                     (f"RMSE <= {_points(1 + claim.margin)}x dense's",
                      at_most(ratio, 1 + claim.margin))))


def measure_map_gap(claim, method, dense, done) -> Measured:
    kan_ratio = method["storage.kan_ratio"].mean()
    diff = gap(method, dense, "metrics.map50")
    return Measured(f"{kan_ratio:.1f}x on the head; mAP50 gap {interval(diff, 100)} points",
                    ((f"ratio >= {claim.figure}x", reaches(kan_ratio, claim.figure)),
                     (f"gap >= -{_points(claim.margin)} points",
                      at_least(100 * diff, -claim.margin))))


def transfer_retention(method: pd.DataFrame, dense: pd.DataFrame) -> pd.Series:
    m, d = paired(method, dense, "metrics.transfer_map50")
    return m / d


def measure_transfer_retention(claim, method, dense, done) -> Measured:
    retention = transfer_retention(method, dense)
    half = confidence_half_width(retention)
    return Measured(f"{100 * retention.mean():.1f}% (± {100 * half:.1f}) of dense transfer mAP50",
                    ((f"retention >= {100 * float(claim.figure):g}%",
                      at_least(retention, float(claim.figure))),))


def measure_heads(claim, method, dense, done) -> Measured:
    head, shared = method["storage.kan_bytes"].median(), method["storage.shared_bytes"].median()
    compressed = shared + HEADS * (head - shared)
    full = HEADS * dense["storage.kan_bytes"].median()
    ratio = full / compressed
    return Measured(f"{HEADS} heads {full / 1e6:.4g} MB -> {compressed / 1e6:.4g} MB "
                    f"({ratio:.1f}x)",
                    ((f"ratio >= {claim.figure}x", reaches(ratio, claim.figure)),))


def measure_int8_cost(claim, method, dense, done) -> Measured:
    fp32 = done[(done["method"] == "share_fp32")]
    cost = 100 * (transfer_retention(fp32, dense) - transfer_retention(method, dense)).dropna()
    return Measured(f"FP32 -> Int8 costs {interval(cost)} retention points "
                    f"({len(cost)} seeds)",
                    ((f"cost <= {claim.figure} points", at_most(cost, float(claim.figure))),))


def measure_collapse(claim, method, dense, done) -> Measured:
    primary = method["metrics.primary"].iloc[0]
    diff = 100 * gap(method, dense, f"metrics.{primary}")
    return Measured(f"{primary} {method[f'metrics.{primary}'].mean():.2%} vs dense "
                    f"{dense[f'metrics.{primary}'].mean():.2%}, gap {interval(diff)} points",
                    ((f"loss >= {claim.figure} points",
                      at_most(diff, -float(claim.figure))),))


def measure_memory(claim, method, dense, done) -> Measured:
    """Per width and grid size, the method's steady-state training peak over dense's
    (medians over seeds); checked at the largest grid size of every width by the 95%
    interval of the per-seed ratios (RSS readings spread between seeds)."""
    width, grid = "config.args.task.widths", "config.args.kan.grid_size"
    parts, checks = [], []
    for widths, group in done.assign(w=done[width].astype(str)).groupby("w", sort=False):
        ratios, dense_mib = {}, {}
        for size, cells in group.groupby(grid):
            m = cells.loc[cells["method"] == method["method"].iloc[0], "memory.train_peak_bytes"]
            d = cells.loc[cells["method"] == dense["method"].iloc[0], "memory.train_peak_bytes"]
            if len(m) and len(d):
                ratios[int(size)] = m.median() / d.median()
                dense_mib[int(size)] = d.median() / 2**20
        if not ratios:
            continue
        below = [str(g) for g, r in ratios.items() if r < 1]
        top = max(ratios)
        parts.append(f"{widths}: " + ", ".join(f"{r:.2f}x at G={g}" for g, r in ratios.items())
                     + f", below at G={', '.join(below)}" * bool(below)
                     + f" (dense: {dense_mib[top]:.0f} MiB at G={top})")
        at_top = group[group[grid] == top]
        m, d = paired(at_top[at_top["method"] == method["method"].iloc[0]],
                      at_top[at_top["method"] == dense["method"].iloc[0]],
                      "memory.train_peak_bytes")
        checks.append((f"{widths}: below dense's at G={top}", at_most(m / d, 1.0)))
    return Measured("training peak over dense's: " + "; ".join(parts), tuple(checks))


MEASURES = {"params": measure_params, "ratio": measure_ratio, "rmse_ratio": measure_rmse_ratio,
            "map_gap": measure_map_gap, "transfer_retention": measure_transfer_retention,
            "heads": measure_heads, "int8_cost": measure_int8_cost,
            "collapse": measure_collapse, "memory": measure_memory}


def authors_measured(claim: Claim, tables: dict[str, pd.DataFrame]) -> str:
    """What the authors' own code gave here at the claim's setting (results/authors/)."""
    if not claim.authors:
        return ""
    missing = [name for name in claim.authors if name not in tables]
    if missing:
        return f"not run (no results/authors/{missing[0]}.csv)"
    if claim.measure == "params":
        dense, method = (tables[name].set_index("seed") for name in claim.authors)
        diff = (method["last_test_accuracy"] - dense["last_test_accuracy"]).dropna()
        return (f"{int(method['parameters'].median()):,} vs {int(dense['parameters'].median()):,}"
                f" parameters; accuracy {method['last_test_accuracy'].mean():.2%} vs "
                f"{dense['last_test_accuracy'].mean():.2%}, gap {interval(diff, 100)} points "
                f"(last epoch, {len(diff)} seeds)")
    if claim.measure == "memory":
        table = tables[claim.authors[0]]
        parts = []
        for widths, group in table.groupby("widths", sort=False):
            peak = group.pivot_table("train_peak_MiB", "grid_size", "model")
            ratios = peak["MetaKAN"] / peak["KAN"]
            parts.append(f"{widths}: " + ", ".join(f"{r:.2f}x at G={g}"
                                                   for g, r in ratios.items())
                         + f" (KAN: {peak['KAN'].iloc[-1]:.0f} MiB at G={ratios.index[-1]})")
        return "their MetaKAN's training peak over their KAN's: " + "; ".join(parts)
    raise ValueError(f"no authors' figure for measure {claim.measure!r}")


def verdict(measured: Measured) -> str:
    """The rule of `VERDICT_RULE` over the claim's checks, each named with its outcome:
    `not reproduced (fails: ratio >= 80x; open: gap >= -0.5 points)`."""
    if not measured.checks:
        return "not run (nothing to compare)"
    by_status = {status: [what for what, s in measured.checks if s == status]
                 for status in (NOT_MET, OPEN, MET)}
    word = "not reproduced" if by_status[NOT_MET] else \
        "inconclusive" if by_status[OPEN] else "reproduced"
    reasons = "; ".join(f"{label}: {', '.join(by_status[status])}" for status, label in
                        ((NOT_MET, "fails"), (OPEN, "open"), (MET, "holds"))
                        if by_status[status])
    return f"{word} ({reasons})"


def validation_quality(claim: Claim, rows: pd.DataFrame, dense: pd.DataFrame
                       ) -> tuple[float, bool]:
    """(how good the setting `rows` is on validation, higher better; whether that is within
    the claim's margin of dense): the mean per-seed RMSE ratio to dense (negated) for
    `rmse_ratio`, the mean per-seed gap in points for `ratio`."""
    primary = rows["metrics.primary"].iloc[0]
    m, d = paired(rows, dense, f"metrics.val.{primary}")
    if m.empty:
        raise ValueError(f"claim {claim.claim!r}: no validation metric paired with dense's")
    if claim.measure == "rmse_ratio":
        ratio = (m / d).mean()
        return -ratio, ratio <= 1 + claim.margin
    if claim.measure == "ratio":
        points = 100 * (m - d).mean()
        return points, points >= -claim.margin
    raise ValueError(f"claim measure {claim.measure!r} has no setting chosen on validation")


def chosen_on_validation(claim: Claim, rows: pd.DataFrame, dense: pd.DataFrame
                         ) -> tuple[pd.DataFrame, str]:
    """The records of the setting `CHOICE_RULE` picks among the method's settings in `rows`,
    and that setting in words."""
    rows = rows.reset_index(drop=True)  # labels are set by index
    labels = method_label(rows)
    scored = []
    for label, group in rows.groupby(labels, sort=True):
        quality, within = validation_quality(claim, group, dense)
        scored.append((within, group["storage.kan_ratio"].mean(), quality, label, group))
    within = [s for s in scored if s[0]]
    _, _, _, label, group = max(within, key=lambda s: (s[1], s[2])) if within else \
        max(scored, key=lambda s: s[2])
    setting = label.partition("[")[2].rstrip("]") or "its only setting"
    how = "within the margin" if within else "none within the margin: the best"
    return group, f" (chosen on validation from {len(scored)} settings, {how}: {setting})"


def sized_records(table: pd.DataFrame) -> pd.DataFrame:
    """A sizes table (scripts/paper_sizes.py: setup, method, KAN bytes, shared bytes) as
    records that hold bytes only, one per setup and method: what `heads` reads."""
    return pd.DataFrame({"task": table["setup"].str.split("[").str[0], "seed": 0,
                         "method": table["method"], "status": "done",
                         "storage.kan_bytes": table["KAN bytes"],
                         "storage.shared_bytes": table["shared bytes"]})


def claim_frame(claim: Claim, frames: dict[str, pd.DataFrame],
                sizes: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """What the claim reads: its grid's records, or for a `sizes` claim its sizes table's."""
    if claim.sizes:
        return sized_records(sizes[claim.grid]) if claim.grid in sizes else pd.DataFrame()
    return frames.get(claim.grid, pd.DataFrame())


def claim_rows(claim: Claim, frame: pd.DataFrame, method: str, reference: str) -> dict:
    """The claim's measured value, seeds and verdict from its grid's records."""
    done = frame[(frame["status"] == "done") & (frame["task"] == claim.task)] \
        if not frame.empty else frame
    rows = done[done["method"] == method] if not done.empty else done
    for key, value in claim.where:
        column = f"config.args.method.{key}"
        rows = rows[rows[column] == value] if column in rows else rows.iloc[:0]
    dense = done[done["method"] == reference] if not done.empty else done
    if rows.empty or dense.empty:
        why = claim.unmeasurable
        source = f"results/tables/{claim.grid}_sizes.csv" if claim.sizes \
            else f"records of grid {claim.grid}"
        return {"seeds": 0, "measured": f"not run (no {source})",
                "verdict": f"not measurable here: {why}" if why else "not run"}
    choice = ""
    if claim.chosen:
        rows, choice = chosen_on_validation(claim, rows, dense)
    measured = MEASURES[claim.measure](claim, rows, dense, done)
    return {"seeds": rows["seed"].nunique(), "measured": measured.text + choice,
            "verdict": verdict(measured)}


def claims_table(frames: dict[str, pd.DataFrame],
                 authors: dict[str, pd.DataFrame] | None = None,
                 sizes: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per claim; `frames` maps a grid name to its records' frame (absent: not run),
    `authors` a results/authors/ name to its table (the authors' code run here), `sizes` a
    grid name to its sizes table (the claims marked `sizes` read it instead of records)."""
    if unknown := sorted({c.measure for _, c in claims()} - set(MEASURES)):
        raise ValueError(f"unknown claim measure {unknown[0]!r}")
    reference = baseline()
    rows = []
    for name, claim in claims():
        settings = "".join(f", {k}={v}" for k, v in claim.where)
        rows.append({"paper": claim.paper, "claim": claim.claim,
                     "kanbench setting": f"{claim.grid}: {claim.task}, {name}{settings} "
                                         f"vs {reference}",
                     "relation to the paper's setting": "; ".join(claim.setting),
                     **claim_rows(claim, claim_frame(claim, frames, sizes or {}), name,
                                  reference),
                     "authors' code here": authors_measured(claim, authors or {})})
    return pd.DataFrame(rows)
