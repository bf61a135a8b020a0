"""SHARe-KAN (arXiv 2512.15742): the dense method's training stage (cached, shared), then
post-training Gain-Shape-Bias vector quantization with one shape codebook per layer
(`methods.layers.share`); `share_int8` adds int8 codebooks, gains, biases and base weights.
"""

from __future__ import annotations

from kanbench.methods.dense import Dense
from kanbench.methods.metacluster import index_coding_stages, kmeans_seed
from kanbench.suite.config import AT_LEAST_ONE, SEED
from kanbench.suite.interfaces import Claim, Stage
from kanbench.suite.registry import METHODS

SHARE_DEFAULTS = {"codebook_size": 256, "kmeans_iterations": 25,
                  "kmeans_seed": None,     # None: the cell's seed
                  "index_coding": None}    # None: bit-packed; "ans": entropy-coded
SHARE_RANGES = {"codebook_size": AT_LEAST_ONE, "kmeans_iterations": AT_LEAST_ONE,
                "kmeans_seed": SEED}
VQ_KEYS = ("codebook_size", "kmeans_iterations", "kmeans_seed")  # what the vq stage makes
# how the claims' kanbench settings relate to the paper's (claims table)
SHAPES = "stand-in: synthetic shapes for PASCAL VOC"
SMALL_HEAD = "smaller network: small trunk, 128-wide head, G=5"
NO_VOC = "no PASCAL VOC or COCO files and no GPU on this machine"


@METHODS.register("share_fp32")
class ShareFP32(Dense):
    """Dense training (the dense method's own cached stage), then Gain-Shape-Bias VQ."""

    defaults = dict(SHARE_DEFAULTS)
    ranges = dict(SHARE_RANGES)
    choices = {"index_coding": ("ans",)}
    title = "SHARe-KAN FP32"
    colour = "#ff7f0e"
    size_arg = "codebook_size"
    paper_tables = ("share",)
    precisions = ("fp32",)

    def stages(self, args):
        from kanbench.methods.layers import share

        codes, iterations = args["codebook_size"], args["kmeans_iterations"]

        def vq(ctx, net):
            return share.quantize_heads([net], codes, kmeans_seed(args, ctx.cfg.seed),
                                        iterations)[0]

        stages = super().stages(args) + [
            Stage("vq", vq, key={k: args[k] for k in VQ_KEYS},
                  skeleton=lambda n: share.share_skeleton(n, codes, "fp32"))]
        if "int8" in self.precisions:
            stages.append(Stage("int8", lambda ctx, net: share.to_int8(net),
                                skeleton=lambda n: share.share_skeleton(n, codes, "int8")))
        return stages + index_coding_stages(args)

    def serialize(self, net, path):
        from kanbench.methods.layers.files import save_compressed

        save_compressed(net, path, method=self.name)


@METHODS.register("share_int8")
class ShareInt8(ShareFP32):
    """share_fp32's stages (cached), then int8 codebook, gains, biases and base weights."""

    precisions = ("fp32", "int8")
    title = "SHARe-KAN Int8"
    colour = "#d62728"
    size_arg = "codebook_size"
    paper_tables = ("share",)
    claims = (
        Claim("SHARe-KAN", "2512.15742", "9.3x head compression (58.67 MB -> 6.32 MB) at -2.0 "
              "mAP (paper: Int8, ResNet-50 Faster R-CNN on PASCAL VOC)", "quick", "shapes_voc",
              "map_gap", setting=(SHAPES, SMALL_HEAD), figure="9.3", margin=2.0),
        Claim("SHARe-KAN", "2512.15742", "9.3x head compression (58.67 MB -> 6.32 MB) at -2.0 "
              "mAP (paper: Int8, ResNet-50 Faster R-CNN on PASCAL VOC)", "paper", "voc",
              "map_gap", setting=("same data and trunk",), figure="9.3", margin=2.0,
              unmeasurable=NO_VOC),
        Claim("SHARe-KAN", "2512.15742", "88.9% of the dense head's mAP kept zero-shot on COCO "
              "(Int8)", "quick", "shapes_voc", "transfer_retention",
              setting=(SHAPES + " and COCO", SMALL_HEAD), figure="0.889"),
        Claim("SHARe-KAN", "2512.15742", "88.9% of the dense head's mAP kept zero-shot on COCO "
              "(Int8)", "paper", "voc", "transfer_retention",
              setting=("same data and trunk",), figure="0.889", unmeasurable=NO_VOC),
        Claim("SHARe-KAN", "2512.15742", "FP32 to Int8 costs only 1.3 points of COCO transfer "
              "retention", "quick", "shapes_voc", "int8_cost",
              setting=(SHAPES + " and COCO", SMALL_HEAD), figure="1.3"),
        Claim("SHARe-KAN", "2512.15742", "50 heads: 2.9 GB -> 211 MB (13.9x) by sharing the "
              "codebook (Int8)", "quick", "shapes_voc", "heads",
              setting=(SMALL_HEAD, "bytes only: the data do not enter"), figure="13.9"),
        Claim("SHARe-KAN", "2512.15742", "50 heads: 2.9 GB -> 211 MB (13.9x) by sharing the "
              "codebook (Int8)", "paper", "voc", "heads",
              setting=("same head shape (58.72 MB dense)", "bytes only, built untrained"),
              figure="13.9", sizes=True),
    )
