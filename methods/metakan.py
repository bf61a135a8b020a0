"""MetaKAN (arXiv 2506.07549): train the task's network with every edge's weights generated
by a meta-learner from a per-edge prompt (the layers: `methods.layers.metakan`). One stage.

Defaults follow the authors' code (github.com/Murphyzc/MetaKAN, image_classification/, the
settings of their published Fashion-MNIST results): one meta-learner per layer
(`clusters: 0`; C > 0 groups the layers into C clusters by k-means on their output widths,
as their ConvKAN code does), hidden width 32, emb_dim 1, Xavier-normal prompts and
meta-learner weights with zero biases, no output scaling, AdamW at lr 1e-3 / weight decay
1e-4 for the meta-learners and lr 1e-2 / weight decay 5e-4 for the prompts. docs/methods.md
lists where kanbench departs from their recipe (the schedule) and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kanbench.methods.layers.spec import META_CONV_LAYOUTS, KANSpec
from kanbench.suite.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE
from kanbench.suite.interfaces import Claim, Method, Stage
from kanbench.suite.registry import METHODS

if TYPE_CHECKING:
    from torch import nn


def meta_param_groups(net: nn.Module, train: dict, args: dict) -> list[dict]:
    """AdamW groups: meta-learners and prompts at their own learning rates and weight decays
    (`lr_meta`, `wd_meta`, `lr_prompt`, `wd_prompt`), the rest at the train settings."""
    from kanbench.methods.layers.metakan import MetaLearner, meta_layers

    meta = {id(p) for m in net.modules() if isinstance(m, MetaLearner) for p in m.parameters()}
    prompts = {id(m.prompts) for m in meta_layers(net)}
    params = [p for p in net.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) in meta], "lr": args["lr_meta"],
               "weight_decay": args["wd_meta"]},
              {"params": [p for p in params if id(p) in prompts], "lr": args["lr_prompt"],
               "weight_decay": args["wd_prompt"]},
              {"params": [p for p in params if id(p) not in meta | prompts], "lr": train["lr"]}]
    return [g for g in groups if g["params"]]


META_DEFAULTS = {"emb_dim": 1, "hidden_dim": 32, "clusters": 0, "lr_meta": 1e-3,
                 "wd_meta": 1e-4, "lr_prompt": 1e-2, "wd_prompt": 5e-4,
                 "conv_layout": None}   # None: kanbench's; kernel_slices: the authors' ConvKAN
META_CHOICES = {"conv_layout": META_CONV_LAYOUTS}
META_RANGES = {"emb_dim": AT_LEAST_ONE, "hidden_dim": AT_LEAST_ONE, "clusters": NON_NEGATIVE,
               "lr_meta": POSITIVE, "wd_meta": NON_NEGATIVE, "lr_prompt": POSITIVE,
               "wd_prompt": NON_NEGATIVE}


def meta_train_stage(args: dict) -> Stage:
    """Train the MetaKAN form; MetaCluster's first stage is this same (shared, cached) stage."""
    return Stage("train", lambda ctx, net: ctx.fit(net, stage="train"),
                 key={"form": "meta", **{k: args[k] for k in META_DEFAULTS
                                         if args[k] is not None}})


@METHODS.register("metakan")
class MetaKAN(Method):
    defaults = dict(META_DEFAULTS)
    ranges = dict(META_RANGES)
    choices = dict(META_CHOICES)
    title = "MetaKAN"
    colour = "#1f77b4"
    paper_tables = ("metakan",)
    claims = (Claim("MetaKAN", "2506.07549", "trainable parameters 1/3 to 1/9 of the KAN's at "
                    "comparable accuracy (their Fashion-MNIST run: 25,778 vs 254,080 parameters, "
                    "86.65% vs 87.06% best test epoch)", "metakan_authors", "fashion_mnist",
                    "params", setting=("same (their network, data and recipes)",
                                       "authors' code run here: results/authors/"),
                    figure="3", margin=1.0,
                    authors=("fashion_mnist_kan", "fashion_mnist_metakan")),
              Claim("MetaKAN", "2506.07549", "parameters 1/3 to 1/9, comparable accuracy, for "
                    "ConvKANs (their conv code: 3,489,774 vs 391,607)", "conv_authors",
                    "fashion_mnist", "params",
                    setting=("stand-in: Fashion-MNIST for their image datasets",
                             "smaller network: their ConvKANs at a quarter width",
                             "fewer epochs: 1 of 150, on 10k images", "authors' code run here"),
                    figure="3", margin=1.0,
                    authors=("fashion_mnist_conv_kan", "fashion_mnist_conv_metakan")),
              Claim("MetaKAN", "2506.07549", "memory-efficient training: significant memory "
                    "savings, particularly for larger networks and higher grid resolutions",
                    "memory", "fashion_mnist", "memory",
                    setting=("same data and batch; their [784, 32, 10] and a wider "
                             "[784, 256, 10]", "CPU memory, not their GPU's"),
                    authors=("memory",)))

    def factory(self, kan, args):
        from kanbench.methods.layers.metakan import MetaKANFactory

        return MetaKANFactory(KANSpec.from_args(kan), args["emb_dim"], args["hidden_dim"],
                              args["conv_layout"])

    def prepare(self, net, factory, args, seed):
        from kanbench.methods.layers.metakan import assign_meta_learners

        assign_meta_learners(net, factory, args["clusters"], seed)
        return net

    def stages(self, args):
        return [meta_train_stage(args)]

    def param_groups(self, net, train, args):
        return meta_param_groups(net, train, args)
