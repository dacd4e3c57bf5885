"""COCO detection metrics through pycocotools' evaluator, built in memory.

``evaluate_detections`` gives mAP@[.5:.95], AP50, AP75 and per-class AP exactly as the COCO
evaluator computes them (101-point interpolated precision, at most ``max_detections`` boxes per
image and class, area range "all"). ``precision_recall_curve`` gives the curve at one IoU
threshold for plotting. pycocotools is imported on first use and its progress prints silenced.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ftedge.detection.types import DetectionSample

GroundTruth = DetectionSample | tuple[np.ndarray, np.ndarray]  # (boxes xyxy, labels)
Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]  # (boxes xyxy, scores, labels)


@dataclass(frozen=True)
class DetectionMetrics:
    """COCO box metrics. ``map`` is AP averaged over IoU 0.50:0.95 and the classes that have
    ground truth; ``per_class`` is that AP per class, None for a class without ground truth.
    Every AP is NaN when there is no ground-truth box at all."""

    map: float
    ap50: float
    ap75: float
    per_class: dict[str, float | None]
    num_images: int
    num_boxes: int
    num_predictions: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None)."""

        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "map": clean(self.map),
            "ap50": clean(self.ap50),
            "ap75": clean(self.ap75),
            "per_class": dict(self.per_class),
            "num_images": self.num_images,
            "num_boxes": self.num_boxes,
            "num_predictions": self.num_predictions,
        }


@dataclass(frozen=True, eq=False)
class PrecisionRecallCurve:
    """Interpolated precision at the COCO recall points, per class, at one IoU threshold.

    ``recall`` (R,); ``precision`` and ``scores`` (K, R): the precision reached at that recall
    and the score threshold that reaches it; NaN where a class has no ground truth or the
    recall is never reached (precision 0 there, score NaN).
    """

    iou_threshold: float
    class_names: tuple[str, ...]
    recall: np.ndarray
    precision: np.ndarray
    scores: np.ndarray


def _arrays(gt: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(gt, DetectionSample):
        return gt.boxes, gt.labels
    boxes, labels = gt
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(labels, np.int64).reshape(-1)


def _annotations(image_id: int, boxes: np.ndarray, labels: np.ndarray, first_id: int, k: int):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if len(boxes) != len(labels):
        raise ValueError(f"image {image_id - 1}: {len(boxes)} boxes but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"image {image_id - 1}: labels must be in 0..{k - 1}")
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    # Ids start at 1: the evaluator treats a matched id of 0 as "no match".
    return [
        {
            "id": first_id + j,
            "image_id": image_id,
            "category_id": int(c) + 1,
            "bbox": b,
            "area": b[2] * b[3],
            "iscrowd": 0,
        }
        for j, (b, c) in enumerate(zip(xywh.tolist(), labels.tolist(), strict=True))
    ]


def _coco(images: list[dict[str, Any]], cats: list[dict[str, Any]], anns: list[dict[str, Any]]):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": images, "categories": cats, "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _run_eval(
    ground_truth: Sequence[GroundTruth],
    predictions: Sequence[Prediction],
    num_classes: int,
    max_detections: int,
) -> tuple[Any, int, int]:
    """The accumulated COCOeval, the number of ground-truth boxes and of predictions."""
    from pycocotools.cocoeval import COCOeval

    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(ground_truth)} ground-truth images, {len(predictions)} predictions")
    images = [{"id": i + 1} for i in range(len(ground_truth))]
    cats = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    gt_anns: list[dict[str, Any]] = []
    dt_anns: list[dict[str, Any]] = []
    for i, (gt, pred) in enumerate(zip(ground_truth, predictions, strict=True)):
        gt_anns += _annotations(i + 1, *_arrays(gt), len(gt_anns) + 1, num_classes)
        boxes, scores, labels = pred
        dets = _annotations(i + 1, boxes, labels, len(dt_anns) + 1, num_classes)
        scores = np.asarray(scores, np.float64).reshape(-1)
        if len(scores) != len(dets):
            raise ValueError(f"image {i}: {len(dets)} predicted boxes but {len(scores)} scores")
        for d, s in zip(dets, scores.tolist(), strict=True):
            d["score"] = s
        dt_anns += dets
    ev = COCOeval(_coco(images, cats, gt_anns), _coco(images, cats, dt_anns), "bbox")
    ev.params.maxDets = [1, 10, max_detections]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    return ev, len(gt_anns), len(dt_anns)


def _mean_valid(p: np.ndarray) -> float:
    valid = p > -1  # the evaluator marks "no ground truth" with -1
    return float(p[valid].mean()) if valid.any() else math.nan


def evaluate_detections(
    ground_truth: Sequence[GroundTruth],
    predictions: Sequence[Prediction],
    class_names: Sequence[str],
    *,
    max_detections: int = 100,
) -> DetectionMetrics:
    """COCO mAP of ``predictions`` against ``ground_truth``, image by image.

    ``ground_truth[i]`` is a ``DetectionSample`` or ``(boxes, labels)``; ``predictions[i]`` is
    ``(boxes, scores, labels)``. Boxes are xyxy pixels, labels indices into ``class_names``.
    Images without ground truth count (their predictions are false positives), and so do
    images without predictions (their boxes are missed).
    """
    ev, num_boxes, num_preds = _run_eval(
        ground_truth, predictions, len(class_names), max_detections
    )
    p = ev.eval["precision"][:, :, :, 0, -1]  # (IoU, recall, class) at area all, max dets
    thresholds = ev.params.iouThrs
    per_class = {
        name: (None if math.isnan(ap := _mean_valid(p[:, :, k])) else ap)
        for k, name in enumerate(class_names)
    }
    return DetectionMetrics(
        map=_mean_valid(p),
        ap50=_mean_valid(p[np.isclose(thresholds, 0.5)]),
        ap75=_mean_valid(p[np.isclose(thresholds, 0.75)]),
        per_class=per_class,
        num_images=len(ground_truth),
        num_boxes=num_boxes,
        num_predictions=num_preds,
    )


def precision_recall_curve(
    ground_truth: Sequence[GroundTruth],
    predictions: Sequence[Prediction],
    class_names: Sequence[str],
    *,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
) -> PrecisionRecallCurve:
    """The per-class precision / recall curve at ``iou_threshold`` (one of 0.50, 0.55 ... 0.95),
    with the same inputs as ``evaluate_detections``."""
    ev, _, _ = _run_eval(ground_truth, predictions, len(class_names), max_detections)
    t = np.flatnonzero(np.isclose(ev.params.iouThrs, iou_threshold))
    if len(t) != 1:
        raise ValueError(f"iou_threshold must be one of 0.50, 0.55 ... 0.95, got {iou_threshold}")
    precision = ev.eval["precision"][t[0], :, :, 0, -1].T.astype(np.float64)
    scores = ev.eval["scores"][t[0], :, :, 0, -1].T.astype(np.float64)
    missing = precision < 0
    precision[missing] = np.nan
    scores[missing | (precision == 0)] = np.nan  # precision 0: recall never reached
    return PrecisionRecallCurve(
        float(ev.params.iouThrs[t[0]]),
        tuple(class_names),
        np.asarray(ev.params.recThrs, np.float64),
        precision,
        scores,
    )
