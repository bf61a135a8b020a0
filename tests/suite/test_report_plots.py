"""Plots are written, non-empty, in both formats, and rerunning rewrites the same PNG bytes."""

import pandas as pd

from suite.registry import METHODS
from suite.report.plots import colour
from suite.report.render import file_name
from suite.report.render import write_plots as render


def records():
    rows = []
    for method, size, ratio, value in (("dense", 1000, 1.0, 0.90), ("metakan", 100, 10.0, 0.85),
                                       ("share_int8", 110, 9.0, 0.89)):
        for seed in range(3):
            rows.append({"task": "digits", "method": method, "seed": seed, "status": "done",
                         "metrics.primary": "accuracy", "metrics.higher_is_better": True,
                         "metrics.accuracy": value + 0.01 * seed,
                         "metrics.stages.train.accuracy": value, "trainable_params": 10,
                         "storage.kan_bytes": size, "storage.kan_ratio": ratio,
                         "storage.model_ratio": ratio, "latency.ms.1": 0.5 + seed,
                         "latency.kernel": "cpu" if method == "share_int8" else "torch",
                         "timing.train.seconds": 1.0, "config.args.train.lr": 0.01})
    for k in (4, 16):   # a K sweep
        rows.append(rows[3] | {"method": "metacluster", "config.args.method.codebook_size": k,
                               "metrics.accuracy": 0.8 + k / 100, "storage.kan_bytes": 10 * k})
    rows.append({"task": "digits", "method": "metacluster", "seed": 9, "status": "failed"})
    return pd.DataFrame(rows)


def test_every_plot_is_written_non_empty_and_reproducible(tmp_path):
    written = render(records(), "g", tmp_path, "caption")
    names = {p.name for p in written}
    assert names == {f"g_{n}.{ext}" for n in ("bytes_digits", "ratios", "latency",
                                              "codebook_sweep") for ext in ("png", "pdf")}
    assert all(p.stat().st_size > 1000 for p in written)
    first = (tmp_path / "g_ratios.png").read_bytes()
    render(records(), "g", tmp_path, "caption")
    assert (tmp_path / "g_ratios.png").read_bytes() == first


def test_colours_are_one_per_method_and_file_names_keep_the_setup():
    declared = {name: vars(type(METHODS.create(name)))["colour"] for name in METHODS.names()
                if "colour" in vars(type(METHODS.create(name)))}
    assert colour("dense") == declared["dense"]
    assert colour("metacluster[codebook_size=4]") == declared["metacluster"]
    assert len(set(declared.values())) == len(declared)          # one colour per method
    assert colour("my_method") == colour("my_method") not in declared.values()
    assert file_name("feynman[equation=I.6.20b]") == "feynman-I.6.20b"


def test_plots_of_records_without_latency_or_a_sweep_are_left_out(tmp_path):
    frame = records().drop(columns=["latency.ms.1", "latency.kernel",
                                    "config.args.method.codebook_size"])
    written = render(frame, "g", tmp_path, "caption")
    assert {p.stem for p in written} == {"g_bytes_digits", "g_ratios"}
