"""Plots are written, non-empty, in both formats, and rerunning rewrites the same PNG bytes."""

import pandas as pd

from kanbench.suite.registry import METHODS
from kanbench.suite.report.plots import colour
from kanbench.suite.report.render import file_name
from kanbench.suite.report.render import write_plots as render


def records():
    rows = []
    for method, size, ratio, value in (("dense", 1000, 1.0, 0.90), ("metakan", 100, 10.0, 0.85),
                                       ("share_int8", 110, 9.0, 0.89)):
        for seed in range(3):
            rows.append({"task": "digits", "method": method, "seed": seed, "status": "done",
                         "metrics.primary": "accuracy", "metrics.higher_is_better": True,
                         "metrics.accuracy": value + 0.01 * seed,
                         "metrics.val.accuracy": value,
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
                                              "codebook_sweep", "frontier_digits")
                     for ext in ("png", "pdf")}
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


def k_sweep(seeds: int = 1) -> pd.DataFrame:
    """MetaCluster at five codebook sizes beside dense, `seeds` seeds each."""
    rows = []
    for seed in range(seeds):
        rows.append({"task": "digits", "method": "dense", "seed": seed, "status": "done",
                     "metrics.primary": "accuracy", "metrics.higher_is_better": True,
                     "metrics.accuracy": 0.9, "storage.kan_bytes": 1000,
                     "storage.kan_ratio": 1.0, "storage.model_ratio": 1.0,
                     "trainable_params": 10, "timing.train.seconds": 1.0})
        for k in (4, 8, 16, 32, 64):
            rows.append(rows[-1] | {"method": "metacluster", "metrics.accuracy": 0.8 + k / 1000,
                                    "storage.kan_bytes": 10 * k, "storage.kan_ratio": 100 / k,
                                    "storage.model_ratio": 100 / k,
                                    "config.args.method.codebook_size": k})
    return pd.DataFrame(rows)


def test_each_codebook_size_gets_its_own_colour_in_numeric_order():
    from kanbench.suite.report import plots

    figure = plots.metric_vs_bytes(k_sweep(), "digits")
    handles, labels = figure.legends[0].legend_handles, [t.get_text()
                                                         for t in figure.legends[0].texts]
    sizes = [label for label in labels if label.startswith("metacluster")]
    assert sizes == [f"metacluster[codebook_size={k}]" for k in (4, 8, 16, 32, 64)]
    colours = {label: tuple(h.get_facecolor()[0][:3])
               for h, label in zip(handles, labels, strict=True)
               if label.startswith("metacluster")}
    assert len(set(colours.values())) == 5


def test_exact_ratios_carry_no_error_bars_and_one_seed_claims_no_spread():
    from matplotlib.container import ErrorbarContainer

    from kanbench.suite.report import plots

    bars = plots.ratio_bars(k_sweep(seeds=3))
    assert not any(isinstance(c, ErrorbarContainer) for c in bars.axes[0].containers)
    assert "±" not in bars.axes[0].get_title()
    sweep = plots.codebook_sweep(k_sweep(seeds=1))
    assert "one seed" in sweep.axes[0].get_title() and "±" not in sweep.axes[0].get_title()
    assert "mean ± std" in plots.codebook_sweep(k_sweep(seeds=3)).axes[0].get_title()


def test_every_label_title_and_legend_lies_inside_its_figure():
    from kanbench.suite.report import plots

    frame = k_sweep(seeds=2)
    long = records().assign(task="feynman_with_a_long_setup_name_" + "x" * 40)
    for figure in (plots.metric_vs_bytes(frame, "digits"), plots.ratio_bars(long),
                   plots.latency_bars(records()), plots.codebook_sweep(frame)):
        figure.canvas.draw()
        renderer, box = figure.canvas.get_renderer(), figure.bbox
        ax = figure.axes[0]
        texts = [t for t in (ax.title, ax.xaxis.label, ax.yaxis.label) if t.get_text()]
        assert len(texts) >= 2 and figure.legends
        for artist in [*texts, *figure.legends]:
            extent = artist.get_window_extent(renderer)
            assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, artist
            assert box.y0 - 1 <= extent.y0 and extent.y1 <= box.y1 + 1, artist
