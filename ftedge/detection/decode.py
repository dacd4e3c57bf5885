"""From the head's per-cell outputs to boxes and scores (inside the exported graph too)."""

from __future__ import annotations

import torch


def distances_to_boxes(centers: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """Cell centres (P, 2) and distances (N, P, 4) -> boxes (N, P, 4) xyxy in input pixels."""
    xy = centers[None]
    return torch.cat([xy - ltrb[..., :2], xy + ltrb[..., 2:]], dim=-1)


def scores(cls: torch.Tensor, ctr: torch.Tensor) -> torch.Tensor:
    """Per-class scores (N, P, K): sqrt(class probability x centerness).

    The geometric mean keeps scores on the probability scale (a confidence threshold of 0.25
    means what users expect) while ranking centred, well-localised cells first.
    """
    return (torch.sigmoid(cls) * torch.sigmoid(ctr)[..., None]).sqrt()
