"""What several tasks share: an in-memory DataModule and the missing-data error."""

from __future__ import annotations

import contextlib
import io
import socket
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from suite.errors import KanbenchError


class TensorDataModule(L.LightningDataModule):
    """Train/test tensors held in memory; the train loader shuffles with a seeded generator."""

    def __init__(self, train: tuple[torch.Tensor, torch.Tensor],
                 test: tuple[torch.Tensor, torch.Tensor] | None, batch_size: int, seed: int,
                 test_batch_size: int = 1024):
        """`test` None: a subclass provides its own test_dataloader."""
        super().__init__()
        self.train_set = TensorDataset(*train)
        self.test_set = TensorDataset(*test) if test is not None else None
        self.batch_size, self.seed, self.test_batch_size = batch_size, seed, test_batch_size

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return self._batched(RandomSampler(self.train_set, generator=generator), self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._batched(SequentialSampler(self.test_set), self.test_batch_size)

    def _batched(self, sampler, batch_size: int) -> DataLoader:
        """Index the tensors with a whole batch of indices at once (no per-example collate)."""
        batches = BatchSampler(sampler, batch_size, drop_last=False)
        return DataLoader(sampler.data_source, sampler=batches, batch_size=None)


def subset(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n examples (all when n == 0)."""
    return (x[:n], y[:n]) if n else (x, y)


def open_or_download(make, name: str, folder: Path, files: list[str], how: str):
    """`make(download=False)` when `files` are all in `folder`; else try `make(download=True)`;
    else one clear KanbenchError. Files that are there but unreadable are an error too."""
    if all((folder / f).exists() for f in files):
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
