"""What several tasks share: an in-memory DataModule with train / validation / test splits,
the seeded hold-out of a validation split, and the missing-data error."""

from __future__ import annotations

import contextlib
import io
import socket
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Sampler,
    SequentialSampler,
    TensorDataset,
)

from kanbench.suite.errors import KanbenchError, regular_file
from kanbench.suite.lit import epoch_loader

Tensors = tuple[torch.Tensor, torch.Tensor]


class ResumableShuffle(Sampler[int]):
    """torch's RandomSampler order (one generator seeded once; each epoch draws a permutation
    and, once exhausted, a second, empty one) that can start at any epoch. Lightning calls
    `set_epoch(e)` before epoch e: when e is not the epoch the generator stands at (a fit
    resumed from an epoch checkpoint), the generator is re-seeded and replayed to where an
    uninterrupted fit would have it, so a resumed fit shuffles exactly as one never stopped."""

    DRAWS_PER_EPOCH = 2

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0
        self.generator = torch.Generator().manual_seed(seed)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.generator.manual_seed(self.seed)
            for _ in range(self.DRAWS_PER_EPOCH * epoch):
                torch.randperm(self.n, generator=self.generator)
            self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        yield from torch.randperm(self.n, generator=self.generator).tolist()
        torch.randperm(self.n, generator=self.generator)   # RandomSampler's empty remainder
        self.epoch += 1


class TensorDataModule(L.LightningDataModule):
    """Train / validation / test tensors held in memory; the train loader hands the module
    whole epochs (`suite.lit.Epoch`) of minibatches shuffled with a seeded generator that a
    resumed fit replays (`ResumableShuffle`). Lightning validates on
    `val` after every training epoch; tables report `test`, and whatever a grid chooses is
    chosen on `val`."""

    def __init__(self, train: Tensors, val: Tensors | None, test: Tensors | None,
                 batch_size: int, seed: int, test_batch_size: int = 1024):
        """`val`/`test` None: a subclass provides its own val/test_dataloader."""
        super().__init__()
        self.train_set = TensorDataset(*train)
        self.val_set = TensorDataset(*val) if val is not None else None
        self.test_set = TensorDataset(*test) if test is not None else None
        self.batch_size, self.seed, self.test_batch_size = batch_size, seed, test_batch_size

    def train_dataloader(self) -> DataLoader:
        shuffle = ResumableShuffle(len(self.train_set), self.seed)
        return epoch_loader(self.train_set.tensors, shuffle, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._batched(SequentialSampler(self.val_set), self.test_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._batched(SequentialSampler(self.test_set), self.test_batch_size)

    def _batched(self, sampler, batch_size: int) -> DataLoader:
        """Index the tensors with a whole batch of indices at once (no per-example collate)."""
        batches = BatchSampler(sampler, batch_size, drop_last=False)
        return DataLoader(sampler.data_source, sampler=batches, batch_size=None)


def subset(x: torch.Tensor, y: torch.Tensor, n: int) -> Tensors:
    """The first n examples (all when n == 0)."""
    return (x[:n], y[:n]) if n else (x, y)


def stratified_holdout(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int
                       ) -> tuple[Tensors, Tensors]:
    """(train, val): a `fraction` of (x, y) held out as validation, chosen by `seed` alone
    (the task's split_seed), so every method and every run seed sees one split. Stratified
    by label where scikit-learn can (each class twice, as many held out as classes; else a
    plain seeded split: tiny test files). Both keep the examples' original order."""
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise KanbenchError(f"task.val_fraction must be in (0, 1), got {fraction}")
    if round(fraction * len(y)) < 1 or round(fraction * len(y)) >= len(y):
        raise KanbenchError(f"task.val_fraction {fraction} of {len(y)} training examples "
                            "leaves an empty training or validation split")
    index = np.arange(len(y))
    try:
        keep, held = train_test_split(index, test_size=fraction, stratify=y.numpy(),
                                      random_state=seed)
    except ValueError:  # a class too rare to stratify
        keep, held = train_test_split(index, test_size=fraction, random_state=seed)
    keep, held = torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(held))
    return (x[keep], y[keep]), (x[held], y[held])


def open_or_download(make, name: str, folder: Path, files: list[str], how: str):
    """`make(download=False)` when `files` are all in `folder`; else try `make(download=True)`;
    else one clear KanbenchError. Files that are there but unreadable are an error too."""
    if all((folder / f).exists() for f in files):
        for f in files:
            regular_file(folder / f, name)
        try:
            return make(False)
        except KanbenchError:
            raise
        except Exception as err:  # noqa: BLE001 - any reader failure on a present file
            raise KanbenchError(f"{name}: cannot read the files in {folder} "
                                f"({type(err).__name__}: {err})") from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return make(True)
    except Exception:  # noqa: BLE001 - any download failure means: not available here
        raise KanbenchError(f"{name}: dataset not found at {folder} and could not be "
                            f"downloaded; {how}") from None
    finally:
        socket.setdefaulttimeout(previous)
