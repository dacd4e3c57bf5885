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
from typing import Any, Literal

from PIL import Image

from ftedge.errors import FtedgeError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
SplitName = Literal["train", "val", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "val", "test")


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

    def split(self, name: SplitName) -> list[Sample]:
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


Layout = dict[str, list[Path]]  # class name -> image files
SCAN_THREADS = 8  # decoding releases the GIL: threads check files in parallel


def scan_image_folder(
    root: str | Path,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> DatasetSplits:
    """Scan ``root`` into stratified splits; raise FtedgeError on unusable input."""
    root = _existing_folder(root)
    presplit = (root / "train").is_dir()
    layouts = _list_layouts(root, presplit)
    classes = _check_classes(root, layouts, presplit)
    layouts, skipped = _drop_unreadable(root, layouts)
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} unreadable image(s) in {root} (first: {skipped[0]})",
            stacklevel=2,
        )
    first = layouts["train" if presplit else "all"]
    empty = [c for c in classes if not first[c]]
    if empty:
        raise FtedgeError(f"class folder(s) with no readable images: {', '.join(empty)}")

    def samples(layout: Layout) -> list[list[Sample]]:
        return [
            [Sample(f.relative_to(root).as_posix(), i) for f in layout.get(c, [])]
            for i, c in enumerate(classes)
        ]

    per_split = {name: samples(layout) for name, layout in layouts.items()}
    if presplit:
        train, val, test = _fill_missing_splits(per_split, val_fraction, test_fraction, seed)
    else:
        small = [c for c in classes if len(first[c]) < 3]
        if small:
            raise FtedgeError(
                f"class(es) {', '.join(small)} have fewer than 3 images: cannot split "
                "train/val/test (add images or provide DIR/train, DIR/val, DIR/test)"
            )
        train, val, test = _stratified_split(per_split["all"], [val_fraction, test_fraction], seed)
    for name, split in (("train", train), ("val", val), ("test", test)):
        if not split:
            raise FtedgeError(f"the {name} split of {root} is empty")
    return DatasetSplits(str(root), classes, train, val, test, skipped)


def _existing_folder(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise FtedgeError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise FtedgeError(f"data path {root} is not a folder")
    return root.resolve()


def _list_layouts(root: Path, presplit: bool) -> dict[str, Layout]:
    """Per split folder ("all" for a single folder): its classes and their image files."""
    if not presplit:
        return {"all": _list_classes(root)}
    return {name: _list_classes(root / name) for name in SPLITS if (root / name).is_dir()}


def _check_classes(root: Path, layouts: dict[str, Layout], presplit: bool) -> list[str]:
    """The class names (from train, or the single folder): at least two, none extra elsewhere."""
    classes = sorted(layouts["train" if presplit else "all"])
    where = root / "train" if presplit else root
    if not classes:
        raise FtedgeError(f"no class folders in {where} (expected {where}/<class>/<images>)")
    if len(classes) < 2:
        raise FtedgeError(f"only one class ({classes[0]}) in {where}: need at least two")
    for name, layout in layouts.items():
        extra = sorted(set(layout) - set(classes))
        if extra:
            raise FtedgeError(f"{root / name} has classes not in train: {', '.join(extra)}")
    return classes


def _drop_unreadable(root: Path, layouts: dict[str, Layout]) -> tuple[dict[str, Layout], list[str]]:
    """Decode every image once; return the layouts without unreadable files, and those files."""
    files = [f for layout in layouts.values() for fs in layout.values() for f in fs]
    with ThreadPoolExecutor(SCAN_THREADS) as pool:
        ok = dict(zip(files, pool.map(_is_readable, files), strict=True))
    skipped = [str(f.relative_to(root)) for f in files if not ok[f]]
    kept = {
        n: {c: [f for f in fs if ok[f]] for c, fs in layout.items()}
        for n, layout in layouts.items()
    }
    return kept, skipped


def _fill_missing_splits(
    per_split: dict[str, list[list[Sample]]], val_fraction: float, test_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """train/val/test of a pre-split folder: a missing val or test is drawn from train."""
    missing = [
        (n, f) for n, f in (("val", val_fraction), ("test", test_fraction)) if n not in per_split
    ]
    parts = _stratified_split(per_split["train"], [f for _, f in missing], seed)
    drawn = dict(zip([n for n, _ in missing], parts[1:], strict=True))

    def given_or_drawn(name: str) -> list[Sample]:
        if name in drawn:
            return drawn[name]
        return [s for per_class in per_split[name] for s in per_class]

    return parts[0], given_or_drawn("val"), given_or_drawn("test")
