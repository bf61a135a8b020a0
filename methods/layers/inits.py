"""The initializations `train.init` names: each redraws a built network's KAN layers as
another code base draws them (the default is each layer's own)."""

from __future__ import annotations

import math

import torch
from torch import nn

from kanbench.methods.layers.kan import KANConv2d, KANLinear, kan_layers
from kanbench.methods.layers.metakan import MetaKANConv2d
from kanbench.suite.errors import KanbenchError


@torch.no_grad()
def init_as_metakan_authors(net: nn.Module) -> nn.Module:
    """Redraw the KAN layers of `net` as the MetaKAN authors' code draws them
    (github.com/Murphyzc/MetaKAN @ 94e7f1d).
    `KANLinear`, their KAN baseline (image_classification/models/kan.py, at their
    scale_noise 0.01, scale_base 1, scale_spline 1):
        base_weight   ~ U(-1, 1) / sqrt(in)
        spline_weight ~ N(0, (0.01 / sqrt(in) / sqrt(G+k))^2)
        spline_scaler ~ N(1, 0.1^2)
    `KANConv2d`, their ConvKAN baseline (image_classification_conv/kan_convs/kan_conv.py):
    both kernels Kaiming-uniform for a linear layer, U(-b, b) with b = sqrt(3 / fan_in),
    fan_in = in*kh*kw (base) and in*(G+k)*kh*kw (spline).
    Meta-learned convolutions, their MetaConvKAN (image_classification_conv/models/
    metaconvkan.py): each layer's prompts Xavier-uniform over its (edges, emb_dim) matrix
    (the meta-learner's Xavier-normal weights and zero biases are kanbench's already).
    A network with another kind of KAN layer is refused: their code says nothing about it."""
    layers = kan_layers(net)
    drawn = (KANLinear, KANConv2d, MetaKANConv2d)
    others = sorted({type(m).__name__ for m in layers.values() if type(m) not in drawn})
    if not layers or others:
        raise KanbenchError("train.init 'metakan_authors' draws dense KANLinear, KANConv2d and "
                            "MetaKANConv2d layers only; this network has "
                            f"{', '.join(others) or 'no KAN layer'}")
    for layer in layers.values():
        if isinstance(layer, KANLinear):
            fan_in, n_coef = layer.in_features, layer.spec.n_coef
            layer.base_weight.uniform_(-1, 1).div_(math.sqrt(fan_in))
            layer.spline_weight.normal_(0.0, 0.01 / math.sqrt(fan_in) / math.sqrt(n_coef))
            if layer.spline_scaler is not None:
                layer.spline_scaler.normal_(1.0, 0.1)
        elif isinstance(layer, KANConv2d):
            for conv in (layer.base_conv, layer.spline_conv):
                nn.init.kaiming_uniform_(conv.weight, nonlinearity="linear")
        else:
            flat = layer.prompts.view(-1, layer.prompts.shape[-1])     # (edges, emb_dim)
            nn.init.xavier_uniform_(flat)
    return net


INITS = {"metakan_authors": init_as_metakan_authors}  # train.init -> what draws the network
