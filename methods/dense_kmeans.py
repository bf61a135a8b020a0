"""Dense k-means: MetaCluster without its meta-learner. Train the dense KAN (the dense
method's own cached stage, shared with dense and SHARe cells), k-means every edge's vector
(its scaled B-spline coefficients and base weight) into a codebook of K codes, keep per-edge
indices, fine-tune the codebook: MetaCluster's cluster and fine-tune stages with its
defaults. The ablation that asks whether MetaCluster's meta-learner is needed at all.
"""

from __future__ import annotations

from kanbench.methods.dense import Dense
from kanbench.methods.metacluster import (
    CODEBOOK_CHOICES,
    CODEBOOK_DEFAULTS,
    CODEBOOK_RANGES,
    codebook_stages,
)
from kanbench.suite.registry import METHODS


@METHODS.register("dense_kmeans")
class DenseKMeans(Dense):
    defaults = dict(CODEBOOK_DEFAULTS)
    ranges = dict(CODEBOOK_RANGES)
    choices = dict(CODEBOOK_CHOICES)
    title = "Dense k-means"
    colour = "#8c6d31"
    size_arg = "codebook_size"

    def stages(self, args):
        return super().stages(args) + codebook_stages(args)

    def serialize(self, net, path):
        from kanbench.methods.layers.files import save_compressed

        save_compressed(net, path, method=self.name)
