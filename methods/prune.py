"""Magnitude pruning: the baseline SHARe-KAN argues against (its paper reports that pruning a
Vision KAN's edges collapses its accuracy). Train the dense KAN (the dense method's own cached
stage), then in every KAN layer remove the fraction `sparsity` of edges whose weight vectors
(scaled coefficients and base weight) have the smallest L2 norms, then optionally fine-tune the
kept edges (`finetune_epochs`, 0 for none). Bytes: the kept edges' vectors in fp32 plus a
1-bit-per-edge mask (`methods.layers.prune`).
"""

from __future__ import annotations

from kanbench.methods.dense import Dense
from kanbench.methods.metacluster import finetune_stage
from kanbench.methods.share import SHAPES, SMALL_HEAD
from kanbench.suite.config import FRACTION, NON_NEGATIVE, POSITIVE
from kanbench.suite.interfaces import Claim, Stage
from kanbench.suite.registry import METHODS


@METHODS.register("prune")
class Prune(Dense):
    defaults = {"sparsity": 0.5, "finetune_epochs": 2, "finetune_lr": 1e-3}
    ranges = {"sparsity": FRACTION, "finetune_epochs": NON_NEGATIVE, "finetune_lr": POSITIVE}
    title = "Magnitude pruning"
    colour = "#7570b3"
    claims = (Claim("SHARe-KAN", "2512.15742", "magnitude pruning fails without retraining: "
                    "10% sparsity degrades mAP from 85.23% to 45% (v1; v2: zero-shot sparsity "
                    "collapses accuracy)", "questions", "shapes_voc", "collapse",
                    (("sparsity", 0.1), ("finetune_epochs", 0)),
                    setting=(SHAPES, SMALL_HEAD), figure="40"),)

    def stages(self, args):
        from kanbench.methods.layers.prune import prune_edges, prune_skeleton

        sparsity = args["sparsity"]
        return super().stages(args) + [
            Stage("prune", lambda ctx, net: prune_edges(net, sparsity),
                  key={"sparsity": sparsity}, skeleton=lambda n: prune_skeleton(n, sparsity)),
            finetune_stage(args)]

    def serialize(self, net, path):
        from kanbench.methods.layers.files import save_compressed

        save_compressed(net, path, method=self.name)
