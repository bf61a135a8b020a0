"""MetaKAN: generated layers compute what dense layers carrying those weights compute."""

import pytest
import torch

from methods import metakan
from methods.kan import KAN, ConvKAN, DenseKANFactory, KANConv2d, KANLinear, KANSpec
from methods.metakan import MetaKAN, MetaKANFactory, MetaLearner, meta_layers, meta_param_groups
from suite.measure import storage

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


def test_param_groups_use_the_two_learning_rates():
    net = ConvKAN([4], [1], 3, 10, MetaKANFactory(SPEC, 1, 8))
    groups = meta_param_groups(net, {"lr": 0.5}, lr_meta=1e-4, lr_prompt=1e-3)
    by_lr = {g["lr"]: g["params"] for g in groups}
    meta = [p for m in net.modules() if isinstance(m, MetaLearner) for p in m.parameters()]
    assert [id(p) for p in by_lr[1e-4]] == [id(p) for p in meta]
    assert len(by_lr[1e-3]) == 2                                      # conv and head prompts
    assert len(by_lr[0.5]) == 2                                       # BatchNorm weight, bias
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
