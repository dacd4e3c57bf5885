"""The OpenVINO step: IR FP32 / FP16 (compressed weights) / INT8, each verified.

INT8 is first the ONNX INT8 artifact's Q/DQ model converted (when that one passed its gate):
its calibration, bias correction and float fallbacks are reused. Without it, or when it fails
the gate here, NNCF quantizes the FP32 model with the stem convolution and the classifier kept
in float and full bias correction (measured on Lite0: plain ``nncf.quantize`` agreed with FP32
on 92.9 % of the test images, this on 98.2 %). It is gated (accuracy drop and top-1 agreement
with FP32). Over the gate, it is quantized again 1) with the nodes the ONNX INT8 gate kept in
float (same graph, same node names) when they are more, then 2) with NNCF accuracy control
(slow: it ranks every quantizer; needs the test split, not the stored subset). Every attempt is
recorded in ``details.attempts``. ``openvino_ir`` holds the OpenVINO calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from ftedge.export.options import ExportOptions
from ftedge.export.verify import EvalData, verify_artifact
from ftedge.runtime.manifest import Artifact, Manifest, Precision


@dataclass(frozen=True)
class IrTarget:
    """Where one IR goes and what verifies it."""

    bundle_dir: Path
    manifest: Manifest
    xml: Path
    data: EvalData
    max_accuracy_drop: float
    min_agreement: float

    @classmethod
    def at(
        cls, bundle_dir: Path, manifest: Manifest, rel: str, data: EvalData, opts: ExportOptions
    ) -> IrTarget:
        """The IR at ``rel`` in ``bundle_dir``, held to the export's gate."""
        return cls(
            bundle_dir, manifest, bundle_dir / rel, data, opts.max_accuracy_drop, opts.min_agreement
        )

    def save(self, art: Artifact, model: Any, *, fp16: bool = False) -> Artifact:
        """Write ``model`` as IR (xml + bin) and hash it into ``art``."""
        from ftedge.export import openvino_ir

        files = openvino_ir.save(model, self.xml, fp16=fp16)
        return art.with_files(self.bundle_dir, files)

    def verify(
        self, art: Artifact, outputs: tuple[np.ndarray, dict[str, Any]] | None = None
    ) -> Artifact:
        """``art`` verified against the gate (``outputs``: its ``run_artifact`` result, when
        the caller has run it already)."""
        return verify_artifact(
            self.bundle_dir,
            self.manifest,
            art,
            self.data,
            max_accuracy_drop=self.max_accuracy_drop,
            min_agreement=self.min_agreement,
            outputs=outputs,
        )

    def save_and_verify(self, art: Artifact, model: Any, *, fp16: bool = False) -> Artifact:
        """Write ``model`` as IR (xml + bin), hash it into ``art`` and verify it."""
        return self.verify(self.save(art, model, fp16=fp16))


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
    target = IrTarget.at(bundle_dir, manifest, rel, data, opts)
    if precision == "int8":
        art = _int8_ir(target, art, model, fp32, calib)
    else:
        art.details["weights"] = precision
        art = target.save_and_verify(art, model, fp16=precision == "fp16")
    art.details["verified_on"] = data.source
    return art


def _int8_ir(target: IrTarget, art: Artifact, model: Any, fp32: Artifact, calib: Any) -> Artifact:
    """INT8 IR: the verified ONNX Q/DQ model converted, else NNCF (stem + classifier float,
    full bias correction), with fallbacks while over the gate."""
    from ftedge.export import openvino_ir

    def quantize(keep: list[str]) -> Artifact:
        q = openvino_ir.quantize_int8(model, calib, keep_float=keep, fast_bias_correction=False)
        return _quantized(target, art, q)

    qdq = int8_from_qdq(
        target.manifest, target.bundle_dir, art, target.save_and_verify, openvino_ir.convert_onnx
    )
    if qdq is not None and qdq.status == "ok":
        return qdq
    attempts: list[dict[str, Any]] = list(qdq.details["attempts"]) if qdq is not None else []
    art = qdq or art
    keep = _stem_and_head(target, fp32)
    art = quantize(keep)
    attempts.append(_attempt(keep, art))
    more = _nodes_to_keep_float(target)
    if art.status == "failed" and len(more) > len(keep):
        art = quantize(more)
        attempts.append(_attempt(more, art))
    if art.status == "failed" and target.data.source == "dataset":
        data = target.data
        quantized = openvino_ir.quantize_int8_accuracy_control(
            model, calib, data.images(target.manifest), data.labels, target.max_accuracy_drop
        )
        art = _quantized(target, art, quantized)
        attempts.append(_attempt("nncf accuracy control", art))
    art.details["attempts"] = attempts
    art.details["float_compute_ops"] = openvino_ir.float_ops(target.xml)
    return art


def int8_from_qdq(
    manifest: Manifest,
    bundle_dir: Path,
    art: Artifact,
    save_and_verify: Callable[[Artifact, Any], Artifact],
    convert: Callable[[Path, Manifest], Any],
) -> Artifact | None:
    """The passing ONNX INT8 artifact's Q/DQ graph read by OpenVINO (``convert``), saved as IR
    and verified (``save_and_verify``); None when the bundle has no passing ONNX INT8.

    OpenVINO turns each QuantizeLinear/DequantizeLinear pair into a FakeQuantize and runs the
    same int8 kernels as for an NNCF model (measured on Lite0: equal latency), so the
    calibration, bias correction and float fallbacks that the ONNX gate chose are reused,
    not redone: ~0.5 s instead of NNCF's ~7 s, and 97.5 % top-1 agreement with FP32 where
    NNCF reached 97.0 % (both run in f32 outside the int8 layers). Classification and
    detection both try it first.
    """
    from ftedge.export import openvino_ir

    onnx_int8 = manifest.find("onnx", "int8")
    if onnx_int8 is None or onnx_int8.status != "ok":
        return None
    art.details.update(
        method=f"OpenVINO conversion of the verified Q/DQ model {onnx_int8.path}",
        kept_float=list(onnx_int8.details.get("excluded_nodes") or []),
        calibration_images=onnx_int8.details.get("calibration_images"),
    )
    art = save_and_verify(art, convert(bundle_dir / onnx_int8.path, manifest))
    art.details["attempts"] = [_attempt(f"as {onnx_int8.path}", art)]
    if art.status == "ok":
        art.details["float_compute_ops"] = openvino_ir.float_ops(bundle_dir / art.path)
    return art


def _attempt(kept: Any, art: Artifact) -> dict[str, Any]:
    agreement = art.parity.top1_agreement if art.parity else None
    return {"kept_float": kept, "accuracy_drop": art.accuracy_drop, "top1_agreement": agreement}


def _quantized(target: IrTarget, art: Artifact, quantized: tuple[Any, dict[str, Any]]) -> Artifact:
    """Record a quantization's details, then save and verify its model."""
    model, details = quantized
    art.details.update(details)
    return target.save_and_verify(art, model)


def _stem_and_head(target: IrTarget, fp32: Artifact) -> list[str]:
    """The stem convolution and the classifier (ONNX node names), kept in float first."""
    from ftedge.export.sensitivity import fallback_order

    return fallback_order(target.bundle_dir / fp32.path, [])[:2]


def _nodes_to_keep_float(target: IrTarget) -> list[str]:
    """What the ONNX INT8 gate kept in float (none without an ONNX INT8)."""
    onnx_int8 = target.manifest.find("onnx", "int8")
    return list((onnx_int8.details.get("excluded_nodes") or []) if onnx_int8 else [])
