"""The compressed-model file: safetensors tensors plus a JSON header saying how to read them.

Each codebook is stored once at its storage precision (with its scale when int8), each
codebook layer's indices bit-packed or, where the layer's `index_coding` is "ans", as a
range-ANS stream with the histogram it was coded under (decoded at load), and every other
tensor of the network (per-edge gains, biases, base weights, scales, non-KAN parameters) as
the state dict holds it. Loading checks every name, shape, dtype and index range (and that an
entropy-coded stream decodes exactly) before anything is copied; safetensors never runs code
from a file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from kanbench.methods.layers.codebook import (
    CODEBOOK_DTYPES,
    COUNT_DTYPE,
    INDEX_CODINGS,
    Codebook,
    CodebookEdges,
    ans_decode,
    index_bits,
    pack_indices,
    packed_bytes,
    unpack_indices,
)
from kanbench.methods.layers.kan import kan_layers
from kanbench.suite.errors import KanbenchError, regular_file

FORMAT = "kanbench.codebook"
VERSION = 2


def codebook_layers(net: nn.Module) -> dict[str, nn.Module]:
    """The KAN layers of `net` that index a codebook, by qualified name."""
    return {n: m for n, m in kan_layers(net).items() if isinstance(m, CodebookEdges)}


def codebooks_of(layers: dict[str, nn.Module]) -> list[Codebook]:
    """The distinct codebooks of the layers, in order of first use."""
    unique: dict[int, Codebook] = {}
    for layer in layers.values():
        unique.setdefault(id(layer.codebook), layer.codebook)
    return list(unique.values())


def plain_tensors(net: nn.Module, layers: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """The state dict less what the file stores in its own form (codebooks, indices)."""
    special = tuple(f"{name}.{part}" for name in layers for part in ("codebook.", "indices"))
    return {n: t for n, t in net.state_dict().items() if not n.startswith(special)}


def codebook_tensors(books: list[Codebook]) -> dict[str, torch.Tensor]:
    tensors = {}
    for i, book in enumerate(books):
        tensors[f"codebooks.{i}"] = book.stored().detach().contiguous()
        if book.dtype == "int8":
            tensors[f"codebooks.{i}.scale"] = book.scale.detach().reshape(1).contiguous()
    return tensors


def save_codebooks(net: nn.Module, path: str | Path) -> None:
    """Only the codebooks: the file several heads that share them point to."""
    save_file(codebook_tensors(codebooks_of(codebook_layers(net))), str(path))


def save_compressed(net: nn.Module, path: str | Path, method: str,
                    with_codebooks: bool = True, extra: dict | None = None) -> None:
    """The model file; `with_codebooks=False` leaves the codebooks to a shared file; `extra`:
    more header entries (the API's method args and architecture)."""
    layers = codebook_layers(net)
    books = codebooks_of(layers)
    book_index = {id(b): i for i, b in enumerate(books)}
    tensors = codebook_tensors(books) if with_codebooks else {}
    header = {"format": FORMAT, "version": VERSION, "method": method,
              "codebooks": [{"codes": b.size, "dim": b.codes.shape[1], "dtype": b.dtype}
                            for b in books], "layers": {}, **(extra or {})}
    for name, layer in layers.items():
        header["layers"][name] = {"edges": list(layer.edge_shape),
                                  "codebook": book_index[id(layer.codebook)],
                                  "bits": index_bits(layer.codebook.size),
                                  "coding": layer.index_coding}
        if layer.index_coding == "ans":
            tensors[f"{name}.indices"], tensors[f"{name}.index_counts"] = layer.coded_indices()
        else:
            tensors[f"{name}.indices"] = pack_indices(layer.indices, layer.codebook.size)
    tensors |= {n: t.detach().contiguous() for n, t in plain_tensors(net, layers).items()}
    save_file(tensors, str(path), metadata={"kanbench": json.dumps(header)})


def read_header(path: Path) -> dict | None:
    """The kanbench header of a safetensors file, or None where it has none."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {}).get("kanbench") or "null")
    except (SafetensorError, OSError, ValueError) as err:
        raise KanbenchError(f"{path}: not a readable safetensors file ({err})") from None
    if isinstance(header, dict) and header.get("format") == FORMAT:
        return header
    return None


def load_compressed(path: str | Path, net: nn.Module) -> nn.Module:
    """Fill `net` (the codebook structure the method builds) from a compressed-model file,
    checking every name, shape, dtype and index range first. Raises KanbenchError (one line)
    on any mismatch; nothing is loaded from a bad file."""
    where = f"compressed model {path}"
    regular_file(Path(path), "compressed model")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get("kanbench")
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise KanbenchError(f"{where}: not a readable safetensors file ({err})") from None
    try:
        header = json.loads(meta)
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise ValueError
    except (TypeError, ValueError, AttributeError):
        raise KanbenchError(f"{where}: no {FORMAT} v{VERSION} header") from None
    if not isinstance(header.get("codebooks"), list) or not isinstance(header.get("layers"),
                                                                       dict):
        raise KanbenchError(f"{where}: its header's codebooks must be a list and its layers a "
                            "mapping")
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise KanbenchError(f"{where}: {name} holds non-finite values")

    layers = codebook_layers(net)
    books = codebooks_of(layers)

    def expect(name: str, shape: tuple | None, dtype: torch.dtype) -> torch.Tensor:
        """The tensor, of this shape (None: any length, one dimension) and dtype."""
        if name not in tensors:
            raise KanbenchError(f"{where}: tensor {name!r} is missing")
        t = tensors.pop(name)
        shape = (t.numel(),) if shape is None else shape
        if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
            raise KanbenchError(f"{where}: {name} is {t.dtype} {tuple(t.shape)}, "
                                f"expected {dtype} {tuple(shape)}")
        return t

    if len(header["codebooks"]) != len(books) or set(header["layers"]) != set(layers):
        raise KanbenchError(f"{where}: its layers and codebooks do not match this network's")
    codes, scales = [], []
    for i, book in enumerate(books):
        codes.append(expect(f"codebooks.{i}", tuple(book.codes.shape),
                            CODEBOOK_DTYPES[book.dtype]))
        if book.dtype == "int8":
            scales.append(expect(f"codebooks.{i}.scale", (1,), torch.float32))
    indices, codings = {}, {}
    for name, layer in layers.items():
        size, count = layer.codebook.size, layer.indices.numel()
        entry = header["layers"][name]
        codings[name] = entry.get("coding", "packed") if isinstance(entry, dict) else None
        if codings[name] not in INDEX_CODINGS:
            raise KanbenchError(f"{where}: layer {name}'s index coding must be one of "
                                f"{', '.join(INDEX_CODINGS)}")
        if codings[name] == "ans":
            stream = expect(f"{name}.indices", None, torch.uint8)
            counts = expect(f"{name}.index_counts", (size,), COUNT_DTYPE)
            try:
                decoded = ans_decode(stream, counts, count, size)
            except ValueError as err:
                raise KanbenchError(f"{where}: {name}'s entropy-coded indices are damaged "
                                    f"({err})") from None
        else:
            packed = expect(f"{name}.indices", (packed_bytes(count, size),), torch.uint8)
            decoded = unpack_indices(packed, count, size)
        if count and decoded.max() >= size:
            raise KanbenchError(f"{where}: {name} has an index {int(decoded.max())} outside "
                                f"its codebook of {size} codes")
        indices[name] = decoded.reshape(layer.edge_shape)
    rest = {n: expect(n, tuple(t.shape), t.dtype)
            for n, t in plain_tensors(net, layers).items()}
    if tensors:
        raise KanbenchError(f"{where}: unexpected tensor {sorted(tensors)[0]!r}")
    for name, layer in kan_layers(net).items():  # a layer's own checks of its stored form
        check = getattr(layer, "state_problem", None)
        own = {n[len(name) + 1:]: t for n, t in rest.items() if n.startswith(f"{name}.")}
        problem = check(own) if check else None
        if problem:
            raise KanbenchError(f"{where}: layer {name}: {problem}")

    with torch.no_grad():
        scale_of = iter(scales)
        for book, stored in zip(books, codes, strict=True):
            if book.dtype == "int8":
                book.scale.copy_(next(scale_of)[0])
                book.codes.copy_(stored.float() * book.scale)
            else:
                book.codes.copy_(stored.float())
        for name, layer in layers.items():
            layer.indices.copy_(indices[name])
            layer.index_coding = codings[name]
        net.load_state_dict(rest, strict=False)
    return net


def safetensors_payload_bytes(path: str | Path) -> int:
    """Bytes of tensor data in a safetensors file: its size less the 8-byte length and header."""
    path = Path(path)
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    payload = path.stat().st_size - 8 - header_len
    spans = sum(v["data_offsets"][1] - v["data_offsets"][0]
                for k, v in header.items() if k != "__metadata__")
    assert spans == payload, (path, spans, payload)
    return payload
