"""Image classification: digits (scikit-learn), MNIST and Fashion-MNIST (torchvision
readers), CIFAR-10/100 (torchvision's on-disk layout, read without unpickling code).

Every dataset is read once into memory as float tensors scaled to about [-1, 1]: fully
connected KANs see flattened images, ConvKANs (1, 28, 28) or (3, 32, 32) images. A
stratified `val_fraction` of the training set, fixed by `split_seed`, is held out for
validation.
"""

from __future__ import annotations

import math
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics
from torchvision import datasets
from torchvision.datasets.utils import download_and_extract_archive

from kanbench.methods.layers.architectures import CONV_PRESETS, KAN, NORMS, ConvKAN
from kanbench.suite.config import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, SEED
from kanbench.suite.errors import KanbenchError, regular_file
from kanbench.suite.interfaces import Task
from kanbench.suite.registry import TASKS
from kanbench.tasks.common import (
    TensorDataModule,
    open_or_download,
    stratified_holdout,
    subset,
)


class ClassificationTask(Task):
    metric, higher_is_better = "accuracy", True
    num_classes = 10

    def checked_labels(self, labels: torch.Tensor, source: Path) -> torch.Tensor:
        """`labels`, once each is a class index in [0, num_classes); else one line."""
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            bad = labels[(labels < 0) | (labels >= self.num_classes)][0]
            raise KanbenchError(f"{self.name}: {source} holds label {int(bad)}, outside the "
                                f"{self.num_classes} classes")
        return labels

    def loss(self, output, target):
        return F.cross_entropy(output, target)

    def metrics(self, args):
        return torchmetrics.MetricCollection({"accuracy": torchmetrics.Accuracy(
            task="multiclass", num_classes=self.num_classes)})

    def load(self, args: dict, data_root: str):
        """((x_train, y_train), (x_test, y_test)) as float inputs and int64 labels."""
        raise NotImplementedError

    def check_data(self, args, data_root):
        """Whether the data can be read, by reading the least of it that tells: by default
        all of it (digits: scikit-learn's bundled copy)."""
        self.load(args, data_root)

    def datamodule(self, args, data_root, batch_size, seed, cache_dir=None):
        train, test = self.load(args, data_root)
        train, val = stratified_holdout(*train, args["val_fraction"], args["split_seed"])
        return TensorDataModule(subset(*train, args.get("n_train", 0)), val,
                                subset(*test, args.get("n_test", 0)), batch_size, seed)


class MLPClassification(ClassificationTask):
    """A KAN MLP on flattened inputs; `widths` must start with the input size."""

    in_features = 784

    def check_args(self, args):
        widths = args["widths"]
        if len(widths) < 2 or widths[0] != self.in_features or widths[-1] != self.num_classes:
            raise KanbenchError(f"task.widths {widths} must start with {self.in_features} and "
                                f"end with {self.num_classes}")

    def build(self, args, factory):
        return KAN(args["widths"], factory)

    def example_input(self, args, batch):
        return torch.rand(batch, self.in_features) * 2 - 1


@TASKS.register("digits")
class Digits(MLPClassification):
    """scikit-learn's bundled 8x8 digits (1797 images), stratified test and validation splits
    fixed by split_seed."""

    in_features = 64
    defaults = {"widths": [64, 32, 10], "test_fraction": 0.2, "val_fraction": 0.1,
                "split_seed": 0}
    ranges = {"widths": AT_LEAST_ONE, "test_fraction": FRACTION, "val_fraction": FRACTION,
              "split_seed": SEED}
    train_defaults = {"max_epochs": 60, "batch_size": 64, "lr": 3e-3}

    def load(self, args, data_root):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        x = torch.tensor(digits.data, dtype=torch.float32) / 8 - 1       # (1797, 64), [-1, 1]
        y = torch.tensor(digits.target, dtype=torch.int64)
        idx_train, idx_test = train_test_split(
            np.arange(len(y)), test_size=args["test_fraction"], stratify=digits.target,
            random_state=args["split_seed"])
        return (x[idx_train], y[idx_train]), (x[idx_test], y[idx_test])


def check_idx(path: Path, ndim: int, name: str) -> tuple[int, ...]:
    """The dimensions of an IDX file of unsigned bytes with `ndim` dimensions, once its header
    and size agree; one KanbenchError naming the file otherwise."""
    with regular_file(path, name).open("rb") as f:
        header = f.read(4 + 4 * ndim)
    if len(header) < 4 + 4 * ndim or header[:4] != bytes([0, 0, 0x08, ndim]):
        raise KanbenchError(f"{name}: {path} is not an IDX file of {ndim}-d unsigned bytes "
                            f"(header {header[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", header[4:])
    expected = len(header) + math.prod(dims)
    if path.stat().st_size != expected:
        raise KanbenchError(f"{name}: {path} holds {path.stat().st_size} bytes; its header "
                            f"{list(dims)} needs {expected} (truncated?)")
    return dims


class IDXImages(MLPClassification):
    """MNIST-format IDX files read by torchvision from <data_root>/<folder>/raw/. Pixels are
    mapped to [-1, 1] (`normalize: range`) or standardized with the dataset's mean and std
    (`normalize: standard`, as the MetaKAN authors' code does). `arch: mlp` is a KAN MLP of
    `widths` on flattened images; a ConvKAN preset name (methods.layers.architectures.CONV_PRESETS)
    sees (1, 28, 28) images, its convolutions followed by `conv_norm` (unset: batch)."""

    reader: type = datasets.MNIST
    mean_std: tuple[float, float] = (0.5, 0.5)
    defaults = {"widths": [784, 64, 10], "n_train": 0, "n_test": 0, "val_fraction": 0.1,
                "split_seed": 0, "normalize": "range", "arch": "mlp", "conv_norm": None}
    ranges = {"widths": AT_LEAST_ONE, "n_train": NON_NEGATIVE, "n_test": NON_NEGATIVE,
              "val_fraction": FRACTION, "split_seed": SEED}
    choices = {"normalize": ("range", "standard"), "arch": ("mlp", *CONV_PRESETS),
               "conv_norm": tuple(NORMS)}
    train_defaults = {"max_epochs": 5, "batch_size": 128, "lr": 2e-3}
    presets = {"smoke": {"task": {"n_train": 64, "n_test": 32}, "train": {"batch_size": 32}}}
    how = ""

    def check_args(self, args):
        if args["arch"] == "mlp":
            super().check_args(args)
            if args["conv_norm"] is not None:
                raise KanbenchError("task.conv_norm applies to ConvKAN archs, not arch 'mlp'")

    def idx_files(self, data_root) -> tuple[Path, list[str]]:
        """The raw folder and the four unpacked file names: train images and labels, then
        test images and labels."""
        return (Path(data_root) / self.reader.__name__ / "raw",
                [Path(url).stem for url, _ in self.reader.resources])

    def check_headers(self, folder: Path, images: str, labels: str) -> None:
        """One split's two IDX files: 28x28 images, as many labels as images."""
        image_dims = check_idx(folder / images, 3, self.name)
        if image_dims[1:] != (28, 28):
            raise KanbenchError(f"{self.name}: {folder / images} holds "
                                f"{image_dims[1]}x{image_dims[2]} images, not 28x28")
        if image_dims[0] != check_idx(folder / labels, 1, self.name)[0]:
            raise KanbenchError(f"{self.name}: {folder / images} and {labels} hold "
                                "different numbers of items")

    def check_data(self, args, data_root):
        """The four files' headers and every label when they are there (the images, most of
        the bytes, are not read); else a download, or one line."""
        folder, files = self.idx_files(data_root)
        if not all((folder / f).exists() for f in files):
            self.load(args, data_root)
            return
        for images, labels in (files[:2], files[2:]):
            self.check_headers(folder, images, labels)
            path = folder / labels
            self.checked_labels(torch.from_numpy(np.fromfile(path, np.uint8, offset=8)), path)

    def load(self, args, data_root):
        mean, std = self.mean_std if args["normalize"] == "standard" else (0.5, 0.5)
        folder, files = self.idx_files(data_root)

        def split(train: bool):
            images, labels = files[:2] if train else files[2:]
            if (folder / images).exists() and (folder / labels).exists():
                self.check_headers(folder, images, labels)
            ds = open_or_download(lambda download: self.reader(
                data_root, train=train, download=download), self.name, folder, files, self.how)
            x = ds.data.reshape(len(ds.data), -1).float() / 255           # (N, 784), [0, 1]
            if args["arch"] != "mlp":
                x = x.reshape(-1, 1, 28, 28)                                  # (N, 1, 28, 28)
            return (x - mean) / std, self.checked_labels(ds.targets.long(),
                                                         folder / labels)

        return split(True), split(False)


    def build(self, args, factory):
        if args["arch"] == "mlp":
            return super().build(args, factory)
        return ConvKAN.preset(args["arch"], 1, self.num_classes, factory,
                              args["conv_norm"])

    def example_input(self, args, batch):
        if args["arch"] == "mlp":
            return super().example_input(args, batch)
        return torch.rand(batch, 1, 28, 28) * 2 - 1


@TASKS.register("mnist")
class MNIST(IDXImages):
    reader, mean_std = datasets.MNIST, (0.1307, 0.3081)
    how = ("put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte "
           "and t10k-labels-idx1-ubyte there (or run where torchvision can download)")


@TASKS.register("fashion_mnist")
class FashionMNIST(IDXImages):
    reader, mean_std = datasets.FashionMNIST, (0.2860, 0.3530)
    how = "run `make data` (installs Debian's dataset-fashion-mnist and unpacks it there)"


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts and strings; refuses every other global, so a
    crafted batch file cannot run code (torchvision's CIFAR reader calls plain pickle.load)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray",
               "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


class CIFAR(ClassificationTask):
    """CIFAR in torchvision's layout (<data_root>/cifar-10-batches-py/, cifar-100-python/),
    through a ConvKAN preset whose convolutions are followed by `conv_norm` (unset: batch)."""

    reader: type = datasets.CIFAR10
    defaults = {"arch": "conv4", "n_train": 0, "n_test": 0, "val_fraction": 0.1,
                "split_seed": 0, "conv_norm": None}
    ranges = {"n_train": NON_NEGATIVE, "n_test": NON_NEGATIVE, "val_fraction": FRACTION,
              "split_seed": SEED}
    choices = {"arch": tuple(CONV_PRESETS), "conv_norm": tuple(NORMS)}
    train_defaults = {"max_epochs": 30, "batch_size": 128, "lr": 1e-3}
    # the quarter-width conv4 (grid `conv`'s), whose codebooks take a second, not ten
    presets = {"smoke": {"task": {"arch": "conv4_quarter", "n_train": 16, "n_test": 8},
                         "train": {"batch_size": 8}}}
    method_defaults = {"metacluster": {"codebook_size": 256}}  # MetaCluster's K for ConvKANs
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

    def build(self, args, factory):
        return ConvKAN.preset(args["arch"], 3, self.num_classes, factory,
                              args["conv_norm"])

    def example_input(self, args, batch):
        return torch.randn(batch, 3, 32, 32)

    def read_batches(self, folder: Path, files: list[str]):
        xs, ys = [], []
        for name in files:
            path = folder / name
            try:
                with path.open("rb") as f:
                    entry = _ArraysOnly(f, encoding="latin1").load()
                data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                labels = entry["labels"] if "labels" in entry else entry["fine_labels"]
                labels = torch.tensor(labels, dtype=torch.int64)
            except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError,
                    TypeError, RuntimeError) as err:
                raise KanbenchError(f"{self.name}: cannot read {path} "
                                    f"({type(err).__name__}: {err})") from None
            xs.append(torch.from_numpy(data))
            ys.append(self.checked_labels(labels, path))
        x = torch.cat(xs).float() / 255                                 # (N, 3, 32, 32)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std, torch.cat(ys)

    def load(self, args, data_root):
        folder = Path(data_root) / self.reader.base_folder
        files = [name for name, _ in self.reader.train_list + self.reader.test_list]

        def read(download: bool):
            if download:
                download_and_extract_archive(self.reader.url, data_root,
                                             filename=self.reader.filename,
                                             md5=self.reader.tgz_md5)
            return (self.read_batches(folder, [name for name, _ in self.reader.train_list]),
                    self.read_batches(folder, [name for name, _ in self.reader.test_list]))

        return open_or_download(read, self.name, folder, files,
                                f"extract the python version of {self.name} from "
                                f"{self.reader.url} under {data_root}")


@TASKS.register("cifar10")
class CIFAR10(CIFAR):
    reader, num_classes = datasets.CIFAR10, 10


@TASKS.register("cifar100")
class CIFAR100(CIFAR):
    reader, num_classes = datasets.CIFAR100, 100
