"""The dense KAN method: train the task's network of plain KAN layers. One stage.

Plugin modules import the layer library (torch) only inside the functions that use it, so
the reports read every method's declarations without torch."""

from __future__ import annotations

from kanbench.methods.layers.spec import KANSpec
from kanbench.suite.interfaces import Method, Stage
from kanbench.suite.registry import METHODS


def train(ctx, net):
    return ctx.fit(net, stage="train")


@METHODS.register("dense")
class Dense(Method):
    title = "Dense KAN"
    baseline = True
    colour = "#222222"
    paper_tables = ("metakan", "share")

    def factory(self, kan, args):
        from kanbench.methods.layers.kan import DenseKANFactory

        return DenseKANFactory(KANSpec.from_args(kan))

    def stages(self, args):
        return [Stage("train", train, key={"form": "dense"})]
