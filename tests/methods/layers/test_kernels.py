"""The codebook kernels against the float64 reference: torch (gather and rebuilt-tile matmul),
cpu (the compiled outputs and batch orders) and triton (interpreted on CPU), on random ragged
shapes."""

import importlib
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from kanbench.methods.layers import kernels
from kanbench.methods.layers.kan import KANLinear, KANSpec
from kanbench.methods.layers.kernels import build, cpu
from tests.conftest import REPO

SPECS = {"cubic": KANSpec(5, 3), "linear": KANSpec(3, 1, grid_range=(-2.0, 0.5)),
         "k0": KANSpec(4, 0), "G1": KANSpec(1, 2), "rbf": KANSpec(basis="rbf"),
         "gram": KANSpec(basis="gram")}


def random_layer(spec, codes, form, out=37, n_in=53, seed=0):
    """A packed layer: `carry` (MetaCluster: codes hold the base weight), `fp32` or `int8`
    (SHARe: per-edge gain, bias and base weight)."""
    g = torch.Generator().manual_seed(seed)
    width = spec.n_coef + (form == "carry")
    table = torch.randn(codes, width, generator=g)
    indices = torch.randint(0, codes, (out, n_in), generator=g)
    if form == "carry":
        return kernels.pack(table, indices)
    if form == "int8":
        numbers = [(torch.randint(-127, 128, (out, n_in), generator=g, dtype=torch.int8), s)
                   for s in (0.02, 0.005, 0.01)]
    else:
        numbers = [torch.rand(out, n_in, generator=g), torch.randn(out, n_in, generator=g),
                   torch.randn(out, n_in, generator=g)]
    return kernels.pack(table, indices, *numbers)


def inputs(batch, n_in=53, seed=1):
    """Mostly inside the grid, some far outside it, and exact knots."""
    x = torch.randn(batch, n_in, generator=torch.Generator().manual_seed(seed)) * 1.5
    special = torch.tensor([-1.0, 0.6, 5.0])[:n_in]
    x[:, :len(special)] = special
    return x


def check(kernel, spec, codes, form, batch, **shape):
    layer = random_layer(spec, codes, form, **shape)
    x = inputs(batch, layer.in_features)
    want = kernels.codebook_linear(x, layer, spec, nn.SiLU(), "reference")
    got = kernels.codebook_linear(x, layer, spec, nn.SiLU(), kernel)
    assert got.shape == want.shape == (batch, layer.out_features) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_the_reference_is_the_dense_layer_of_the_rebuilt_coefficients():
    spec = SPECS["cubic"]
    layer = random_layer(spec, 8, "fp32", out=4, n_in=6)
    codes = layer.codes[layer.indices.t().long()]                    # (out, in, n_coef)
    dense = KANLinear(6, 4, KANSpec(5, 3, spline_scaler=False))
    with torch.no_grad():
        dense.spline_weight.copy_(codes * layer.gains.data.t()[..., None]
                                  + layer.biases.data.t()[..., None])
        dense.base_weight.copy_(layer.base.data.t())
        x = inputs(7, 6)
        torch.testing.assert_close(kernels.codebook_linear(x, layer, spec, nn.SiLU(),
                                                           "reference"), dense(x))


@pytest.mark.parametrize("batch", [1, 5, cpu.GATHER_MAX_BATCH + 3])  # both torch orders
@pytest.mark.parametrize("form", ["carry", "fp32", "int8"])
@pytest.mark.parametrize("codes", [1, 16, 300])                     # 300: int32 indices
@pytest.mark.parametrize("spec", list(SPECS))
@pytest.mark.parametrize("kernel", ["torch", "cpu"])
def test_cpu_kernels_match_the_reference(kernel, spec, codes, form, batch):
    check(kernel, SPECS[spec], codes, form, batch)


# batch rows around the compiled batch order's blocks of 16, 32 and 64 rows and its threads'
# split; 300 codes make blocks of 3 inputs (of 53) at 64 rows, 13 at 16
@pytest.mark.parametrize("batch", [1, 2, 15, 16, 17, 33, 70, 130])
@pytest.mark.parametrize("form", ["carry", "fp32", "int8"])
@pytest.mark.parametrize("codes", [1, 16, 300])
@pytest.mark.parametrize("spec", ["cubic", "k0", "rbf"])
def test_both_compiled_orders_match_the_reference_and_each_other(spec, codes, form, batch):
    layer = random_layer(SPECS[spec], codes, form, out=37, n_in=53)
    x = inputs(batch, layer.in_features)
    want = kernels.codebook_linear(x, layer, SPECS[spec], nn.SiLU(), "reference")
    got = {order: cpu.ORDERS[order](x, layer, SPECS[spec], nn.SiLU())
           for order in ("outputs", "batch")}
    torch.testing.assert_close(got["outputs"], want, rtol=1e-5, atol=1e-4)
    # the same terms, the outputs order summing them in chunks of inputs (gather.cpp):
    # switching order at BATCH_ORDER_FROM moves an output by rounding only, at most about one
    # float32 rounding per input's partial sum (the portable loop of a CPU without AVX-512
    # reaches 4e-6 relative at an output of 3.2)
    rounding = layer.in_features * torch.finfo(torch.float32).eps * want.abs().max().item()
    torch.testing.assert_close(got["batch"], got["outputs"], rtol=0, atol=rounding)


# the outputs order's two edge loops: AVX-512 gathers (where the CPU has them) and portable
# C++; 16-output steps with a masked tail (out 37, 5, 1) and fewer inputs than chunks (n_in 3)
@pytest.mark.parametrize("shape", [{"out": 37, "n_in": 53}, {"out": 5, "n_in": 3},
                                   {"out": 1, "n_in": 20}, {"out": 32, "n_in": 1}])
@pytest.mark.parametrize("batch", [1, 3, 9])
@pytest.mark.parametrize("form", ["carry", "fp32", "int8"])
@pytest.mark.parametrize("codes", [1, 16, 300])
def test_the_outputs_orders_edge_loops_match_the_reference(codes, form, batch, shape):
    spec = SPECS["cubic"]
    layer = random_layer(spec, codes, form, **shape)
    x = inputs(batch, layer.in_features)
    want = kernels.codebook_linear(x, layer, spec, nn.SiLU(), "reference")
    for portable in (False, True):
        got = cpu.compiled_forward(x, layer, spec, nn.SiLU(), batch_order=False,
                                   portable=portable)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_the_outputs_order_does_not_depend_on_the_thread_count():
    layer = random_layer(SPECS["cubic"], 300, "int8", out=70, n_in=101)
    x = inputs(3, layer.in_features)
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            runs.append(cpu.ORDERS["outputs"](x, layer, SPECS["cubic"], nn.SiLU()))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(run, runs[0]) for run in runs[1:])


def test_the_order_switches_at_the_measured_batch():
    assert cpu.pick_order(cpu.BATCH_ORDER_FROM - 1, True) == "outputs"
    assert cpu.pick_order(cpu.BATCH_ORDER_FROM, True) == "batch"
    switch = cpu.CODES_ONLY_BATCH_ORDER_FROM
    assert cpu.pick_order(switch - 1, True, codes_only=True) == "outputs"
    assert cpu.pick_order(switch, True, codes_only=True) == "batch"
    assert cpu.pick_order(1, False) == "torch_gather"
    assert cpu.pick_order(cpu.GATHER_MAX_BATCH + 1, False) == "torch_rebuilt"


def test_codes_longer_than_the_compiled_kernel_takes_go_through_pytorch():
    spec = KANSpec(cpu.COMPILED_MAX_BASES + 2, 0)                      # 66 bases
    layer = random_layer(spec, 8, "int8", out=5, n_in=4)
    x = inputs(20, 4)
    want = kernels.codebook_linear(x, layer, spec, nn.SiLU(), "reference")
    torch.testing.assert_close(kernels.codebook_linear(x, layer, spec, nn.SiLU(), "cpu"), want,
                               rtol=1e-5, atol=1e-4)
    with pytest.raises(RuntimeError, match="at most 64 bases"):
        cpu.ORDERS["batch"](x, layer, spec, nn.SiLU())


def test_cpu_kernel_handles_one_input_and_one_output():
    for shape in ({"out": 1, "n_in": 1}, {"out": 1, "n_in": 70}, {"out": 70, "n_in": 1}):
        check("cpu", SPECS["cubic"], 4, "int8", 2, **shape)


def test_without_a_compiler_the_cpu_kernel_falls_back_to_pytorch(monkeypatch):
    from torch.utils import cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    build.load.cache_clear()
    try:
        assert cpu.compiled() is None
        assert kernels.pick_kernel(torch.device("cpu")) == "torch"
        check("cpu", SPECS["cubic"], 16, "int8", 3)                  # still correct
    finally:
        build.load.cache_clear()


def test_the_compiled_gather_is_built_here():
    """CI machines have a C++ compiler; the PyTorch gather is only the fallback."""
    assert cpu.compiled() is not None
    assert kernels.pick_kernel(torch.device("cpu")) == "cpu"


def test_the_build_directory_is_keyed_by_source_and_flags(monkeypatch, tmp_path):
    directory, module = build.build_directory("gather")
    assert directory.parent == build.KERNEL_CACHE and module.endswith(directory.name[7:])
    source, changed = build.SOURCES["gather"], tmp_path / "gather.cpp"
    changed.write_bytes(source.read_bytes() + b"// one more line\n")
    monkeypatch.setitem(build.SOURCES, "gather", changed)
    assert build.build_directory("gather")[0] != directory
    monkeypatch.setitem(build.SOURCES, "gather", source)
    assert build.build_directory("gather")[0] == directory
    monkeypatch.setattr(build, "CFLAGS", (*build.CFLAGS, "-g"))
    assert build.build_directory("gather")[0] != directory
    monkeypatch.setenv("KANBENCH_KERNEL_CACHE", str(tmp_path))
    assert build.build_directory("gather")[0].parent == tmp_path
    assert "-march=native" not in build.CFLAGS


# A kernel of a few lines (no torch headers: seconds to compile, not a minute) through the
# suite's own build path; the real kernels compile at install and before the first test
# (conftest), and test_the_compiled_gather_is_built_here fails if they did not.
TOY_KERNEL = """#include <pybind11/pybind11.h>
int twice(int x) { return 2 * x; }
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("twice", &twice); }
"""
BUILD = ("import sys; from pathlib import Path; from kanbench.methods.layers.kernels import build; "
         "build.SOURCES['toy'] = Path(sys.argv[1]); assert build.load('toy').twice(21) == 42")


@pytest.mark.slow
def test_a_kernel_is_compiled_once_per_source_version(tmp_path):
    """The one test that compiles, in fresh processes as a user meets it: into an empty
    cache the first one builds and says so; the next loads that build and compiles nothing;
    a changed source builds beside it."""
    source = tmp_path / "toy.cpp"
    source.write_text(TOY_KERNEL)
    cache = tmp_path / "cache"
    env = {**os.environ, "KANBENCH_KERNEL_CACHE": str(cache)}

    def build_in_a_new_process():
        done = subprocess.run([sys.executable, "-c", BUILD, str(source)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "compiling the toy kernel" in build_in_a_new_process()
    (directory,) = cache.iterdir()
    (built,) = directory.glob("kanbench_toy_*.so")
    stamp = built.stat().st_mtime_ns
    assert "compiling" not in build_in_a_new_process()
    assert built.stat().st_mtime_ns == stamp
    source.write_text(TOY_KERNEL + "// a new version\n")
    assert "compiling the toy kernel" in build_in_a_new_process()
    assert len(list(cache.iterdir())) == 2 and built.stat().st_mtime_ns == stamp


@pytest.fixture(scope="module")
def interpreted_triton():
    """The Triton module, interpreted on CPU tensors: tests/conftest.py sets TRITON_INTERPRET=1
    before Triton is first imported (it is read once, when kernels are decorated)."""
    import triton

    assert triton.knobs.runtime.interpret, "TRITON_INTERPRET=1 must be set before Triton loads"
    return importlib.import_module("kanbench.methods.layers.kernels.triton_gather")


@pytest.mark.parametrize("batch", [1, 19])
@pytest.mark.parametrize("form", ["carry", "fp32", "int8"])
@pytest.mark.parametrize("codes", [1, 16, 300])
@pytest.mark.parametrize("spec", ["cubic", "linear", "k0", "G1"])
def test_triton_kernel_matches_the_reference(interpreted_triton, spec, codes, form, batch):
    check("triton", SPECS[spec], codes, form, batch)


def test_triton_kernel_on_shapes_smaller_and_larger_than_its_blocks(interpreted_triton):
    blocks = interpreted_triton.BLOCK_O, interpreted_triton.BLOCK_I
    for out, n_in in ((1, 1), (blocks[0] + 1, blocks[1] * 2 + 5), (3, 100)):
        check("triton", SPECS["cubic"], 16, "fp32", 17, out=out, n_in=n_in)


def test_triton_kernel_refuses_what_it_does_not_compute(interpreted_triton):
    layer = random_layer(SPECS["rbf"], 4, "fp32")
    with pytest.raises(ValueError, match="B-spline layers with a SiLU base"):
        kernels.codebook_linear(inputs(1), layer, SPECS["rbf"], nn.SiLU(), "triton")
