"""Pascal VOC XML: ``Annotations/*.xml`` + ``JPEGImages/``, or the XML files beside the images.

Class names come from ``labels.txt`` / ``classes.txt`` (one per line) when present, else from
the ``<name>`` of every object, sorted. Splits come from ``ImageSets/Main/{train,val,test}.txt``
(``trainval.txt`` counts as train) when present, else the images are one pool. Box corners are
taken as the pixel coordinates written (no 1-based shift); ``difficult`` objects are kept.
An image is ``<filename>`` in ``JPEGImages/`` (or beside the XML), else the image with the
XML's stem.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ftedge.detection.boxes import UNKNOWN, RawDataset, RawSample
from ftedge.detection.images import IMAGE_EXTENSIONS
from ftedge.errors import FtedgeError

NAME_FILES = ("labels.txt", "classes.txt")
_CORNERS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class VocAnnotation:
    """One XML file: the image it names, its boxes (float64 (N, 4) xyxy) and class names."""

    xml: Path
    filename: str | None
    boxes: np.ndarray
    names: tuple[str, ...]


def xml_files(root: Path) -> list[Path]:
    folder = root / "Annotations"
    found = sorted(folder.glob("*.xml")) if folder.is_dir() else []
    return found or sorted(p for p in root.glob("*.xml") if not p.name.startswith("."))


def looks_like_voc(root: Path) -> bool:
    return bool(xml_files(root))


def parse_voc_xml(path: Path) -> VocAnnotation:
    """Parse one annotation file; a malformed one is an FtedgeError naming file and field."""
    try:
        tree = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise FtedgeError(f"{path} is not valid XML: {e}") from None
    boxes, names = [], []
    for i, obj in enumerate(tree.iter("object"), 1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise FtedgeError(f"{path}: object {i} has no <name>")
        box = obj.find("bndbox")
        if box is None:
            raise FtedgeError(f"{path}: object {i} ({name}) has no <bndbox>")
        try:
            boxes.append([float(box.findtext(k) or "") for k in _CORNERS])
        except ValueError:
            raise FtedgeError(
                f"{path}: object {i} ({name}): <bndbox> needs numeric xmin, ymin, xmax, ymax"
            ) from None
        names.append(name)
    filename = (tree.findtext("filename") or "").strip() or None
    return VocAnnotation(path, filename, np.array(boxes, np.float64).reshape(-1, 4), tuple(names))


def _image_for(ann: VocAnnotation, root: Path) -> Path:
    folders = [root / "JPEGImages"] if (root / "JPEGImages").is_dir() else []
    folders.append(ann.xml.parent)
    for folder in folders:
        if ann.filename and (folder / ann.filename).is_file():
            return folder / ann.filename
        for p in sorted(folder.glob(f"{ann.xml.stem}.*")):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                return p
    return folders[0] / (ann.filename or f"{ann.xml.stem}.jpg")  # reported as unreadable


def _class_names(root: Path, anns: list[VocAnnotation]) -> tuple[tuple[str, ...], Path | None]:
    for n in NAME_FILES:
        if (root / n).is_file():
            lines = [x.strip() for x in (root / n).read_text().splitlines()]
            return tuple(x for x in lines if x), root / n
    return tuple(sorted({name for a in anns for name in a.names})), None


def _image_sets(root: Path) -> dict[str, set[str]] | None:
    folder = root / "ImageSets" / "Main"
    files = {"train": "train.txt", "val": "val.txt", "test": "test.txt"}
    if not (folder / "train.txt").is_file() and (folder / "trainval.txt").is_file():
        files["train"] = "trainval.txt"
    sets = {
        s: {x.split()[0] for x in (folder / f).read_text().splitlines() if x.strip()}
        for s, f in files.items()
        if (folder / f).is_file()
    }
    return sets or None


def read_voc(root: Path, unknown: Literal["error", "drop"] = "error") -> RawDataset:
    """Read a Pascal VOC dataset folder (see the module docstring)."""
    anns = [parse_voc_xml(p) for p in xml_files(root)]
    class_names, names_file = _class_names(root, anns)
    index = {n: i for i, n in enumerate(class_names)}
    samples: dict[str, RawSample] = {}
    for a in anns:
        missing = [n for n in a.names if n not in index]
        if missing and unknown == "error":
            raise FtedgeError(f"{a.xml}: class '{missing[0]}' is not in {names_file}")
        labels = np.array([index.get(n, UNKNOWN) for n in a.names], np.int64)
        samples[a.xml.stem] = RawSample(_image_for(a, root), a.boxes, labels)
    sets = _image_sets(root)
    if sets is None:
        return RawDataset(class_names, {"all": list(samples.values())})
    splits = {s: [samples[i] for i in sorted(ids) if i in samples] for s, ids in sets.items()}
    return RawDataset(class_names, splits)
