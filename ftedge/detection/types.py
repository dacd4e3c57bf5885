"""The detection data model: samples with pixel boxes, the split dataset, and what was repaired.

Everything here is plain numpy + standard library, so the torch-free runtime can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

SourceFormat = Literal["yolo", "coco", "voc", "builtin"]
SplitMethod = Literal["predefined", "random", "mixed"]
SplitName = Literal["train", "val", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class DetectionSample:
    """One image and its boxes.

    ``boxes`` is float32 (N, 4) ``x1, y1, x2, y2`` in pixels of the image as displayed (EXIF
    orientation applied), already clipped to ``width`` x ``height`` with positive area;
    ``labels`` is int64 (N,) indices into the dataset's class names. N = 0 is a background
    image. Both arrays are read-only.
    """

    path: str  # absolute
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(boxes) != len(labels):
            raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels for {self.path}")
        boxes.flags.writeable = False
        labels.flags.writeable = False
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)

    @property
    def num_boxes(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class AnnotationReport:
    """What loading repaired or dropped; nothing is changed silently.

    - ``clipped``: boxes partly outside the image, clipped to it;
    - ``zero_area_dropped``: boxes with no area (after clipping, or inverted corners), dropped;
    - ``unknown_class_dropped``: boxes whose class is not in the names, dropped (only when the
      loader was asked to drop them instead of failing);
    - ``crowd_ignored``: COCO ``iscrowd`` regions, not used as boxes;
    - ``background_images``: images without any box, kept as negatives;
    - ``unreadable_images``: images that could not be opened (or are missing), skipped.
    """

    clipped: int = 0
    zero_area_dropped: int = 0
    unknown_class_dropped: int = 0
    crowd_ignored: int = 0
    background_images: int = 0
    unreadable_images: tuple[str, ...] = ()

    @property
    def has_problems(self) -> bool:
        """Anything beyond background images (which are legitimate) worth a warning."""
        return bool(
            self.clipped
            or self.zero_area_dropped
            or self.unknown_class_dropped
            or self.unreadable_images
        )

    def summary(self) -> str:
        """One line for a single warning, e.g. ``3 boxes clipped to the image, 1 unreadable ...``."""
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.clipped, "box(es) clipped to the image"),
                (self.zero_area_dropped, "zero-area box(es) dropped"),
                (self.unknown_class_dropped, "box(es) of unknown classes dropped"),
                (self.crowd_ignored, "crowd region(s) ignored"),
                (self.background_images, "image(s) without boxes kept as background"),
                (len(self.unreadable_images), "unreadable image(s) skipped"),
            )
            if n
        ]
        if self.unreadable_images:
            parts[-1] += f" (first: {self.unreadable_images[0]})"
        return "; ".join(parts) if parts else "annotations clean"

    def to_dict(self) -> dict[str, Any]:
        return {
            "clipped": self.clipped,
            "zero_area_dropped": self.zero_area_dropped,
            "unknown_class_dropped": self.unknown_class_dropped,
            "crowd_ignored": self.crowd_ignored,
            "background_images": self.background_images,
            "unreadable_images": list(self.unreadable_images),
        }

    def __add__(self, other: AnnotationReport) -> AnnotationReport:
        return AnnotationReport(
            clipped=self.clipped + other.clipped,
            zero_area_dropped=self.zero_area_dropped + other.zero_area_dropped,
            unknown_class_dropped=self.unknown_class_dropped + other.unknown_class_dropped,
            crowd_ignored=self.crowd_ignored + other.crowd_ignored,
            background_images=self.background_images + other.background_images,
            unreadable_images=self.unreadable_images + other.unreadable_images,
        )


@dataclass(frozen=True)
class DetectionDataset:
    """A detection dataset split by image into train / val / test.

    ``split_method`` says how: ``predefined`` (the folder names every split), ``random`` (one
    pool split by image with ``seed``) or ``mixed`` (missing splits drawn from train).
    """

    root: str
    class_names: tuple[str, ...]
    train: tuple[DetectionSample, ...]
    val: tuple[DetectionSample, ...]
    test: tuple[DetectionSample, ...]
    source_format: SourceFormat
    split_method: SplitMethod
    seed: int
    report: AnnotationReport = field(default_factory=AnnotationReport)

    def split(self, name: SplitName) -> tuple[DetectionSample, ...]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}")
        samples: tuple[DetectionSample, ...] = getattr(self, name)
        return samples

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {"images": n, "boxes": m}}``."""
        return {
            s: {"images": len(self.split(s)), "boxes": sum(x.num_boxes for x in self.split(s))}
            for s in SPLITS
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (no per-box data) for metrics.json."""
        return {
            "root": self.root,
            "format": self.source_format,
            "class_names": list(self.class_names),
            "split_method": self.split_method,
            "seed": self.seed,
            "counts": self.counts(),
            "annotations": self.report.to_dict(),
        }
