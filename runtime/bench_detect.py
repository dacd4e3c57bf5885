"""The detection part of a benchmark job: the letterboxed input, and the end-to-end step.

*compute* mode times inference on a batch already letterboxed and normalised (the same as for
classification, only the preprocessing differs). *end_to_end* mode times what a camera app
does per batch: decode each image file (Pillow), letterbox it into the square input
(``ftedge.runtime.letterbox``), normalise, stack, infer, then per image keep the cells above
the score threshold, run per-class NMS and map the boxes back to the image's pixels
(``ftedge.runtime.detect.select``), with fixed thresholds for every bundle (conf 0.25, the
default of bundles without their own, IoU 0.5, 100 objects).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ftedge.runtime.bench_inputs import InputInfo
from ftedge.runtime.bench_spec import Job
from ftedge.runtime.letterbox import Letterbox, letterbox
from ftedge.runtime.preprocess import PreprocessSpec, normalize
from ftedge.runtime.tasks import DEFAULT_CONF, DetectionOutput

# Fixed thresholds, the same for every bundle (not each bundle's own score threshold), so that
# end-to-end times compare across bundles.
CONF, IOU, MAX_DET = DEFAULT_CONF, 0.5, 100


def output_spec(job: Job) -> DetectionOutput:
    """The job's output names and letterbox fill (the manifest's detection output)."""
    from ftedge.runtime.schema_fields import Fields

    return DetectionOutput.from_fields(Fields(job.output, "output"))


def load_letterboxed(
    path: str, info: InputInfo, spec: PreprocessSpec, fill: tuple[int, int, int]
) -> tuple[np.ndarray, Letterbox, tuple[int, int]]:
    """One image file -> (CHW float32 letterboxed input, its letterbox, (width, height))."""
    from ftedge.runtime.images import read_rgb

    rgb = read_rgb(path)
    canvas, box = letterbox(rgb, info.height, fill)
    x = normalize(canvas, spec)
    return (x.transpose(1, 2, 0) if info.nhwc else x), box, (rgb.shape[1], rgb.shape[0])


def letterboxed_loader(
    job: Job, info: InputInfo, spec: PreprocessSpec
) -> Callable[[str], np.ndarray]:
    """``path -> model input`` for compute mode's in-place batch."""
    fill = output_spec(job).fill
    return lambda path: load_letterboxed(path, info, spec, fill)[0]


def end_to_end_step(
    runner: Any, job: Job, info: InputInfo, spec: PreprocessSpec, batch: int
) -> Callable[[], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """One timed call: decode + letterbox ``batch`` files, infer, NMS + boxes to image pixels."""
    from ftedge.runtime.detect import select

    out_spec = output_spec(job)
    infer = runner.infer
    images = job.images
    i = 0

    def end_to_end() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        nonlocal i
        paths = [images[(i + j) % len(images)] for j in range(batch)]
        i = (i + batch) % len(images)
        loaded = [load_letterboxed(p, info, spec, out_spec.fill) for p in paths]
        x = np.stack([x for x, _, _ in loaded])
        out = infer({info.name: x}, check=False)
        boxes = np.asarray(out[out_spec.boxes], np.float32)
        scores = np.asarray(out[out_spec.scores], np.float32)
        found = []
        for k, (_, box, (w, h)) in enumerate(loaded):
            b, s, c = select(boxes[k], scores[k], conf=CONF, iou=IOU, max_det=MAX_DET)
            found.append((box.boxes_to_frame(b, w, h), s, c))
        return found

    return end_to_end
