"""COCO JSON: ``annotations/*.json`` (or ``*.json`` in the folder) + the images.

Each JSON is one split when its name says which (``instances_train2017.json``,
``val.json``, ...); a single JSON without a split in its name is one pool. ``bbox`` is
``[x, y, width, height]`` in pixels. Category ids may be any integers: they are mapped to
0..K-1 in increasing id order, names kept. ``iscrowd`` regions are not boxes and are left out.
An image's ``file_name`` is looked up under ``images/``, beside the JSON, in the folder, and
finally by file name anywhere under the folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ftedge.detection.boxes import UNKNOWN, RawDataset, RawSample
from ftedge.detection.images import list_images
from ftedge.errors import FtedgeError

_SPLIT_WORD = re.compile(r"(train|val|test)", re.IGNORECASE)


def json_files(root: Path) -> list[Path]:
    folder = root / "annotations"
    found = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return found or sorted(p for p in root.glob("*.json") if not p.name.startswith("."))


def looks_like_coco(root: Path) -> bool:
    return bool(json_files(root))


def _split_of(path: Path) -> str | None:
    words = {w.lower() for w in _SPLIT_WORD.findall(path.stem)}
    return words.pop() if len(words) == 1 else None


def assign_splits(files: list[Path]) -> dict[str, Path]:
    """``{split: json}``, or ``{"all": json}`` for a single JSON without a split name."""
    if len(files) == 1 and _split_of(files[0]) is None:
        return {"all": files[0]}
    out: dict[str, Path] = {}
    for f in files:
        split = _split_of(f)
        if split is None or split in out:
            names = ", ".join(p.name for p in files)
            raise FtedgeError(
                f"cannot tell which COCO file is which split ({names}): name them "
                "*train*.json, *val*.json, *test*.json"
            )
        out[split] = f
    return out


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FtedgeError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise FtedgeError(f"{path} is not a COCO file: no 'images' list")
    return data


def _field(obj: dict[str, Any], key: str, path: Path, what: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise FtedgeError(f"{path}: {what} has no '{key}'")
    return obj[key]


def categories(data: dict[str, Any], path: Path) -> dict[int, str]:
    """``{category id: name}`` in increasing id order."""
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise FtedgeError(f"{path}: no 'categories'")
    try:
        out = {
            int(_field(c, "id", path, "a category")): str(_field(c, "name", path, "a category"))
            for c in cats
        }
    except (TypeError, ValueError):
        raise FtedgeError(f"{path}: category ids must be integers") from None
    return dict(sorted(out.items()))


class _ImageFinder:
    """Resolves ``file_name`` to a path (built lazily: the index walks the whole folder)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_name: dict[str, list[Path]] | None = None

    def find(self, file_name: str, json_path: Path, split: str) -> Path:
        for base in (self.root / "images", json_path.parent, self.root):
            if (base / file_name).is_file():
                return base / file_name
        if self._by_name is None:
            self._by_name = {}
            for p in list_images(self.root):
                self._by_name.setdefault(p.name, []).append(p)
        matches = self._by_name.get(Path(file_name).name, [])
        if len(matches) > 1:  # same file name in several split folders: the split's folder
            matches = [p for p in matches if split in str(p.relative_to(self.root)).lower()]
        # Not found: the path where it should be, reported as an unreadable image.
        return matches[0] if len(matches) == 1 else self.root / "images" / file_name


def _bbox(ann: dict[str, Any], path: Path) -> list[float]:
    box = _field(ann, "bbox", path, f"annotation {ann.get('id', '?')}")
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        raise FtedgeError(
            f"{path}: annotation {ann.get('id', '?')}: bbox must be 4 numbers, got {box}"
        ) from None
    return [x, y, x + w, y + h]


def read_coco_file(
    data: dict[str, Any],
    path: Path,
    split: str,
    cat_index: dict[int, int],
    finder: _ImageFinder,
    unknown: Literal["error", "drop"],
) -> list[RawSample]:
    """One loaded COCO JSON as raw samples; ``cat_index`` maps category ids to 0..K-1."""
    per_image: dict[Any, tuple[list[list[float]], list[int], list[int]]] = {}
    for img in data["images"]:
        per_image[_field(img, "id", path, "an image")] = ([], [], [0])
    for ann in data.get("annotations") or []:
        image_id = _field(ann, "image_id", path, f"annotation {ann.get('id', '?')}")
        if image_id not in per_image:
            raise FtedgeError(
                f"{path}: annotation {ann.get('id', '?')}: unknown image_id {image_id}"
            )
        boxes, labels, crowd = per_image[image_id]
        if ann.get("iscrowd"):
            crowd[0] += 1
            continue
        cid = _field(ann, "category_id", path, f"annotation {ann.get('id', '?')}")
        if cid not in cat_index and unknown == "error":
            raise FtedgeError(
                f"{path}: annotation {ann.get('id', '?')}: category_id {cid} is not in categories"
            )
        boxes.append(_bbox(ann, path))
        labels.append(cat_index.get(cid, UNKNOWN))
    samples = []
    for img in data["images"]:
        boxes, labels, crowd = per_image[img["id"]]
        file_name = str(_field(img, "file_name", path, f"image {img['id']}"))
        samples.append(
            RawSample(
                finder.find(file_name, path, split),
                np.array(boxes, np.float64).reshape(-1, 4),
                np.array(labels, np.int64),
                crowd=crowd[0],
            )
        )
    return samples


def read_coco(root: Path, unknown: Literal["error", "drop"] = "error") -> RawDataset:
    """Read a COCO dataset folder (see the module docstring)."""
    files = assign_splits(json_files(root))
    loaded = {s: _load(f) for s, f in files.items()}
    first = "train" if "train" in files else next(iter(files))
    cats = categories(loaded[first], files[first])
    for s, f in files.items():
        if categories(loaded[s], f) != cats:
            raise FtedgeError(f"{f} has different categories from {files[first]}")
    cat_index = {cid: i for i, cid in enumerate(cats)}
    finder = _ImageFinder(root)
    splits = {s: read_coco_file(loaded[s], files[s], s, cat_index, finder, unknown) for s in files}
    return RawDataset(tuple(cats.values()), splits)
