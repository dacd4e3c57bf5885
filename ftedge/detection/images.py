"""Opening detection images: sizes from the file header, EXIF orientation applied.

Boxes are drawn by annotation tools on the image as displayed, i.e. after the EXIF orientation
tag is applied (a phone photo stored landscape with "rotate 90" is labelled in portrait). So
sizes swap for the transposing orientations and pixels go through ``ImageOps.exif_transpose``.
Pillow is imported inside the functions: ``import ftedge.detection`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
_ORIENTATION = 0x0112
_TRANSPOSED = frozenset({5, 6, 7, 8})  # orientations that swap width and height


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and path.name[0] != "."


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden files skipped), sorted."""
    return sorted(p for p in folder.rglob("*") if is_image_file(p))


def image_size(path: str | Path, verify: bool = False) -> tuple[int, int] | None:
    """``(width, height)`` as displayed, from the header; None if the file is unreadable.

    ``verify`` also decodes the pixels (JPEGs at 1/8 scale), catching truncated files.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            # A PNG keeps EXIF after the pixel data: asking for it would decode the whole image.
            has_exif = im.format != "PNG" or "exif" in im.info
            orientation = im.getexif().get(_ORIENTATION, 1) if has_exif else 1
            if verify:
                if im.format == "JPEG":
                    im.draft("RGB", (max(1, w // 8), max(1, h // 8)))
                im.load()
    except Exception:  # Pillow raises many types for corrupt files
        return None
    return (h, w) if orientation in _TRANSPOSED else (w, h)


def image_sizes(
    paths: Sequence[Path], verify: bool = False, workers: int = 8
) -> list[tuple[int, int] | None]:
    """``image_size`` of many files, read in parallel (I/O bound)."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(lambda p: image_size(p, verify), paths))


def open_rgb(path: str | Path) -> Image.Image:
    """The image as displayed (EXIF orientation applied), as RGB, fully loaded."""
    from ftedge.runtime.images import open_rgb as _open

    return _open(path)
