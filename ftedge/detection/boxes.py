"""What a reader hands the loader (raw boxes per image) and the vectorised box repair."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ftedge.detection.types import AnnotationReport

UNKNOWN = -1  # label of a box whose class is not in the names (dropped, counted)


@dataclass(frozen=True, eq=False)
class RawSample:
    """An image's boxes as read: float64 (N, 4) xyxy, in pixels or, if ``normalised``, in
    fractions of the image size (YOLO); labels int64 (N,), ``UNKNOWN`` for unknown classes."""

    path: Path
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    normalised: bool = False
    crowd: int = 0  # COCO iscrowd regions left out


@dataclass(frozen=True)
class RawDataset:
    """A reader's output: class names and samples per split (``all`` when not pre-split)."""

    class_names: tuple[str, ...]
    splits: dict[str, list[RawSample]]


def repair_boxes(
    raw: RawSample, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, AnnotationReport]:
    """Pixel boxes clipped to the image; boxes without positive area (after clipping, or with
    x2 < x1 or y2 < y1) and of unknown classes dropped; all of it counted."""
    boxes = np.asarray(raw.boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(raw.labels, np.int64).reshape(-1)
    if raw.normalised:
        boxes = boxes * np.array([width, height, width, height], np.float64)
    known = labels != UNKNOWN
    boxes, labels = boxes[known], labels[known]
    clipped = np.clip(boxes, 0.0, np.array([width, height, width, height], np.float64))
    area_ok = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    # Under half a pixel outside is rounding in the annotation tool (or in normalised YOLO
    # coordinates), not a box to report: it is clipped all the same.
    changed = np.any(np.abs(clipped - boxes) >= 0.5, axis=1) & area_ok
    report = AnnotationReport(
        clipped=int(changed.sum()),
        zero_area_dropped=int((~area_ok).sum()),
        unknown_class_dropped=int((~known).sum()),
        crowd_ignored=raw.crowd,
        background_images=int(not area_ok.any()),
    )
    return clipped[area_ok].astype(np.float32), labels[area_ok], report
