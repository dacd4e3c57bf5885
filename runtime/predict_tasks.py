"""The task-specific part of ``ftedge predict``: what one frame's result is, how it is drawn,
printed and serialised. The loop, frame sources and writers (``ftedge.runtime.predict``,
``frame_sources``, ``predict_writers``) are shared by every task.

- classification: ``ClassifyFrames`` -> a ``Prediction`` (top-k), drawn as text top-left;
- detection: ``DetectFrames`` -> ``FrameDetections`` (boxes in frame pixels), drawn as boxes
  with label and score, printed as per-class counts (``tree: 7  car: 1``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ftedge.runtime.classifier import Classifier, Prediction
from ftedge.runtime.detect import Detection, Detector, check_detect_options
from ftedge.runtime.loaded import LoadedModel
from ftedge.runtime.preprocess import ColorOrder


@dataclass(frozen=True)
class FrameDetections:
    """The objects found in one frame, best first, boxes in the frame's pixels."""

    detections: tuple[Detection, ...]

    def counts(self) -> dict[str, int]:
        """Objects per class, most frequent first (ties in label order of first appearance)."""
        return dict(Counter(d.label for d in self.detections).most_common())

    def to_dict(self) -> dict[str, Any]:
        return {
            "detections": [d.to_dict() for d in self.detections],
            "counts": self.counts(),
        }

    def __str__(self) -> str:
        counts = self.counts()
        return "  ".join(f"{k}: {n}" for k, n in counts.items()) if counts else "no objects"


FrameOutput = Prediction | FrameDetections


class FrameTask(Protocol):
    """One task's per-frame step: run the model on a frame, draw its result."""

    model: LoadedModel  # what the summary names: artifact, backend, device

    def run(self, image: np.ndarray, color: ColorOrder) -> FrameOutput: ...

    def annotate(self, image: np.ndarray, output: FrameOutput, color: ColorOrder) -> np.ndarray: ...

    def timing(self) -> dict[str, float]: ...


class ClassifyFrames:
    """Top-k classes per frame."""

    def __init__(self, model: Classifier, topk: int) -> None:
        self.model: LoadedModel = model
        self._clf = model
        self.topk = topk

    def run(self, image: np.ndarray, color: ColorOrder) -> FrameOutput:
        pred = self._clf.classify(image, topk=self.topk, color=color)
        assert isinstance(pred, Prediction)
        return pred

    def annotate(self, image: np.ndarray, output: FrameOutput, color: ColorOrder) -> np.ndarray:
        from ftedge.runtime.predict_writers import annotate

        assert isinstance(output, Prediction)
        return annotate(image, output, color)

    def timing(self) -> dict[str, float]:
        return self._clf.last_timing


class DetectFrames:
    """Objects per frame: ``Detector.detect`` with the run's thresholds."""

    def __init__(self, model: Detector, conf: float | None, iou: float, max_det: int) -> None:
        check_detect_options(conf, iou, max_det)
        self.model: LoadedModel = model
        self._det = model
        self.conf, self.iou, self.max_det = conf, iou, max_det

    def run(self, image: np.ndarray, color: ColorOrder) -> FrameOutput:
        found = self._det.detect(
            image, conf=self.conf, iou=self.iou, max_det=self.max_det, color=color
        )
        return FrameDetections(tuple(found))

    def annotate(self, image: np.ndarray, output: FrameOutput, color: ColorOrder) -> np.ndarray:
        from ftedge.runtime.predict_draw import draw_detections

        assert isinstance(output, FrameDetections)
        return draw_detections(image, output.detections, color)

    def timing(self) -> dict[str, float]:
        return self._det.last_timing


def frame_task(
    model: LoadedModel, *, topk: int, conf: float | None, iou: float, max_det: int
) -> FrameTask:
    """The per-frame step for ``model``'s task."""
    if isinstance(model, Detector):
        return DetectFrames(model, conf, iou, max_det)
    assert isinstance(model, Classifier)
    return ClassifyFrames(model, topk)
