"""``--resume`` for detection runs: what is saved after every epoch, and how it comes back.

After each epoch the run directory gets ``last.safetensors`` + ``last.json`` (the detector, as
``best`` is written) and ``last.state.pt``: the optimizer and schedule states, the epoch, every
epoch's record and the best one, as plain tensors and containers (``torch.save``, read back
with ``weights_only=True``: nothing is unpickled). Random draws are seeded per epoch, so a
resumed run replays the next epoch exactly as the killed one would have.
"""

from __future__ import annotations

import dataclasses
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
    val_map: float
    val_ap50: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class DetectState:
    """Everything the epochs carry forward, as saved after ``epoch``."""

    epoch: int
    history: tuple[EpochRecord, ...]
    best: EpochRecord
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "history": [dataclasses.asdict(r) for r in self.history],
            "best": dataclasses.asdict(self.best),
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectState:
        return cls(
            epoch=int(d["epoch"]),
            history=tuple(EpochRecord(**r) for r in d["history"]),
            best=EpochRecord(**d["best"]),
            optimizer=d["optimizer"],
            scheduler=d["scheduler"],
        )


def state_path(run_dir: Path) -> Path:
    return run_dir / "last.state.pt"


def save_state(run_dir: Path, state: DetectState) -> None:
    """Write ``last.state.pt`` atomically (after ``last.safetensors`` / ``last.json``)."""
    from ftedge.files import atomic_write_with

    atomic_write_with(state_path(run_dir), lambda tmp: torch.save(state.to_dict(), tmp))


def check_resumable(run_dir: Path) -> None:
    """A saved epoch whose ``last.safetensors`` matches ``last.json``'s sha256, or one line."""
    from ftedge.detection.checkpoint import read_detection_meta
    from ftedge.training import resume

    resume.check_resumable(run_dir, read_detection_meta)


def load_state(run_dir: Path) -> DetectState:
    """The state saved with the run's last completed epoch, or a one-line error."""
    path = state_path(run_dir)
    try:
        return DetectState.from_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:
        raise FtedgeError(f"unreadable training state {path}: {str(e).splitlines()[0]}") from None
