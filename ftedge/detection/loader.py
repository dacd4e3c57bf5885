"""``load_detection_data``: detect the format, read, repair, split by image.

The format is told by the folder: YOLO (``data.yaml``/``dataset.yaml`` or ``labels/`` folders),
COCO (``annotations/*.json`` or ``*.json``), Pascal VOC (``Annotations/*.xml`` or ``*.xml``).
Exactly one must match. Splits the folder defines are used as they are; missing ones are drawn
from train (``mixed``), and a folder without splits is split by image with a fixed seed
(``random``). Repairs (clipping, dropped boxes, background images, unreadable images) are
counted in ``DetectionDataset.report`` and announced in one warning.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable
from functools import reduce
from pathlib import Path
from typing import Literal

from ftedge.detection import coco, voc, yolo
from ftedge.detection.boxes import RawDataset, RawSample, repair_boxes
from ftedge.detection.images import image_sizes
from ftedge.detection.types import (
    AnnotationReport,
    DetectionDataset,
    DetectionSample,
    SourceFormat,
    SplitMethod,
)
from ftedge.errors import FtedgeError

UnknownClasses = Literal["error", "drop"]
Reader = Callable[[Path, UnknownClasses], RawDataset]
_FORMATS: dict[SourceFormat, tuple[Callable[[Path], bool], Reader]] = {
    "yolo": (yolo.looks_like_yolo, yolo.read_yolo),
    "coco": (coco.looks_like_coco, coco.read_coco),
    "voc": (voc.looks_like_voc, voc.read_voc),
}


def detect_format(root: Path) -> SourceFormat:
    """The one annotation format ``root`` holds; an FtedgeError if none or several."""
    found = [name for name, (looks, _) in _FORMATS.items() if looks(root)]
    if not found:
        raise FtedgeError(
            f"no detection annotations in {root}: expected YOLO (data.yaml + images/ + labels/), "
            "COCO (annotations/*.json) or Pascal VOC (Annotations/*.xml)"
        )
    if len(found) > 1:
        raise FtedgeError(
            f"{root} holds annotations in several formats ({', '.join(found)}): keep one"
        )
    return found[0]


def _repair_all(
    raw: list[RawSample], root: Path, verify: bool
) -> tuple[list[DetectionSample], AnnotationReport]:
    sizes = image_sizes([r.path for r in raw], verify)
    samples, reports, unreadable = [], [], []
    for r, size in zip(raw, sizes, strict=True):
        if size is None:
            inside = r.path.is_relative_to(root)
            unreadable.append(r.path.relative_to(root).as_posix() if inside else str(r.path))
            continue
        boxes, labels, report = repair_boxes(r, *size)
        samples.append(DetectionSample(str(r.path), size[0], size[1], boxes, labels))
        reports.append(report)
    total = reduce(lambda a, b: a + b, reports, AnnotationReport())
    return samples, total + AnnotationReport(unreadable_images=tuple(unreadable))


def _draw(
    pool: list[DetectionSample], fractions: list[float], seed: int
) -> list[list[DetectionSample]]:
    """Shuffle ``pool`` with ``seed`` and cut parts of ``fractions`` (at least one image each,
    for a fraction above 0); the rest is the first part."""
    pool = list(pool)
    random.Random(seed).shuffle(pool)
    counts = [max(1, round(len(pool) * f)) if f > 0 else 0 for f in fractions]
    start = len(pool) - sum(counts)
    if start < 1:
        raise FtedgeError(
            f"only {len(pool)} image(s): too few to split off validation and test images"
        )
    parts = [pool[:start]]
    for c in counts:
        parts.append(pool[start : start + c])
        start += c
    return parts


def _split(
    by_split: dict[str, list[DetectionSample]], val_fraction: float, test_fraction: float, seed: int
) -> tuple[dict[str, list[DetectionSample]], SplitMethod]:
    if "all" in by_split:
        train, val, test = _draw(by_split["all"], [val_fraction, test_fraction], seed)
        return {"train": train, "val": val, "test": test}, "random"
    if "train" not in by_split:
        raise FtedgeError(f"the dataset defines {', '.join(by_split)} but no train split")
    missing = [s for s in ("val", "test") if s not in by_split]
    if not missing:
        return by_split, "predefined"
    wanted = {"val": val_fraction, "test": test_fraction}
    parts = _draw(by_split["train"], [wanted[s] for s in missing], seed)
    return {**by_split, "train": parts[0], **dict(zip(missing, parts[1:], strict=True))}, "mixed"


def load_detection_data(
    path: str | Path,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    unknown_classes: UnknownClasses = "error",
    verify: bool = False,
) -> DetectionDataset:
    """Read a YOLO, COCO or Pascal VOC folder into train/val/test ``DetectionSample``s.

    Image sizes come from the file headers (``verify`` also decodes every image, catching
    truncated files). Boxes of classes missing from the names are an FtedgeError, or dropped
    and counted with ``unknown_classes="drop"``. Raises FtedgeError for a missing folder, an
    unknown or ambiguous format, malformed annotation files, no images or no boxes at all.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FtedgeError(f"data folder {root} does not exist or is not a folder")
    root = root.resolve()
    fmt = detect_format(root)
    raw = _FORMATS[fmt][1](root, unknown_classes)
    if not any(raw.splits.values()):
        raise FtedgeError(f"no images in {root} ({fmt} layout)")
    by_split: dict[str, list[DetectionSample]] = {}
    report = AnnotationReport()
    for name, samples in raw.splits.items():
        by_split[name], r = _repair_all(samples, root, verify)
        report += r
    if not any(by_split.values()):
        raise FtedgeError(f"no readable images in {root} (first: {report.unreadable_images[0]})")
    if not any(s.num_boxes for samples in by_split.values() for s in samples):
        raise FtedgeError(f"no boxes in {root}: every image is unlabelled ({fmt} layout)")
    splits, method = _split(by_split, val_fraction, test_fraction, seed)
    for name in ("train", "val"):
        if not splits[name]:
            raise FtedgeError(f"the {name} split of {root} has no readable images")
    if report.has_problems:
        warnings.warn(f"{root}: {report.summary()}", stacklevel=2)
    return DetectionDataset(
        root=str(root),
        class_names=raw.class_names,
        train=tuple(splits["train"]),
        val=tuple(splits["val"]),
        test=tuple(splits["test"]),
        source_format=fmt,
        split_method=method,
        seed=seed,
        report=report,
    )
