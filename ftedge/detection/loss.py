"""The detection loss: focal loss on classes, GIoU on boxes, BCE on centerness (FCOS).

All three are normalised by the number of positive cells in the batch, so the loss does not
depend on how many objects an image happens to have. torchvision provides the focal and GIoU
losses; only the bookkeeping is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ftedge.detection.assign import Targets


@dataclass(frozen=True)
class LossParts:
    """The three terms (scalars) and their sum."""

    cls: torch.Tensor
    box: torch.Tensor
    ctr: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.cls + self.box + self.ctr


def detection_loss(
    cls: torch.Tensor,
    boxes: torch.Tensor,
    ctr: torch.Tensor,
    targets: list[Targets],
    box_weight: float = 2.0,
) -> LossParts:
    """Loss of a batch: ``cls`` (N, P, K) logits, ``boxes`` (N, P, 4) decoded xyxy predictions,
    ``ctr`` (N, P) logits, one ``Targets`` per image."""
    from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

    labels = torch.stack([t.labels for t in targets])  # (N, P)
    gt_boxes = torch.stack([t.boxes for t in targets])
    gt_ctr = torch.stack([t.centerness for t in targets])
    pos = labels >= 0
    num_pos = max(float(pos.sum()), 1.0)

    onehot = torch.zeros_like(cls)
    onehot[pos] = F.one_hot(labels[pos], cls.shape[-1]).to(cls.dtype)
    cls_loss = sigmoid_focal_loss(cls, onehot, reduction="sum") / num_pos
    if not pos.any():
        zero = boxes.sum() * 0.0 + ctr.sum() * 0.0  # keeps the graph connected
        return LossParts(cls_loss, zero, zero)
    # Boxes far from an object's centre are poor and uncertain: weight them by centerness.
    weight = gt_ctr[pos]
    giou = generalized_box_iou_loss(boxes[pos], gt_boxes[pos], reduction="none")
    box_loss = box_weight * (giou * weight).sum() / weight.sum().clamp(min=1e-6)
    ctr_loss = F.binary_cross_entropy_with_logits(ctr[pos], gt_ctr[pos], reduction="sum") / num_pos
    return LossParts(cls_loss, box_loss, ctr_loss)
