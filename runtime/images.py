"""Opening an image file the one way ftedge does everywhere: train, predict, export, detection.

- EXIF orientation is applied (``ImageOps.exif_transpose``): a phone photo stored landscape
  with "rotate 90" is seen, trained on and predicted upright, exactly as it is displayed.
- 16-bit and 32-bit integer images are scaled to 8 bits (``convert("RGB")`` would clip them,
  turning almost every pixel white); float images are taken as 0..1.
- Pillow's decompression-bomb limit stays on: a too-large image is a one-line ``FtedgeError``
  (a folder skips and counts it, like any unreadable file), never a traceback.

Training (``ftedge.data``), ``ftedge predict``, export calibration and verification
(``ftedge.runtime.preprocess``) and detection all call ``open_rgb``, so the same file gives the
same pixels at every stage. Pillow is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ftedge.errors import FtedgeError

if TYPE_CHECKING:
    from PIL import Image


def _to_8bit(im: Image.Image) -> Image.Image:
    """Wide integer and float greyscale modes as 8-bit 'L' (scaled, not clipped)."""
    from PIL import Image

    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.int64)
        # 'I' holds 16-bit PNG/TIFF data in most Pillow versions; wider values scale by 2^24.
        shift = 8 if a.size == 0 or a.max() < 65536 else 24
        return Image.fromarray(np.clip(a >> shift, 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        f = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        return Image.fromarray((np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "L")
    return im


def open_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` as displayed, 8-bit RGB, fully loaded; one-line error otherwise."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            upright = ImageOps.exif_transpose(im)
            return _to_8bit(upright if upright is not None else im).convert("RGB")
    except Image.DecompressionBombError as e:
        raise FtedgeError(f"image {path} is too large to open safely ({e})") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        # SyntaxError: Pillow's parsers use it for malformed headers.
        raise FtedgeError(f"cannot read image {path}: {e}") from None


def read_rgb(path: str | Path) -> np.ndarray:
    """``open_rgb`` as an HWC uint8 array."""
    return np.asarray(open_rgb(path))
