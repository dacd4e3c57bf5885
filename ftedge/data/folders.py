"""Scan an image folder into stratified train/val/test splits (torch-free).

Accepted layouts:
- ``DIR/train/<class>/*`` with optional ``DIR/val`` and ``DIR/test`` (missing splits are drawn
  from train, stratified);
- ``DIR/<class>/*``: split into train/val/test, stratified by class, with a fixed seed.

Every image is decoded once at scan time (JPEGs in Pillow's fast reduced-size draft mode), so a
corrupt or truncated file is skipped and counted up front instead of crashing an epoch later.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ftedge.errors import FtedgeError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset root, POSIX separators
    label: int


@dataclass
class DatasetSplits:
    """The three splits of an image-folder dataset plus what was skipped."""

    root: str
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    skipped: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}")
        samples: list[Sample] = getattr(self, name)
        return samples

    def abspath(self, s: Sample) -> str:
        return str(Path(self.root) / s.path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "classes": self.classes,
            **{n: [[s.path, s.label] for s in self.split(n)] for n in SPLITS},
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSplits:
        return cls(
            root=d["root"],
            classes=list(d["classes"]),
            **{n: [Sample(p, int(y)) for p, y in d[n]] for n in SPLITS},
            skipped=list(d.get("skipped", [])),
        )

    def save(self, path: str | Path) -> None:
        from ftedge.files import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DatasetSplits:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _is_readable(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (64, 64))  # decode at 1/8 scale: still reads every byte
            im.load()
        return True
    except Exception:  # Pillow raises many types for corrupt files
        return False


def _list_classes(split_dir: Path) -> dict[str, list[Path]]:
    classes = {}
    for d in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        classes[d.name] = sorted(
            f
            for f in d.rglob("*")
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
        )
    return classes


def _stratified_split(
    per_class: Sequence[list[Sample]], fractions: Sequence[float], seed: int
) -> list[list[Sample]]:
    """Split each class's samples by ``fractions`` (the remainder goes to the first part)."""
    rng = random.Random(seed)
    parts: list[list[Sample]] = [[] for _ in range(len(fractions) + 1)]
    for samples in per_class:
        samples = list(samples)
        rng.shuffle(samples)
        n = len(samples)
        counts = [max(1, round(n * f)) if f > 0 else 0 for f in fractions]
        start = n - sum(counts)
        parts[0].extend(samples[:start])
        for i, c in enumerate(counts):
            parts[i + 1].extend(samples[start : start + c])
            start += c
    return parts


def scan_image_folder(
    root: str | Path,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    verify: bool = True,
    workers: int = 8,
) -> DatasetSplits:
    """Scan ``root`` into stratified splits; raise FtedgeError on unusable input."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FtedgeError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise FtedgeError(f"data path {root} is not a folder")
    root = root.resolve()
    presplit = (root / "train").is_dir()
    layouts: dict[str, dict[str, list[Path]]] = {}
    if presplit:
        for name in SPLITS:
            if (root / name).is_dir():
                layouts[name] = _list_classes(root / name)
    else:
        layouts["all"] = _list_classes(root)
    first = layouts["train" if presplit else "all"]
    classes = sorted(first)
    where = root / "train" if presplit else root
    if not classes:
        raise FtedgeError(f"no class folders in {where} (expected {where}/<class>/<images>)")
    if len(classes) < 2:
        raise FtedgeError(f"only one class ({classes[0]}) in {where}: need at least two")
    for name, layout in layouts.items():
        extra = sorted(set(layout) - set(classes))
        if extra:
            raise FtedgeError(f"{root / name} has classes not in train: {', '.join(extra)}")

    skipped: list[str] = []
    if verify:
        files = [f for layout in layouts.values() for fs in layout.values() for f in fs]
        with ThreadPoolExecutor(max(1, workers)) as pool:
            ok = dict(zip(files, pool.map(_is_readable, files), strict=True))
        skipped = [str(f.relative_to(root)) for f in files if not ok[f]]
        layouts = {
            n: {c: [f for f in fs if ok[f]] for c, fs in layout.items()}
            for n, layout in layouts.items()
        }
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} unreadable image(s) in {root} (first: {skipped[0]})",
            stacklevel=2,
        )

    def samples(layout: dict[str, list[Path]]) -> list[list[Sample]]:
        return [
            [Sample(f.relative_to(root).as_posix(), i) for f in layout.get(c, [])]
            for i, c in enumerate(classes)
        ]

    first = layouts["train" if presplit else "all"]
    empty = [c for c in classes if not first[c]]
    if empty:
        raise FtedgeError(f"class folder(s) with no readable images: {', '.join(empty)}")
    if presplit:
        train_pc = samples(layouts["train"])
        val_pc = samples(layouts["val"]) if "val" in layouts else None
        test_pc = samples(layouts["test"]) if "test" in layouts else None
        fracs = [f for f, pc in ((val_fraction, val_pc), (test_fraction, test_pc)) if pc is None]
        parts = _stratified_split(train_pc, fracs, seed)
        train = parts[0]
        drawn = iter(parts[1:])
        val = [s for pc in val_pc for s in pc] if val_pc is not None else next(drawn)
        test = [s for pc in test_pc for s in pc] if test_pc is not None else next(drawn)
    else:
        small = [c for c in classes if len(first[c]) < 3]
        if small:
            raise FtedgeError(
                f"class(es) {', '.join(small)} have fewer than 3 images: cannot split "
                "train/val/test (add images or provide DIR/train, DIR/val, DIR/test)"
            )
        train, val, test = _stratified_split(samples(first), [val_fraction, test_fraction], seed)
    for name, split in (("train", train), ("val", val), ("test", test)):
        if not split:
            raise FtedgeError(f"the {name} split of {root} is empty")
    return DatasetSplits(str(root), classes, train, val, test, skipped)
