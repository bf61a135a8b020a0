"""Tables as pure functions of the results DataFrame."""

from __future__ import annotations

import math

import pandas as pd

from kanbench.suite.report.declared import baseline, before_compression, in_paper_table

SETUP_SECTIONS = ("task", "kan", "train")


def machines(df: pd.DataFrame) -> str:
    """The machines the records ran on, in words (for the header of a table)."""
    cols = ["env.platform", "env.cpu_count", "env.device"]
    found = df[cols].drop_duplicates().astype(str).agg(
        lambda r: f"{r.iloc[0]}, {r.iloc[1]} CPUs, device {r.iloc[2]}", axis=1)
    return "; ".join(sorted(found))


def setup_label(df: pd.DataFrame) -> pd.Series:
    """`task` plus the task, kan and train args that vary among one method's records of that
    task, e.g. `feynman[equation=I.9.18]`, so different setups of one task get their own
    rows. An arg that differs only between methods (each method's own recipe, as in the
    authors' presets) is the method's, not the setup's."""
    return _label(df, "task", SETUP_SECTIONS, within="method")


def method_label(df: pd.DataFrame, leave_out: tuple[str, ...] = ()) -> pd.Series:
    """`method` plus the method args that vary among that method's records (of one setup),
    e.g. `metacluster[codebook_size=16]`, less the args named in `leave_out` (columns)."""
    return _label(df, "method", ("method",), leave_out)


def _label(df: pd.DataFrame, by: str, sections: tuple[str, ...],
           leave_out: tuple[str, ...] = (), within: str | None = None) -> pd.Series:
    """An arg left unset (None) is not named: `metacluster[kmeans_seed=3]` beside
    `metacluster`. With `within`, an arg is named only where it varies inside one group of
    that column."""
    labels = df[by].copy()
    arg_cols = [c for c in df.columns if c not in leave_out
                and any(c.startswith(f"config.args.{s}.") for s in sections)]

    def varies(rows: pd.DataFrame, column: str) -> bool:
        return rows[column].notna().any() and rows[column].astype(str).nunique(dropna=False) > 1

    for name, rows in df.groupby(by):
        groups = [g for _, g in rows.groupby(within)] if within else [rows]
        varying = [c for c in arg_cols if any(varies(g, c) for g in groups)]
        if varying:
            parts = rows[varying].apply(
                lambda r: ",".join(f"{c.rsplit('.', 1)[1]}={_text(v)}" for c, v in r.items()
                                   if not _unset(v)), axis=1)
            labels.loc[rows.index] = [f"{name}[{p}]" if p else name for p in parts]
    return labels


def _unset(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value) -> str:
    """4.0 -> '4' (a column with gaps holds floats), anything else as str."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def primary_values(done: pd.DataFrame) -> pd.Series:
    """Each record's primary metric (the column its `metrics.primary` names)."""
    return pd.Series([row[f"metrics.{row['metrics.primary']}"] for _, row in done.iterrows()],
                     index=done.index, dtype=float)


def done_records(df: pd.DataFrame) -> pd.DataFrame:
    """The done records with their `setup`, the method's `label` within it and the primary
    metric's `value`."""
    done = df[df["status"] == "done"].copy() if "status" in df else df.iloc[:0]
    if done.empty:
        return done
    done["setup"] = setup_label(done)
    for _, rows in done.groupby("setup"):  # args that vary within a setup name the rows
        done.loc[rows.index, "label"] = method_label(rows)
    done["value"] = primary_values(done)
    return done


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per setup x method over the done records: seeds, primary metric mean and std
    (and its mean before compression: after the stage the method declares, its first),
    KAN bytes, KAN and model ratios, trainable parameters, training-step memory, batch-1
    latency and training time."""
    done = done_records(df)
    if done.empty:
        return pd.DataFrame()
    before = {m: before_compression(m) for m in done["method"].unique()}
    done["first stage"] = [row.get(f"metrics.stages.{before[row['method']]}."
                                   f"{row['metrics.primary']}", float("nan"))
                           for _, row in done.iterrows()]
    rows = []
    for (setup, method), g in done.groupby(["setup", "label"], sort=True):
        rows.append({
            "setup": setup, "method": method, "seeds": len(g),
            "metric": g["metrics.primary"].iloc[0],
            "mean": g["value"].mean(),
            "std": g["value"].std(ddof=1) if len(g) > 1 else float("nan"),
            "before compression": g["first stage"].mean(),
            "KAN bytes": int(g["storage.kan_bytes"].median()),
            "KAN ratio": g["storage.kan_ratio"].mean(),
            "model ratio": g["storage.model_ratio"].mean(),
            "params": int(g["trainable_params"].median()),
            "step MiB": g.get("memory.step_bytes", pd.Series(dtype=float)).median() / 2**20,
            "latency b1 (ms)": g.get("latency.ms.1", pd.Series(dtype=float)).median(),
            "train (s)": g["timing.train.seconds"].median()
            if "timing.train.seconds" in g else float("nan"),
        })
    return pd.DataFrame(rows)


def detection(df: pd.DataFrame) -> pd.DataFrame:
    """Detection records (those with `metrics.map50`): one row per setup x method with the
    in-domain and zero-shot transfer mAP@0.5 (mean and std over seeds), COCO mAP@[.5:.95] of
    both, retention against the baseline (dense) head of the same setup and seed (compressed /
    dense, per seed, then mean), the head's bytes and KAN ratio, and the whole detector's ratio."""
    if "metrics.map50" not in df:
        return pd.DataFrame()
    done = df[(df["status"] == "done") & df["metrics.map50"].notna()].copy()
    if done.empty:
        return pd.DataFrame()
    done["setup"] = setup_label(done)
    dense = done[done["method"] == baseline()].set_index(["setup", "seed"])
    for _, rows in done.groupby("setup"):
        done.loc[rows.index, "label"] = method_label(rows)
    has_transfer = "metrics.transfer_map50" in done
    columns = {"in-domain": "metrics.map50", "transfer": "metrics.transfer_map50"}
    rows = []
    for (setup, method), g in done.groupby(["setup", "label"], sort=True):
        row = {"setup": setup, "method": method, "seeds": len(g)}
        for name, col in columns.items():
            if name == "transfer" and not has_transfer:
                continue
            row[f"{name} mAP50"] = g[col].mean()
            row[f"{name} std"] = g[col].std(ddof=1) if len(g) > 1 else float("nan")
            reference = [dense[col].get((setup, seed)) for seed in g["seed"]]
            ratios = [v / r for v, r in zip(g[col], reference, strict=True)
                      if r is not None and r > 0]
            row[f"{name} retention"] = sum(ratios) / len(ratios) if ratios else float("nan")
        row["COCO mAP"] = g["metrics.coco_map"].mean()
        if has_transfer:
            row["transfer COCO mAP"] = g["metrics.transfer_coco_map"].mean()
        row.update({"head bytes": int(g["storage.kan_bytes"].median()),
                    "shared bytes": (g["storage.shared_bytes"].median()
                                     if "storage.shared_bytes" in g else float("nan")),
                    "head ratio": g["storage.kan_ratio"].mean(),
                    "detector ratio": g["storage.model_ratio"].mean()})
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_front(kan_bytes: pd.Series, value: pd.Series, higher_is_better: bool) -> pd.Series:
    """True where no other point is at most as large and at least as good, and strictly
    smaller or better (ties on both keep every tied point)."""
    better = value if higher_is_better else -value
    return pd.Series([not ((kan_bytes <= b) & (better >= v) & ((kan_bytes < b) | (better > v))
                           ).any() for b, v in zip(kan_bytes, better, strict=True)],
                     index=kan_bytes.index)


def leaderboard(df: pd.DataFrame, budget_bytes: float | None = None,
                table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per setup, the methods ranked by their mean primary metric (best first; equal means share
    a rank, the smaller listed first) among those whose
    median KAN bytes fit `budget_bytes` (all when None), with whether each is on the Pareto
    front of bytes against metric (no method both smaller and better). `table`: the frame's
    summary, when already made."""
    table = summary(df) if table is None else table
    if table.empty:
        return table
    done = df[df["status"] == "done"]
    higher = dict(zip(done["metrics.primary"], done["metrics.higher_is_better"], strict=True)) \
        if "metrics.higher_is_better" in done else {}
    rows = []
    for _, group in table.groupby("setup", sort=True):
        higher_is_better = bool(higher.get(group["metric"].iloc[0], True))
        group = group.assign(pareto=pareto_front(group["KAN bytes"], group["mean"],
                                                 higher_is_better))
        if budget_bytes is not None:
            group = group[group["KAN bytes"] <= budget_bytes]
        group = group.sort_values(["mean", "KAN bytes"],
                                  ascending=[not higher_is_better, True])
        # competition ranking: methods with exactly the same mean share a rank (1, 1, 3)
        rank = group["mean"].rank(method="min", ascending=not higher_is_better)
        rows.append(group.assign(rank=rank.astype("Int64")))
    columns = ["setup", "rank", "method", "metric", "seeds", "mean", "std", "KAN bytes",
               "KAN ratio", "pareto"]
    return pd.concat(rows)[columns].reset_index(drop=True) if rows else pd.DataFrame()


def mean_std_text(mean: float, std: float) -> str:
    """`mean ± std` to the precision the spread supports: std to two significant digits, the
    mean to the same decimal place (four significant digits when there is no spread)."""
    if pd.isna(mean):
        return "failed"
    if pd.isna(std) or std == 0:
        return f"{mean:.4g}"
    decimals = max(0, 1 - math.floor(math.log10(std)))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def compression(df: pd.DataFrame) -> pd.DataFrame:
    """The MetaCluster paper's main table: one row per setup (task x architecture), per method
    the metric (mean ± std over its done seeds; `failed` when none finished), the KAN layers'
    kB and their compression ratio against dense (the model ratio is in the summary)."""
    if df.empty:
        return pd.DataFrame()
    frame = df.assign(setup=setup_label(df))
    rows = []
    for setup, group in frame.groupby("setup", sort=True):
        done = group[group["status"] == "done"]
        row = {"setup": setup, "metric": done["metrics.primary"].iloc[0] if len(done) else ""}
        for method, runs in group.groupby("method", sort=True):
            finished = runs[runs["status"] == "done"]
            if finished.empty:
                row[method] = "failed"
                continue
            values = primary_values(finished)
            row[method] = mean_std_text(values.mean(), values.std(ddof=1))
            row[f"{method} KAN kB"] = round(finished["storage.kan_bytes"].median() / 1e3, 2)
            row[f"{method} ratio (x)"] = round(finished["storage.kan_ratio"].mean(), 1)
        rows.append(row)
    return pd.DataFrame(rows)


def metakan_table(df: pd.DataFrame) -> pd.DataFrame:
    """The MetaKAN paper's comparison: the methods that belong in it (dense and MetaKAN) per
    setup, with trainable parameters, a training step's peak memory (MiB), seconds per
    training epoch and the metric (mean ± std)."""
    done = df[(df["status"] == "done")
              & df["method"].map(lambda m: in_paper_table(m, "metakan"))].copy()
    if done.empty:
        return pd.DataFrame()
    done["setup"] = setup_label(done)
    done["value"] = primary_values(done)
    epochs = done["config.args.train.max_epochs"] if "config.args.train.max_epochs" in done \
        else float("nan")
    done["epoch seconds"] = done["timing.train.seconds"] / epochs
    memory = done["memory.step_bytes"] if "memory.step_bytes" in done else float("nan")
    done["step MiB"] = memory / 2**20
    # records since the steady-state training peak was measured (model + optimizer + step)
    peak = done.get("memory.train_peak_bytes")
    with_peak = peak is not None and peak.notna().any()
    rows = []
    for (setup, method), g in done.groupby(["setup", "method"], sort=True):
        rows.append({"setup": setup, "method": method, "metric": g["metrics.primary"].iloc[0],
                     "value": mean_std_text(g["value"].mean(),
                                            g["value"].std(ddof=1) if len(g) > 1 else math.nan),
                     "trainable params": int(g["trainable_params"].median()),
                     "train step peak (MiB)": round(g["step MiB"].median(), 2),
                     **({"training peak (MiB)": round(
                         g["memory.train_peak_bytes"].median() / 2**20, 2)} if with_peak else {}),
                     "s / epoch": round(g["epoch seconds"].median(), 3)})
    return pd.DataFrame(rows)


HEAD_COUNTS = (1, 10, 50)


def share_table(df: pd.DataFrame) -> pd.DataFrame:
    """SHARe-KAN's table from the detection records: dense, FP32 and Int8 head MB, in-domain
    and transfer mAP@0.5 (mean ± std) and their retention against dense (%), and the MB of
    1, 10 and 50 such heads when they share their codebooks (shared bytes once, the rest per
    head; dense heads share nothing)."""
    table = detection(df)
    if table.empty:
        return table
    table = table[table["method"].map(lambda m: in_paper_table(m, "share"))]
    reference = baseline()
    rows = []
    for _, r in table.iterrows():
        row = {"setup": r["setup"], "method": r["method"],
               "head MB": float(f"{r['head bytes'] / 1e6:.4g}"),
               "in-domain mAP50": mean_std_text(r["in-domain mAP50"], r["in-domain std"]),
               "in-domain retention (%)": round(100 * r["in-domain retention"], 1)}
        if "transfer mAP50" in r:
            row["transfer mAP50"] = mean_std_text(r["transfer mAP50"], r["transfer std"])
            row["transfer retention (%)"] = round(100 * r["transfer retention"], 1)
        shared = r["shared bytes"] if r["method"] != reference else 0
        for n in HEAD_COUNTS:
            total = shared + n * (r["head bytes"] - shared)
            row[f"{n} head{'s' * (n > 1)} MB"] = float(f"{total / 1e6:.4g}")
        rows.append(row)
    return pd.DataFrame(rows)


def rerun_comparison(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Setup x method rows of the primary metric over seeds in two sets of records of one grid
    (`before`, the records a rerun replaces, and `after`): each side's mean, std, min and
    max, the change of the mean, and whether the new mean lies within the old seeds' range
    (min to max) and within one old std of the old mean."""
    sides = {}
    for name, df in (("before", before), ("after", after)):
        sides[name] = done_records(df).groupby(["setup", "label"]).agg(
            metric=("metrics.primary", "first"), seeds=("seed", "nunique"),
            mean=("value", "mean"), std=("value", "std"), min=("value", "min"),
            max=("value", "max"))
    old, new = sides["before"], sides["after"]
    table = old[["metric"]].join(old[["seeds", "mean", "std", "min", "max"]].add_prefix("before "))
    table = table.join(new[["seeds", "mean", "std"]].add_prefix("after "), how="inner")
    table["change"] = table["after mean"] - table["before mean"]
    table["within seed range"] = table["after mean"].between(table["before min"],
                                                             table["before max"])
    table["within 1 std"] = table["change"].abs() <= table["before std"]
    return table.reset_index().rename(columns={"label": "method"})


def index_storage(df: pd.DataFrame) -> pd.DataFrame:
    """Codebook indices as stored against their empirical-entropy bound: per setup x method,
    over the records that carry the bound (`storage.indices_entropy_bytes`), the mean stored
    index bytes (bit-packed, or an entropy-coded stream), the coder's table bytes (0 when
    packed), the bound, and stored / bound with and without the table on both sides."""
    done = done_records(df)
    if done.empty or "storage.indices_entropy_bytes" not in done:
        return pd.DataFrame()
    done = done[done["storage.indices_entropy_bytes"].notna()]
    rows = []
    for (setup, method), g in done.groupby(["setup", "label"], sort=True):
        stored = g["storage.itemized.indices"].mean()
        table = g["storage.itemized.index_tables"].fillna(0).mean() \
            if "storage.itemized.index_tables" in g else 0.0
        bound = g["storage.indices_entropy_bytes"].mean()
        rows.append({"setup": setup, "method": method, "seeds": len(g), "index bytes": stored,
                     "coder table bytes": table, "entropy bound": bound,
                     "index / bound": stored / bound if bound else math.nan,
                     "(index + table) / (bound + table)": (stored + table) / (bound + table)
                     if bound + table else math.nan})
    return pd.DataFrame(rows)


def against_baseline(method: pd.Series, dense: pd.Series, higher_is_better: bool) -> pd.Series:
    """Per seed, a metric against dense's of the same seed: the gap in points (method minus
    dense, x100) where higher is better (accuracy, mAP), the ratio where lower is (RMSE)."""
    m, d = method.align(dense, join="inner")
    return 100 * (m - d) if higher_is_better else m / d


def frontier(df: pd.DataFrame) -> pd.DataFrame:
    """Ratio against quality: for every method with two or more settings in a setup that also
    holds the baseline, one row per setting with its mean KAN ratio and its metric against
    the baseline's of the same seed (`against_baseline`, mean over seeds) on the validation
    and the test split, and whether it is on the Pareto front of the validation split (no
    other setting both smaller and better there). Empty where no method sweeps a setting or
    the records carry no validation metric (a validation-only frame)."""
    done = done_records(df)
    if done.empty:
        return pd.DataFrame()
    reference, rows = baseline(), []
    for setup, group in done.groupby("setup", sort=True):
        dense = group[group["method"] == reference]
        primary = group["metrics.primary"].iloc[0]
        val_column = f"metrics.val.{primary}"
        if dense.empty or val_column not in group:
            continue
        higher = bool(group["metrics.higher_is_better"].iloc[0]) \
            if "metrics.higher_is_better" in group else True
        base_val, base_test = (dense.set_index("seed")[c] for c in (val_column, "value"))
        for _, runs in group[group["method"] != reference].groupby("method", sort=True):
            if runs["label"].nunique() < 2:
                continue
            table = []
            for label, setting in runs.groupby("label", sort=True):
                by_seed = setting.set_index("seed")
                table.append({"setup": setup, "method": label, "seeds": len(setting),
                              "KAN bytes": int(setting["storage.kan_bytes"].median()),
                              "KAN ratio": setting["storage.kan_ratio"].mean(),
                              "measure": f"{primary} {'gap (points)' if higher else 'ratio'}",
                              "val vs dense": against_baseline(by_seed[val_column], base_val,
                                                               higher).mean(),
                              "test vs dense": against_baseline(by_seed["value"], base_test,
                                                                higher).mean()})
            table = pd.DataFrame(table)
            table["val pareto"] = pareto_front(table["KAN bytes"], table["val vs dense"], higher)
            rows.append(table.sort_values("KAN ratio", ascending=False))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
