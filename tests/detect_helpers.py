"""A synthetic multi-class detection set: coloured shapes on textured backgrounds, as YOLO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("square", "disc", "triangle")
COLOURS = ((230, 40, 40), (40, 200, 40), (40, 60, 230))


def shape_image(
    rng: np.random.Generator,
    width: int,
    height: int,
    max_objects: int = 3,
    sizes: tuple[int, int] = (16, 44),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HWC uint8 image, boxes (N, 4) xyxy, labels (N,)): non-overlapping shapes whose side is
    drawn from ``sizes``."""
    base = rng.integers(60, 200, size=3)
    noise = np.kron(rng.normal(0, 25, (height // 8 + 1, width // 8 + 1, 3)), np.ones((8, 8, 1)))
    img = base + noise[:height, :width] + rng.normal(0, 10, (height, width, 3))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    draw = ImageDraw.Draw(im)
    boxes: list[list[int]] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        s = int(rng.integers(*sizes))
        x, y = int(rng.integers(0, width - s)), int(rng.integers(0, height - s))
        if any(not (x + s < b[0] or b[2] < x or y + s < b[1] or b[3] < y) for b in boxes):
            continue
        c = int(rng.integers(0, len(CLASSES)))
        if c == 0:
            draw.rectangle([x, y, x + s, y + s], fill=COLOURS[c])
        elif c == 1:
            draw.ellipse([x, y, x + s, y + s], fill=COLOURS[c])
        else:
            draw.polygon([(x + s / 2, y), (x, y + s), (x + s, y + s)], fill=COLOURS[c])
        boxes.append([x, y, x + s + 1, y + s + 1])  # Pillow draws the end pixel too
        labels.append(c)
    return np.asarray(im), np.array(boxes, np.float32).reshape(-1, 4), np.array(labels)


def write_yolo_shapes(root: Path, counts: dict[str, int], size: int = 128, seed: int = 0) -> Path:
    """A pre-split YOLO folder (``images/<split>``, ``labels/<split>``, ``data.yaml``)."""
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, boxes, labels = shape_image(rng, size, size)
            Image.fromarray(img).save(root / "images" / split / f"{i:04d}.png")
            lines = []
            for (x1, y1, x2, y2), c in zip(boxes, labels, strict=True):
                cx, cy = (x1 + x2) / 2 / size, (y1 + y2) / 2 / size
                lines.append(f"{c} {cx:.6f} {cy:.6f} {(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}")
            (root / "labels" / split / f"{i:04d}.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    splits = "".join(f"{s}: images/{s}\n" for s in counts)
    (root / "data.yaml").write_text(f"path: .\n{splits}names:\n{names}\n")
    return root
