"""Inputs and cached backbone features for detection training.

While the backbone is frozen its output never changes, so each image's stride 8/16/32 feature
maps are computed once, plus once per orientation trained on (``ftedge.detection.orient``)
so flips and turns stay available as augmentation, and the neck and head train on them directly. Epochs after the
first then cost only the new layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ftedge.detection.assign import Targets
from ftedge.detection.types import DetectionSample
from ftedge.runtime.letterbox import Letterbox, fill_colour, letterbox
from ftedge.runtime.preprocess import PreprocessSpec


@dataclass(frozen=True)
class Inputs:
    """Letterboxed uint8 images of one split, their geometry, and boxes in input pixels."""

    images: np.ndarray  # (N, S, S, 3) uint8 RGB
    boxes: list[np.ndarray]  # per image (M, 4) float32, input pixels
    labels: list[np.ndarray]  # per image (M,) int64
    geometry: list[Letterbox]


@dataclass(frozen=True)
class SplitCache:
    """One split's inputs, and cached features and per-cell targets of each orientation (view)
    of every image (train: every orientation trained on; val / test: the image as it is)."""

    inputs: Inputs
    view_feats: list[torch.Tensor]  # per level (V, N, C, H, W); view 0: the image as it is
    view_targets: list[list[Targets]]  # [view][image]

    @property
    def feats(self) -> list[torch.Tensor]:
        """Per level (N, C, H, W): the features of the images as they are."""
        return [f[0] for f in self.view_feats]

    @property
    def targets(self) -> list[Targets]:
        return self.view_targets[0]


def load_inputs(samples: Sequence[DetectionSample], size: int, spec: PreprocessSpec) -> Inputs:
    """Read, letterbox and scale the boxes of ``samples`` (EXIF orientation applied)."""
    from ftedge.detection.images import open_rgb

    fill = fill_colour(spec.mean)
    images, boxes, geometry = [], [], []
    for s in samples:
        canvas, box = letterbox(np.asarray(open_rgb(s.path)), size, fill)
        images.append(canvas)
        boxes.append((s.boxes * box.scale).astype(np.float32))
        geometry.append(box)
    return Inputs(np.stack(images), boxes, [s.labels.copy() for s in samples], geometry)


def normalise(images: np.ndarray, spec: PreprocessSpec) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, (x / 255 - mean) / std."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def extract(
    backbone: Callable[[torch.Tensor], list[torch.Tensor]],
    images: np.ndarray,
    spec: PreprocessSpec,
    device: torch.device,
    *,
    batch: int = 16,
) -> list[torch.Tensor]:
    """Feature maps of every image, one (N, C, H, W) tensor per level, kept on the CPU.

    ``backbone``: the multi-scale backbone, or a ``FrozenExtractor``'s ``levels`` (the same
    features computed by OpenVINO or onnxruntime once checked against torch)."""
    levels: list[list[torch.Tensor]] = []
    for start in range(0, len(images), batch):
        x = normalise(images[start : start + batch], spec).to(device)
        feats = backbone(x)
        if not levels:
            levels = [[] for _ in feats]
        for acc, f in zip(levels, feats, strict=True):
            acc.append(f.float().cpu())
    return [torch.cat(acc) for acc in levels]
