"""One optimisation or evaluation step, the learning-rate schedule and the optimizer."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ftedge.config import TrainConfig
from ftedge.models import FtedgeClassifier
from ftedge.training import distributed as dist


@dataclass(frozen=True)
class EpochStats:
    """Mean loss and accuracy over one pass, summed over every DDP rank."""

    loss: float
    accuracy: float


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 1% of the base learning rate."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(
    model: FtedgeClassifier, cfg: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW (or SGD) over the head at ``cfg.lr`` and the backbone at ``cfg.backbone_lr``."""
    groups = model.param_groups(cfg.lr, cfg.backbone_lr, cfg.weight_decay)
    for g in groups:
        g["base_lr"] = g["lr"]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    # The fused kernel does the whole update in one launch on CUDA; foreach is the CPU analogue.
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused, foreach=None if fused else True)


@dataclass
class StepRunner:
    """What every training/eval step needs: device, precision, schedule; counts the steps."""

    cfg: TrainConfig
    device: torch.device
    memory_format: torch.memory_format
    amp: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    steps_per_epoch: int
    global_step: int = 0

    def autocast(self) -> Any:
        if self.amp is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def step(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        optimizer: torch.optim.Optimizer | None,
    ) -> torch.Tensor:
        """Forward (+ backward and update when training); returns [loss sum, correct, n]."""
        with self.autocast():
            logits = model(x)
        logits = logits.float()
        if optimizer is None:
            # Validation/test loss is plain cross-entropy (no smoothing): comparable across runs.
            loss = F.cross_entropy(logits, y, reduction="sum")
        else:
            loss = self._update(
                optimizer, F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
            )
            loss = loss * len(y)
        correct = (logits.argmax(1) == y).sum()
        # Stay on the device: a .item() here would force a CUDA sync every step.
        return torch.stack(
            [loss.double(), correct.double(), torch.tensor(len(y), device=x.device).double()]
        )

    def _update(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
        self._set_lr(optimizer)
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            # fp16 gradients underflow without scaling; unscale before clipping so the
            # threshold applies to the true gradient norm.
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
            self._clip(optimizer)
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self._clip(optimizer)
            optimizer.step()
        self.global_step += 1
        return loss.detach()

    def _set_lr(self, optimizer: torch.optim.Optimizer) -> None:
        total = self.cfg.epochs * self.steps_per_epoch
        warmup = round(self.cfg.warmup_epochs * self.steps_per_epoch)
        f = lr_factor(self.global_step, total, warmup)
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * f

    def _clip(self, optimizer: torch.optim.Optimizer) -> None:
        if self.cfg.grad_clip > 0:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)

    def reduce(self, totals: torch.Tensor) -> EpochStats:
        """[loss sum, correct, n] summed over ranks -> mean loss and accuracy."""
        totals = dist.all_reduce_sum(totals)
        loss, correct, n = totals.tolist()
        return EpochStats(loss / max(1.0, n), correct / max(1.0, n))
