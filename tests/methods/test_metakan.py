"""MetaKAN: generated layers compute what dense layers carrying those weights compute."""

import pytest
import torch

from kanbench.methods.layers import metakan
from kanbench.methods.layers.architectures import KAN, ConvKAN
from kanbench.methods.layers.kan import DenseKANFactory, KANConv2d, KANLinear, KANSpec
from kanbench.methods.layers.metakan import MetaKANFactory, MetaLearner, meta_layers
from kanbench.methods.metakan import MetaKAN, meta_param_groups
from kanbench.suite.measure import storage

SPEC = KANSpec(5, 3, spline_scaler=False)


def mlp_params(emb: int, hidden: int, out: int) -> int:
    return emb * hidden + hidden + hidden * out + out


@pytest.mark.parametrize("emb,hidden", [(1, 32), (4, 16)])
def test_parameter_count_is_prompts_plus_one_meta_learner(emb, hidden):
    net = KAN([784, 64, 10], MetaKANFactory(KANSpec(), emb, hidden))
    edges = 784 * 64 + 64 * 10
    expected = edges * emb + mlp_params(emb, hidden, KANSpec().n_coef + 1)
    assert sum(p.numel() for p in net.parameters()) == expected
    assert net[0].edge_weights().shape == (64, 784, 9)
    dense = sum(p.numel() for p in KAN([784, 64, 10], DenseKANFactory(KANSpec())).parameters())
    assert dense == edges * 10                       # G+k coefficients, base weight, scaler
    if (emb, hidden) == (1, 32):                     # MetaKAN's defaults: under 1/5 of dense
        assert sum(p.numel() for p in net.parameters()) <= dense / 5


def test_layer_equals_a_dense_layer_carrying_the_generated_weights():
    torch.manual_seed(0)
    layer = MetaKANFactory(SPEC, 2, 8).linear(7, 3).double()
    dense = KANLinear(7, 3, SPEC).double()
    with torch.no_grad():
        w = layer.edge_weights()                                      # (3, 7, G+k+1)
        dense.spline_weight.copy_(w[..., :-1])
        dense.base_weight.copy_(w[..., -1])
    x = torch.rand(11, 7, dtype=torch.float64) * 3 - 1.5              # partly outside the grid
    torch.testing.assert_close(layer(x), dense(x))


def test_conv_layer_equals_a_dense_conv_carrying_the_generated_kernels():
    torch.manual_seed(0)
    layer = MetaKANFactory(SPEC, 1, 8).conv2d(3, 4, 3, stride=2, padding=1).double()
    dense = KANConv2d(3, 4, 3, stride=2, padding=1, spec=SPEC).double()
    with torch.no_grad():
        w = layer.edge_weights()                                      # (4, 3, 3, 3, G+k+1)
        dense.spline_conv.weight.copy_(w[..., :-1].permute(0, 1, 4, 2, 3).reshape(4, 24, 3, 3))
        dense.base_conv.weight.copy_(w[..., -1])
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(layer(x), dense(x))


def test_chunked_generation_gives_the_same_outputs_and_gradients(monkeypatch):
    torch.manual_seed(0)
    net = KAN([6, 5, 2], MetaKANFactory(SPEC, 1, 8)).double()
    x = torch.randn(4, 6, dtype=torch.float64)

    def grads():
        net.zero_grad()
        y = net(x)
        y.square().sum().backward()
        return y.detach(), [p.grad.clone() for p in net.parameters()]

    whole = grads()
    monkeypatch.setattr(metakan, "GENERATE_EDGES", 4)                 # many chunks per layer
    chunked = grads()
    torch.testing.assert_close(chunked, whole)


def test_layers_are_clustered_by_output_width():
    factory = MetaKANFactory(SPEC, 1, 8)
    net = KAN([10, 64, 60, 4, 3], factory)
    MetaKAN().prepare(net, factory, {"clusters": 2}, seed=0)
    learners = [layer.meta for layer in meta_layers(net)]
    assert learners[0] is learners[1] and learners[2] is learners[3]
    assert learners[0] is not learners[2]
    # storage counts each meta-learner once, however many layers share it
    itemized = storage(net)["itemized"]
    assert itemized["meta_learner"] == 2 * mlp_params(1, 8, SPEC.n_coef + 1) * 4
    assert itemized["prompts"] == (10 * 64 + 64 * 60 + 60 * 4 + 4 * 3) * 4


def test_param_groups_use_the_two_learning_rates_and_weight_decays():
    net = ConvKAN([4], [1], 3, 10, MetaKANFactory(SPEC, 1, 8))
    args = {"lr_meta": 1e-4, "wd_meta": 0.1, "lr_prompt": 1e-3, "wd_prompt": 0.2}
    groups = meta_param_groups(net, {"lr": 0.5}, args)
    by_lr = {g["lr"]: g for g in groups}
    meta = [p for m in net.modules() if isinstance(m, MetaLearner) for p in m.parameters()]
    assert [id(p) for p in by_lr[1e-4]["params"]] == [id(p) for p in meta]
    assert by_lr[1e-4]["weight_decay"] == 0.1 and by_lr[1e-3]["weight_decay"] == 0.2
    assert len(by_lr[1e-3]["params"]) == 2                            # conv and head prompts
    assert len(by_lr[0.5]["params"]) == 2                             # BatchNorm weight, bias
    assert "weight_decay" not in by_lr[0.5]                           # the train setting
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))


def test_default_is_one_meta_learner_per_layer():
    factory = MetaKANFactory(SPEC, 1, 8)
    net = KAN([10, 64, 60, 4], factory)
    MetaKAN().prepare(net, factory, {"clusters": 0}, seed=0)
    learners = [layer.meta for layer in meta_layers(net)]
    assert len({id(m) for m in learners}) == 3
    assert MetaKAN.defaults["clusters"] == 0


# --- the authors' MetaKAN, restated in float64 from reading their code -----------------------
# github.com/Murphyzc/MetaKAN @ 94e7f1d, image_classification/models/metakan.py (with the ReLU
# meta-learner of base_model/metakan.py, which their logged results print): per layer l,
# embeddings E (n_out * n_in, d_e), row o * n_in + i for edge (o, i); c = W2 relu(W1 e + b1) + b2
# (9 numbers: 8 spline coefficients, then the base weight); knots t_j = -1 + (j - k) h, h = 2/G;
# Cox-de Boor with 1e-8 added to each denominator; y_o = sum_i c[8] silu(x_i) + c[:8] . B(x_i).

def authors_bases(x: torch.Tensor, grid: int = 5, order: int = 3) -> torch.Tensor:
    """(batch, n_in) -> (batch, n_in, G+k), their recursion with its 1e-8 denominators."""
    h = 2.0 / grid
    t = torch.tensor([-1 + (j - order) * h for j in range(grid + 2 * order + 1)],
                     dtype=torch.float64)
    x = x.unsqueeze(-1)
    b = ((x >= t[:-1]) & (x < t[1:])).double()
    for p in range(1, order + 1):
        b = ((x - t[:-(p + 1)]) / (t[p:-1] - t[:-(p + 1)] + 1e-8) * b[..., :-1]
             + (t[p + 1:] - x) / (t[p + 1:] - t[1:-p] + 1e-8) * b[..., 1:])
    return b


def authors_layer(x, emb, w1, b1, w2, b2, n_out):
    n_in = x.shape[1]
    c = torch.relu(emb @ w1.T + b1) @ w2.T + b2                      # (n_out * n_in, 9)
    c = c.reshape(n_out, n_in, 9)
    silu = x * torch.sigmoid(x)                                       # (batch, n_in)
    return silu @ c[..., 8].T + torch.einsum("bij,oij->bo", authors_bases(x), c[..., :8])


def test_layer_equals_the_authors_forward_in_float64():
    torch.manual_seed(0)
    n_in, n_out, emb_dim = 7, 5, 2
    spec = KANSpec(5, 3, spline_scaler=False)
    factory = MetaKANFactory(spec, emb_dim, 16)
    layer = factory.linear(n_in, n_out).double()
    meta = layer.meta.net
    emb = torch.randn(n_out * n_in, emb_dim, dtype=torch.float64)
    with torch.no_grad():
        layer.prompts.copy_(emb.reshape(n_out, n_in, emb_dim))
    x = torch.rand(64, n_in, dtype=torch.float64) * 5 - 2.5          # beyond the extended grid
    expected = authors_layer(x, emb, meta[0].weight, meta[0].bias, meta[2].weight,
                             meta[2].bias, n_out)
    torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("hidden,count", [(16, 25_778), (32, 26_130)])
def test_parameter_count_equals_the_authors_on_fashion_mnist(hidden, count):
    """Their logs print 25,778 (hidden 16) and 26,130 (hidden 32) for [784, 32, 10]."""
    factory = MetaKANFactory(KANSpec(spline_scaler=False), 1, hidden)
    net = MetaKAN().prepare(KAN([784, 32, 10], factory), factory, {"clusters": 0}, seed=0)
    assert sum(p.numel() for p in net.parameters()) == count


def test_initialization_is_the_authors_xavier_normal():
    torch.manual_seed(0)
    layer = MetaKANFactory(SPEC, 1, 32).linear(784, 32)
    edges = 784 * 32
    assert layer.prompts.std().item() == pytest.approx((2 / (edges + 1)) ** 0.5, rel=0.02)
    first, second = layer.meta.net[0], layer.meta.net[2]
    assert first.bias.abs().sum() == 0 and second.bias.abs().sum() == 0
    assert second.weight.std().item() == pytest.approx((2 / (32 + 9)) ** 0.5, rel=0.2)


@pytest.mark.parametrize("edges", [1, 35, 200])
def test_keeping_the_generated_activations_changes_no_number(monkeypatch, edges):
    """CHECKPOINT_MIN_EDGES only trades memory for time: the same outputs and gradients, bit
    for bit, whether the meta-learner's activations are recomputed in backward or kept."""
    from kanbench.methods.layers import metakan

    torch.manual_seed(0)
    factory = MetaKANFactory(KANSpec(5, 3), 1, 16)
    layer = factory.linear(edges, 1)
    x = torch.rand(32, edges) * 2 - 1
    results = []
    for threshold in (0, edges + 1):                                  # recompute, then keep
        monkeypatch.setattr(metakan, "CHECKPOINT_MIN_EDGES", threshold)
        layer.zero_grad()
        y = layer(x)
        y.square().sum().backward()
        results.append((y.detach(), *(p.grad.clone() for p in layer.parameters())))
    for recomputed, kept in zip(*results, strict=True):
        assert torch.equal(recomputed, kept)
