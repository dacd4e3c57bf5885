"""Which cell learns which object: FCOS label assignment with centre sampling.

A cell is a positive for a ground-truth box when
1. its centre lies within ``radius`` strides of the box centre (and inside the box): only cells
   near the middle of an object learn it, so they see the object rather than its border;
2. its largest distance to the box edges falls in its level's size range: each object is learnt
   at the one pyramid level whose cells suit its size.
A cell that qualifies for several boxes takes the smallest one (the one it is most likely to be
the only cell for). Every other cell is background for every class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ftedge.detection.grid import Grid


@dataclass(frozen=True)
class Targets:
    """Per-cell training targets of one image."""

    labels: torch.Tensor  # (P,) class id, or -1 for background
    boxes: torch.Tensor  # (P, 4) xyxy of the assigned ground truth (zeros for background)
    centerness: torch.Tensor  # (P,) in [0, 1] (zeros for background)

    @property
    def positive(self) -> torch.Tensor:
        return self.labels >= 0


def centerness(ltrb: torch.Tensor) -> torch.Tensor:
    """sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)): 1 at the centre, 0 at an edge."""
    lr = ltrb[..., [0, 2]]
    tb = ltrb[..., [1, 3]]
    ratio = (lr.min(-1).values / lr.max(-1).values.clamp(min=1e-6)) * (
        tb.min(-1).values / tb.max(-1).values.clamp(min=1e-6)
    )
    return ratio.clamp(min=0).sqrt()


def assign(grid: Grid, boxes: torch.Tensor, labels: torch.Tensor, radius: float = 1.5) -> Targets:
    """Targets for one image with ground truth ``boxes`` (M, 4) xyxy and ``labels`` (M,)."""
    p = grid.centers.shape[0]
    if boxes.numel() == 0:
        zeros = grid.centers.new_zeros
        return Targets(labels.new_full((p,), -1), zeros((p, 4)), zeros(p))
    cx, cy = grid.centers[:, 0:1], grid.centers[:, 1:2]  # (P, 1)
    x1, y1, x2, y2 = boxes.unbind(1)  # each (M,)
    ltrb = torch.stack([cx - x1, cy - y1, x2 - cx, y2 - cy], dim=2)  # (P, M, 4)

    r = grid.strides[:, None] * radius
    gcx, gcy = (x1 + x2) / 2, (y1 + y2) / 2
    near_centre = (
        (cx > torch.maximum(gcx - r, x1))
        & (cx < torch.minimum(gcx + r, x2))
        & (cy > torch.maximum(gcy - r, y1))
        & (cy < torch.minimum(gcy + r, y2))
    )
    reach = ltrb.max(2).values
    in_range = (reach >= grid.size_ranges[:, 0:1]) & (reach <= grid.size_ranges[:, 1:2])

    area = ((x2 - x1) * (y2 - y1))[None].expand(p, -1).clone()
    area[~(near_centre & in_range)] = torch.inf
    best_area, best = area.min(1)
    pos = torch.isfinite(best_area)
    idx = torch.arange(p, device=boxes.device)
    out_labels = torch.where(pos, labels[best], labels.new_full((p,), -1))
    out_boxes = torch.where(pos[:, None], boxes[best], boxes.new_zeros(p, 4))
    ctr = torch.where(pos, centerness(ltrb[idx, best]), boxes.new_zeros(p))
    return Targets(out_labels, out_boxes, ctr)
