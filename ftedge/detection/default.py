"""The built-in detection data: aerial RGB tiles with tree-crown boxes (DeepForest, MIT).

``assets/trees.npz`` (made by ``tools/make_default_detection_dataset.py``) holds, from four
NEON aerial images shipped with the DeepForest package, the 256 x 256 val and test tiles as JPEG
with their boxes, and the train band of each image whole; the train tiles are cut from those
bands every ``tiling.TRAIN_STEP`` px when the data is loaded (overlapping tiles would store each
pixel many times). Every tile keeps its split, source image and offset in it. Train, val and
test come from separate bands of each source image, so no test pixel is seen in training.
``materialise_default_detection_data`` writes them out once as an ordinary pre-split YOLO
folder that the user can open, and ``load_detection_data`` reads it like any other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ftedge.detection.tiling import TRAIN_STEP
from ftedge.detection.types import SPLITS
from ftedge.files import atomic_write_text, mkdtemp_beside

ASSET = "trees.npz"
LICENSE = "DEEPFOREST_LICENSE.txt"
NAME = "deepforest-trees"
STAMP = ".complete"
TILE_QUALITY = 90  # JPEG quality of the train tiles cut from the stored regions


@dataclass(frozen=True, eq=False)
class TreeTiles:
    """The built-in tiles. Per tile ``t``: ``jpeg[t]`` bytes, ``split[t]``,
    ``source_names[source[t]]``, ``offset[t]`` = (x, y) of its top-left corner in that source
    image; ``boxes[t]`` float32 (N, 4) xyxy tile pixels and ``labels[t]`` int64 (N,)."""

    class_names: tuple[str, ...]
    tile_size: int
    source_names: tuple[str, ...]
    jpeg: tuple[bytes, ...]
    split: tuple[str, ...]
    source: np.ndarray
    offset: np.ndarray
    boxes: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {"images": n, "boxes": m}}``."""
        return {
            s: {
                "images": sum(x == s for x in self.split),
                "boxes": sum(len(b) for b, x in zip(self.boxes, self.split, strict=True) if x == s),
            }
            for s in SPLITS
        }


def _asset_bytes() -> bytes:
    return resources.files("ftedge.detection").joinpath("assets", ASSET).read_bytes()


def asset_sha256() -> str:
    return hashlib.sha256(_asset_bytes()).hexdigest()


def load_tree_tiles(train_step: int = TRAIN_STEP) -> TreeTiles:
    """The built-in tiles: val and test as vendored, train cut from the vendored train regions
    every ``train_step`` px (no pickled objects: byte strings are stored with offsets)."""
    import io

    with np.load(io.BytesIO(_asset_bytes()), allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    jpeg, jo, bo = a["jpeg"].tobytes(), a["jpeg_offsets"], a["box_offsets"]
    n = len(a["split"])
    train = _train_tiles(a, train_step)
    return TreeTiles(
        class_names=tuple(str(c) for c in a["class_names"]),
        tile_size=int(a["tile_size"]),
        source_names=tuple(str(s) for s in a["source_names"]),
        jpeg=train.jpeg + tuple(jpeg[jo[t] : jo[t + 1]] for t in range(n)),
        split=("train",) * len(train.jpeg) + tuple(str(s) for s in a["split"]),
        source=np.concatenate([train.source, a["source"].astype(np.int64)]),
        offset=np.concatenate([train.offset, a["offset"].astype(np.int64)]),
        boxes=train.boxes + tuple(a["boxes"][bo[t] : bo[t + 1]] for t in range(n)),
        labels=train.labels + tuple(a["labels"][bo[t] : bo[t + 1]] for t in range(n)),
    )


@dataclass(frozen=True, eq=False)
class _Cut:
    jpeg: tuple[bytes, ...]
    source: np.ndarray
    offset: np.ndarray
    boxes: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]


def _train_tiles(a: dict[str, np.ndarray], step: int) -> _Cut:
    """Overlapping train tiles cut from each stored train region (its boxes are stored whole,
    so a tile keeps a crown by the same half-inside rule as the val and test tiles)."""
    import io

    from PIL import Image

    from ftedge.detection.tiling import boxes_in_tile, jpeg_bytes, tile_offsets

    blob, jo, bo = a["region_jpeg"].tobytes(), a["region_jpeg_offsets"], a["region_box_offsets"]
    tile = int(a["tile_size"])
    jpeg, source, offset, boxes, labels = [], [], [], [], []
    for r, (rx, ry, w, h) in enumerate(a["region_rect"].tolist()):
        with Image.open(io.BytesIO(blob[jo[r] : jo[r + 1]])) as im:
            region = im.convert("RGB")
        rb, rl = a["region_boxes"][bo[r] : bo[r + 1]], a["region_labels"][bo[r] : bo[r + 1]]
        for x, y in tile_offsets((0, 0, w, h), step=step):
            jpeg.append(jpeg_bytes(region.crop((x, y, x + tile, y + tile)), TILE_QUALITY))
            source.append(int(a["region_source"][r]))
            offset.append((rx + x, ry + y))
            kept, keep = boxes_in_tile(rb, x, y, tile)
            boxes.append(kept)
            labels.append(rl[keep])
    return _Cut(
        tuple(jpeg),
        np.array(source, np.int64),
        np.array(offset, np.int64).reshape(-1, 2),
        tuple(boxes),
        tuple(labels),
    )


def _yolo_lines(boxes: np.ndarray, labels: np.ndarray, size: int) -> str:
    b = boxes.astype(np.float64) / size
    cxcywh = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)
    return "".join(
        f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n"
        for c, (x, y, w, h) in zip(labels.tolist(), cxcywh.tolist(), strict=True)
    )


def _write_yolo(tiles: TreeTiles, folder: Path) -> None:
    for s in SPLITS:
        (folder / "images" / s).mkdir(parents=True)
        (folder / "labels" / s).mkdir(parents=True)
    rows = ["file,split,source,x,y"]
    for t, split in enumerate(tiles.split):
        src = tiles.source_names[tiles.source[t]]
        x, y = tiles.offset[t].tolist()
        stem = f"{src}_{x:04d}_{y:04d}"
        (folder / "images" / split / f"{stem}.jpg").write_bytes(tiles.jpeg[t])
        lines = _yolo_lines(tiles.boxes[t], tiles.labels[t], tiles.tile_size)
        (folder / "labels" / split / f"{stem}.txt").write_text(lines)
        rows.append(f"images/{split}/{stem}.jpg,{split},{src},{x},{y}")
    (folder / "tiles.csv").write_text("\n".join(rows) + "\n")
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(tiles.class_names))
    (folder / "data.yaml").write_text(
        "# Tree crowns in aerial RGB tiles (DeepForest sample data, MIT): see LICENSE.txt\n"
        f"path: .\ntrain: images/train\nval: images/val\ntest: images/test\nnames:\n{names}"
    )
    licence = resources.files("ftedge.detection").joinpath("assets", LICENSE).read_text()
    (folder / "LICENSE.txt").write_text(licence)


def read_stamp(folder: Path) -> dict[str, object] | None:
    """The stamp of a complete copy: asset sha256 and per-split counts; None if absent."""
    try:
        stamp: dict[str, object] = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp


def materialise_default_detection_data(
    dest: str | Path | None = None, *, train_step: int = TRAIN_STEP
) -> Path:
    """Write the built-in tree-crown tiles as a pre-split YOLO folder (once) and return it.

    ``dest`` defaults to ``<cache>/datasets/deepforest-trees``. The folder is built beside
    ``dest`` and renamed onto it, so a half-written copy never appears; a complete copy of the
    same asset and train-tile step (checked by the sha256 and step in its stamp file) is reused
    as it is. ``train_step``: px between neighbouring train tiles (``benchmarks/detect_tiles.py``
    compares steps; the default is what training uses).
    """
    if dest is None:
        from ftedge.data.default import cache_root  # the one cache the built-in sets share

        dest = cache_root() / "datasets" / NAME
    dest = Path(dest)
    sha = asset_sha256()
    stamp = read_stamp(dest)
    wanted = {"asset_sha256": sha, "train_step": train_step}
    if stamp is not None and all(stamp.get(k) == v for k, v in wanted.items()):
        return dest
    tiles = load_tree_tiles(train_step)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = mkdtemp_beside(dest)
    old = None
    try:
        _write_yolo(tiles, tmp)
        body = {**wanted, "counts": tiles.counts()}
        atomic_write_text(tmp / STAMP, json.dumps(body, indent=1) + "\n")
        if dest.exists():  # a stale or partial copy: move it aside, swap, then delete it
            old = mkdtemp_beside(dest)
            os.replace(dest, old / dest.name)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return dest
