"""The full detection training loop: every step runs the backbone on freshly augmented images.

Cached features (``ftedge.detection.features``) are only valid while the backbone's input and
weights never change. Two things break that, and then this loop runs instead:
- ``--augment on``: scale jitter, random placement (crop / pad) and colour jitter
  (``ftedge.detection.augment``) give the backbone a new input every step;
- ``--unfreeze N``: the top N backbone blocks train (at ``--backbone-lr``), from
  ``--unfreeze-epoch`` on (staged unfreezing), so its features move.
Label assignment then runs per step on the augmented boxes (it is a few vectorised tensor ops).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ftedge.config import TrainConfig
from ftedge.detection.assign import assign
from ftedge.detection.augment import Augment, augment
from ftedge.detection.decode import distances_to_boxes
from ftedge.detection.features import Inputs, normalise
from ftedge.detection.grid import Grid
from ftedge.detection.loss import detection_loss
from ftedge.detection.model import Detector
from ftedge.detection.orient import Orient
from ftedge.runtime.preprocess import PreprocessSpec


def needs_full_loop(cfg: TrainConfig) -> bool:
    """Whether ``cfg`` changes the backbone's input or weights (then features can't be cached)."""
    return cfg.unfreeze > 0 or cfg.augment == "on" or cfg.cache_features == "off"


def augmentation(cfg: TrainConfig) -> Augment | None:
    """The augmentation of ``--augment on`` (None: flips only)."""
    if cfg.augment != "on":
        return None
    return Augment(scale=(cfg.crop_scale, 2.0 - cfg.crop_scale), color=cfg.color_jitter)


@dataclass(frozen=True)
class FullLoop:
    """What one epoch of the full loop needs besides the model and optimizer."""

    inputs: Inputs  # the train split, letterboxed uint8
    spec: PreprocessSpec
    fill: tuple[int, int, int]
    grid: Grid
    aug: Augment | None
    grad_clip: float
    orients: tuple[Orient, ...]  # orientations trained on (``--flips``)
    fmt: torch.memory_format = torch.contiguous_format  # channels_last with --channels-last


def optimizer(det: Detector, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the new layers at ``--lr`` and the backbone at ``--backbone-lr``.

    Frozen backbone parameters are listed too: their grad stays None, so AdamW skips them until
    staged unfreezing turns them on."""
    groups = [
        {"params": list(det.layers.parameters()), "lr": cfg.lr},
        {"params": list(det.backbone.parameters()), "lr": cfg.backbone_lr},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_epoch_full(
    det: Detector,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    loop: FullLoop,
    batch: int,
    steps: int,
    rng: np.random.Generator,
) -> float:
    """``steps`` optimizer steps on random batches of augmented train images; the mean loss."""
    det.train()
    centers = loop.grid.centers
    params = [p for p in det.parameters() if p.requires_grad]
    total = 0.0
    for _ in range(steps):
        images, targets = [], []
        for i in rng.integers(0, len(loop.inputs.images), batch):
            img, boxes, labels = _sample(loop, int(i), rng)
            images.append(img)
            targets.append(assign(loop.grid, torch.from_numpy(boxes), torch.from_numpy(labels)))
        x = normalise(np.stack(images), loop.spec).to(centers.device, memory_format=loop.fmt)
        cls, ltrb, ctr = det(x)
        loss = detection_loss(cls, distances_to_boxes(centers, ltrb), ctr, targets).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if loop.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, loop.grad_clip)
        opt.step()
        sched.step()
        total += float(loss.detach())
    return total / steps


def _sample(
    loop: FullLoop, i: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    img, boxes, labels = loop.inputs.images[i], loop.inputs.boxes[i], loop.inputs.labels[i]
    if loop.aug is not None:
        img, boxes, labels = augment(img, boxes, labels, rng, loop.aug, loop.fill)
    o = loop.orients[int(rng.integers(len(loop.orients)))]
    return o.images(img), o.boxes(boxes, img.shape[0]), labels
