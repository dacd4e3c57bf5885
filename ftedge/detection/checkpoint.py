"""Detection checkpoints: ``best.safetensors`` (backbone + new layers) and ``best.json``.

The sidecar says everything needed to rebuild the detector without hub downloads (backbone
architecture, new-layer shape, class names) and to feed it (preprocessing, input size,
letterbox fill). Written atomically, JSON last, with the weights' sha256, like classification
checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ftedge import __version__
from ftedge.detection.model import DetectorSpec
from ftedge.files import atomic_write_text, atomic_write_with, sha256_file
from ftedge.models.registry import BackboneSource
from ftedge.runtime.preprocess import PreprocessSpec

FORMAT = "ftedge-detection-checkpoint"


@dataclass(frozen=True)
class DetectionCheckpointMeta:
    """The sidecar of a detection checkpoint."""

    classes: tuple[str, ...]
    backbone: BackboneSource
    detector: DetectorSpec
    preprocessing: PreprocessSpec  # mean / std; input_size is (3, size, size)
    input_size: int  # square letterboxed input
    config: dict[str, Any]
    epoch: int = -1
    val_map: float = -1.0
    weights: str = ""
    weights_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "task": "detection",
            "ftedge_version": __version__,
            "classes": list(self.classes),
            "backbone": self.backbone.to_dict(),
            "detector": dataclasses.asdict(self.detector),
            "preprocessing": self.preprocessing.to_dict(),
            "input_size": self.input_size,
            "config": self.config,
            "epoch": self.epoch,
            "val_map": self.val_map,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectionCheckpointMeta:
        det = d["detector"]
        return cls(
            classes=tuple(str(c) for c in d["classes"]),
            backbone=BackboneSource(**d["backbone"]),
            detector=DetectorSpec(
                num_classes=int(det["num_classes"]),
                in_channels=tuple(int(c) for c in det["in_channels"]),
                strides=tuple(int(s) for s in det["strides"]),
                channels=int(det["channels"]),
                depth=int(det["depth"]),
            ),
            preprocessing=PreprocessSpec.from_dict(d["preprocessing"]),
            input_size=int(d["input_size"]),
            config=dict(d["config"]),
            epoch=int(d["epoch"]),
            val_map=float(d["val_map"]),
            weights=str(d["weights"]),
            weights_sha256=str(d["weights_sha256"]),
        )


def save_detection_checkpoint(
    stem: Path, model: nn.Module, meta: DetectionCheckpointMeta
) -> DetectionCheckpointMeta:
    """Write ``stem.safetensors`` then ``stem.json``, each atomically; returns the sidecar."""
    from safetensors.torch import save_file

    weights = stem.with_suffix(".safetensors")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_with(weights, lambda tmp: save_file(state, tmp))
    written = dataclasses.replace(meta, weights=weights.name, weights_sha256=sha256_file(weights))
    atomic_write_text(stem.with_suffix(".json"), json.dumps(written.to_dict(), indent=2) + "\n")
    return written


def read_detection_meta(json_path: Path) -> DetectionCheckpointMeta:
    """The typed sidecar (its weights file beside it), or a one-line error."""
    from ftedge.checkpoint import beside, read_sidecar

    meta = read_sidecar(
        json_path, FORMAT, DetectionCheckpointMeta.from_dict, "ftedge detection checkpoint"
    )
    beside(json_path, meta.weights, "weights")
    return meta
