"""The OpenVINO step: IR FP32 / FP16 (compressed weights) / INT8 (NNCF), each verified.

INT8 is accuracy-gated. Over budget, it is quantized again 1) with the nodes the ONNX INT8 gate
kept in float (same graph, same node names) or else the stem + classifier, then 2) with NNCF
accuracy control (slow: it ranks every quantizer; needs the test split, not the stored subset).
Every attempt is recorded in ``details.attempts``. ``openvino_ir`` holds the OpenVINO calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ftedge.export.options import ExportOptions
from ftedge.export.verify import EvalData, verify_artifact
from ftedge.runtime.manifest import Artifact, Manifest, Precision


@dataclass(frozen=True)
class _IrTarget:
    """Where one IR goes and what verifies it."""

    bundle_dir: Path
    manifest: Manifest
    xml: Path
    data: EvalData
    max_accuracy_drop: float

    def save_and_verify(self, art: Artifact, model: Any, *, fp16: bool = False) -> Artifact:
        """Write ``model`` as IR (xml + bin), hash it into ``art`` and verify it."""
        from ftedge.export import openvino_ir

        openvino_ir.save(model, self.xml, fp16=fp16)
        art = art.with_files(self.bundle_dir, [self.xml, self.xml.with_suffix(".bin")])
        return verify_artifact(
            self.bundle_dir, self.manifest, art, self.data, max_accuracy_drop=self.max_accuracy_drop
        )


def openvino_artifact(
    bundle_dir: Path,
    manifest: Manifest,
    fp32: Artifact,
    precision: str,
    calib: Any,
    data: EvalData,
    opts: ExportOptions,
) -> Artifact:
    """The verified OpenVINO IR of the FP32 ONNX at ``precision``."""
    from ftedge.export import openvino_ir

    model = openvino_ir.convert_onnx(bundle_dir / fp32.path, manifest)
    rel = f"{openvino_ir.SUBDIR}/{precision}/model.xml"
    prec = cast(Precision, precision)  # checked by check_options
    art = Artifact("openvino", prec, rel, input=fp32.input, output=fp32.output)
    target = _IrTarget(bundle_dir, manifest, bundle_dir / rel, data, opts.max_accuracy_drop)
    if precision == "int8":
        art = _int8_ir(target, art, model, fp32, calib)
    else:
        art.details["weights"] = precision
        art = target.save_and_verify(art, model, fp16=precision == "fp16")
    art.details["verified_on"] = data.source
    return art


def _int8_ir(target: _IrTarget, art: Artifact, model: Any, fp32: Artifact, calib: Any) -> Artifact:
    """INT8 IR: plain NNCF first, then the float-kept fallbacks while over budget."""
    from ftedge.export import openvino_ir

    art = _quantized(target, art, openvino_ir.quantize_int8(model, calib))
    attempts: list[dict[str, Any]] = [{"kept_float": [], "accuracy_drop": art.accuracy_drop}]
    if art.status == "failed":
        keep = _nodes_to_keep_float(target, fp32)
        if keep:
            art = _quantized(target, art, openvino_ir.quantize_int8(model, calib, keep_float=keep))
            attempts.append({"kept_float": keep, "accuracy_drop": art.accuracy_drop})
    if art.status == "failed" and target.data.source == "dataset":
        data = target.data
        quantized = openvino_ir.quantize_int8_accuracy_control(
            model, calib, data.images(target.manifest), data.labels, target.max_accuracy_drop
        )
        art = _quantized(target, art, quantized)
        attempts.append({"kept_float": "nncf accuracy control", "accuracy_drop": art.accuracy_drop})
    art.details["attempts"] = attempts
    art.details["float_compute_ops"] = openvino_ir.float_ops(target.xml)
    return art


def _quantized(target: _IrTarget, art: Artifact, quantized: tuple[Any, dict[str, Any]]) -> Artifact:
    """Record a quantization's details, then save and verify its model."""
    model, details = quantized
    art.details.update(details)
    return target.save_and_verify(art, model)


def _nodes_to_keep_float(target: _IrTarget, fp32: Artifact) -> list[str]:
    """What the ONNX INT8 gate kept in float, or else the stem + classifier."""
    onnx_int8 = target.manifest.find("onnx", "int8")
    keep = list((onnx_int8.details.get("excluded_nodes") or []) if onnx_int8 else [])
    if not keep:
        from ftedge.export.sensitivity import fallback_order

        keep = fallback_order(target.bundle_dir / fp32.path, [])[:2] or []
    return keep
