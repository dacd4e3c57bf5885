"""Regenerate ftedge/detection/assets/trees.npz from the DeepForest package's sample data.

    pip download --no-deps deepforest && unzip deepforest-*.whl -d /tmp/df
    python tools/make_default_detection_dataset.py --src /tmp/df/deepforest/data

Sources: the four NEON aerial RGB images that DeepForest (MIT) ships with Pascal VOC tree-crown
boxes: OSBS_029 and SOAP_061 (400 x 400), 2019_YELL_2_541000_4977000_image_crop (1249 x 1035)
and 2019_YELL_2_528000_4978000_image_crop2 (2299 x 2472), at 10 cm per pixel. SOAP_061's
"Alive" and "Dead" crowns are both trees: the data has one class, ``tree``.

Tiles are 256 x 256: crowns are 15-110 px (median ~40), so a tile holds whole crowns and tens
of them, 256 is a size edge detectors run at without resizing, and 256 px tiles of the largest
image still leave room for separate train, val and test bands. A box is kept in a tile when at
least half of its area lies inside it (clipped to the tile).

Split by region, so that no test pixel is seen in training: an image large enough for three
bands (at least 3 tiles + 2 margins along its longer side) is cut across its longer side into a
train band, a val band and a test band, in that order, with a MARGIN-pixel strip between bands
that no tile touches; the val and test bands are each ~20% of the side (whole tiles). Inside a
band, tiles are laid on an even grid that covers it (neighbours may overlap or leave a few
pixels out). The two 400 x 400 images are too small for three bands and go to train whole.
The split, source image and offset of every tile are stored so that the disjointness can be
checked. The script prints the per-split tile and box counts.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from ftedge.detection.voc import parse_voc_xml

DST = Path(__file__).resolve().parents[1] / "ftedge" / "detection" / "assets" / "trees.npz"
SOURCES = (
    "OSBS_029",
    "SOAP_061",
    "2019_YELL_2_541000_4977000_image_crop",
    "2019_YELL_2_528000_4978000_image_crop2",
)
TILE = 256
MARGIN = 64
MIN_INSIDE = 0.5  # fraction of a box's area that must lie in the tile
QUALITY = 85


def grid(start: int, length: int, tile: int = TILE) -> list[int]:
    """Offsets of an even row of tiles covering ``[start, start + length)``."""
    n = max(1, round(length / tile))
    return [int(round(v)) for v in np.linspace(start, start + length - tile, n)]


def bands(length: int) -> dict[str, tuple[int, int]]:
    """``{split: (start, length)}`` along an image's longer side."""
    held = max(1, round(0.2 * length / TILE)) * TILE  # val and test: whole tiles each
    train = length - 2 * held - 2 * MARGIN
    if train < TILE:
        return {"train": (0, length)}
    return {
        "train": (0, train),
        "val": (train + MARGIN, held),
        "test": (length - held, held),
    }


def tile_offsets(width: int, height: int) -> list[tuple[str, int, int]]:
    """``(split, x, y)`` of every tile of a ``width`` x ``height`` image."""
    along_x = width >= height
    out = []
    for split, (start, length) in bands(max(width, height)).items():
        for a in grid(start, length):
            for b in grid(0, min(width, height)):
                out.append((split, a, b) if along_x else (split, b, a))
    return out


def boxes_in_tile(boxes: np.ndarray, x: int, y: int) -> np.ndarray:
    """Boxes with at least MIN_INSIDE of their area in the tile, clipped, in tile pixels."""
    shifted = boxes - np.array([x, y, x, y], np.float64)
    clipped = np.clip(shifted, 0, TILE)
    area = np.prod(shifted[:, 2:] - shifted[:, :2], axis=1)
    inside = np.prod(np.maximum(clipped[:, 2:] - clipped[:, :2], 0), axis=1)
    return clipped[inside >= MIN_INSIDE * area].astype(np.float32)


def jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=QUALITY, optimize=True)
    return buf.getvalue()


def cut(src: Path) -> dict[str, list]:
    out: dict[str, list] = {k: [] for k in ("jpeg", "split", "source", "offset", "boxes")}
    for s, name in enumerate(SOURCES):
        ann = parse_voc_xml(src / f"{name}.xml")
        with Image.open(src / f"{name}.png") as im:
            image = im.convert("RGB")
        for split, x, y in tile_offsets(*image.size):
            out["jpeg"].append(jpeg(image.crop((x, y, x + TILE, y + TILE))))
            out["split"].append(split)
            out["source"].append(s)
            out["offset"].append((x, y))
            out["boxes"].append(boxes_in_tile(ann.boxes, x, y))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="deepforest/data folder")
    p.add_argument("--out", type=Path, default=DST)
    a = p.parse_args()
    t = cut(a.src)
    blobs = t["jpeg"]
    counts = [len(b) for b in t["boxes"]]
    np.savez_compressed(
        a.out,
        class_names=np.array(["tree"]),
        tile_size=np.array(TILE),
        source_names=np.array(SOURCES),
        jpeg=np.frombuffer(b"".join(blobs), np.uint8),
        jpeg_offsets=np.cumsum([0, *map(len, blobs)]).astype(np.int64),
        split=np.array(t["split"]),
        source=np.array(t["source"], np.int16),
        offset=np.array(t["offset"], np.int32),
        boxes=np.concatenate(t["boxes"]).astype(np.float32),
        labels=np.zeros(sum(counts), np.int64),
        box_offsets=np.cumsum([0, *counts]).astype(np.int64),
    )
    for split in ("train", "val", "test"):
        idx = [i for i, s in enumerate(t["split"]) if s == split]
        print(f"{split:5s}: {len(idx):3d} tiles, {sum(counts[i] for i in idx):4d} boxes")
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
