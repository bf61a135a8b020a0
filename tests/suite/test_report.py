import math

import pandas as pd
import pytest

from kanbench.suite.report.tables import setup_label, summary


def row(task, seed, value, equation=None, status="done"):
    r = {"task": task, "method": "dense", "seed": seed, "status": status,
         "metrics.primary": "rmse", "metrics.rmse": value, "metrics.stages.train.rmse": value,
         "trainable_params": 10, "storage.kan_bytes": 100,
         "storage.kan_ratio": 1.0, "storage.model_ratio": 1.0, "latency.ms.1": 0.5,
         "timing.train.seconds": 2.0, "config.args.train.lr": 0.01}
    if equation:
        r["config.args.task.equation"] = equation
    return r


def test_summary_groups_setups_and_seeds():
    df = pd.DataFrame([row("feynman", 0, 1.0, "A"), row("feynman", 1, 3.0, "A"),
                       row("feynman", 0, 5.0, "B"), row("feynman", 1, 9.0, "B", "failed")])
    assert list(setup_label(df)) == ["feynman[equation=A]"] * 2 + ["feynman[equation=B]"] * 2
    table = summary(df).set_index("setup")
    assert table.loc["feynman[equation=A]", "seeds"] == 2
    assert table.loc["feynman[equation=A]", "mean"] == 2.0
    assert math.isclose(table.loc["feynman[equation=A]", "std"], math.sqrt(2))
    assert table.loc["feynman[equation=B]", "seeds"] == 1  # the failed run is left out
    assert math.isnan(table.loc["feynman[equation=B]", "std"])


def test_method_args_that_vary_split_a_method_into_rows():
    rows = [row("feynman", 0, 1.0) | {"method": "metacluster", "config.args.method.K": k,
                                      "metrics.stages.train.rmse": 0.5}
            for k in (4, 16)] + [row("feynman", 0, 2.0)]
    other_setup = row("feynman", 0, 3.0, equation="B") | {"method": "metacluster",
                                                          "config.args.method.K": 8}
    rows = [r | {"config.args.task.equation": "A"} for r in rows] + [other_setup]
    table = summary(pd.DataFrame(rows)).set_index(["setup", "method"])
    assert list(table.loc["feynman[equation=A]"].index) == \
        ["dense", "metacluster[K=16]", "metacluster[K=4]"]
    # K differs between setups but not within B's: its row is plain `metacluster`
    assert list(table.loc["feynman[equation=B]"].index) == ["metacluster"]
    table = table.loc["feynman[equation=A]"]
    assert table.loc["metacluster[K=4]", "before compression"] == 0.5
    assert table.loc["dense", "before compression"] == table.loc["dense", "mean"] == 2.0


def test_pareto_front_on_hand_made_points():
    from kanbench.suite.report.tables import pareto_front

    kan_bytes = pd.Series([100, 50, 50, 10, 200, 10])
    accuracy = pd.Series([0.9, 0.9, 0.8, 0.7, 0.95, 0.6])
    # 0 is beaten by 1 (smaller, as good); 2 by 1; 5 by 3; 4 is the best, 3 the smallest
    assert list(pareto_front(kan_bytes, accuracy, True)) == [False, True, False, True, True,
                                                             False]
    rmse = pd.Series([0.1, 0.1, 0.2, 0.3, 0.05, 0.4])                 # lower is better
    assert list(pareto_front(kan_bytes, rmse, False)) == [False, True, False, True, True, False]
    assert list(pareto_front(pd.Series([5, 5]), pd.Series([1.0, 1.0]), True)) == [True, True]


def test_leaderboard_ranks_within_a_budget_and_marks_the_front():
    from kanbench.suite.report.tables import leaderboard

    methods = {"dense": (0.90, 1000), "metakan": (0.85, 100), "metacluster": (0.86, 10),
               "share_int8": (0.89, 120)}
    rows = []
    for method, (value, size) in methods.items():
        for seed, jitter in enumerate((-0.01, 0.01)):
            rows.append(row("digits", seed, value + jitter) | {
                "method": method, "metrics.primary": "accuracy", "metrics.accuracy":
                value + jitter, "metrics.stages.train.accuracy": value,
                "metrics.higher_is_better": True, "storage.kan_bytes": size})
    board = leaderboard(pd.DataFrame(rows))
    assert list(board["method"]) == ["dense", "share_int8", "metacluster", "metakan"]
    assert list(board["rank"]) == [1, 2, 3, 4]
    assert dict(zip(board["method"], board["pareto"], strict=True)) == {
        "dense": True, "share_int8": True, "metacluster": True, "metakan": False}
    small = leaderboard(pd.DataFrame(rows), budget_bytes=150)
    assert list(small["method"]) == ["share_int8", "metacluster", "metakan"]
    rmse_rows = [r | {"metrics.primary": "rmse", "metrics.rmse": 1 - r["metrics.accuracy"],
                      "metrics.stages.train.rmse": 0.1, "metrics.higher_is_better": False}
                 for r in rows]
    assert list(leaderboard(pd.DataFrame(rmse_rows))["method"])[0] == "dense"  # lowest rmse


def test_exact_ties_share_a_rank_and_the_next_rank_skips():
    from kanbench.suite.report.tables import leaderboard

    rows = [row("digits", 0, value) | {"method": method, "metrics.primary": "accuracy",
                                       "metrics.accuracy": value,
                                       "metrics.stages.train.accuracy": value,
                                       "metrics.higher_is_better": True, "storage.kan_bytes": size}
            for method, value, size in (("dense", 0.9, 1000), ("share_fp32", 0.8, 500),
                                        ("share_int8", 0.8, 100), ("metakan", 0.7, 50))]
    board = leaderboard(pd.DataFrame(rows))
    assert list(board["method"]) == ["dense", "share_int8", "share_fp32", "metakan"]
    assert list(board["rank"]) == [1, 2, 2, 4]


def test_compression_table_and_every_format_render_with_a_failed_run(tmp_path):
    from kanbench.suite.report.render import all_tables, write_tables
    from kanbench.suite.report.tables import compression, mean_std_text

    done = [row("digits", s, v) | {"method": m, "metrics.primary": "accuracy",
                                   "metrics.accuracy": v, "metrics.stages.train.accuracy": v,
                                   "storage.kan_bytes": b, "storage.kan_ratio": r}
            for m, b, r, values in (("dense", 1000, 1.0, (0.90, 0.92)),
                                    ("metakan", 100, 10.0, (0.80, 0.86)))
            for s, v in enumerate(values)]
    failed = {"task": "digits", "method": "share_int8", "seed": 0, "status": "failed",
              "config.args.train.lr": 0.01}
    frame = pd.DataFrame(done + [failed])
    table = compression(frame).set_index("setup")
    assert table.loc["digits", "dense"] == mean_std_text(0.91, math.sqrt(2) * 0.01)
    assert table.loc["digits", "metakan ratio (x)"] == 10.0
    assert table.loc["digits", "dense KAN kB"] == 1.0
    assert table.loc["digits", "share_int8"] == "failed"               # not a zero
    assert mean_std_text(0.91234, 0.0141) == "0.912 ± 0.014"
    assert mean_std_text(0.5, float("nan")) == "0.5" and mean_std_text(math.nan, 1) == "failed"
    frame["env.platform"], frame["env.cpu_count"], frame["env.device"] = "linux", 2, "cpu"
    written = write_tables(all_tables(frame), "g", tmp_path, ["md", "tex", "csv"], "source\n")
    assert {p.name for p in written} >= {"g_compression.tex", "g_summary.md",
                                         "g_leaderboard.csv"}
    tex = (tmp_path / "g_compression.tex").read_text()
    assert "share\\_int8" in tex and "failed" in tex and "\\begin{tabular}" in tex
    assert "failed" in (tmp_path / "g_compression.md").read_text()


def detection_records():
    rows = []
    for method, size, shared, values in (
            ("dense", 800_000, 0, [(0.80, 0.40), (0.78, 0.38)]),
            ("share_int8", 80_000, 30_000, [(0.80, 0.36), (0.74, 0.38)]),
            ("metakan", 90_000, 5_000, [(0.72, 0.30), (0.70, 0.34)])):
        for seed, (in_domain, transfer) in enumerate(values):
            rows.append(row("shapes_voc", seed, in_domain) | {
                "method": method, "metrics.primary": "map50", "metrics.map50": in_domain,
                "metrics.transfer_map50": transfer, "metrics.coco_map": in_domain / 2,
                "metrics.transfer_coco_map": transfer / 2,
                "metrics.stages.train.map50": in_domain, "storage.kan_bytes": size,
                "storage.shared_bytes": shared, "storage.kan_ratio": 800_000 / size,
                "storage.model_ratio": 1.5})
    return pd.DataFrame(rows)


def test_detection_and_share_tables_pair_seeds_with_dense():
    from kanbench.suite.report.tables import detection, share_table

    table = detection(detection_records()).set_index("method")
    assert table.loc["share_int8", "in-domain mAP50"] == pytest.approx(0.77)
    # retention per seed, then mean: (0.80/0.80 + 0.74/0.78) / 2
    assert table.loc["share_int8", "in-domain retention"] == pytest.approx((1 + 0.74 / 0.78) / 2)
    assert table.loc["share_int8", "transfer retention"] == pytest.approx((0.9 + 1) / 2)
    assert table.loc["dense", "transfer retention"] == 1.0
    assert table.loc["metakan", "head ratio"] == pytest.approx(800 / 90)
    share = share_table(detection_records()).set_index("method")
    assert list(share.index) == ["dense", "share_int8"]                # SHARe's table only
    assert share.loc["share_int8", "head MB"] == 0.08
    # heads share the 30 kB of codebooks: 30 kB + n x 50 kB; dense heads share nothing
    assert share.loc["share_int8", ["1 head MB", "10 heads MB", "50 heads MB"]].tolist() == [
        0.08, 0.53, 2.53]
    assert share.loc["dense", ["1 head MB", "10 heads MB", "50 heads MB"]].tolist() == [
        0.8, 8.0, 40.0]
    assert share.loc["share_int8", "in-domain retention (%)"] == round(
        100 * (1 + 0.74 / 0.78) / 2, 1)


def test_metakan_table_reports_parameters_memory_and_epoch_time():
    from kanbench.suite.report.tables import metakan_table

    rows = [row("digits", s, v) | {"method": m, "trainable_params": p,
                                   "memory.step_bytes": mib * 2**20,
                                   "timing.train.seconds": 30.0,
                                   "config.args.train.max_epochs": 10}
            for m, p, mib, values in (("dense", 1000, 4.0, (1.0, 3.0)),
                                      ("metakan", 100, 2.0, (2.0, 2.0)))
            for s, v in enumerate(values)]
    table = metakan_table(pd.DataFrame(rows)).set_index("method")
    assert table.loc["dense", "trainable params"] == 1000
    assert table.loc["metakan", "train step peak (MiB)"] == 2.0
    assert table.loc["dense", "s / epoch"] == 3.0
    assert table.loc["dense", "value"] == "2.0 ± 1.4"
    assert table.loc["metakan", "value"] == "2"                        # no spread: 4 digits


def test_validation_view_reports_validation_values_and_drops_test_only_metrics():
    from kanbench.suite.report.render import validation_view

    records = [row("feynman", s, 1.0 + s) | {
        "metrics.val.rmse": 10.0 + s, "metrics.stages.train.val.rmse": 10.0 + s,
        "metrics.transfer_map50": 0.5, "metrics.retention.rmse": 1.0} for s in (0, 1)]
    view = validation_view(pd.DataFrame(records))
    assert list(view["metrics.rmse"]) == [10.0, 11.0]
    assert list(view["metrics.stages.train.rmse"]) == [10.0, 11.0]
    assert "metrics.transfer_map50" not in view and "metrics.retention.rmse" not in view
    assert not any(".val." in c for c in view.columns)
    assert summary(view).loc[0, "mean"] == 10.5          # the tables read the view unchanged


def test_claims_table_reads_only_the_claimed_setting_and_pairs_seeds():
    from kanbench.suite.report.declared import claims
    from kanbench.suite.report.paper_claims import claims_table
    claim = next(c for _, c in claims() if c.where and c.measure == "ratio"
                 and not c.unmeasurable)
    (key, value), = claim.where

    def cell(seed, accuracy, method="dense", **more):
        return row(claim.task, seed, 0.0) | {"method": method, "metrics.primary": "accuracy",
                                             "metrics.accuracy": accuracy, **more}

    rows = [cell(s, 0.90) for s in (0, 1, 2)]
    rows += [cell(s, 0.89, "metacluster", **{"storage.kan_ratio": 100.0,
                                            f"config.args.method.{key}": value})
             for s in (0, 1, 2)]
    rows += [cell(s, 0.10, "metacluster", **{"storage.kan_ratio": 9.0,
                                            f"config.args.method.{key}": value * 2})
             for s in (0, 1)]
    table = claims_table({claim.grid: pd.DataFrame(rows)}).set_index("claim")
    setting = table["kanbench setting"]
    (_, measured), = table[setting.str.startswith(f"{claim.grid}: {claim.task},")
                           & setting.str.contains(f"{key}={value}")].iterrows()
    assert measured["seeds"] == 3                 # the other K's two records are left out
    assert measured["measured"] == ("100.0x on the KAN layers; accuracy gap -1.00 "
                                    "[-1.00, -1.00] points")
    rest = table[table["seeds"] == 0]
    assert len(rest) == len(table) - 1 and rest["measured"].str.startswith("not run").all()


def test_index_storage_sets_stored_indices_beside_their_entropy_bound():
    from kanbench.suite.report.tables import index_storage

    def coded(seed, coding, stored, bound, table=None):
        r = row("digits", seed, 0.9) | {"method": "metacluster",
                                        "config.args.method.index_coding": coding,
                                        "storage.itemized.indices": stored,
                                        "storage.indices_entropy_bytes": bound}
        return r | ({"storage.itemized.index_tables": table} if table else {})

    rows = [coded(0, None, 100, 70.0), coded(1, None, 100, 74.0),
            coded(0, "ans", 72, 70.0, 64), coded(1, "ans", 76, 74.0, 64), row("digits", 0, 1.0)]
    table = index_storage(pd.DataFrame(rows)).set_index("method")
    assert list(table.index) == ["metacluster", "metacluster[index_coding=ans]"]  # no dense
    packed, ans = table.loc["metacluster"], table.loc["metacluster[index_coding=ans]"]
    assert (packed["index bytes"], packed["coder table bytes"]) == (100, 0)
    assert packed["index / bound"] == pytest.approx(100 / 72)
    assert ans["index / bound"] == pytest.approx(74 / 72)
    assert ans["(index + table) / (bound + table)"] == pytest.approx(138 / 136)
    assert index_storage(pd.DataFrame([row("digits", 0, 1.0)])).empty


def test_frontier_pairs_each_setting_with_dense_by_seed_on_both_splits():
    from kanbench.suite.report.tables import frontier

    def cell(method, seed, test, val, k=None, ratio=1.0, kan_bytes=1000):
        r = row("highdim", seed, test) | {"method": method, "metrics.val.rmse": val,
                                          "storage.kan_ratio": ratio,
                                          "storage.kan_bytes": kan_bytes,
                                          "metrics.higher_is_better": False}
        return r | ({"config.args.method.codebook_size": k} if k else {})

    rows = [cell("dense", 0, 0.01, 0.02), cell("dense", 1, 0.02, 0.02),
            # K=4: test ratios 3 and 2 (mean 2.5), val 2 and 1 (1.5); K=16: test 1.5 and 1,
            # val 1 and 1; seed 1 of K=8 only, val 4
            cell("mc", 0, 0.03, 0.04, 4, 150.0, 10), cell("mc", 1, 0.04, 0.02, 4, 150.0, 10),
            cell("mc", 0, 0.015, 0.02, 16, 80.0, 20), cell("mc", 1, 0.02, 0.02, 16, 80.0, 20),
            cell("mc", 1, 0.05, 0.08, 8, 100.0, 15)]
    table = frontier(pd.DataFrame(rows)).set_index("method")
    assert list(table.index) == ["mc[codebook_size=4]", "mc[codebook_size=8]",
                                 "mc[codebook_size=16]"]                 # by ratio, largest first
    assert table["measure"].unique().tolist() == ["rmse ratio"]
    assert table.loc["mc[codebook_size=4]", "test vs dense"] == pytest.approx(2.5)
    assert table.loc["mc[codebook_size=4]", "val vs dense"] == pytest.approx(1.5)
    assert table.loc["mc[codebook_size=16]", "test vs dense"] == pytest.approx(1.25)
    assert table.loc["mc[codebook_size=8]", "val vs dense"] == pytest.approx(4.0)
    # K=8 is larger and worse on validation than K=4: off the front
    assert table["val pareto"].tolist() == [True, False, True]
    # accuracy: the gap in points
    acc = [cell("dense", 0, 0.9, 0.8) | {"metrics.primary": "accuracy", "metrics.accuracy": 0.9,
                                          "metrics.val.accuracy": 0.8,
                                          "metrics.higher_is_better": True}]
    acc += [cell("mc", 0, 0.0, 0.0, k) | {"metrics.primary": "accuracy",
                                          "metrics.accuracy": a, "metrics.val.accuracy": a,
                                          "metrics.higher_is_better": True}
            for k, a in ((4, 0.85), (16, 0.88))]
    table = frontier(pd.DataFrame(acc)).set_index("method")
    assert table.loc["mc[codebook_size=4]", "test vs dense"] == pytest.approx(-5.0)
    assert table.loc["mc[codebook_size=16]", "val vs dense"] == pytest.approx(8.0)
    # one setting only, or no validation metric: nothing to set out
    assert frontier(pd.DataFrame(rows[:2] + rows[6:])).empty
    assert frontier(pd.DataFrame(rows).drop(columns="metrics.val.rmse")).empty
