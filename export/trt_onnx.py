"""The ONNX a TensorRT engine parses: the bundle's FP32 ONNX, an FP16-typed copy or a Q/DQ INT8.

TensorRT 10.x parses the FP32 ONNX for FP32 and FP16 (builder flag); 11.x needs an FP16-typed
copy (``ftedge.export.tensorrt.convert_fp16_onnx``). INT8 always parses an explicit Q/DQ ONNX with
*symmetric* int8 activations (TensorRT only takes zero-point-0 Q/DQ), quantized from the bundle's
calibration images with the calibration method and float-kept nodes of the bundle's accuracy-gated
ONNX INT8. Every copy is written into the bundle and listed in the artifact's files, so the device
needs nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ftedge.errors import FtedgeError
from ftedge.export.trt_recipe import TRT_DIR
from ftedge.files import sha256_file
from ftedge.runtime.manifest import Artifact, Manifest

FP16_ONNX = f"{TRT_DIR}/model.fp16.onnx"
INT8_QDQ_ONNX = f"{TRT_DIR}/model.int8-qdq.onnx"
CalibMethod = Literal["minmax", "entropy", "percentile"]
_CALIB_METHODS: dict[str, CalibMethod] = {
    "minmax": "minmax",
    "entropy": "entropy",
    "percentile": "percentile",
}


def calibration_set(manifest: Manifest, input_name: str) -> Any:
    """The bundle's calibration images (``manifest.data``) as a ``CalibrationSet``.

    No data is a clear error, never random or foreign data (INT8 scales would be meaningless).
    """
    from ftedge.export.calibration import CalibrationSet

    root = manifest.data.root
    items = manifest.data.calibration
    if not root or not items:
        raise FtedgeError("INT8 needs calibration images: the bundle manifest lists none")
    if not Path(root).is_dir():
        raise FtedgeError(
            f"INT8 calibration data root {root} is not on this machine: make the TensorRT Q/DQ "
            "ONNX where the data is ('ftedge export' writes it into the bundle)"
        )
    samples = [(str(s[0]), int(s[1])) for s in items]
    calib = CalibrationSet.from_samples(root, samples, manifest.spec)
    calib.input_name = input_name
    return calib


def source_onnx(
    bundle_dir: Path,
    manifest: Manifest,
    fp32: Artifact,
    kind: str,
    art: Artifact,
    calib: Any = None,
) -> str:
    """Relative path of the ONNX a plan parses, making (and listing) the FP16 / Q/DQ copy.

    ``calib``: the INT8 calibration images (a ``CalibrationSet``); None: the bundle's own
    (``calibration_set``), which suits classification's crops but not a detector's letterbox.
    """
    if kind == "fp32":
        return str(fp32.path)
    notes = art.details.setdefault("onnx_notes", {})
    if kind == "fp16":
        from ftedge.export.tensorrt import convert_fp16_onnx

        rel = FP16_ONNX
        notes.update(convert_fp16_onnx(bundle_dir / fp32.path, bundle_dir / rel))
    else:
        rel = INT8_QDQ_ONNX
        notes.update(int8_onnx(bundle_dir, manifest, fp32, rel, calib))
        art.details["source_onnx"] = {
            "path": rel,
            "sha256": sha256_file(bundle_dir / rel),
            "from_sha256": sha256_file(bundle_dir / fp32.path),
            "method": notes.get("method"),
        }
    art.files[rel] = sha256_file(bundle_dir / rel)
    return rel


def int8_onnx(
    bundle_dir: Path, manifest: Manifest, fp32: Artifact, out_rel: str, calib: Any = None
) -> dict[str, Any]:
    """Reuse the bundle's TensorRT Q/DQ ONNX when it was made from this FP32 ONNX, else make it.

    Same calibration method and float-kept nodes as the bundle's (accuracy-gated) ONNX INT8;
    ``calib`` as for ``source_onnx``.
    """
    reused = _reusable_int8_onnx(bundle_dir, manifest, fp32, out_rel)
    if reused is not None:
        return reused
    from ftedge.export.onnx_int8 import quantize_qdq

    ref = manifest.find("onnx", "int8")
    ref_details = ref.details if ref is not None else {}
    method = _CALIB_METHODS.get(
        str(ref_details.get("calib_method") or ref_details.get("method")), "minmax"
    )
    exclude = [str(n) for n in ref_details.get("excluded_nodes") or []]
    out = bundle_dir / out_rel
    out.parent.mkdir(parents=True, exist_ok=True)
    if calib is None:
        calib = calibration_set(manifest, fp32.input.name)
    quantize_qdq(
        bundle_dir / fp32.path,
        calib,
        out,
        activation_type="int8",
        symmetric_activations=True,
        per_channel=True,
        method=method,
        exclude_nodes=exclude,
    )
    if not out.is_file():
        raise FtedgeError(f"INT8 quantization did not write {out_rel}")
    return {"reused": False, "method": method, "excluded_nodes": exclude}


def _reusable_int8_onnx(
    bundle_dir: Path, manifest: Manifest, fp32: Artifact, out_rel: str
) -> dict[str, Any] | None:
    """The notes of a Q/DQ ONNX already in the bundle, made from this very FP32 ONNX, if any."""
    out = bundle_dir / out_rel
    fp32_sha = sha256_file(bundle_dir / fp32.path)
    for a in manifest.artifacts:
        d = a.details.get("source_onnx", {})
        same = a.format == "tensorrt" and a.precision == "int8" and d.get("path") == out_rel
        fresh = same and d.get("from_sha256") == fp32_sha and out.is_file()
        if fresh and sha256_file(out) == d.get("sha256"):
            return {"reused": True, "method": d.get("method")}
    return None
