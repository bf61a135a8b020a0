"""The dense KAN method: train the task's network of plain KAN layers. One stage."""

from __future__ import annotations

from methods.kan import DenseKANFactory, KANSpec
from suite.errors import KanbenchError
from suite.interfaces import Method, Stage
from suite.registry import METHODS


def kan_spec(kan: dict) -> KANSpec:
    """The resolved `kan` config section as a KANSpec; bad values are one-line errors."""
    try:
        return KANSpec(grid_size=kan["grid_size"], spline_order=kan["spline_order"],
                       grid_range=tuple(kan["grid_range"]),
                       base_activation=kan["base_activation"], spline_scaler=kan["spline_scaler"],
                       basis=kan["basis"], rbf_centers=kan["rbf_centers"],
                       rbf_range=tuple(kan["rbf_range"]), gram_degree=kan["gram_degree"])
    except (ValueError, TypeError) as err:
        raise KanbenchError(f"kan settings: {err}") from None


def train(ctx, net):
    return ctx.fit(net, stage="train")


@METHODS.register("dense")
class Dense(Method):
    def factory(self, kan, args):
        return DenseKANFactory(kan_spec(kan))

    def stages(self, args):
        return [Stage("train", train, key={"form": "dense"})]
