"""Storage bytes, peak memory and latency of a model.

Storage (docs/storage.md): every KAN layer (`methods.layers.kan.KANLayer`) itemizes its own
bytes; a module shared by several layers (a meta-learner, a codebook) reports
`shared_storage()` and is counted once; every other tensor of the state dict is `other`.
The KAN ratio is dense fp32 KAN bytes over compressed KAN bytes; the model ratio adds `other`
and any `frozen` parts the task deploys beside the network (a detection trunk) to both sides.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import platform
import re
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark

from kanbench.methods.layers import kernels
from kanbench.methods.layers.kan import kan_layers
from kanbench.suite import memprobe


def storage(model: nn.Module, frozen: dict[str, int] | None = None) -> dict:
    """Itemized bytes of the model; `frozen`: bytes by part of what the deployed model holds
    besides it (a detection trunk), counted in the model ratio only."""
    frozen = frozen or {}
    layers = kan_layers(model)
    itemized: Counter[str] = Counter()
    for layer in layers.values():
        itemized.update(layer.storage())
    shared = 0
    for module in model.modules():  # each module once, however many layers share it
        if callable(getattr(module, "shared_storage", None)):
            parts = module.shared_storage()
            itemized.update(parts)
            shared += sum(parts.values())
    kan_bytes = sum(itemized.values())
    dense_kan_bytes = sum(layer.dense_bytes() for layer in layers.values())
    other = sum(t.numel() * t.element_size() for name, t in model.state_dict().items()
                if not any(name.startswith(f"{p}.") for p in layers))
    itemized["other"] += other
    # codebook layers: the empirical-entropy bound on their indices, beside the packed bytes
    entropy = [m.entropy_bytes() for m in layers.values() if hasattr(m, "entropy_bytes")]
    fixed = other + sum(frozen.values())
    return {
        "itemized": dict(sorted(itemized.items())),
        "kan_bytes": kan_bytes,
        "shared_bytes": shared,  # of kan_bytes: what several layers share (codebooks...)
        "dense_kan_bytes": dense_kan_bytes,
        "other_bytes": other,
        "total_bytes": kan_bytes + other,
        **({"frozen": dict(frozen), "frozen_bytes": sum(frozen.values())} if frozen else {}),
        "kan_ratio": dense_kan_bytes / kan_bytes if kan_bytes else float("nan"),
        "model_ratio": (dense_kan_bytes + fixed) / (kan_bytes + fixed),
        "kan_layers": len(layers),
        **({"indices_entropy_bytes": sum(entropy)} if entropy else {}),
    }


def peak_memory(model: nn.Module, example: torch.Tensor) -> dict:
    """Peak memory of one training step (forward + backward) at the example's batch size.

    CUDA: torch.cuda.max_memory_allocated in this process. CPU: peak RSS of a process holding
    only the model and the batch (forked by the suite.memprobe server, which imported only
    torch), with its RSS before the step.
    Both warm up on two rows first, so first-use costs do not count as the step's.
    """
    if example.is_cuda:
        model.train()
        model(example[:2]).float().square().mean().backward()      # warm-up: one-time costs
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        model(example).float().square().mean().backward()
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {"peak_bytes": peak, "baseline_bytes": base, "step_bytes": peak - base,
                "device": torch.cuda.get_device_name(), "kind": "cuda_max_allocated_train_step",
                "batch": example.shape[0]}
    probe = MEMORY_PROBE.ask(model, example)
    return {"peak_bytes": probe["peak"], "baseline_bytes": probe["before"],
            "step_bytes": probe["peak"] - probe["before"], "device": "cpu",
            "kind": "cpu_peak_rss_forked_probe_train_step", "rss_reading": probe["method"],
            "batch": example.shape[0]}


def optimizer_state_bytes(model: nn.Module, make_optimizer) -> int:
    """Bytes of the state `make_optimizer(model)` keeps once it has stepped (Adam's two
    moments per parameter, ...), measured on a copy after one step on zero gradients."""
    twin = copy.deepcopy(model)
    trainable = [p for p in twin.parameters() if p.requires_grad]
    if not trainable:
        return 0
    optimizer = make_optimizer(twin)
    for p in trainable:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return sum(t.nbytes for state in optimizer.state.values() for t in state.values()
               if isinstance(t, torch.Tensor))


def training_memory(model: nn.Module, example: torch.Tensor, make_optimizer) -> dict:
    """`peak_memory`'s training step, and what a training iteration holds at its peak in
    steady state: the model, the optimizer's state and the step's own allocations
    (`train_peak_bytes`), itemized: parameters (and buffers), optimizer state, gradients
    (one per trainable parameter, made by the backward), generated weights (a MetaKAN
    layer's edge weights, made by its forward and kept for the backward) and the rest of the
    step (activations, their gradients, workspace: the measured step less those two)."""
    from kanbench.methods.layers.metakan import generated_bytes

    memory = peak_memory(model, example)
    model_bytes = sum(t.nbytes for t in [*model.parameters(), *model.buffers()])
    gradients = sum(p.nbytes for p in model.parameters() if p.requires_grad)
    generated = generated_bytes(model)
    state = optimizer_state_bytes(model, make_optimizer)
    memory["itemized"] = {"parameters": model_bytes, "optimizer_state": state,
                          "gradients": gradients, "generated_weights": generated,
                          "activations_and_workspace": memory["step_bytes"] - gradients
                          - generated}
    memory["train_peak_bytes"] = model_bytes + state + memory["step_bytes"]
    return memory


# Names the Unix socket where a shared probe server listens (set by `MemoryProbe.share`)
SHARED_PROBE = "KANBENCH_MEMORY_PROBE"


class MemoryProbe:
    """The `suite.memprobe` server this process asks: the shared one named in the environment
    (`SHARED_PROBE`) when it answers, else this process's own, started at its first CPU
    measurement, asked for each one after (a fork each, not a fresh interpreter), restarted
    once if it has died, and ended when this process ends (its stdin closes)."""

    TIMEOUT_S = 600
    SHARED_START_S = 10

    def __init__(self):
        self.server: subprocess.Popen | None = None         # this process's own
        self.shared_server: subprocess.Popen | None = None  # the one `share` started

    def ask(self, model: nn.Module, example: torch.Tensor) -> dict:
        modules = sorted({type(m).__module__ for m in model.modules()})
        request = pickle.dumps((modules, pickle.dumps((model, example))))
        shared = os.environ.get(SHARED_PROBE)
        reply = self.ask_shared(shared, request) if shared else None
        if reply is None:
            reply = self.ask_own(request)
        probe = json.loads(reply)
        if "error" in probe:
            raise RuntimeError(f"memory probe failed: {probe['error'][:500]}")
        return probe

    def ask_shared(self, path: str, request: bytes) -> bytes | None:
        deadline = time.monotonic() + self.SHARED_START_S  # a server still starting up
        while not os.path.exists(path) and time.monotonic() < deadline \
                and os.path.isdir(os.path.dirname(path)):
            time.sleep(0.05)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.TIMEOUT_S)
                conn.connect(path)
                with conn.makefile("rwb") as stream:
                    memprobe.write_frame(stream, request)
                    return memprobe.read_frame(stream)
        except OSError:  # gone (its driver ended) or not reachable from here: ask our own
            return None

    def ask_own(self, request: bytes) -> bytes:
        for _ in range(2):
            if self.server is None or self.server.poll() is not None:
                self.server = subprocess.Popen([sys.executable, "-m", "kanbench.suite.memprobe"],
                                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            try:
                memprobe.write_frame(self.server.stdin, request)
                ready, _, _ = select.select([self.server.stdout], [], [], self.TIMEOUT_S)
                reply = memprobe.read_frame(self.server.stdout) if ready else None
            except OSError:  # the server died: a broken pipe
                reply = None
            if reply is not None:
                return reply
            self.server.kill()
            self.server = None
        raise RuntimeError("memory probe server did not answer")

    def share(self) -> str:
        """Start a probe server on a Unix socket for the processes this one starts from now
        on (it ends with this process), name it in the environment, and return its path."""
        if shared := os.environ.get(SHARED_PROBE):
            return shared
        path = os.path.join(tempfile.mkdtemp(prefix="kanbench-probe-"), "probe.sock")
        self.shared_server = subprocess.Popen(
            [sys.executable, "-m", "kanbench.suite.memprobe", path], stdin=subprocess.PIPE)
        os.environ[SHARED_PROBE] = path
        return path


MEMORY_PROBE = MemoryProbe()


def machine(threads: int) -> str:
    """The machine a benchmark ran on, in words: platform, CPU model, cores, torch."""
    cpuinfo = Path("/proc/cpuinfo")
    models = re.findall(r"^model name\s*:\s*(.+)$",
                        cpuinfo.read_text() if cpuinfo.exists() else "", re.MULTILINE)
    cpu = models[0] if models else platform.processor() or "unknown CPU"
    return (f"{platform.platform()}, CPU {cpu}, {os.cpu_count()} cores ({threads} torch "
            f"threads), torch {torch.__version__}")


def forward_kernel(model: nn.Module, device: torch.device) -> str:
    """What computes the model's KAN layers at inference: the suite's codebook kernel that
    `methods.layers.kernels.pick_kernel` picks for its compressed layers, else plain torch."""
    specs = [m.spec for m in model.modules() if callable(getattr(m, "packed", None))]
    if not specs:
        return "torch"
    picked = {kernels.pick_kernel(device, spec) for spec in specs}
    return "+".join(sorted(picked))


# Latency: the median of LATENCY_BLOCKS timed blocks of at least LATENCY_BLOCK_S each, after
# a warm-up call (about 0.15 s per batch size; torch's blocked_autorange took 1 to 3 s)
LATENCY_BLOCKS, LATENCY_BLOCK_S = 9, 0.01


def latency(model: nn.Module, make_input, batches: list[int]) -> dict:
    """Median forward time (ms) over warm repeats (the first call builds kernel layouts and
    brings the codebooks into cache), per batch size, timed by torch.utils.benchmark."""
    model.eval()
    device = next(iter(model.state_dict().values())).device
    result = {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(),
              "kernel": forward_kernel(model, device), "threads": torch.get_num_threads(),
              "timing": f"median of {LATENCY_BLOCKS} blocks of >= {LATENCY_BLOCK_S * 1e3:g} ms",
              "ms": {}}
    with torch.inference_mode():
        for batch in batches:
            x = make_input(batch).to(device)
            model(x)                                                     # warm-up
            timer = benchmark.Timer("model(x)", globals={"model": model, "x": x},
                                    num_threads=torch.get_num_threads())
            once = timer.timeit(1).median                  # how many calls fill a block
            number = max(1, math.ceil(LATENCY_BLOCK_S / max(once, 1e-7)))
            blocks = [timer.timeit(number).median for _ in range(LATENCY_BLOCKS)]
            result["ms"][str(batch)] = statistics.median(blocks) * 1e3
    return result
