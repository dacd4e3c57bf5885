"""Detections drawn on a frame: one coloured box per object, its label and score above it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ftedge.runtime.detect import Detection
from ftedge.runtime.preprocess import ColorOrder

# Distinct, saturated RGB colours; class i gets PALETTE[i % len(PALETTE)].
PALETTE = (
    (255, 56, 56),
    (72, 249, 10),
    (0, 194, 255),
    (255, 178, 29),
    (207, 210, 49),
    (146, 204, 23),
    (61, 219, 134),
    (26, 147, 52),
    (0, 212, 187),
    (44, 153, 168),
    (52, 69, 147),
    (100, 115, 255),
    (132, 56, 255),
    (203, 56, 255),
    (255, 149, 200),
    (255, 55, 199),
)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def draw_detections(
    image: np.ndarray,
    detections: Sequence[Detection],
    color: ColorOrder = "rgb",
) -> np.ndarray:
    """A copy of ``image`` (HWC uint8, in ``color`` order) with every detection's box and
    ``label score`` drawn, one colour per class index."""
    from PIL import Image, ImageDraw

    rgb = image[:, :, ::-1] if color == "bgr" else image
    if rgb.ndim == 2:
        rgb = rgb[:, :, None]
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    canvas = Image.fromarray(np.ascontiguousarray(rgb[:, :, :3]), "RGB")
    short = min(canvas.size)
    font = _font(max(10, short // 40))
    width = max(1, short // 300 + 1)
    draw = ImageDraw.Draw(canvas)
    for d in detections:
        rgb_colour = PALETTE[d.index % len(PALETTE)]
        x1, y1, x2, y2 = d.box
        draw.rectangle((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), outline=rgb_colour, width=width)
        text = f"{d.label} {d.score:.2f}"
        tb = draw.textbbox((0, 0), text, font=font)
        th = tb[3] - tb[1] + 2
        # Above the box when there is room, else just inside its top edge.
        ty = y1 - th - 1 if y1 - th - 1 >= 0 else y1 + 1
        draw.rectangle((x1, ty, x1 + tb[2] - tb[0] + 3, ty + th), fill=rgb_colour)
        draw.text((x1 + 1, ty - tb[1] + 1), text, fill=(0, 0, 0), font=font)
    out = np.asarray(canvas)
    return np.ascontiguousarray(out[:, :, ::-1]) if color == "bgr" else out
