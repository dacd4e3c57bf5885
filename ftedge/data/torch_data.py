"""torch Dataset over DatasetSplits samples, and the per-epoch deterministic sampler."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from ftedge.data.folders import DatasetSplits, Sample
from ftedge.runtime.images import open_rgb


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """(image tensor, label) for a list of samples; images decoded with Pillow."""

    def __init__(self, splits: DatasetSplits, samples: list[Sample], transform: Callable[..., Any]):
        self.splits = splits
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        s = self.samples[i]
        # The one image-opening path of train, predict and export (EXIF, 16-bit, size limit).
        return self.transform(open_rgb(self.splits.abspath(s))), s.label


class EpochShardSampler(Sampler[int]):
    """A permutation drawn from (seed, epoch), sharded across DDP ranks.

    Seeding by epoch (instead of carrying RNG state forward) is what makes ``--resume``
    reproduce an uninterrupted run: epoch e sees the same order whether or not the process
    was restarted before it. Every rank gets the same number of indices (the permutation is
    padded by wrapping around), as DDP needs equal step counts.
    """

    def __init__(self, n: int, *, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.seed = n, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.per_rank = math.ceil(n / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        total = self.per_rank * self.world_size
        order = (order * math.ceil(total / max(1, self.n)))[:total]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return self.per_rank


def shard(n: int, rank: int, world_size: int) -> list[int]:
    """Indices of an evaluation set owned by this rank (no padding: each index counted once)."""
    return list(range(rank, n, world_size))
