"""Detection bundles: a detection run -> ONNX FP32 (decoded boxes + scores in the graph),
verified against PyTorch (box and score parity) and scored by COCO mAP through the runtime's
own path (letterbox, decode, per-class NMS), torch-free after the ONNX step.

From the FP32 ONNX: OpenVINO IR FP32 / FP16, ONNX and OpenVINO INT8 (``detection_int8``: decode
in float, gated on the mAP drop) and TensorRT engines or their trtexec commands (``trt_step``,
as for classification). Every artifact's ``accuracy`` is its test mAP@[.5:.95] and
``accuracy_drop`` is in mAP points against PyTorch; ``detection_verify`` says how parity and
agreement are measured.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ftedge.errors import FtedgeError
from ftedge.export.detection_verify import DetectionCheck, DetectionReference, map_of
from ftedge.export.options import ExportOptions, RequestedArtifacts
from ftedge.runtime.manifest import Artifact, InputSpec, Manifest, Provenance, Reference
from ftedge.runtime.tasks import DetectionOutput


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


def _data(meta: Any) -> Any:
    """The run's dataset, split exactly as training split it."""
    from ftedge.detection import load_detection_data, materialise_default_detection_data

    cfg = meta.config
    root = cfg.get("data") or materialise_default_detection_data()
    return load_detection_data(
        root, val_fraction=cfg["val_fraction"], test_fraction=cfg["test_fraction"], seed=cfg["seed"]
    )


def _reference(det: Any, meta: Any, data: Any) -> DetectionReference:
    import torch

    from ftedge.detection.features import load_inputs, normalise
    from ftedge.detection.model import ExportDetector

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


# -- the bundle -------------------------------------------------------------------------------
def run_conf(source: Path) -> float:
    """The score threshold the run chose on val (``metrics.json``), else ``DEFAULT_CONF``."""
    import json
    import math

    from ftedge.runtime.tasks import DEFAULT_CONF

    metrics = (source if source.is_dir() else source.parent) / "metrics.json"
    try:
        conf = json.loads(metrics.read_text())["threshold"]["conf"]
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_CONF  # a run from before thresholds were chosen, or without metrics.json
    ok = isinstance(conf, (int, float)) and not isinstance(conf, bool) and math.isfinite(conf)
    return float(conf) if ok and 0.0 <= conf <= 1.0 else DEFAULT_CONF


def _manifest(meta: Any, source: Path, ref_map: float, opts: ExportOptions) -> Manifest:
    from ftedge import __version__
    from ftedge.export.run_source import utc_now
    from ftedge.runtime.letterbox import fill_colour
    from ftedge.runtime.manifest import CheckpointRef

    size = meta.input_size
    return Manifest(
        labels=tuple(meta.classes),
        preprocessing=meta.preprocessing,
        input=InputSpec("input", "float32", "NCHW", (-1, 3, size, size)),
        output=DetectionOutput(fill=fill_colour(meta.preprocessing.mean), conf=run_conf(source)),
        task="detection",
        provenance=Provenance(
            checkpoint=CheckpointRef(
                str((source / "best.json").resolve()), meta.weights_sha256, meta.epoch
            ),
            exports=({"at": utc_now(), "options": opts.to_dict(), "source": str(source)},),
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


def _openvino_fp32(tmp: Path, manifest: Manifest) -> list[str]:
    from ftedge.export.detection_int8 import convert_openvino
    from ftedge.export.openvino_ir import save

    model = convert_openvino(tmp / "onnx" / "model.onnx", manifest)
    save(model, tmp / "openvino" / "model.xml", fp16=False)
    return ["openvino/model.xml", "openvino/model.bin"]


def _request(opts: ExportOptions) -> RequestedArtifacts:
    """What to make; TensorRT INT8 brings the ONNX INT8 along (its Q/DQ ONNX keeps the same
    nodes in float, the decode among them)."""
    from ftedge.export.options import requested_artifacts

    request = requested_artifacts(opts)
    per = dict(request.precisions)
    trt_int8 = "int8" in per.get("tensorrt", ())
    if not trt_int8 or "int8" in per.get("onnx", ()):
        return request
    notes = (*request.notes, "onnx-int8 made too: TensorRT INT8 keeps its float nodes")
    per["onnx"] = (*per.get("onnx", ()), "int8")
    formats = request.formats if "onnx" in request.formats else ("onnx", *request.formats)
    return RequestedArtifacts(formats, per, notes)


def export_detection(source: Path, opts: ExportOptions) -> Any:
    """Make a verified detection bundle from a detection run; returns an ``ExportResult``."""
    from ftedge.export.bundle import ExportResult
    from ftedge.export.staging import check_destination, staging_dir, swap_into_place
    from ftedge.files import point_latest, sweep_stale_temps

    start = time.perf_counter()
    request = _request(opts)  # bad options fail here, before any work
    out = Path(opts.out).expanduser() if opts.out else None
    dest = out or Path("bundles") / source.resolve().name
    check_destination(dest)
    sweep_stale_temps(dest.parent)  # staging folders of killed exports
    det, meta = _load_detector(source)
    data = _data(meta)
    ref = _reference(det, meta, data)
    names = list(meta.classes)
    ref_map = map_of(ref.ref_boxes, ref.ref_scores, ref, names)
    manifest = _manifest(meta, source, ref_map, opts)
    notes = list(request.notes)
    with staging_dir(dest) as tmp:
        check = DetectionCheck(tmp, ref, names, ref_map, opts.max_accuracy_drop)
        manifest = _fp32(tmp, det, meta, manifest, request, check)
        calib = None
        if any("int8" in request.precisions[f] for f in request.formats):
            calib = _calibration(data, meta, opts)
        manifest = _reduced(manifest, request, check, calib, opts)
        if "tensorrt" in request.formats and request.precisions["tensorrt"]:
            manifest = _tensorrt(
                manifest, request.precisions["tensorrt"], check, calib, opts, notes
            )
        manifest.save(tmp)
        swap_into_place(tmp, dest)
        if out is None:
            point_latest(dest)
    failed = tuple(a.name for a in manifest.artifacts if a.status == "failed")
    return ExportResult(dest, manifest, time.perf_counter() - start, failed, tuple(notes))


def _fp32(
    tmp: Path,
    det: Any,
    meta: Any,
    manifest: Manifest,
    request: RequestedArtifacts,
    check: DetectionCheck,
) -> Manifest:
    """ONNX FP32 (always: every other artifact is made from it) and OpenVINO FP32, verified."""
    (tmp / "onnx").mkdir()
    _export_onnx(det, meta.input_size, tmp / "onnx" / "model.onnx")
    made = [(_artifact(tmp, "onnx", ["onnx/model.onnx"], meta.input_size), "onnxruntime")]
    if "fp32" in request.precisions.get("openvino", ()):
        files = _openvino_fp32(tmp, manifest)
        made.append((_artifact(tmp, "openvino", files, meta.input_size), "openvino"))
    arts = tuple(check.check(art, backend) for art, backend in made)
    return replace(manifest, artifacts=arts)


def _calibration(data: Any, meta: Any, opts: ExportOptions) -> Any:
    from ftedge.export.detection_int8 import calibration_set

    return calibration_set(list(data.train), meta.input_size, meta.preprocessing, opts.calib_images)


def _reduced(
    manifest: Manifest,
    request: RequestedArtifacts,
    check: DetectionCheck,
    calib: Any,
    opts: ExportOptions,
) -> Manifest:
    """ONNX INT8, then OpenVINO FP16 / INT8 (which reuses what the ONNX INT8 kept in float)."""
    from ftedge.export import detection_int8

    fp32 = manifest.find("onnx", "fp32")
    if fp32 is None or fp32.status != "ok":
        return manifest  # nothing reduced is made from an FP32 ONNX that does not match PyTorch
    todo = [("onnx", "int8")] if "int8" in request.precisions.get("onnx", ()) else []
    todo += [("openvino", p) for p in request.precisions.get("openvino", ()) if p != "fp32"]
    for fmt, precision in todo:
        t = time.perf_counter()
        if fmt == "onnx":
            art = detection_int8.onnx_int8(check, fp32, calib, opts.calib_method)
        else:
            art = detection_int8.openvino_artifact(check, manifest, fp32, precision, calib)
        art.details["export_seconds"] = round(time.perf_counter() - t, 2)
        manifest = manifest.with_artifact(art)
    return manifest


def _tensorrt(
    manifest: Manifest,
    precisions: tuple[str, ...],
    check: DetectionCheck,
    calib: Any,
    opts: ExportOptions,
    notes: list[str],
) -> Manifest:
    """TensorRT engines built here (then verified on the GPU) or skipped with trtexec commands;
    the INT8 Q/DQ ONNX is calibrated on the letterboxed images."""
    from ftedge.export.trt_step import export_tensorrt

    arts = export_tensorrt(
        check.bundle_dir, manifest, list(precisions), opts.batch_range, calib=calib
    )
    for a in arts:
        if a.status == "ok":
            try:
                a = check.check(a, "tensorrt", "cuda:0")
            except FtedgeError as e:  # e.g. no GPU to run it: the engine stays, marked failed
                a = replace(a, status="failed", message=str(e))
        elif a.status == "skipped" and a.message and a.message not in notes:
            notes.append(a.message)
        manifest = manifest.with_artifact(a)
    return manifest
