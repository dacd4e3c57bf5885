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
that no tile touches; the val and test bands are each ~20% of the side (whole tiles). The two
400 x 400 images are too small for three bands and go to train whole.

Stored: the val and test bands as tiles on an even grid that covers each band (neighbours may
overlap or leave a few pixels out), with their boxes; the train bands whole (one JPEG each, with
every box that touches them, unclipped), so that ``ftedge.detection.default`` can cut them into
overlapping train tiles (every ``TRAIN_STEP`` px) when the data is materialised, without
storing each pixel many times. The split, source image and offset of every tile and train
region are stored so that the disjointness can be checked. The band and tile rules live in
``ftedge.detection.tiling``. The script prints the per-split tile and box counts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from ftedge.detection.tiling import TILE, band_rects, boxes_in_tile, jpeg_bytes, tile_offsets
from ftedge.detection.voc import parse_voc_xml

DST = Path(__file__).resolve().parents[1] / "ftedge" / "detection" / "assets" / "trees.npz"
SOURCES = (
    "OSBS_029",
    "SOAP_061",
    "2019_YELL_2_541000_4977000_image_crop",
    "2019_YELL_2_528000_4978000_image_crop2",
)
QUALITY = 85  # val and test tiles
REGION_QUALITY = 92  # train regions: their tiles are encoded once more when materialised


def touching(boxes: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """Boxes that overlap ``rect`` (x, y, w, h), unclipped, in its pixels."""
    x, y, w, h = rect
    b = boxes - np.array([x, y, x, y], np.float64)
    hit = (b[:, 0] < w) & (b[:, 2] > 0) & (b[:, 1] < h) & (b[:, 3] > 0)
    return b[hit].astype(np.float32)


def cut(src: Path) -> tuple[dict[str, list], dict[str, list]]:
    """(val/test tiles, train regions) of every source image."""
    tiles: dict[str, list] = {k: [] for k in ("jpeg", "split", "source", "offset", "boxes")}
    regions: dict[str, list] = {k: [] for k in ("jpeg", "source", "rect", "boxes")}
    for s, name in enumerate(SOURCES):
        ann = parse_voc_xml(src / f"{name}.xml")
        with Image.open(src / f"{name}.png") as im:
            image = im.convert("RGB")
        for split, rect in band_rects(*image.size).items():
            x0, y0, w, h = rect
            if split == "train":
                regions["jpeg"].append(
                    jpeg_bytes(image.crop((x0, y0, x0 + w, y0 + h)), REGION_QUALITY)
                )
                regions["source"].append(s)
                regions["rect"].append(rect)
                regions["boxes"].append(touching(ann.boxes, rect))
                continue
            for x, y in tile_offsets(rect):
                tiles["jpeg"].append(jpeg_bytes(image.crop((x, y, x + TILE, y + TILE)), QUALITY))
                tiles["split"].append(split)
                tiles["source"].append(s)
                tiles["offset"].append((x, y))
                tiles["boxes"].append(boxes_in_tile(ann.boxes, x, y)[0])
    return tiles, regions


def _packed(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    return np.frombuffer(b"".join(blobs), np.uint8), np.cumsum([0, *map(len, blobs)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="deepforest/data folder")
    p.add_argument("--out", type=Path, default=DST)
    a = p.parse_args()
    t, r = cut(a.src)
    counts = [len(b) for b in t["boxes"]]
    region_counts = [len(b) for b in r["boxes"]]
    jpeg_bytes, jpeg_offsets = _packed(t["jpeg"])
    region_bytes, region_offsets = _packed(r["jpeg"])
    np.savez_compressed(
        a.out,
        class_names=np.array(["tree"]),
        tile_size=np.array(TILE),
        source_names=np.array(SOURCES),
        jpeg=jpeg_bytes,
        jpeg_offsets=jpeg_offsets.astype(np.int64),
        split=np.array(t["split"]),
        source=np.array(t["source"], np.int16),
        offset=np.array(t["offset"], np.int32),
        boxes=np.concatenate(t["boxes"]).astype(np.float32),
        labels=np.zeros(sum(counts), np.int64),
        box_offsets=np.cumsum([0, *counts]).astype(np.int64),
        region_jpeg=region_bytes,
        region_jpeg_offsets=region_offsets.astype(np.int64),
        region_source=np.array(r["source"], np.int16),
        region_rect=np.array(r["rect"], np.int32),
        region_boxes=np.concatenate(r["boxes"]).astype(np.float32),
        region_labels=np.zeros(sum(region_counts), np.int64),
        region_box_offsets=np.cumsum([0, *region_counts]).astype(np.int64),
    )
    for split in ("val", "test"):
        idx = [i for i, s in enumerate(t["split"]) if s == split]
        print(f"{split:5s}: {len(idx):3d} tiles, {sum(counts[i] for i in idx):4d} boxes")
    print(f"train: {len(r['rect'])} regions, {sum(region_counts)} boxes touching them")
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
