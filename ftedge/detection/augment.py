"""Geometric and colour augmentation of letterboxed detection inputs, boxes moved along.

Each training image is drawn at a random scale (``scale`` jitter), placed at a random position
on a canvas of the input size (cropped where it is larger, padded with the fill colour where it
is smaller), and its brightness / contrast jittered (flips and turns: ``orient``). Boxes follow the same
affine map; a box is kept when at least ``min_visible`` of its area is still on the canvas
(clipped to it), as the built-in tiles were cut, and dropped otherwise: a sliver of an object is
not something the detector should be asked to find.

These change the backbone's input, so features cannot be cached: augmentation runs the full
loop (``ftedge.detection.full_loop``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augment:
    """What each training image goes through (``scale`` (1, 1) and ``color`` 0 turn parts off)."""

    scale: tuple[float, float] = (0.6, 1.4)
    color: float = 0.2  # brightness and contrast factors in 1 +- color
    min_visible: float = 0.5


def augment(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    aug: Augment,
    fill: tuple[int, int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One (S, S, 3) uint8 input and its boxes (M, 4) xyxy / labels (M,) -> augmented copies."""
    from PIL import Image

    size = image.shape[0]
    s = float(rng.uniform(*aug.scale))
    new = max(1, round(size * s))
    img = image if new == size else np.asarray(Image.fromarray(image).resize((new, new)))
    # Random placement: a negative offset crops, a positive one pads.
    lo, hi = min(0, size - new), max(0, size - new)
    dx, dy = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[...] = np.asarray(fill, np.uint8)
    src = img[max(0, -dy) : max(0, -dy) + size, max(0, -dx) : max(0, -dx) + size]
    canvas[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    b = boxes * (new / size) + np.array([dx, dy, dx, dy], np.float32)
    b, labels = _visible(b.astype(np.float32), labels, size, aug.min_visible)
    if aug.color > 0:
        canvas = _jitter(canvas, rng, aug.color)
    return np.ascontiguousarray(canvas), b, labels


def _visible(
    boxes: np.ndarray, labels: np.ndarray, size: int, min_visible: float
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the canvas, keeping those with ``min_visible`` of their area on it."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    clipped = boxes.clip(0, size)
    kept = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (kept > 0) & (kept >= min_visible * area)
    return clipped[keep], labels[keep]


def _jitter(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Brightness and contrast, each by a factor in 1 +- ``amount``."""
    x = img.astype(np.float32)
    mean = x.mean()
    contrast = rng.uniform(1 - amount, 1 + amount)
    brightness = rng.uniform(1 - amount, 1 + amount)
    x = ((x - mean) * contrast + mean) * brightness
    return x.clip(0, 255).astype(np.uint8)
