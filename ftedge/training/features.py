"""Cached backbone features: run the frozen backbone once, keep its outputs.

A frozen backbone in eval mode is a fixed function of the (unaugmented) image, so computing it
every epoch repeats identical work. Features are kept on the training device (RAM/VRAM), or in
``.npy`` files under ``--feature-cache-dir`` (memory-mapped) for datasets that do not fit.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


@torch.inference_mode()
def extract_features(
    backbone: nn.Module,
    loader: torch.utils.data.DataLoader,
    ctx: Any,
    name: str,
    cache_dir: str | None = None,
    show: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, F] float32, labels [N] int64) for every batch of ``loader``."""
    from tqdm.auto import tqdm

    backbone.eval()
    chunks: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    writer = None
    for x, y in tqdm(
        loader, desc=f"features ({name})", disable=not show, leave=False, file=sys.stderr
    ):
        x = x.to(ctx.device, non_blocking=True, memory_format=ctx.memory_format)
        with ctx.autocast():
            f = backbone(x).float()
        labels.append(y)
        if cache_dir is None:
            chunks.append(f)
        else:
            if writer is None:
                writer = _DiskWriter(Path(cache_dir), name, len(loader.dataset), f.shape[1])  # type: ignore[arg-type]
            writer.write(f.cpu().numpy())
    y_all = torch.cat(labels).to(ctx.device)
    if writer is not None:
        return torch.from_numpy(writer.finish()), y_all.cpu()
    return torch.cat(chunks), y_all


class _DiskWriter:
    """Append feature rows into a memory-mapped .npy file."""

    def __init__(self, root: Path, name: str, n: int, dim: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        tag = hashlib.sha256(f"{name}-{n}-{dim}".encode()).hexdigest()[:8]
        self.path = root / f"features-{name}-{tag}.npy"
        self.array = np.lib.format.open_memmap(
            self.path, mode="w+", dtype=np.float32, shape=(n, dim)
        )
        self.pos = 0

    def write(self, rows: np.ndarray) -> None:
        self.array[self.pos : self.pos + len(rows)] = rows
        self.pos += len(rows)

    def finish(self) -> np.ndarray:
        self.array.flush()
        return np.load(self.path, mmap_mode="r+")
