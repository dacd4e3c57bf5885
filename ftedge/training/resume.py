"""What ``--resume`` needs beyond the weights: optimizer, scaler, step count, history, best.

Saved as ``last.state.pt`` beside ``last.safetensors`` after every epoch, with ``torch.save`` of
plain tensors and containers, and read back with ``weights_only=True`` (nothing unpickled).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ftedge.errors import FtedgeError


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's line of ``metrics.json``."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochRecord:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class BestSoFar:
    """The best epoch so far: its val accuracy, its epoch, epochs since, and how it was ranked.

    ``score`` is what ranks epochs (the val accuracy, or its mean over the last few epochs when
    the val split is small, ``ftedge.training.recipe``); equal scores go to the lower val loss.
    """

    val_accuracy: float = -1.0
    epoch: int = -1
    stale: int = 0
    score: float = -1.0
    val_loss: float = math.inf

    def after(
        self,
        epoch: int,
        val_accuracy: float,
        val_loss: float = math.inf,
        score: float | None = None,
    ) -> BestSoFar:
        """The record after ``epoch`` scored ``val_accuracy`` (and ``val_loss``, ``score``)."""
        s = val_accuracy if score is None else score
        if s > self.score or (s == self.score and val_loss < self.val_loss):
            return BestSoFar(val_accuracy, epoch, 0, s, val_loss)
        return dataclasses.replace(self, stale=self.stale + 1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BestSoFar:
        # States saved before scores existed ranked by val accuracy alone.
        return cls(**({"score": d["val_accuracy"]} | d))


@dataclass(frozen=True)
class TrainState:
    """Everything the loop carries from one epoch to the next, as saved after ``epoch``."""

    epoch: int
    global_step: int
    history: tuple[EpochRecord, ...]
    best: BestSoFar
    optimizer: dict[str, Any]
    scaler: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "scaler": self.scaler,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "history": [e.to_dict() for e in self.history],
            "best": dataclasses.asdict(self.best),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(
            epoch=int(d["epoch"]),
            global_step=int(d["global_step"]),
            history=tuple(EpochRecord.from_dict(e) for e in d["history"]),
            best=BestSoFar.from_dict(d["best"]),
            optimizer=d["optimizer"],
            scaler=d["scaler"],
        )


def state_path(run_dir: Path) -> Path:
    return run_dir / "last.state.pt"


def check_resumable(run_dir: Path, read_meta: Callable[[Path], Any] | None = None) -> None:
    """A completed epoch is saved and ``last.safetensors`` matches the sha256 in ``last.json``.

    A half-written or swapped weights file is refused here, before anything is recomputed.
    """
    from ftedge.checkpoint import read_checkpoint_meta
    from ftedge.files import sha256_file

    if not (run_dir / "config.yaml").is_file():
        raise FtedgeError(f"cannot resume: {run_dir} is not a run directory (no config.yaml)")
    last = run_dir / "last.json"
    if not last.is_file() or not state_path(run_dir).is_file():
        raise FtedgeError(
            f"cannot resume {run_dir}: it was stopped before its first epoch was saved "
            "(start it again)"
        )
    meta = (read_meta or read_checkpoint_meta)(last)
    weights = run_dir / meta.weights
    if not weights.is_file() or sha256_file(weights) != meta.weights_sha256:
        raise FtedgeError(
            f"cannot resume {run_dir}: {weights.name} does not match the sha256 in last.json"
        )


def load_train_state(run_dir: Path) -> TrainState:
    """The state saved with the run's last completed epoch, or a one-line error."""
    path = state_path(run_dir)
    if not path.is_file() or not (run_dir / "last.json").is_file():
        raise FtedgeError(f"cannot resume {run_dir}: no completed epoch was saved")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
        return TrainState.from_dict(doc)
    except Exception as e:
        raise FtedgeError(f"unreadable training state {path}: {str(e).splitlines()[0]}") from None


def restore(
    run_dir: Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    unfreeze: tuple[int, int],
) -> TrainState:
    """Put the model, optimizer and scaler back as they were after the last saved epoch.

    ``unfreeze`` is (blocks, epoch) of the run's staged unfreezing: if that epoch has passed,
    the blocks are unfrozen again before the weights are loaded.
    """
    from ftedge.models.registry import read_state_dict

    state = load_train_state(run_dir)
    blocks, at_epoch = unfreeze
    if blocks and state.epoch + 1 > at_epoch > 0:
        model.freeze_backbone(blocks)
    model.load_state_dict(read_state_dict(run_dir / "last.safetensors"))
    optimizer.load_state_dict(state.optimizer)
    if scaler is not None and state.scaler:
        scaler.load_state_dict(state.scaler)
    return state
