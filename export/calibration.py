"""Calibration and evaluation data, framework-neutral (after ``nncf.Dataset``).

INT8 quantizers (onnxruntime, NNCF/OpenVINO, TensorRT's Q/DQ path) all see the same
``CalibrationSet``: N training images, stratified by class, each passed through exactly the
evaluation preprocessing (``ftedge.runtime.preprocess``, which matches the torchvision eval
transform bit for bit). There is no fallback: no images, or fewer than asked for, is an error —
never random or foreign data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.runtime.preprocess import PreprocessSpec, load_uint8_crop, normalize

DEFAULT_CALIB_IMAGES = 300


def select_calibration(
    train: Sequence[tuple[str, int]], n: int, *, seed: int = 0
) -> list[tuple[str, int]]:
    """``n`` samples of ``train`` stratified by class (round-robin over shuffled classes)."""
    if n < 1:
        raise FtedgeError(f"--calib-images must be >= 1, got {n}")
    if not train:
        raise FtedgeError("no training images to calibrate on (the run's train split is empty)")
    if n > len(train):
        raise FtedgeError(
            f"--calib-images {n} is more than the {len(train)} training images available"
        )
    rng = random.Random(seed)
    by_class: dict[int, list[tuple[str, int]]] = {}
    for path, label in train:
        by_class.setdefault(int(label), []).append((path, int(label)))
    for items in by_class.values():
        rng.shuffle(items)
    picked: list[tuple[str, int]] = []
    # Round-robin: every class gets floor/ceil(n / classes) images while it has them.
    queues = [by_class[c] for c in sorted(by_class)]
    i = 0
    while len(picked) < n:
        q = queues[i % len(queues)]
        if q:
            picked.append(q.pop())
        i += 1
    return picked


def load_crops(
    root: str | Path, samples: Sequence[Sequence[Any]], spec: PreprocessSpec
) -> np.ndarray:
    """Decode, resize and centre-crop images -> NHWC uint8 RGB at network resolution."""
    root = Path(root)
    missing = [s[0] for s in samples[:1] if not (root / s[0]).is_file()]
    if missing:
        raise FtedgeError(
            f"image data not found: {root / missing[0]} (the dataset at {root} is needed)"
        )
    out = np.empty((len(samples), spec.height, spec.width, 3), np.uint8)
    for i, s in enumerate(samples):
        p = root / s[0]
        try:
            out[i] = load_uint8_crop(str(p), spec)
        except (OSError, ValueError) as e:
            raise FtedgeError(f"cannot read image {p}: {e}") from None
    return out


@dataclass
class CalibrationSet:
    """Preprocessed calibration images (NCHW float32), iterable in batches.

    ``batches(b)`` feeds onnxruntime's calibration reader and ``nncf.Dataset``; ``samples`` is
    what the manifest records.
    """

    samples: list[tuple[str, int]]
    images: np.ndarray  # N, 3, H, W float32, eval preprocessing applied
    input_name: str = "input"
    details: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def batches(self, batch_size: int = 32) -> Iterator[np.ndarray]:
        for i in range(0, len(self.images), batch_size):
            yield self.images[i : i + batch_size]

    @classmethod
    def from_samples(
        cls, root: str | Path, samples: Sequence[tuple[str, int]], spec: PreprocessSpec
    ) -> CalibrationSet:
        crops = load_crops(root, samples, spec)
        return cls(
            samples=[(str(p), int(y)) for p, y in samples],
            images=normalize(crops, spec),
            details={"count": len(samples), "classes": len({y for _, y in samples})},
        )
