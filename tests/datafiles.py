"""Tiny datasets written in the real on-disk formats the readers expect."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's IDX format: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, folder: str, n_train: int = 96, n_test: int = 48,
                     seed: int = 0) -> Path:
    """<root>/<folder>/raw/ with the four IDX files; labels cycle through 0..9."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = IDX_NAMES[split]
        write_idx(raw / images, rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / labels, np.arange(n) % 10)
    return raw


def write_cifar(root: Path, hundred: bool = False, per_batch: int = 20, seed: int = 0) -> Path:
    """torchvision's python-version CIFAR layout: pickled dicts of uint8 (N, 3072) arrays."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    names = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + \
        ["test_batch"]
    classes = 100 if hundred else 10
    for name in names:
        labels = [int(v) for v in np.arange(per_batch) % classes]
        entry = {"data": rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8)}
        entry.update({"fine_labels": labels, "coarse_labels": [v // 5 for v in labels]}
                     if hundred else {"labels": labels})
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = ("meta", {"fine_label_names": [f"c{i}" for i in range(100)]}) if hundred else \
        ("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1], protocol=2))
    return folder


# tiny PASCAL VOC and COCO: the shapes generator writing real class names and COCO ids
VOC_NAMES = {"circle": "aeroplane", "square": "car", "triangle": "dog", "cross": "person",
             "ring": "tvmonitor"}
COCO_NAMES = {"circle": ("airplane", 5), "square": ("car", 3), "triangle": ("dog", 18),
              "cross": ("person", 1), "ring": ("tv", 72)}


def write_voc_and_coco(root: Path, n_train: int = 8, n_test: int = 6) -> Path:
    """<root>/VOCdevkit/VOC2007 and <root>/coco/{train2017,val2017,annotations}."""
    from kanbench.tasks import shapes

    shapes.write_voc(root, n_train, n_test, names=VOC_NAMES)
    shapes.write_coco(root / "coco", n_train, n_test, categories=COCO_NAMES)
    return root


def write_all(root: Path) -> Path:
    write_mnist_like(root, "MNIST")
    write_mnist_like(root, "FashionMNIST", seed=1)
    write_mnist_like(root, "KMNIST", seed=2)
    write_cifar(root)
    write_cifar(root, hundred=True)
    write_voc_and_coco(root)
    return root
