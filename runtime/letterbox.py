"""Letterbox geometry: a frame of any size -> the detector's square input, and boxes back.

The frame is resized by one factor (its aspect ratio kept) so that it fits ``size`` x ``size``,
placed at the top-left corner, and the rest is filled with the normalisation mean (which becomes
zero after normalisation, so padding looks like "no signal" to the network). Top-left placement
makes the way back one division: ``box_in_frame = box_in_input / scale``. Training, export
verification and the runtime all use these functions, so boxes land on the same pixels.
Torch-free (numpy + Pillow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """Where a frame went inside the square input."""

    scale: float  # input pixels per frame pixel
    width: int  # resized frame width inside the input
    height: int

    def boxes_to_frame(self, boxes: np.ndarray, frame_w: int, frame_h: int) -> np.ndarray:
        """(N, 4) xyxy boxes in input pixels -> frame pixels, clipped to the frame."""
        out = boxes.astype(np.float32) / self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, frame_w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, frame_h)
        return out


def fit(frame_w: int, frame_h: int, size: int) -> Letterbox:
    """The letterbox of a ``frame_w`` x ``frame_h`` frame in a ``size`` square."""
    scale = min(size / frame_w, size / frame_h)
    w = max(1, min(size, round(frame_w * scale)))
    h = max(1, min(size, round(frame_h * scale)))
    return Letterbox(scale=scale, width=w, height=h)


def letterbox(
    rgb: np.ndarray, size: int, fill: tuple[int, int, int]
) -> tuple[np.ndarray, Letterbox]:
    """HWC uint8 frame -> (``size`` x ``size`` x 3 uint8 input, its ``Letterbox``)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    box = fit(w, h, size)
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[...] = np.asarray(fill, np.uint8)
    if (box.width, box.height) == (w, h):
        canvas[:h, :w] = rgb
    else:
        resized = Image.fromarray(rgb).resize((box.width, box.height), Image.Resampling.BILINEAR)
        canvas[: box.height, : box.width] = np.asarray(resized)
    return canvas, box


def fill_colour(mean: tuple[float, ...]) -> tuple[int, int, int]:
    """The uint8 colour that normalises to zero."""
    r, g, b = (int(round(m * 255)) for m in mean[:3])
    return (r, g, b)
