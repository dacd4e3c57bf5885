"""Accuracy and top-1 agreement of the fast preprocessing path, measured at export.

The test images go through the exact path (Pillow, identical to the training evaluation
transform) and through ``ftedge.runtime.fast_preprocess`` with every engine available here, twice:
as stored (small images are enlarged) and each centred in a 640x480 frame (shrunk, the camera
case); the FP32 ONNX classifies all of them. The numbers, with the exact path's accuracy on the
same images, go to ``reference.fast_preprocessing``; ``ftedge.runtime.load`` makes the fast path
the default only when ``ftedge.runtime.fast_preprocess.verified`` accepts them.

On the frames the exact path also classifies every frame moved one pixel sideways: how often
that changes its answer (``shift_agreement``) is the model's own sensitivity to the smallest
change a camera can make, the yardstick for the fast path's disagreements there.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from ftedge.export.verify import FP32_MAX_ABS_DIFF, EvalData, make_runner
from ftedge.runtime.manifest import FastPreprocessing, Manifest
from ftedge.runtime.preprocess import PreprocessSpec


def _logits(bundle_dir: Path, manifest: Manifest, x: np.ndarray) -> np.ndarray:
    fp32 = manifest.find("onnx", "fp32")
    assert fp32 is not None
    with make_runner(bundle_dir, fp32) as runner:
        name = next(iter(runner.input_metadata()))
        outs = [
            next(iter(runner.infer({name: x[i : i + 100]}).values())) for i in range(0, len(x), 100)
        ]
    return np.concatenate(outs).reshape(len(x), -1)


def _engines() -> list[str]:
    from ftedge.runtime.fast_preprocess import available_engine

    return list(dict.fromkeys([available_engine(), "pillow"]))


def in_frame(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` enlarged (Pillow bicubic) to fill ``height`` and centred in a ``width`` x
    ``height`` frame (edge pixels repeated sideways): a camera-size frame whose centre crop
    holds the whole picture, so both paths shrink it and must agree on the answer."""
    from PIL import Image

    h, w = image.shape[:2]
    side = max(1, round(w * height / h))
    big = np.asarray(Image.fromarray(image).resize((side, height), Image.Resampling.BICUBIC))
    left = max(0, (width - side) // 2)
    big = big[:, max(0, (side - width) // 2) :][:, :width]
    pad = ((0, 0), (left, width - left - big.shape[1]), (0, 0))
    return np.pad(big, pad, mode="edge")


def _crops(
    images: list[np.ndarray],
    make: Callable[[np.ndarray], np.ndarray] | None,
    spec: PreprocessSpec,
    shifted: bool,
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, list[np.ndarray]]]:
    """The exact path's crop of each frame (``make(image)``, or the image itself), of the frame
    moved one pixel (when ``shifted``), and each fast engine's crop, in order.

    Frames are spread over the CPU's cores: Pillow, OpenCV and numpy release the GIL, and this
    is most of the check's time. Each worker makes its frames itself (so at most one camera-size
    frame per worker is in memory) and has its own fast preprocessors (they reuse buffers).
    """
    from ftedge.runtime.fast_preprocess import FastPreprocessor
    from ftedge.runtime.preprocess import resize_crop, to_pil

    local = threading.local()

    def work(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
        f = make(image) if make is not None else image
        if not hasattr(local, "fast"):
            local.fast = {e: FastPreprocessor(spec, e) for e in _engines()}  # type: ignore[arg-type]
        exact = resize_crop(to_pil(f), spec)
        # the column that wraps round is the frame's repeated edge
        moved = resize_crop(to_pil(np.roll(f, 1, axis=1)), spec) if shifted else None
        return exact, moved, {e: pre.crop(f) for e, pre in local.fast.items()}

    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        done = list(pool.map(work, images))
    fast = {e: [d[2][e] for d in done] for e in _engines()}
    return [d[0] for d in done], [d[1] for d in done if d[1] is not None], fast


def _measure(
    bundle_dir: Path,
    manifest: Manifest,
    images: list[np.ndarray],
    labels: np.ndarray,
    where: str,
    known: tuple[np.ndarray, np.ndarray] | None = None,
    shifted: bool = False,
    make: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[FastPreprocessing]:
    """Exact vs fast path (each engine) on ``images``, or on the frames ``make`` builds from
    them: accuracy and top-1 agreement. ``known``: (crops, FP32 logits) already computed; when
    the exact crops are these very crops, their logits are reused instead of running the model
    again. ``shifted``: also the exact path's agreement with itself on each frame moved one
    pixel to the right (``shift_agreement``)."""
    from ftedge.runtime.fast_preprocess import FAST_PATH_VERSION, FastPreprocessor
    from ftedge.runtime.preprocess import normalize

    spec = manifest.spec
    exact_crops, shifted_crops, fast_crops = _crops(images, make, spec, shifted)
    exact_c = np.stack(exact_crops)
    exact_x = normalize(exact_c, spec)
    if known is not None and np.array_equal(exact_c, known[0]):
        exact_logits = known[1]
    else:
        exact_logits = _logits(bundle_dir, manifest, exact_x)
    exact = exact_logits.argmax(1)
    shift_agreement = None
    if shifted:
        moved = _logits(bundle_dir, manifest, normalize(np.stack(shifted_crops), spec))
        shift_agreement = float((moved.argmax(1) == exact).mean())
    measured = []
    for engine, crops in fast_crops.items():
        c = np.stack(crops)
        same = (c == exact_c).reshape(len(c), -1).all(axis=1)
        # The fast path's own arithmetic (x * a + b) on its crops, as it runs in the runtime.
        x = FastPreprocessor(spec, engine).normalize(c)  # type: ignore[arg-type]
        top = _fast_logits(bundle_dir, manifest, x, same, exact_logits).argmax(1)
        measured.append(
            FastPreprocessing(
                engine=engine,
                accuracy=float((top == labels).mean()),
                agreement=float((top == exact).mean()),
                images=len(top),
                exact_accuracy=float((exact == labels).mean()),
                frames=where,
                shift_agreement=shift_agreement,
                version=FAST_PATH_VERSION,
            )
        )
    return measured


def _fast_logits(
    bundle_dir: Path,
    manifest: Manifest,
    x: np.ndarray,
    same: np.ndarray,
    exact_logits: np.ndarray,
) -> np.ndarray:
    """The FP32 ONNX's logits of the fast path's inputs ``x``, run only where they can differ.

    A row whose uint8 crop equals the exact path's (``same``: its input differs only by the
    float rounding of a normalisation in another order, a few ulps) and whose exact answer
    leads by more than ``FP32_MAX_ABS_DIFF`` (no near-tie such rounding could flip) has the
    exact path's logits; every other row goes through the model.
    """
    top2 = np.sort(exact_logits, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > FP32_MAX_ABS_DIFF
    run = ~(same & clear)
    out = exact_logits.copy()
    if run.any():
        out[run] = _logits(bundle_dir, manifest, np.ascontiguousarray(x[run]))
    return out


def with_fast_path(bundle_dir: Path, manifest: Manifest, data: EvalData) -> Manifest:
    """``manifest`` with the fast path measured on the full test split (needs the dataset):
    the images as stored, and each centred in a camera-size frame (``VERIFY_FRAME``)."""
    from PIL import Image

    from ftedge.runtime.fast_preprocess import VERIFY_FRAME

    test = manifest.data.test_files()
    if data.source != "dataset" or test is None or manifest.find("onnx", "fp32") is None:
        return manifest
    frames = []
    for p, _ in test:
        with Image.open(p) as im:
            frames.append(np.asarray(im.convert("RGB")))
    labels = np.asarray(data.labels)
    known = (data.crops, data.fp32_outputs) if data.fp32_outputs is not None else None
    measured = _measure(bundle_dir, manifest, frames, labels, "test", known)
    where = "x".join(map(str, VERIFY_FRAME))
    big = functools.partial(in_frame, width=VERIFY_FRAME[0], height=VERIFY_FRAME[1])
    measured += _measure(bundle_dir, manifest, frames, labels, where, shifted=True, make=big)
    ref = replace(manifest.reference, fast_preprocessing=tuple(measured))
    return replace(manifest, reference=ref)
