"""From the detector's raw outputs to scored detections, and their COCO metrics (training side).

The torch-free runtime has its own numpy NMS; here torchvision's batched NMS does the same job
(class-aware, same thresholds) on tensors that are already in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ftedge.detection.decode import distances_to_boxes, scores
from ftedge.detection.metrics import DetectionMetrics, evaluate_detections

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (N, 4), scores (N,), labels (N,)


@dataclass(frozen=True)
class NmsSettings:
    """Thresholds for turning per-cell scores into detections (evaluation keeps low scores)."""

    conf: float = 0.05
    iou: float = 0.5
    max_det: int = 100
    pre_nms: int = 1000  # highest-scoring cells kept per image before NMS


def select(boxes: torch.Tensor, cell_scores: torch.Tensor, nms: NmsSettings) -> Detections:
    """One image: ``boxes`` (P, 4), ``cell_scores`` (P, K) -> its detections, best first."""
    from torchvision.ops import batched_nms

    cells, classes = (cell_scores > nms.conf).nonzero(as_tuple=True)
    s = cell_scores[cells, classes]
    if len(s) > nms.pre_nms:
        top = s.topk(nms.pre_nms).indices
        cells, classes, s = cells[top], classes[top], s[top]
    b = boxes[cells]
    keep = batched_nms(b, s, classes, nms.iou)[: nms.max_det]
    return b[keep].numpy(), s[keep].numpy(), classes[keep].numpy()


@torch.no_grad()
def detect_on_features(
    layers: torch.nn.Module,
    feats: list[torch.Tensor],
    centers: torch.Tensor,
    nms: NmsSettings,
    batch: int = 32,
) -> list[Detections]:
    """Detections (input pixels) for every image whose cached features are ``feats``."""
    layers.eval()
    out: list[Detections] = []
    for start in range(0, feats[0].shape[0], batch):
        cls, ltrb, ctr = layers([f[start : start + batch] for f in feats])
        boxes, s = distances_to_boxes(centers, ltrb), scores(cls, ctr)
        out.extend(select(boxes[i], s[i], nms) for i in range(len(boxes)))
    return out


def score(
    detections: list[Detections],
    boxes: list[np.ndarray],
    labels: list[np.ndarray],
    class_names: list[str],
) -> DetectionMetrics:
    """COCO metrics of ``detections`` against ground truth in the same (input) pixels."""
    gt = list(zip(boxes, labels, strict=True))
    return evaluate_detections(gt, detections, class_names)
