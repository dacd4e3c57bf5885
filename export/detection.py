"""Detection bundles: a detection run -> ONNX FP32 (decoded boxes + scores in the graph),
verified against PyTorch (box and score parity) and scored by COCO mAP through the runtime's
own path (letterbox, decode, per-class NMS), torch-free after the ONNX step.

Also makes OpenVINO IR FP32 from the same ONNX when OpenVINO is installed. Every artifact's
``accuracy`` is its test mAP@[.5:.95]; ``accuracy_drop`` is in mAP points against PyTorch;
``parity.max_abs_diff`` is the largest box-corner difference in input pixels over the cells
that score above 0.05, and ``parity.top1_agreement`` the fraction of test images whose final
detections (score >= 0.25) match PyTorch's one to one (same class, corners within 0.5 px).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.runtime.manifest import Artifact, InputSpec, Manifest, Parity, Provenance, Reference
from ftedge.runtime.tasks import DetectionOutput

MAX_BOX_DIFF_PX = 0.5  # an FP32 artifact's boxes must match PyTorch's this closely


@dataclass(frozen=True)
class DetectionReference:
    """The test split letterboxed, its true boxes, and PyTorch's outputs on it."""

    images: np.ndarray  # (N, 3, S, S) float32 network inputs
    boxes: list[np.ndarray]  # true boxes, input pixels
    labels: list[np.ndarray]
    ref_boxes: np.ndarray  # (N, P, 4)
    ref_scores: np.ndarray  # (N, P, K)


def is_detection_run(source: Path) -> bool:
    """A run directory (or its best.json) written by detection training."""
    side = source / "best.json" if source.is_dir() else source
    try:
        return json.loads(side.read_text()).get("task") == "detection"
    except (OSError, ValueError, AttributeError):
        return False


def _load_detector(run: Path) -> tuple[Any, Any]:
    from ftedge.detection.checkpoint import read_detection_meta
    from ftedge.detection.model import DetectionLayers, Detector, MultiScaleBackbone
    from ftedge.files import sha256_file
    from ftedge.models.registry import create_backbone, read_state_dict

    meta = read_detection_meta(run / "best.json")
    weights = run / meta.weights
    if not weights.is_file() or sha256_file(weights) != meta.weights_sha256:
        raise FtedgeError(f"checkpoint weights {weights} are missing or do not match their sha256")
    model, _ = create_backbone(meta.backbone, pretrained=False)
    det = Detector(MultiScaleBackbone(model), DetectionLayers(meta.detector))
    det.load_state_dict(read_state_dict(weights))
    return det.eval(), meta


def _reference(det: Any, meta: Any) -> DetectionReference:
    import torch

    from ftedge.detection import load_detection_data, materialise_default_detection_data
    from ftedge.detection.features import load_inputs, normalise
    from ftedge.detection.model import ExportDetector

    cfg = meta.config
    root = cfg.get("data") or materialise_default_detection_data()
    data = load_detection_data(
        root, val_fraction=cfg["val_fraction"], test_fraction=cfg["test_fraction"], seed=cfg["seed"]
    )
    inputs = load_inputs(data.test, meta.input_size, meta.preprocessing)
    x = normalise(inputs.images, meta.preprocessing)
    net = ExportDetector(det, meta.input_size, meta.input_size).eval()
    with torch.inference_mode():
        outs = [net(x[i : i + 16]) for i in range(0, len(x), 16)]
    return DetectionReference(
        x.numpy(),
        inputs.boxes,
        inputs.labels,
        torch.cat([o[0] for o in outs]).numpy(),
        torch.cat([o[1] for o in outs]).numpy(),
    )


def _export_onnx(det: Any, size: int, path: Path) -> None:
    from ftedge.detection.model import ExportDetector
    from ftedge.export.onnx_export import export_onnx

    net = ExportDetector(det, size, size).eval()
    export_onnx(net, path, (3, size, size), output_names=("boxes", "scores"))


# -- verification -----------------------------------------------------------------------------
def _outputs(path: Path, backend: str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An artifact's boxes and scores on every test image (OpenVINO pinned to f32)."""
    from ftedge.runtime.backends import get_backend

    opts: dict[str, Any] = {"precision": "f32"} if backend == "openvino" else {}
    runner = get_backend(backend).create_runner(str(path), device="cpu", **opts)
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


def _same(a: Any, b: Any) -> bool:
    """Two images' final detections match one to one (class, corners within 0.5 px)."""
    if len(a[0]) != len(b[0]) or not np.array_equal(np.sort(a[2]), np.sort(b[2])):
        return False
    if len(a[0]) == 0:
        return True
    oa = np.lexsort((a[0][:, 1], a[0][:, 0], a[2]))
    ob = np.lexsort((b[0][:, 1], b[0][:, 0], b[2]))
    return bool(np.abs(a[0][oa] - b[0][ob]).max() <= MAX_BOX_DIFF_PX)


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
) -> Artifact:
    """The artifact with parity, mAP and status filled in (FP32 must match PyTorch)."""
    import dataclasses

    live = ref.ref_scores.max(-1) > 0.05
    box_diff = float(np.abs(boxes - ref.ref_boxes)[live].max()) if live.any() else 0.0
    ours, theirs = _final(boxes, scores, 0.25), _final(ref.ref_boxes, ref.ref_scores, 0.25)
    agree = float(np.mean([_same(a, b) for a, b in zip(ours, theirs, strict=True)]))
    m = map_of(boxes, scores, ref, names)
    parity = Parity(
        box_diff, agree, float(np.abs(scores - ref.ref_scores).max()), "probabilities", len(boxes)
    )
    problems = []
    if art.precision == "fp32" and box_diff > MAX_BOX_DIFF_PX:
        problems.append(f"box difference {box_diff:.3f} px > {MAX_BOX_DIFF_PX} px")
    return dataclasses.replace(
        art,
        parity=parity,
        accuracy=m,
        accuracy_drop=round((ref_map - m) * 100, 4),
        status="failed" if problems else "ok",
        message=f"{art.name}: " + "; ".join(problems) if problems else None,
    )


# -- the bundle -------------------------------------------------------------------------------
def _manifest(meta: Any, source: Path, ref_map: float) -> Manifest:
    from ftedge import __version__
    from ftedge.runtime.letterbox import fill_colour
    from ftedge.runtime.manifest import CheckpointRef

    size = meta.input_size
    return Manifest(
        labels=tuple(meta.classes),
        preprocessing=meta.preprocessing,
        input=InputSpec("input", "float32", "NCHW", (-1, 3, size, size)),
        output=DetectionOutput(fill=fill_colour(meta.preprocessing.mean)),
        task="detection",
        provenance=Provenance(
            checkpoint=CheckpointRef(
                str((source / "best.json").resolve()), meta.weights_sha256, meta.epoch
            ),
            record={
                "ftedge_version": __version__,
                "backbone": meta.backbone.to_dict(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        ),
        reference=Reference(accuracy=ref_map),
    )


def _artifact(tmp: Path, fmt: Any, rel_files: list[str], size: int) -> Artifact:
    from ftedge.files import sha256_file

    files = {rel: sha256_file(tmp / rel) for rel in rel_files}
    return Artifact(
        format=fmt,
        precision="fp32",
        path=rel_files[0],
        sha256=files[rel_files[0]],
        input=InputSpec("input", "float32", "NCHW", (-1, 3, size, size)),
        output=DetectionOutput(),
        files=files,
    )


def _openvino(tmp: Path, manifest: Manifest) -> list[str]:
    from ftedge.export.openvino_ir import convert_onnx, save

    model = convert_onnx(tmp / "onnx" / "model.onnx", manifest)
    model.set_rt_info("Detection", ["model_info", "model_type"])
    save(model, tmp / "openvino" / "model.xml", fp16=False)
    return ["openvino/model.xml", "openvino/model.bin"]


def export_detection(
    source: Path,
    out: Path | None,
    formats: tuple[str, ...],
    precisions: tuple[str, ...] = ("fp32",),
) -> Any:
    """Make a verified detection bundle from a detection run; returns an ``ExportResult``."""
    import dataclasses

    from ftedge.export.bundle import ExportResult
    from ftedge.export.staging import staging_dir, swap_into_place
    from ftedge.files import point_latest
    from ftedge.runtime.backends import get_backend

    start = time.perf_counter()
    det, meta = _load_detector(source)
    ref = _reference(det, meta)
    names = list(meta.classes)
    ref_map = map_of(ref.ref_boxes, ref.ref_scores, ref, names)
    dest = out or Path("bundles") / source.resolve().name
    manifest = _manifest(meta, source, ref_map)
    with staging_dir(dest) as tmp:
        (tmp / "onnx").mkdir()
        _export_onnx(det, meta.input_size, tmp / "onnx" / "model.onnx")
        made = [(_artifact(tmp, "onnx", ["onnx/model.onnx"], meta.input_size), "onnxruntime")]
        want_ov = "openvino" in formats or (not formats and get_backend("openvino").available())
        if want_ov:
            made.append(
                (_artifact(tmp, "openvino", _openvino(tmp, manifest), meta.input_size), "openvino")
            )
        arts = []
        for art, backend in made:
            boxes, scores = _outputs(tmp / art.path, backend, ref.images)
            arts.append(verify(art, boxes, scores, ref, names, ref_map))
        manifest = dataclasses.replace(manifest, artifacts=tuple(arts))
        manifest.save(tmp)
        swap_into_place(tmp, dest)
        if out is None:
            point_latest(dest)
    failed = tuple(a.name for a in manifest.artifacts if a.status == "failed")
    notes = tuple(
        f"{p} detection artifacts are not made yet (FP32 only)" for p in precisions if p != "fp32"
    )
    return ExportResult(dest, manifest, time.perf_counter() - start, failed, notes)
