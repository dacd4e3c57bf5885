"""The inputs a benchmark job feeds its model: what the model's input looks like, a batch that is
already in place (compute mode), decoded + preprocessed image files (end-to-end mode), and
camera-like JPEGs when no images are available."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.runtime.bench_spec import Job
from ftedge.runtime.preprocess import PreprocessSpec, load_uint8_crop, preprocess_file


@dataclass(frozen=True)
class InputInfo:
    """The model's single image input, as the runner reports it."""

    name: str
    dtype: np.dtype[Any]
    nhwc: bool
    batch_dim: int  # -1 dynamic
    height: int
    width: int
    color: str  # rgb | bgr (uint8 inputs)


def input_info(runner: Any, job: Job) -> InputInfo:
    """The runner's one 4-D image input; its layout from the manifest, else from the shape."""
    meta = runner.input_metadata()
    if len(meta) != 1:
        raise FtedgeError(f"{job.label}: expected one model input, found {sorted(meta)}")
    m = next(iter(meta.values()))
    shape = list(m.shape)
    if len(shape) != 4:
        raise FtedgeError(f"{job.label}: expected a 4-D image input, got shape {shape}")
    layout = str(job.input.get("layout", "")).upper()
    nhwc = layout == "NHWC" or (not layout and shape[3] in (1, 3) and shape[1] not in (1, 3))
    spec = PreprocessSpec.from_dict(job.preprocessing) if job.preprocessing else None
    h, w = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
    height = h if isinstance(h, int) and h > 0 else (spec.height if spec else 224)
    width = w if isinstance(w, int) and w > 0 else (spec.width if spec else 224)
    b = shape[0] if isinstance(shape[0], int) else -1
    return InputInfo(m.name, m.dtype, nhwc, b, height, width, str(job.input.get("color", "rgb")))


def spec_for(job: Job, info: InputInfo) -> PreprocessSpec:
    """The bundle's preprocessing, or a plain resize to the model's input size."""
    if job.preprocessing:
        return PreprocessSpec.from_dict(job.preprocessing)
    return PreprocessSpec(input_size=(3, info.height, info.width))


def load_image(path: str, info: InputInfo, spec: PreprocessSpec) -> np.ndarray:
    """Decode + preprocess one image file into the model's per-image input layout."""
    if info.dtype == np.uint8:  # baked preprocessing: the model takes the cropped uint8 frame
        img = load_uint8_crop(path, spec)
        if info.color == "bgr":
            img = img[:, :, ::-1]
        return img if info.nhwc else img.transpose(2, 0, 1)
    x = preprocess_file(path, spec)  # CHW float32
    return x.transpose(1, 2, 0) if info.nhwc else x


def compute_input(job: Job, info: InputInfo, batch: int, spec: PreprocessSpec) -> np.ndarray:
    """A batch already in place: real preprocessed test images when available, else random.
    Detection models get the images letterboxed (``ftedge.runtime.bench_detect``)."""
    if job.images:
        load: Callable[[str], np.ndarray] = functools.partial(load_image, info=info, spec=spec)
        if job.task == "detection":
            from ftedge.runtime.bench_detect import letterboxed_loader

            load = letterboxed_loader(job, info, spec)
        imgs = [load(job.images[i % len(job.images)]) for i in range(batch)]
        return np.ascontiguousarray(np.stack(imgs).astype(info.dtype, copy=False))
    rng = np.random.default_rng(0)
    shape = (
        (batch, info.height, info.width, 3) if info.nhwc else (batch, 3, info.height, info.width)
    )
    if info.dtype == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.standard_normal(shape).astype(info.dtype)


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores per row, best first."""
    k = min(k, scores.shape[-1])
    idx = np.argpartition(-scores, k - 1, axis=-1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, idx, axis=-1), axis=-1)
    return np.take_along_axis(idx, order, axis=-1)


def synthetic_frames(n: int, width: int = 640, height: int = 480) -> list[np.ndarray]:
    """Camera-like HWC uint8 frames: smooth gradients plus sensor noise (any channel order)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(n):
        # smooth gradients + noise compress like photos, unlike pure noise
        base = np.stack([(xx * (i + 1)) % 256, (yy * 2) % 256, (xx + yy) % 256], axis=-1)
        frames.append(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
    return frames


def synthetic_images(d: Path, n: int) -> list[str]:
    """Camera-like JPEGs (640x480) in ``d`` for end-to-end runs when no images are available."""
    from PIL import Image

    paths = []
    for i, img in enumerate(synthetic_frames(n)):
        p = d / f"synthetic_{i}.jpg"
        Image.fromarray(img).save(p, quality=90)
        paths.append(str(p))
    return paths
