"""The default score threshold of a detector, chosen on the val split.

A fixed threshold (0.25 is the common one) means very different things for different models and
data: on the built-in tree crowns it kept ~50 boxes per tile against ~8 true ones (precision
0.1). At the end of training the run picks, on val, the threshold with the best F1 at IoU 0.5
(a detection is right when it pairs one to one with an unmatched true box of its class, best
score first); equal F1 goes to the higher threshold (fewer boxes). The export writes it into the
manifest, and ``Detector.detect`` and ``ftedge predict`` use it unless given ``conf``.
mAP, which integrates over every threshold, is unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftedge.detection.evaluate import Detections
from ftedge.runtime.detect import pairwise_iou
from ftedge.runtime.tasks import DEFAULT_CONF

CANDIDATES = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95
MATCH_IOU = 0.5
FALLBACK_CONF = DEFAULT_CONF  # without val boxes (nothing to choose on)


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen score threshold and its precision / recall / F1 on val at IoU 0.5."""

    conf: float
    precision: float
    recall: float
    f1: float

    def to_dict(self) -> dict[str, float | str]:
        return {
            "conf": self.conf,
            "chosen_on": "val",
            "match_iou": MATCH_IOU,
            "val_precision": round(self.precision, 4),
            "val_recall": round(self.recall, 4),
            "val_f1": round(self.f1, 4),
        }


def _true_positives(det: Detections, gt_boxes: np.ndarray, gt_labels: np.ndarray) -> np.ndarray:
    """Per detection (best score first): whether it is matched to a true box (greedy)."""
    boxes, scores, labels = det
    order = np.argsort(-scores, kind="stable")
    hit = np.zeros(len(scores), bool)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return hit
    iou = pairwise_iou(boxes, gt_boxes)
    used = np.zeros(len(gt_boxes), bool)
    for i in order:
        ok = ~used & (gt_labels == labels[i]) & (iou[i] >= MATCH_IOU)
        if ok.any():
            used[np.flatnonzero(ok)[np.argmax(iou[i, ok])]] = True
            hit[i] = True
    return hit


def choose_conf(
    detections: list[Detections], gt_boxes: list[np.ndarray], gt_labels: list[np.ndarray]
) -> ThresholdChoice:
    """The best-F1 threshold of ``CANDIDATES`` for these val detections (kept at low scores)."""
    n_true = sum(len(b) for b in gt_boxes)
    if n_true == 0:
        return ThresholdChoice(FALLBACK_CONF, 0.0, 0.0, 0.0)
    # Matching at a threshold only sees detections above it; greedy best-score-first matching
    # makes a detection's match independent of lower-scored ones, so one pass serves all.
    pairs = zip(detections, gt_boxes, gt_labels, strict=True)
    hits = [_true_positives(d, b, lab) for d, b, lab in pairs]
    scores = np.concatenate([d[1] for d in detections]) if detections else np.zeros(0)
    hit = np.concatenate(hits) if hits else np.zeros(0, bool)
    best = ThresholdChoice(FALLBACK_CONF, 0.0, 0.0, -1.0)
    for conf in CANDIDATES:
        kept = scores >= conf
        tp = int(hit[kept].sum())
        p = tp / max(1, int(kept.sum()))
        r = tp / n_true
        f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
        if f1 >= best.f1:  # equal F1: the higher threshold
            best = ThresholdChoice(conf, p, r, f1)
    return best
