import os

import pytest
import torch
from safetensors.torch import save_model

from kanbench.methods.layers import files, splines
from kanbench.methods.layers.architectures import KAN, ConvKAN
from kanbench.methods.layers.kan import DenseKANFactory, KANSpec
from kanbench.suite import measure


def nets():
    factory = DenseKANFactory(KANSpec(grid_size=4, spline_order=2))
    return {"mlp": KAN([6, 5, 3], factory),
            "conv": ConvKAN([4, 8], [1, 2], in_channels=3, num_classes=5, factory=factory)}


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_storage_itemizes_every_byte_of_the_file(name, tmp_path):
    net = nets()[name]
    sizes = measure.storage(net)
    assert sum(sizes["itemized"].values()) == sizes["total_bytes"]
    assert sizes["total_bytes"] == sizes["kan_bytes"] + sizes["other_bytes"]
    path = tmp_path / "model.safetensors"
    save_model(net, str(path))
    assert files.safetensors_payload_bytes(path) == sizes["total_bytes"]
    # dense layers: compressed bytes are the dense bytes
    assert sizes["kan_ratio"] == 1.0 and sizes["model_ratio"] == 1.0


def test_mlp_storage_counts_parameters():
    net = nets()["mlp"]
    sizes = measure.storage(net)
    assert sizes["kan_bytes"] == 4 * sum(p.numel() for p in net.parameters())
    assert sizes["other_bytes"] == 0 and sizes["kan_layers"] == 2
    edges = 6 * 5 + 5 * 3
    assert sizes["itemized"] == {"coefficients": edges * 6 * 4, "base_weights": edges * 4,
                                 "scalers": edges * 4, "other": 0}


def test_conv_norms_are_other_bytes():
    net = nets()["conv"]
    sizes = measure.storage(net)
    norm_bytes = sum(t.numel() * t.element_size() for k, t in net.state_dict().items()
                     if k.startswith("features.1.") or k.startswith("features.3."))
    assert sizes["other_bytes"] == norm_bytes > 0
    assert sizes["kan_layers"] == 3  # two convolutions and the head


def test_peak_memory_grows_with_the_batch():
    net = KAN([64, 64, 10], DenseKANFactory(KANSpec()))
    small = measure.peak_memory(net, torch.randn(8, 64))
    large = measure.peak_memory(net, torch.randn(4096, 64))
    assert small["kind"] == large["kind"] == "cpu_peak_rss_forked_probe_train_step"
    assert large["step_bytes"] > small["step_bytes"]
    assert large["peak_bytes"] >= large["baseline_bytes"]


def test_peak_memory_counts_the_tensor_path_s_basis_tensor():
    """A layer wider than the fused kernel takes (splines.FUSED_MAX_EDGES) trains on the
    tensor path, whose (batch, in, G+k) float32 basis tensor must show in the step's peak."""
    width = splines.FUSED_MAX_EDGES // 64 + 1
    net = KAN([width, 64], DenseKANFactory(KANSpec()))
    probe = measure.peak_memory(net, torch.rand(1024, width) * 2 - 1)
    assert probe["step_bytes"] > 1024 * width * 8 * 4


@pytest.mark.parametrize("kind", ["dense", "metakan"])
def test_training_memory_itemizes_the_model_the_optimizer_state_and_the_step(kind):
    """Adam keeps two moments per trainable parameter; a MetaKAN layer's forward makes every
    edge's G+k+1 weights; the parts add up to the steady-state training peak."""
    from kanbench.methods.layers.metakan import MetaKANFactory, assign_meta_learners
    from kanbench.suite.lit import optimizer

    spec = KANSpec(grid_size=7)                                       # G+k+1 = 11
    if kind == "dense":
        net = KAN([12, 6, 3], DenseKANFactory(spec))
    else:
        factory = MetaKANFactory(spec, emb_dim=1, hidden_dim=4)
        net = KAN([12, 6, 3], factory)
        assign_meta_learners(net, factory, 0, 0)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad) * 4
    memory = measure.training_memory(
        net, torch.rand(8, 12) * 2 - 1,
        lambda n: optimizer([{"params": list(n.parameters()), "lr": 1e-3}], 0.0, "adam"))
    parts = memory["itemized"]
    assert parts["parameters"] == trainable and parts["gradients"] == trainable
    assert parts["optimizer_state"] >= 2 * trainable                 # + one step count each
    assert parts["optimizer_state"] <= 2 * trainable + 8 * len(list(net.parameters()))
    assert parts["generated_weights"] == (0 if kind == "dense" else (12 * 6 + 6 * 3) * 11 * 4)
    assert memory["train_peak_bytes"] == \
        parts["parameters"] + parts["optimizer_state"] + memory["step_bytes"]
    assert sum(v for k, v in parts.items() if k not in ("parameters", "optimizer_state")) == \
        memory["step_bytes"]


def test_the_memory_probe_server_is_restarted_and_reports_a_failing_step(monkeypatch):
    monkeypatch.delenv(measure.SHARED_PROBE, raising=False)    # this process's own server
    net = KAN([16, 4], DenseKANFactory(KANSpec()))
    first = measure.peak_memory(net, torch.randn(64, 16))
    measure.MEMORY_PROBE.server.kill()                    # died between two measurements
    measure.MEMORY_PROBE.server.wait()
    again = measure.peak_memory(net, torch.randn(64, 16))
    assert again["step_bytes"] > 0 and first["step_bytes"] > 0
    failed = r"memory probe failed: AssertionError: \(torch.Size\(\[2, 15\]\), 16\)"
    with pytest.raises(RuntimeError, match=failed):
        measure.peak_memory(net, torch.randn(64, 15))   # the step itself fails in the child
    assert measure.peak_memory(net, torch.randn(64, 16))["step_bytes"] > 0   # server lives on


def test_latency_reports_each_batch():
    net = KAN([6, 3], DenseKANFactory(KANSpec()))
    result = measure.latency(net, lambda b: torch.randn(b, 6), [1, 16])
    assert set(result["ms"]) == {"1", "16"} and all(v > 0 for v in result["ms"].values())
    assert result["kernel"] == "torch" and result["device"] == "cpu"


def test_latency_names_the_codebook_kernel_of_compressed_layers():
    from kanbench.methods.layers.codebook import cluster_edges
    from kanbench.methods.layers.metakan import MetaKANFactory
    net = cluster_edges(KAN([6, 3], MetaKANFactory(KANSpec(), 1, 4)), 4, "model", "fp32", 0)
    result = measure.latency(net, lambda b: torch.randn(b, 6), [1])
    assert result["kernel"] == "cpu"                               # the compiled gather


def test_a_shared_probe_serves_other_processes_and_survives_a_client_cut_short(monkeypatch):
    """`share()`: one server on a Unix socket for the processes started after it (a local
    driver's workers); a client that dies mid-request loses only its own request; the server
    and its socket are gone once its starter closes their pipe (ends)."""
    import socket

    monkeypatch.delenv(measure.SHARED_PROBE, raising=False)
    starter = measure.MemoryProbe()
    path = starter.share()
    try:
        assert os.environ[measure.SHARED_PROBE] == path
        assert starter.share() == path                          # one per process tree
        net = KAN([16, 4], DenseKANFactory(KANSpec()))
        worker = measure.MemoryProbe()                          # e.g. in a forked worker
        assert worker.ask(net, torch.randn(64, 16))["peak"] > 0
        assert worker.server is None                            # it started no server
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as cut:
            cut.connect(path)
            cut.sendall(b"\x40\x00\x00\x00\x00\x00\x00\x00half a frame")  # then dies
        assert worker.ask(net, torch.randn(64, 16))["peak"] > 0
    finally:
        os.environ.pop(measure.SHARED_PROBE, None)
        starter.shared_server.stdin.close()
    starter.shared_server.wait(timeout=10)
    assert not os.path.exists(os.path.dirname(path))


def test_without_the_shared_probe_a_process_asks_its_own(monkeypatch, tmp_path):
    monkeypatch.setenv(measure.SHARED_PROBE, str(tmp_path / "gone" / "probe.sock"))
    probe = measure.MemoryProbe()
    net = KAN([16, 4], DenseKANFactory(KANSpec()))
    assert probe.ask(net, torch.randn(64, 16))["peak"] > 0
    assert probe.server is not None and probe.server.poll() is None
