"""The two ways of running an epoch, behind one interface (``EpochSource``).

- ``CachedFeatures``: the whole backbone is frozen and nothing random touches the images, so
  its output for an image never changes: compute it once, then every epoch trains the head on
  a tensor of features (epochs after the first cost ~nothing).
- ``FullImages``: every batch goes through the backbone (augmentation, unfrozen blocks).

Both see the same samples in the same order and give the same losses and accuracies
(``tests/test_train.py``). Under DDP each rank trains on its shard of the train permutation and
evaluates its shard of val/test; the statistics are summed across ranks.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from ftedge.config import TrainConfig
from ftedge.data.folders import DatasetSplits, SplitName
from ftedge.data.torch_data import EpochShardSampler, ImageDataset, shard
from ftedge.models import FtedgeClassifier
from ftedge.training.features import FrozenExtractor, extract_features
from ftedge.training.steps import EpochStats, StepRunner


@dataclass(frozen=True)
class RunData:
    """The run's splits and transforms, and this process's share of them."""

    splits: DatasetSplits
    cfg: TrainConfig
    device: torch.device
    train_transform: Any
    eval_transform: Any
    rank: int = 0
    world_size: int = 1

    def local(self, name: SplitName) -> list[int]:
        """This rank's share of an evaluation split (each sample counted once)."""
        return shard(len(self.splits.split(name)), self.rank, self.world_size)

    def loader(
        self, name: SplitName, transform: Any, sampler: Any = None, local: bool = True
    ) -> torch.utils.data.DataLoader:
        samples = self.splits.split(name)
        if local:
            samples = [samples[i] for i in self.local(name)]
        dataset = ImageDataset(self.splits, samples, transform)
        workers = self.cfg.workers if self.cfg.workers >= 0 else _auto_workers(self.device)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
        )


def _auto_workers(device: torch.device) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # On a small CPU box the model needs every core; on a GPU box decoding is the bottleneck.
    return min(8, cpus) if device.type == "cuda" else (0 if cpus <= 4 else min(4, cpus // 2))


class EpochSource(Protocol):
    """What the epoch loop asks of either way of running an epoch."""

    cached: bool
    sampler: EpochShardSampler
    extraction_seconds: float

    def learner(self, model: FtedgeClassifier) -> nn.Module: ...

    def train_epoch(
        self, learner: nn.Module, optimizer: torch.optim.Optimizer, epoch: int
    ) -> EpochStats: ...

    def validate(self, model: FtedgeClassifier) -> EpochStats: ...

    def test_logits(self, model: FtedgeClassifier) -> tuple[torch.Tensor, torch.Tensor]: ...


class FullImages:
    """Every batch of images goes through the whole model."""

    cached = False
    extraction_seconds = 0.0

    def __init__(self, data: RunData, steps: StepRunner, sampler: EpochShardSampler) -> None:
        self.steps, self.sampler = steps, sampler
        self.train = data.loader("train", data.train_transform, sampler, local=False)
        self.val = data.loader("val", data.eval_transform)
        self.test = data.loader("test", data.eval_transform)

    def learner(self, model: FtedgeClassifier) -> nn.Module:
        return model

    def train_epoch(
        self, learner: nn.Module, optimizer: torch.optim.Optimizer, epoch: int
    ) -> EpochStats:
        self.sampler.set_epoch(epoch)
        return self._run(learner, self.train, optimizer)

    def validate(self, model: FtedgeClassifier) -> EpochStats:
        return self._run(model, self.val, None)

    def _run(
        self,
        model: nn.Module,
        loader: torch.utils.data.DataLoader,
        optimizer: torch.optim.Optimizer | None,
    ) -> EpochStats:
        """One pass over images: trains when ``optimizer`` is given, else evaluates."""
        training = optimizer is not None
        model.train(training)
        totals = torch.zeros(3, dtype=torch.float64, device=self.steps.device)
        with torch.set_grad_enabled(training):
            for x, y in loader:
                # non_blocking copies from pinned memory overlap the transfer with compute.
                x, y = self._to_device(x, y)
                totals += self.steps.step(model, x, y, optimizer)
        return self.steps.reduce(totals)

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.steps
        x = x.to(s.device, non_blocking=True, memory_format=s.memory_format)
        return x, y.to(s.device, non_blocking=True)

    @torch.inference_mode()
    def test_logits(self, model: FtedgeClassifier) -> tuple[torch.Tensor, torch.Tensor]:
        logits, labels = [], []
        for x, y in self.test:
            x, y = self._to_device(x, y)
            with self.steps.autocast():
                logits.append(model(x).float())
            labels.append(y)
        return torch.cat(logits), torch.cat(labels)


class CachedFeatures:
    """The frozen backbone runs once per image; epochs train the head on its features."""

    cached = True

    def __init__(
        self, data: RunData, steps: StepRunner, sampler: EpochShardSampler, model: FtedgeClassifier
    ) -> None:
        self.data, self.steps, self.sampler = data, steps, sampler
        # The compiled backbone runs float32 on the CPU: no autocast, no GPU.
        plain_cpu = steps.device.type == "cpu" and steps.amp is None
        backend = data.cfg.feature_backend if plain_cpu else "torch"
        self.extractor = FrozenExtractor(model.feature_module(), backend)
        t0 = time.perf_counter()
        # Each rank embeds only its shard of each split; test features wait for the test.
        self.train = self._features("train")
        self.val = self._features("val")
        self.extraction_seconds = time.perf_counter() - t0

    def _features(self, name: SplitName) -> tuple[torch.Tensor, torch.Tensor]:
        loader = self.data.loader(name, self.data.eval_transform)
        show = self.data.rank == 0
        return extract_features(
            self.extractor, loader, self.steps, name, self.data.cfg.feature_cache_dir, show=show
        )

    def learner(self, model: FtedgeClassifier) -> nn.Module:
        return model.head

    def train_epoch(
        self, learner: nn.Module, optimizer: torch.optim.Optimizer, epoch: int
    ) -> EpochStats:
        self.sampler.set_epoch(epoch)
        order = local_order(len(self.train[1]), len(self.sampler), self.data.cfg.seed, epoch)
        return self._run(learner, *self.train, torch.tensor(order), optimizer)

    def validate(self, model: FtedgeClassifier) -> EpochStats:
        return self.evaluate(model, "val")

    def evaluate(self, model: FtedgeClassifier, name: SplitName) -> EpochStats:
        """Loss and accuracy of the head on the cached train or val features."""
        feats, labels = self.train if name == "train" else self.val
        return self._run(model.head, feats, labels, torch.arange(len(labels)), None)

    def _run(
        self,
        head: nn.Module,
        feats: torch.Tensor,
        labels: torch.Tensor,
        order: torch.Tensor,
        optimizer: torch.optim.Optimizer | None,
    ) -> EpochStats:
        """The same pass as FullImages._run, on precomputed backbone features (head only)."""
        training = optimizer is not None
        head.train(training)
        totals = torch.zeros(3, dtype=torch.float64, device=self.steps.device)
        bs = self.data.cfg.batch_size
        with torch.set_grad_enabled(training):
            for i in range(0, len(order), bs):
                b = order[i : i + bs]
                x = feats[b].to(self.steps.device, non_blocking=True)
                y = labels[b].to(self.steps.device, non_blocking=True)
                totals += self.steps.step(head, x, y, optimizer)
        return self.steps.reduce(totals)

    @torch.inference_mode()
    def test_logits(self, model: FtedgeClassifier) -> tuple[torch.Tensor, torch.Tensor]:
        feats, labels = self._features("test")
        return model.head(feats.to(self.steps.device)).float(), labels.to(self.steps.device)


def local_order(n_local: int, steps_len: int, seed: int, epoch: int) -> list[int]:
    """Per-epoch permutation of this rank's cached rows, padded to the common length."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n_local, generator=g).tolist()
    return (order * math.ceil(steps_len / max(1, n_local)))[:steps_len]
