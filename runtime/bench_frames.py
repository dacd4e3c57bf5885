"""End-to-end benchmark mode on camera frames: in-memory BGR frames of one size (``ftedge
benchmark --frames 640x480``) go through the same ``Classifier`` code as a camera app (the
preprocessing path ``load()`` would pick, or the one ``--preprocessing`` names), inference and
top-k. No decoding: a camera hands over decoded frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.runtime.bench_spec import Job


def parse_frame_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (640, 480)."""
    parts = text.lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise FtedgeError(f"frame size must be WIDTHxHEIGHT (e.g. 640x480), got {text!r}") from None
    if not (0 < w <= 16384 and 0 < h <= 16384):
        raise FtedgeError(f"frame size must be between 1x1 and 16384x16384, got {text!r}")
    return w, h


@dataclass
class FrameStep:
    """One timed end-to-end call: ``batch`` frames -> top-k, through a ``Classifier``; each
    call's own split (``Classifier.last_timing``: preprocessing, inference ms) is kept in
    ``split`` for the report."""

    classifier: Any
    frames: list[np.ndarray]
    batch: int
    k: int
    i: int = 0
    split: list[tuple[float, float]] = field(default_factory=list)

    @property
    def preprocessing(self) -> str:
        return str(self.classifier.preprocessing)

    def __call__(self) -> Any:
        n = len(self.frames)
        if self.batch == 1:
            frame = self.frames[self.i]
            self.i = (self.i + 1) % n
            out = self.classifier.classify(frame, self.k, "bgr")
        else:
            batch = [self.frames[(self.i + j) % n] for j in range(self.batch)]
            self.i = (self.i + self.batch) % n
            out = self.classifier.classify(batch, self.k, "bgr")
        timing = self.classifier.last_timing
        self.split.append((timing["preprocess_ms"], timing["infer_ms"]))
        return out


def split_ms(splits: list[tuple[float, float]]) -> dict[str, float] | None:
    """Medians of the calls' own preprocessing and inference times (ms), or None."""
    if not splits:
        return None
    pre, infer = np.median(np.asarray(splits), axis=0)
    return {"preprocess": float(pre), "inference": float(infer)}


def _artifact(job: Job, manifest: Any, bundle_dir: Path) -> Any:
    from ftedge.runtime.manifest import Artifact
    from ftedge.runtime.tasks import ClassificationOutput

    if job.backend == "torch":
        return Artifact(
            format="torch", precision="fp32", path=job.model_path, output=ClassificationOutput()
        )
    target = Path(job.model_path).resolve()
    for a in manifest.artifacts:
        if (bundle_dir / a.path).resolve() == target:
            return a
    raise FtedgeError(f"{job.label}: {job.model_path} is not an artifact of {bundle_dir}")


def frame_step(
    runner: Any, job: Job, size: tuple[int, int], batch: int, k: int, preprocessing: str
) -> FrameStep:
    """The timed call for ``job`` on ``size`` BGR frames (a classification bundle's job)."""
    from ftedge.runtime.bench_inputs import synthetic_frames
    from ftedge.runtime.classifier import Classifier
    from ftedge.runtime.manifest import Manifest

    if job.bundle_dir is None or job.task != "classification":
        raise FtedgeError("--frames needs a classification bundle (its preprocessing and labels)")
    bundle_dir = Path(job.bundle_dir)
    manifest = Manifest.load(bundle_dir)
    art = _artifact(job, manifest, bundle_dir)
    clf = Classifier(runner, art, manifest, bundle_dir, backend=job.backend)
    clf.set_preprocessing(preprocessing)
    return FrameStep(clf, synthetic_frames(8, *size), batch, k)
