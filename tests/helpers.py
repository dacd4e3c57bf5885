"""Helpers for tests: small real datasets and runs on disk."""

from __future__ import annotations

import shutil
from pathlib import Path


def subset_image_folder(
    src: Path, dest: Path, *, classes: list[str], per_split: dict[str, int]
) -> Path:
    """Copy the first N images per class and split of an image folder."""
    for split, n in per_split.items():
        for c in classes:
            files = sorted((src / split / c).iterdir())[:n]
            (dest / split / c).mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy(f, dest / split / c / f.name)
    return dest


def make_tiny_run(data: Path, out: Path, **overrides: object) -> Path:
    """Train a real (small, fast) run with the library API and return its directory."""
    from ftedge.config import TrainConfig
    from ftedge.training.loop import train

    cfg = TrainConfig(
        **{
            "data": str(data),
            "out": str(out),
            "name": "tiny",
            "epochs": 8,
            "image_size": 64,
            "batch_size": 16,
            "lr": 1e-2,
            "workers": 0,
            **overrides,  # type: ignore[arg-type]
        }
    )
    return train(cfg).run_dir
