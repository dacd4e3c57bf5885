"""Cutting the built-in aerial images into square tiles: band splits, tile grids, boxes per tile.

Used twice: by ``tools/make_default_detection_dataset.py`` to cut the source images into the
vendored asset, and by ``ftedge.detection.default`` to cut the vendored train regions into
overlapping train tiles when the data is materialised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

TILE = 256
MARGIN = 64  # pixels between two splits' bands that no tile touches
MIN_INSIDE = 0.5  # fraction of a box's area that must lie in a tile for the tile to keep it
# Train tiles start every 64 px: each crown is seen at many positions relative to the tile
# edges and the feature grid (benchmarks/detect_tiles.py measures the step against 256 px).
TRAIN_STEP = 64


def grid(start: int, length: int, tile: int = TILE, step: int = TILE) -> list[int]:
    """Offsets of an even row of tiles covering ``[start, start + length)``, about ``step``
    apart (exactly ``step`` when the length allows it; a single tile when it is shorter)."""
    n = max(1, round((length - tile) / step) + 1)
    return [int(round(v)) for v in np.linspace(start, start + length - tile, n)]


def bands(length: int, tile: int = TILE) -> dict[str, tuple[int, int]]:
    """``{split: (start, length)}`` along an image's longer side: train, then val, then test,
    with ``MARGIN`` pixels between them; val and test are ~20% each (whole tiles). A side too
    short for three bands is all train."""
    held = max(1, round(0.2 * length / tile)) * tile
    train = length - 2 * held - 2 * MARGIN
    if train < tile:
        return {"train": (0, length)}
    return {
        "train": (0, train),
        "val": (train + MARGIN, held),
        "test": (length - held, held),
    }


def band_rects(width: int, height: int) -> dict[str, tuple[int, int, int, int]]:
    """``{split: (x, y, w, h)}``: each split's band of a ``width`` x ``height`` image."""
    along_x = width >= height
    out = {}
    for split, (start, length) in bands(max(width, height)).items():
        out[split] = (start, 0, length, height) if along_x else (0, start, width, length)
    return out


def tile_offsets(rect: tuple[int, int, int, int], step: int = TILE) -> list[tuple[int, int]]:
    """``(x, y)`` of every tile on a grid about ``step`` apart covering ``rect`` (x, y, w, h)."""
    x, y, w, h = rect
    return [(a, b) for a in grid(x, w, step=step) for b in grid(y, h, step=step)]


def boxes_in_tile(
    boxes: np.ndarray, x: int, y: int, tile: int = TILE
) -> tuple[np.ndarray, np.ndarray]:
    """(kept boxes, which were kept): the boxes with at least ``MIN_INSIDE`` of their area in
    the tile at (x, y), clipped to it, in tile pixels (float32, (K, 4)), and the (N,) mask."""
    shifted = boxes.astype(np.float64) - np.array([x, y, x, y], np.float64)
    clipped = np.clip(shifted, 0, tile)
    area = np.prod(shifted[:, 2:] - shifted[:, :2], axis=1)
    inside = np.prod(np.maximum(clipped[:, 2:] - clipped[:, :2], 0), axis=1)
    keep = inside >= MIN_INSIDE * area
    return clipped[keep].astype(np.float32).reshape(-1, 4), keep


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    """``image`` as a JPEG file's bytes (optimised Huffman tables: smaller, same pixels)."""
    import io

    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()
