"""YOLO txt labels: ``images/`` + ``labels/*.txt`` (``class cx cy w h``, normalised) + a yaml.

Class names come from ``data.yaml`` / ``dataset.yaml`` (``names`` as a list or an ``{id: name}``
map) or, without a yaml, from ``classes.txt``. Splits, in order of precedence:

- ``train:`` / ``val:`` / ``test:`` entries of the yaml (a folder, a .txt list of images, or a
  list of those; relative to the yaml's ``path:`` or to its folder);
- ``images/{train,val,test}`` + ``labels/{train,val,test}``, or ``{train,val,test}/images`` +
  ``{train,val,test}/labels`` (``valid`` is read as ``val``);
- otherwise every image under ``images/`` (or the folder) is one pool.

An image's label file is its path with the last ``images`` folder replaced by ``labels`` and the
suffix by ``.txt`` (or a ``.txt`` beside the image); no label file means a background image.
Polygon lines (``class x1 y1 x2 y2 ...``) are read as their bounding box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from ftedge.detection.boxes import UNKNOWN, RawDataset, RawSample
from ftedge.detection.images import is_image_file, list_images
from ftedge.errors import FtedgeError

YAML_NAMES = ("data.yaml", "dataset.yaml")
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def find_yaml(root: Path) -> Path | None:
    return next((root / n for n in YAML_NAMES if (root / n).is_file()), None)


def looks_like_yolo(root: Path) -> bool:
    """A yaml, a ``labels/`` folder, or per-split ``labels`` folders."""
    if find_yaml(root) or (root / "labels").is_dir():
        return True
    return any((root / a / "labels").is_dir() for names in SPLIT_ALIASES.values() for a in names)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise FtedgeError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise FtedgeError(f"{path} must be a mapping with a 'names' entry")
    return data


def _names(yaml_data: dict[str, Any] | None, yaml_path: Path | None, root: Path) -> dict[int, str]:
    """``{class id in the label files: name}``."""
    if yaml_data is None:
        txt = root / "classes.txt"
        if not txt.is_file():
            raise FtedgeError(
                f"{root} has YOLO labels but no data.yaml (with names) or classes.txt"
            )
        return dict(
            enumerate(line.strip() for line in txt.read_text().splitlines() if line.strip())
        )
    names = yaml_data.get("names")
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        try:
            return {int(k): str(v) for k, v in sorted(names.items(), key=lambda kv: int(kv[0]))}
        except (TypeError, ValueError):
            raise FtedgeError(f"{yaml_path}: 'names' keys must be class ids (integers)") from None
    raise FtedgeError(f"{yaml_path}: 'names' must be a list or an {{id: name}} mapping")


def _entry_images(entry: Any, base: Path, yaml_path: Path, key: str) -> list[Path]:
    """Images named by a yaml split entry: folder(s) and/or .txt list(s)."""
    out: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        p = (base / str(item)).resolve()
        if not p.exists() and str(item).startswith("../"):  # exporters that write ../train/images
            p = (base / str(item)[3:]).resolve()
        if p.is_dir():
            out += list_images(p)
        elif p.is_file() and p.suffix == ".txt":
            lines = [x.strip() for x in p.read_text().splitlines() if x.strip()]
            out += [(p.parent / x).resolve() for x in lines]
        else:
            raise FtedgeError(f"{yaml_path}: {key}: {item} is not a folder or .txt list of images")
    return out


def _split_images(root: Path, yaml_data: dict[str, Any] | None, yaml_path: Path | None):
    """``{split: images}``: from the yaml entries, per-split folders, or one ``all`` pool."""
    if yaml_data is not None and yaml_path is not None and yaml_data.get("train"):
        base = Path(str(yaml_data.get("path") or "."))
        base = base if base.is_absolute() else yaml_path.parent / base
        return {
            s: _entry_images(yaml_data[s], base, yaml_path, s)
            for s in SPLIT_ALIASES
            if yaml_data.get(s)
        }
    found: dict[str, list[Path]] = {}
    for split, aliases in SPLIT_ALIASES.items():
        for a in aliases:
            for folder in (root / "images" / a, root / a / "images"):
                if folder.is_dir() and split not in found:
                    found[split] = list_images(folder)
    if found:
        return found
    pool = root / "images" if (root / "images").is_dir() else root
    return {"all": list_images(pool)}


def label_path(image: Path) -> Path:
    parts = image.parts
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        candidate = Path(*parts[:i], "labels", *parts[i + 1 :]).with_suffix(".txt")
        if candidate.is_file():
            return candidate
    return image.with_suffix(".txt")


def _parse_line(fields: list[str], where: str) -> tuple[int, list[float]]:
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise FtedgeError(f"{where}: non-numeric value in '{' '.join(fields)}'") from None
    cls = values[0]
    if cls != int(cls) or cls < 0 or not np.all(np.isfinite(values)):
        raise FtedgeError(f"{where}: class id must be a non-negative integer, got {fields[0]}")
    if len(values) == 5:
        cx, cy, w, h = values[1:]
        return int(cls), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    if len(values) >= 7 and len(values) % 2 == 1:  # polygon: its bounding box
        xy = np.array(values[1:]).reshape(-1, 2)
        return int(cls), [*xy.min(0).tolist(), *xy.max(0).tolist()]
    raise FtedgeError(f"{where}: expected 'class cx cy w h', got {len(fields)} fields")


def read_label_file(
    path: Path, ids: dict[int, int], unknown: Literal["error", "drop"], names_file: str
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised xyxy boxes and class indices (``ids`` maps file ids to 0..K-1)."""
    boxes, labels = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        cls, box = _parse_line(fields, f"{path} line {n}")
        if cls not in ids and unknown == "error":
            raise FtedgeError(
                f"{path} line {n}: class id {cls} is not in the names of {names_file}"
            )
        boxes.append(box)
        labels.append(ids.get(cls, UNKNOWN))
    return np.array(boxes, np.float64).reshape(-1, 4), np.array(labels, np.int64)


def read_yolo(root: Path, unknown: Literal["error", "drop"] = "error") -> RawDataset:
    """Read a YOLO dataset folder (see the module docstring)."""
    yaml_path = find_yaml(root)
    yaml_data = _read_yaml(yaml_path) if yaml_path else None
    id_to_name = _names(yaml_data, yaml_path, root)
    if not id_to_name:
        raise FtedgeError(f"{yaml_path or root / 'classes.txt'} names no classes")
    ids = {cid: i for i, cid in enumerate(id_to_name)}
    names_file = yaml_path.name if yaml_path else "classes.txt"
    splits: dict[str, list[RawSample]] = {}
    for split, images in _split_images(root, yaml_data, yaml_path).items():
        samples = []
        for image in images:
            if not is_image_file(image):  # a listed image that is gone is an unreadable image
                samples.append(RawSample(image, normalised=True))
                continue
            lp = label_path(image)
            boxes, labels = (
                read_label_file(lp, ids, unknown, names_file)
                if lp.is_file()
                else (np.zeros((0, 4)), np.zeros(0, np.int64))
            )
            samples.append(RawSample(image, boxes, labels, normalised=True))
        splits[split] = samples
    return RawDataset(tuple(id_to_name.values()), splits)
