"""Accuracy and top-1 agreement of the fast preprocessing path, measured at export.

The test images go through the exact path (Pillow, identical to the training evaluation
transform: the verification crops) and through ``ftedge.runtime.fast_preprocess`` with every
engine available here; the FP32 ONNX classifies both. The numbers go to
``reference.fast_preprocessing``, which ``ftedge.runtime.load`` reads to decide whether the fast
path may be used.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ftedge.export.verify import EvalData, make_runner
from ftedge.runtime.manifest import FastPreprocessing, Manifest


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


def with_fast_path(bundle_dir: Path, manifest: Manifest, data: EvalData) -> Manifest:
    """``manifest`` with the fast path measured on the full test split (needs the dataset)."""
    from PIL import Image

    from ftedge.runtime.fast_preprocess import FastPreprocessor

    test = manifest.data.test_files()
    if data.source != "dataset" or test is None or manifest.find("onnx", "fp32") is None:
        return manifest
    frames = []
    for p, _ in test:
        with Image.open(p) as im:
            frames.append(np.asarray(im.convert("RGB")))
    exact = _logits(bundle_dir, manifest, data.images(manifest)).argmax(1)
    measured = []
    for engine in _engines():
        fast = FastPreprocessor(manifest.spec, engine)  # type: ignore[arg-type]
        x = fast.normalize(np.stack([fast.crop(f) for f in frames]))
        top = _logits(bundle_dir, manifest, x).argmax(1)
        measured.append(
            FastPreprocessing(
                engine=engine,
                accuracy=float((top == data.labels).mean()),
                agreement=float((top == exact).mean()),
                images=len(top),
            )
        )
    ref = replace(manifest.reference, fast_preprocessing=tuple(measured))
    return replace(manifest, reference=ref)
