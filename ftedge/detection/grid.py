"""The cells of the feature pyramid: their centres in input pixels, strides and size ranges."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# FCOS's rule: a level predicts the objects whose largest centre-to-edge distance falls in its
# range, so small objects go to stride 8 and large ones to stride 32 (in input pixels).
SIZE_RANGES = ((0.0, 64.0), (64.0, 128.0), (128.0, math.inf))


@dataclass(frozen=True)
class Grid:
    """Every cell of every level, flattened in the head's order (level, then row-major)."""

    centers: torch.Tensor  # (P, 2) x, y in input pixels
    strides: torch.Tensor  # (P,)
    size_ranges: torch.Tensor  # (P, 2) lower, upper bound of the largest distance


def make_grid(
    sizes: list[tuple[int, int]], strides: tuple[int, ...], device: torch.device | None = None
) -> Grid:
    """The grid of feature maps of ``sizes`` (H, W per level) at ``strides``."""
    centers, all_strides, ranges = [], [], []
    for (h, w), stride, (lo, hi) in zip(sizes, strides, SIZE_RANGES, strict=False):
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        centers.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1))
        all_strides.append(torch.full((h * w,), float(stride), device=device))
        ranges.append(torch.tensor([[lo, hi]], device=device).expand(h * w, 2))
    return Grid(torch.cat(centers), torch.cat(all_strides), torch.cat(ranges))


def level_sizes(height: int, width: int, strides: tuple[int, ...]) -> list[tuple[int, int]]:
    """Feature-map sizes of an input of ``height`` x ``width`` (strided convs round up)."""
    return [(math.ceil(height / s), math.ceil(width / s)) for s in strides]
