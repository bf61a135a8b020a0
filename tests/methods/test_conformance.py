"""The method contract, checked over every registered method (in the spirit of benchopt's
solver tests and timm's registry-wide model tests), and on a method defined inside a test
(`temp_method`): a new method that passes these runs in every grid and report.

On a tiny Feynman cell, each method's
  - stages round-trip through the stage cache: a second run loads every stage into the
    stage's skeleton and gives the same modules, tensors and metrics;
  - model file's tensor payload equals its itemized storage bytes;
  - KAN layers implement the layer protocol (edge weights of the declared shape, itemized
    positive bytes) and are the only modules that report storage;
  - records appear in every table and plot, in its declared colour.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgb

from kanbench.methods.dense import Dense
from kanbench.methods.layers.files import safetensors_payload_bytes
from kanbench.methods.layers.kan import KANLayer, kan_layers
from kanbench.methods.metacluster import CODEBOOK_DEFAULTS, codebook_stages
from kanbench.suite import measure
from kanbench.suite.config import resolve
from kanbench.suite.registry import METHODS
from kanbench.suite.report import plots
from kanbench.suite.report.declared import declared
from kanbench.suite.report.render import all_tables
from kanbench.suite.runner import execute, new_record, run_method
from tests.conftest import temp_method

SMALL = {"task": {"n_train": 64, "n_val": 32, "n_test": 64}, "train": {"max_epochs": 1},
         "measure": {"latency_batches": [1, 8]}}


def records(method: str, cache_dir) -> list[dict]:
    """Done records of `method` on the tiny Feynman cell, seeds 0 and 1."""
    out = []
    for seed in (0, 1):
        cfg = resolve("conformance", "feynman", method, seed, {**SMALL})
        out.append(new_record(cfg, "") | execute(cfg, None, cache_dir, "") | {"status": "done"})
    return out


@pytest.fixture(scope="module")
def baseline_records(tmp_path_factory) -> list[dict]:
    """The dense KAN's records, made once for every method's reports."""
    return records("dense", tmp_path_factory.mktemp("baseline"))


def check_method(name: str, cache_dir, baseline: list[dict]) -> None:
    """Every clause of the contract for method `name` (see the module docstring)."""
    method = METHODS.create(name)
    given = {**SMALL, "method": {k: 1 for k in ("finetune_epochs",) if k in method.defaults}}
    cfg = resolve("conformance", "feynman", name, 0, given)
    stages = [s.name for s in method.stages(cfg.args["method"])]
    assert declared(name, "before_compression") in stages

    first, made, _ = run_method(cfg, None, cache_dir, "")
    again, loaded, _ = run_method(cfg, None, cache_dir, "")
    assert not any(r.cached for r in made) and all(r.cached for r in loaded)
    assert [r.metrics for r in loaded] == [r.metrics for r in made]
    assert [type(m) for m in again.modules()] == [type(m) for m in first.modules()]
    state, reloaded = first.state_dict(), again.state_dict()
    assert state.keys() == reloaded.keys()
    assert all(torch.equal(state[k], reloaded[k]) for k in state)

    path = cache_dir / f"{name}.safetensors"
    method.serialize(first, path)
    sizes = measure.storage(first)
    assert safetensors_payload_bytes(path) == sizes["total_bytes"]

    layers = kan_layers(first)
    assert layers and sizes["kan_layers"] == len(layers)
    for layer in layers.values():
        assert isinstance(layer, KANLayer)
        with torch.no_grad():
            weights = layer.edge_weights()
        assert weights.shape == (*layer.edge_shape, layer.spec.n_coef + 1)
        assert all(isinstance(v, int) and v > 0 for v in layer.storage().values())
        assert layer.dense_bytes() == math.prod(layer.edge_shape) * 4 * (
            layer.spec.n_coef + 1 + (layer.spec.spline_scaler and len(layer.edge_shape) == 2))
    reporting = {n for n, m in first.named_modules() if callable(getattr(m, "storage", None))}
    assert reporting == set(layers)

    check_reports(name, cache_dir, baseline)


def check_reports(name: str, cache_dir, baseline: list[dict]) -> None:
    """The method's records (and the baseline's) in every table and plot."""
    own = baseline if name == "dense" else records(name, cache_dir)
    frame = pd.json_normalize(own + (baseline if name != "dense" else []))
    tables = all_tables(frame)
    for table in ("summary", "leaderboard", "seed_variance"):
        assert name in set(tables[table]["method"]), table
    assert name in tables["compression"].columns                    # one column per method
    figures = [plots.metric_vs_bytes(frame, "feynman"), plots.ratio_bars(frame),
               plots.latency_bars(frame)]
    for figure in figures:
        handles, labels = figure.axes[0].get_legend_handles_labels()
        (mine,) = [h for h, label in zip(handles, labels, strict=True)
                   if label.split(" ")[0] == name]
        artist = mine.patches[0] if hasattr(mine, "patches") else mine  # a bar's, a point's
        face = np.atleast_2d(artist.get_facecolor())[0][:3]
        assert tuple(face) == pytest.approx(to_rgb(plots.colour(name)), abs=1e-3)
        plt.close(figure)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_registered_method_keeps_the_contract(name, tmp_path, baseline_records):
    check_method(name, tmp_path, baseline_records)


class TwoCodes(Dense):
    """A method written inside a test: dense training, then two shared codes per model."""

    defaults = {**CODEBOOK_DEFAULTS, "codebook_size": 2}

    def stages(self, args):
        return super().stages(args) + codebook_stages(args)

    def serialize(self, net, path):
        from kanbench.methods.layers.files import save_compressed

        save_compressed(net, path, method=self.name)


def test_a_method_defined_in_a_test_keeps_the_contract(tmp_path, baseline_records):
    with temp_method("two_codes", TwoCodes):
        assert "two_codes" in METHODS.names()
        check_method("two_codes", tmp_path, baseline_records)
    assert "two_codes" not in METHODS.names()
