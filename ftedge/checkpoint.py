"""Checkpoints: safetensors weights + a JSON sidecar, written atomically, never pickled.

``<stem>.safetensors`` holds the full model (backbone + head) and ``<stem>.json`` what is needed
to rebuild and use it without the training code's state (``CheckpointMeta``: classes, backbone
source, head spec, preprocessing, the resolved training config, the weights' sha256).
Optimizer/scheduler state for ``--resume`` lives in ``<stem>.state.pt`` (see
``ftedge.training.resume``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from torch import nn

from ftedge import __version__
from ftedge.errors import FtedgeError
from ftedge.files import atomic_write_text, atomic_write_with, sha256_file
from ftedge.models.classifier import HeadSpec
from ftedge.models.registry import BackboneSource
from ftedge.runtime.preprocess import PreprocessSpec

FORMAT = "ftedge-checkpoint"
T = TypeVar("T")
VERSION = 1

Which = Literal["best", "last"]


def config_sha256(config: dict[str, Any]) -> str:
    """sha256 of a config document, independent of key order."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class DataRecord:
    """Where the run's data came from: root folder, splits file (beside the sidecar), skips."""

    root: str
    splits: str = "splits.json"
    skipped: int = 0


@dataclass(frozen=True)
class CheckpointMeta:
    """The JSON sidecar of a checkpoint, field for field (format version 1)."""

    classes: tuple[str, ...]
    backbone: BackboneSource
    head: HeadSpec
    num_features: int
    preprocessing: PreprocessSpec
    config: dict[str, Any]  # the resolved TrainConfig, as in the run's config.yaml
    config_sha256: str
    data: DataRecord
    epoch: int
    val_accuracy: float
    test_accuracy: float | None = None  # added to best.json once the run has been tested
    weights: str = ""  # file name of the weights, in the sidecar's folder (set when saved)
    weights_sha256: str = ""
    ftedge_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        """The JSON document, keys in the order ftedge has always written them."""
        d: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "ftedge_version": self.ftedge_version,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "classes": list(self.classes),
            "backbone": self.backbone.to_dict(),
            "head": self.head.to_dict(),
            "num_features": self.num_features,
            "preprocessing": self.preprocessing.to_dict(),
            "config": self.config,
            "config_sha256": self.config_sha256,
            "data": dataclasses.asdict(self.data),
            "epoch": self.epoch,
            "val_accuracy": self.val_accuracy,
        }
        if self.test_accuracy is not None:
            d["test_accuracy"] = self.test_accuracy
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointMeta:
        """Parse a sidecar document; KeyError/TypeError/ValueError when it is malformed."""
        test = d.get("test_accuracy")
        return cls(
            classes=tuple(str(c) for c in d["classes"]),
            backbone=BackboneSource(**d["backbone"]),
            head=HeadSpec.from_dict(d["head"]),
            num_features=int(d["num_features"]),
            preprocessing=PreprocessSpec.from_dict(d["preprocessing"]),
            config=dict(d["config"]),
            config_sha256=str(d["config_sha256"]),
            data=DataRecord(**d["data"]),
            epoch=int(d["epoch"]),
            val_accuracy=float(d["val_accuracy"]),
            test_accuracy=None if test is None else float(test),
            weights=str(d["weights"]),
            weights_sha256=str(d["weights_sha256"]),
            ftedge_version=str(d.get("ftedge_version", "")),
        )


def write_meta(json_path: str | Path, meta: CheckpointMeta) -> None:
    """Write a sidecar atomically."""
    atomic_write_text(json_path, json.dumps(meta.to_dict(), indent=2) + "\n")


def save_checkpoint(
    stem: str | Path,
    model: nn.Module,
    meta: CheckpointMeta,
    train_state: dict[str, Any] | None = None,
) -> CheckpointMeta:
    """Write ``stem.safetensors`` (+ ``stem.state.pt``) then ``stem.json``, each atomically.

    The JSON is written last: a checkpoint counts as present only when its JSON exists, and
    the JSON records the sha256 of the weights, so a torn pair is detected on load. Returns the
    sidecar as written.
    """
    from safetensors.torch import save_file

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights = stem.with_suffix(".safetensors")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_with(weights, lambda tmp: save_file(state, tmp))
    if train_state is not None:
        atomic_write_with(stem.with_suffix(".state.pt"), lambda tmp: torch.save(train_state, tmp))
    written = dataclasses.replace(
        meta, weights=weights.name, weights_sha256=sha256_file(weights), ftedge_version=__version__
    )
    write_meta(stem.with_suffix(".json"), written)
    return written


def resolve_checkpoint(path: str | Path, which: Which = "best") -> Path:
    """A run directory (uses ``which``), a .json or a .safetensors -> the .json sidecar."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / f"{which}.json"
    elif p.suffix == ".safetensors":
        p = p.with_suffix(".json")
    if not p.is_file():
        raise FtedgeError(f"no checkpoint at {p} (train first: ftedge train)")
    return p


def read_sidecar(
    json_path: Path, fmt: str, parse: Callable[[dict[str, Any]], T], what: str = "ftedge checkpoint"
) -> T:
    """A checkpoint sidecar of format ``fmt`` parsed by ``parse``, or a one-line error."""
    from ftedge.files import read_json

    doc = read_json(json_path, "checkpoint metadata")
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise FtedgeError(f"{json_path} is not an {what}")
    try:
        return parse(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise FtedgeError(f"{json_path}: malformed checkpoint metadata ({e!r})") from None


def read_checkpoint_meta(json_path: Path) -> CheckpointMeta:
    """The typed sidecar at ``json_path`` (see ``resolve_checkpoint``), or a one-line error."""
    meta = read_sidecar(json_path, FORMAT, CheckpointMeta.from_dict)
    # The files a sidecar names live beside it: a name that leads elsewhere is refused.
    beside(json_path, meta.weights, "weights")
    beside(json_path, meta.data.splits, "data.splits")
    return meta


def beside(json_path: Path, name: str, field: str) -> None:
    folder = json_path.parent.resolve()
    target = (folder / name).resolve()
    if not name or Path(name).is_absolute() or target.parent != folder:
        raise FtedgeError(f"{json_path}: {field} {name!r} points outside {json_path.parent}")


def read_meta(path: str | Path, which: Which = "best") -> dict[str, Any]:
    """The sidecar of a run dir / checkpoint as a plain JSON dict (validated)."""
    return read_checkpoint_meta(resolve_checkpoint(path, which)).to_dict()


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A rebuilt classifier with its sidecar and the two files it came from."""

    model: nn.Module  # FtedgeClassifier, in eval mode, on CPU
    info: CheckpointMeta
    path: Path  # the .safetensors file
    json_path: Path  # the .json sidecar

    @property
    def meta(self) -> dict[str, Any]:
        """The sidecar as a plain JSON dict."""
        return self.info.to_dict()


def load_checkpoint(path: str | Path, which: Which = "best") -> LoadedCheckpoint:
    """Rebuild the trained classifier from a run dir / checkpoint, without hub downloads."""
    from ftedge.models import build_classifier
    from ftedge.models.registry import read_state_dict

    json_path = resolve_checkpoint(path, which)
    meta = read_checkpoint_meta(json_path)
    weights = json_path.with_name(meta.weights)
    if not weights.is_file():
        raise FtedgeError(f"checkpoint weights {weights} are missing")
    if sha256_file(weights) != meta.weights_sha256:
        raise FtedgeError(f"checkpoint weights {weights} do not match their sha256 (corrupt?)")
    built = build_classifier(meta.backbone, meta.head, pretrained=False)
    state = read_state_dict(weights)
    try:
        built.model.load_state_dict(state)
    except RuntimeError as e:
        raise FtedgeError(f"{weights} does not fit its metadata: {str(e)[:200]}") from None
    built.model.eval()
    return LoadedCheckpoint(built.model, meta, weights, json_path)
