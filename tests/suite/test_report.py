import math

import pandas as pd

from suite.report.tables import setup_label, summary


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
