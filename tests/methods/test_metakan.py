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


# --- the authors' ConvKANs, restated in float64 from reading their code ------------------------
# github.com/Murphyzc/MetaKAN @ 94e7f1d, image_classification_conv/: kan_convs/kan_conv.py
# (KANConv2DLayer) and models/metaconvkan.py (MetaKANConv2DLayer, SimpleMetaConvKAN). A layer:
# y = conv(gelu(x), base) + conv(B(x), spline), B(x) the (batch, in*(G+k), H, W) bases with
# channel i*(G+k) + j for basis j of input i; then norm, PReLU and (training only) Dropout2d.
# Their meta layer's kernel is the shared hypernet's output on the layer's embeddings
# (out*in*9 rows), reshaped to (out, in*(G+k+1), 3, 3): spline channels first, the last `in`
# the base kernel. The network: four such layers, average pooling, Dropout, nn.Linear.

def authors_conv_bases(x: torch.Tensor, grid: int = 5, order: int = 3) -> torch.Tensor:
    """(batch, in, H, W) -> (batch, in*(G+k), H, W), channel i*(G+k) + j."""
    bases = authors_bases(x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]), grid, order)
    b, c, h, w = x.shape
    return bases.reshape(b, h, w, c * (grid + order)).permute(0, 3, 1, 2)


def authors_conv_layer(x, base, spline, stride, norm, prelu):
    """Their layer on given kernels; `norm` (batch/instance) and `prelu` as torch modules."""
    gelu = torch.nn.functional.gelu(x)
    y = torch.nn.functional.conv2d(gelu, base, stride=stride, padding=1) \
        + torch.nn.functional.conv2d(authors_conv_bases(x), spline, stride=stride, padding=1)
    return prelu(norm(y))


def authors_meta_kernels(embeddings, hypernet, n_out, n_in):
    """Their layer_weight: hypernet(embeddings) reshaped to (out, in*9, 3, 3), split."""
    w1, b1, w2, b2 = hypernet
    weight = (torch.relu(embeddings @ w1.T + b1) @ w2.T + b2).reshape(n_out, n_in * 9, 3, 3)
    return weight[:, -n_in:], weight[:, :-n_in]                   # base, spline


def randomized(net: torch.nn.Module) -> torch.nn.Module:
    """Every parameter and norm statistic drawn anew, so no equality holds by default."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.1)
                m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
    return net.double().eval()


AUTHORS_SPEC = KANSpec(5, 3, base_activation="gelu", spline_scaler=False)


@pytest.mark.parametrize("meta", [True, False])
def test_the_authors_conv_network_equals_kanbench_in_float64(meta):
    factory = MetaKANFactory(AUTHORS_SPEC, 1, 16, "kernel_slices") if meta \
        else DenseKANFactory(AUTHORS_SPEC)
    net = ConvKAN.preset("metakan_conv4_quarter", 1, 10, factory,
                         norm="batch" if meta else "instance")
    if meta:
        net = MetaKAN().prepare(net, factory, {"clusters": 1}, seed=0)   # one shared hypernet
    net = randomized(net)
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64) * 1.5       # beyond the grid too
    convs = [m for m in net.features if hasattr(m, "edge_shape")]
    norms = [m for m in net.features if isinstance(m, torch.nn.modules.batchnorm._NormBase)]
    prelus = [m for m in net.features if isinstance(m, torch.nn.PReLU)]
    y = x
    for conv, norm, prelu, stride in zip(convs, norms, prelus, (1, 2, 2, 1), strict=True):
        n_out, n_in = conv.edge_shape[:2]
        if meta:
            learner = conv.meta.net
            embeddings = conv.prompts.reshape(-1, 1)              # their row order: flat
            base, spline = authors_meta_kernels(
                embeddings, (learner[0].weight, learner[0].bias, learner[2].weight,
                             learner[2].bias), n_out, n_in)
        else:
            base, spline = conv.base_conv.weight, conv.spline_conv.weight
        y = authors_conv_layer(y, base, spline, stride, norm, prelu)
    linear = net.head[1]
    expected = y.mean((2, 3)) @ linear.weight.T + linear.bias
    torch.testing.assert_close(net(x), expected, rtol=1e-6, atol=1e-7)  # float32 knots
    assert len({id(c.meta) for c in convs}) == 1 if meta else True


@pytest.mark.parametrize("meta,count", [(False, 3_489_774), (True, 391_607)])
def test_the_authors_conv_parameter_counts(meta, count):
    """Their models at full width print 3,489,774 (SimpleConvKAN) and 391,607
    (SimpleMetaConvKAN, hidden 64) parameters for one input channel, run here by
    scripts/authors_reference.py: 43,040 edges of 9 weights (or 9 prompts' worth of one
    number each and a 713-parameter hypernet), 960 norm and 4 PReLU parameters, a 2,570-
    parameter classifier."""
    factory = MetaKANFactory(AUTHORS_SPEC, 1, 64, "kernel_slices") if meta \
        else DenseKANFactory(AUTHORS_SPEC)
    net = ConvKAN.preset("metakan_conv4", 1, 10, factory, norm="batch" if meta else "instance")
    if meta:
        net = MetaKAN().prepare(net, factory, {"clusters": 1}, seed=0)
    assert sum(p.numel() for p in net.parameters()) == count


def test_kernel_slices_edge_weights_are_the_kernels_it_convolves_with():
    torch.manual_seed(0)
    layer = MetaKANFactory(SPEC, 1, 8, "kernel_slices").conv2d(3, 4, 3, padding=1)
    dense = KANConv2d(3, 4, 3, padding=1, spec=SPEC)
    coef, base = layer.edge_parts()                             # (4, 3, 3, 3, 8), (4, 3, 3, 3)
    with torch.no_grad():
        dense.base_conv.weight.copy_(base)
        dense.spline_conv.weight.copy_(coef.permute(0, 1, 4, 2, 3).reshape(4, 24, 3, 3))
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(layer(x), dense(x))
    with pytest.raises(ValueError, match="layout"):
        metakan.MetaKANConv2d(3, 4, 3, 1, 1, SPEC, layer.meta, 1, layout="kernels")
