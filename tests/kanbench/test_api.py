"""The public API: compress a trained KAN with any compressing method, save and reload it
(bytes = the storage accounting), measure and evaluate it; bad input is one line."""

import pytest
import torch

import kanbench
from kanbench.methods.layers.architectures import KAN, ConvKAN
from kanbench.methods.layers.kan import DenseKANFactory
from kanbench.methods.layers.spec import KANSpec
from kanbench.suite.errors import KanbenchError
from tests.methods.layers.test_convert import efficient_kan


def dense(widths=(64, 16, 10), seed=0):
    torch.manual_seed(seed)
    return KAN(list(widths), DenseKANFactory(KANSpec()))


def test_import_kanbench_imports_no_torch():
    import subprocess
    import sys

    probe = "import sys, kanbench; assert 'torch' not in sys.modules; print(kanbench.__all__)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "compress" in done.stdout, done.stderr


@pytest.mark.parametrize("method,args", [("share_int8", {"codebook_size": 32}),
                                         ("share_fp32", {"codebook_size": 8}),
                                         ("metacluster", {"codebook_size": 4,
                                                          "finetune_epochs": 0}),
                                         ("dense_kmeans", {"codebook_size": 1,
                                                           "finetune_epochs": 0,
                                                           "codebook_scope": "layer"})])
def test_compress_save_load_round_trip(method, args, tmp_path):
    model = dense()
    small = kanbench.compress(model, method, **args)
    x = torch.rand(8, 64) * 2 - 1
    assert kanbench.kan_bytes(small) < kanbench.kan_bytes(model)
    written = kanbench.save(small, tmp_path / "m.safetensors")
    assert written == kanbench.measure(small, (64,), batches=(1,))["storage"]["total_bytes"]
    loaded = kanbench.load(tmp_path / "m.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))
    assert type(loaded[0]) is type(small[0])
    # the input model is left as it was
    assert all(type(layer).__name__ == "KANLinear" for layer in model)


def test_a_dense_model_saves_and_loads_and_converted_files_load(tmp_path):
    model = dense((4, 3))
    kanbench.save(model, tmp_path / "dense.safetensors")
    x = torch.rand(5, 4)
    with torch.no_grad():
        assert torch.equal(kanbench.load(tmp_path / "dense.safetensors")(x), model(x))
    source = efficient_kan([4, 3])
    torch.save(source.state_dict(), tmp_path / "effkan.pt")
    with torch.no_grad():
        torch.testing.assert_close(kanbench.load(tmp_path / "effkan.pt")(x), source(x),
                                   rtol=1e-5, atol=1e-6)


def test_compress_fine_tunes_on_a_task_and_evaluates_on_it():
    model = dense((64, 8, 10))
    before = kanbench.evaluate(model, "digits")
    assert before["primary"] == "accuracy" and 0 <= before["accuracy"] <= 1
    small = kanbench.compress(model, "metacluster", task="digits", codebook_size=4,
                              finetune_epochs=1)
    after = kanbench.evaluate(small, "digits")
    assert 0 <= after["accuracy"] <= 1 and "accuracy" in after["val"]


def test_a_conv_network_reloads_given_the_network_it_came_from(tmp_path):
    torch.manual_seed(0)
    net = ConvKAN([4, 8], [1, 2], 1, 10, DenseKANFactory(KANSpec()))
    small = kanbench.compress(net, "share_int8", codebook_size=4)
    kanbench.save(small, tmp_path / "conv.safetensors")
    with pytest.raises(KanbenchError, match="not a plain KAN; pass like="):
        kanbench.load(tmp_path / "conv.safetensors")
    loaded = kanbench.load(tmp_path / "conv.safetensors", like=net)
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), small.eval()(x))


def test_bad_input_is_one_line(tmp_path):
    model = dense((4, 3))
    cases = [
        (lambda: kanbench.compress(model, "metacluster", codebook_size=4), "pass task="),
        (lambda: kanbench.compress(model, "dense"), "no post-training stages"),
        (lambda: kanbench.compress(model, "nope"), "unknown method 'nope'"),
        (lambda: kanbench.compress(model, "share_int8", codebook_size=0), "codebook_size"),
        (lambda: kanbench.compress(model, "share_int8", bits=3), "unknown method arg 'bits'"),
        (lambda: kanbench.compress(torch.nn.Linear(2, 2), "share_int8"), "no kanbench KAN"),
        (lambda: kanbench.load(tmp_path / "missing.safetensors"), "missing.safetensors"),
        (lambda: kanbench.evaluate(model, "digits"), "does not take digits's inputs"),
    ]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    cases.append((lambda: kanbench.load(tmp_path / "junk.pt"), "not a readable state dict"))
    for call, message in cases:
        with pytest.raises(KanbenchError, match=message) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_the_lazy_package_and_the_api_module_list_the_same_names():
    """kanbench/__init__.py lists the API without importing torch, api.py for its linters:
    the two lists must not drift."""
    import kanbench
    from kanbench import api

    assert kanbench.__all__ == api.__all__
    assert all(callable(getattr(kanbench, name)) for name in kanbench.__all__)


def test_measure_gives_the_training_peak_with_the_optimizers_state():
    """A dense model: AdamW's two moments per parameter beside the weights and the step."""
    model = dense()
    weights = sum(p.numel() for p in model.parameters()) * 4
    memory = kanbench.measure(model, (64,), batches=(1, 16))["memory"]
    assert memory["batch"] == 16
    assert memory["itemized"]["parameters"] == weights == memory["itemized"]["gradients"]
    assert 2 * weights <= memory["itemized"]["optimizer_state"] <= 2 * weights + 1024
    assert memory["train_peak_bytes"] == weights + memory["itemized"]["optimizer_state"] \
        + memory["step_bytes"]
