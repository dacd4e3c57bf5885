"""Verifying a detection artifact: box parity with PyTorch, detection agreement, test mAP
through the runtime's own path (decode in the graph, then ``ftedge.runtime.detect.select``:
threshold + per-class NMS), and the mAP gate of reduced-precision artifacts.

``parity.max_abs_diff`` is the largest box-corner difference in input pixels over the cells
that score above 0.05 in PyTorch, and ``parity.top1_agreement`` the detection agreement: of the
final detections (score >= 0.25, after NMS) of the artifact and of PyTorch over the test split,
the fraction that pair up one to one with a detection of the other (same class, IoU >= 0.5),
2 x pairs / (ours + theirs). It answers "does the app see the same objects after the switch?";
corners moving by a pixel do not count against it. FP32 must match PyTorch's boxes within
``MAX_BOX_DIFF_PX``; FP16 / INT8 are gated on the mAP drop (agreement recorded, not gated).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.runtime.manifest import Artifact, Parity
from ftedge.runtime.tasks import DEFAULT_CONF, Gate

MAX_BOX_DIFF_PX = 0.5  # an FP32 artifact's boxes must match PyTorch's this closely


@dataclass(frozen=True)
class DetectionReference:
    """The test split letterboxed, its true boxes, and PyTorch's outputs on it."""

    images: np.ndarray  # (N, 3, S, S) float32 network inputs
    boxes: list[np.ndarray]  # true boxes, input pixels
    labels: list[np.ndarray]
    ref_boxes: np.ndarray  # (N, P, 4)
    ref_scores: np.ndarray  # (N, P, K)


def outputs(
    path: Path, backend: str, images: np.ndarray, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """An artifact's boxes and scores on every test image (OpenVINO pinned to f32)."""
    from ftedge.runtime.backends import get_backend

    opts: dict[str, Any] = {"precision": "f32"} if backend == "openvino" else {}
    runner = get_backend(backend).create_runner(str(path), device=device, **opts)
    boxes, scores = [], []
    with runner:
        for i in range(0, len(images), 16):
            out = runner.infer({"input": images[i : i + 16]})
            boxes.append(out["boxes"])
            scores.append(out["scores"])
    return np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32)


def _final(boxes: np.ndarray, scores: np.ndarray, conf: float) -> list[Any]:
    from ftedge.runtime.detect import select

    return [
        select(b, s, conf=conf, iou=0.5, max_det=100) for b, s in zip(boxes, scores, strict=True)
    ]


AGREE_IOU = 0.5  # two detections of the same class are "the same object" from this IoU on


def _pairs(a: Any, b: Any) -> int:
    """One image: detections of ``a`` paired one to one with same-class detections of ``b`` at
    IoU >= ``AGREE_IOU`` (greedy, highest IoU first)."""
    from ftedge.runtime.detect import pairwise_iou

    n = 0
    for c in np.intersect1d(a[2], b[2]):
        iou = pairwise_iou(a[0][a[2] == c], b[0][b[2] == c])
        while iou.size and iou.max() >= AGREE_IOU:
            i, j = np.unravel_index(int(iou.argmax()), iou.shape)
            iou[i, :], iou[:, j] = -1.0, -1.0
            n += 1
    return n


def agreement(ours: list[Any], theirs: list[Any]) -> float:
    """2 x paired detections / (ours + theirs) over all images (1.0 when neither finds any)."""
    total = sum(len(a[0]) + len(b[0]) for a, b in zip(ours, theirs, strict=True))
    pairs = sum(_pairs(a, b) for a, b in zip(ours, theirs, strict=True))
    return 1.0 if total == 0 else 2.0 * pairs / total


def map_of(
    boxes: np.ndarray, scores: np.ndarray, ref: DetectionReference, names: list[str]
) -> float:
    """Test mAP@[.5:.95] of raw outputs through the runtime's decode + NMS path."""
    from ftedge.detection.metrics import evaluate_detections

    gt = list(zip(ref.boxes, ref.labels, strict=True))
    return float(evaluate_detections(gt, _final(boxes, scores, 0.05), names).map)


def verify(
    art: Artifact,
    boxes: np.ndarray,
    scores: np.ndarray,
    ref: DetectionReference,
    names: list[str],
    ref_map: float,
    max_drop: float | None = None,
) -> Artifact:
    """The artifact with parity, mAP and status filled in.

    FP32 must match PyTorch's boxes; any other precision must lose at most ``max_drop`` mAP
    points (recorded as ``gate``) when a budget is given.
    """
    live = ref.ref_scores.max(-1) > 0.05
    box_diff = float(np.abs(boxes - ref.ref_boxes)[live].max()) if live.any() else 0.0
    ours = _final(boxes, scores, DEFAULT_CONF)
    theirs = _final(ref.ref_boxes, ref.ref_scores, DEFAULT_CONF)
    agree = agreement(ours, theirs)
    m = map_of(boxes, scores, ref, names)
    drop = round((ref_map - m) * 100, 4)
    parity = Parity(
        box_diff, agree, float(np.abs(scores - ref.ref_scores).max()), "probabilities", len(boxes)
    )
    problems = []
    gate = None
    if art.precision == "fp32":
        if box_diff > MAX_BOX_DIFF_PX:
            problems.append(f"box difference {box_diff:.3f} px > {MAX_BOX_DIFF_PX} px")
    elif max_drop is not None:
        gate = Gate(max_drop=max_drop, passed=drop <= max_drop)
        if not gate.passed:
            problems.append(f"mAP drop {drop:.2f} pt > budget {max_drop:.2f} pt")
    from ftedge.export.verify import verdict

    return verdict(art, problems, parity=parity, accuracy=m, accuracy_drop=drop, gate=gate)


@dataclass(frozen=True)
class DetectionCheck:
    """Everything an artifact is verified against: ``check(art, backend)`` runs it on the test
    split and returns it verified (what the INT8 searches call after each attempt)."""

    bundle_dir: Path
    ref: DetectionReference
    names: list[str]
    ref_map: float
    max_drop: float

    def check(self, art: Artifact, backend: str, device: str = "cpu") -> Artifact:
        """``art`` (in ``bundle_dir``) run with ``backend`` on the test split and verified."""
        boxes, scores = outputs(self.bundle_dir / art.path, backend, self.ref.images, device)
        return verify(art, boxes, scores, self.ref, self.names, self.ref_map, self.max_drop)
