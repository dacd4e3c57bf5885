"""INT8 (and OpenVINO FP16) detection artifacts, gated on test mAP.

What is quantized: the convolutions of the backbone, the neck and the head (with the ops between
them that the quantizers handle: residual adds, upsampling). What stays in float:

- the decode subgraph, i.e. every node after the last convolutions (box distances -> xyxy corners
  around the constant cell centres, sigmoid(class) x sigmoid(centerness), the square root): its
  outputs are the boxes in input pixels and the scores NMS thresholds, and 8 bits over a
  128-256 px range would move every corner by up to a pixel for no speed;
- the stem convolution (its error is amplified by every later layer, as for classification) and
  the head's output convolutions (class logits, box distances, centerness: the detector's
  equivalent of the classifier layer, a few percent of the compute).

Calibration images are the run's training images letterboxed exactly as the runtime does
(``ftedge.runtime.letterbox``, then the normalisation), stratified by the class of each image's
first object. ONNX INT8 reuses the classification search (``onnx_int8_search.search_int8``): over
the mAP budget, nodes are ranked by the quantization error they add on calibration images (a
cheap proxy) and the fewest most sensitive are kept in float that pass the gate, judged by mAP.
OpenVINO INT8 is ``nncf.quantize`` with the same float nodes as an ignored scope, retried with
the nodes the ONNX INT8 search kept in float when over the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftedge.export.detection_verify import DetectionCheck
from ftedge.runtime.manifest import Artifact, Manifest


@dataclass(frozen=True)
class FloatNodes:
    """ONNX node names of the FP32 graph kept in float from the first INT8 attempt."""

    decode: tuple[str, ...]  # every node after the last convolutions
    decode_outputs: tuple[str, ...]  # the tensors they make (OpenVINO names graph outputs' ops so)
    stem: tuple[str, ...]  # the convolution reading the input
    outputs: tuple[str, ...]  # the convolutions whose results feed only the decode

    @property
    def all(self) -> list[str]:
        return [*self.decode, *self.stem, *self.outputs]


def float_nodes(fp32_onnx: Path) -> FloatNodes:
    """The decode subgraph, the stem and the output convolutions of a detector's ONNX."""
    import onnx

    graph = onnx.load(str(fp32_onnx), load_external_data=False).graph
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    conv_below: dict[str, bool] = {}
    for node in reversed(graph.node):  # ONNX nodes are in topological order
        after = [c for o in node.output for c in consumers.get(o, [])]
        conv_below[node.name] = any(c.op_type == "Conv" or conv_below[c.name] for c in after)
    decode = [n.name for n in graph.node if n.op_type != "Conv" and not conv_below[n.name]]
    inputs = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    stem = [n.name for n in convs if set(n.input) & inputs]
    outputs = [n.name for n in convs if not conv_below[n.name]]
    made = tuple(o for n in graph.node if n.name in set(decode) for o in n.output)
    return FloatNodes(tuple(decode), made, tuple(stem), tuple(outputs))


def calibration_set(samples: Sequence[Any], size: int, spec: Any, count: int | None) -> Any:
    """A ``CalibrationSet`` of ``count`` training images (default up to 300), letterboxed and
    normalised exactly as the runtime prepares a frame."""
    from ftedge.detection.features import load_inputs, normalise
    from ftedge.export.calibration import CalibrationSet
    from ftedge.export.run_source import calibration_samples

    # Stratified by each image's first class (background images form their own group).
    pool = [(str(s.path), int(s.labels[0]) if len(s.labels) else -1) for s in samples]
    picked = calibration_samples(pool, count)
    by_path = {str(s.path): s for s in samples}
    inputs = load_inputs([by_path[p] for p, _ in picked], size, spec)
    images = normalise(inputs.images, spec).numpy()
    return CalibrationSet(
        samples=picked,
        images=images,
        details={"count": len(picked), "preprocessing": "letterbox + normalise (runtime's)"},
    )


def onnx_int8(check: DetectionCheck, fp32: Artifact, calib: Any, calib_method: Any) -> Artifact:
    """u8s8 Q/DQ INT8 with the decode in float; over the mAP budget, the sensitivity search."""
    from ftedge.export.onnx_int8_search import FloatPolicy, int8_artifact, search_int8

    nodes = float_nodes(check.bundle_dir / fp32.path)
    art = int8_artifact(fp32, len(calib), calib_method)
    art.details["decode_in_float"] = list(nodes.decode)
    policy = FloatPolicy(
        always=nodes.decode,
        last=nodes.outputs,
        describe="stem + output convolutions first, then per-node added noise-to-signal ratio",
    )
    return search_int8(
        check.bundle_dir,
        fp32,
        calib,
        art,
        lambda a: check.check(a, "onnxruntime"),
        calib_method,
        policy,
    )


def convert_openvino(onnx_path: Path, manifest: Manifest) -> Any:
    """The detector's ONNX as an ``ov.Model`` with the bundle's rt_info, typed Detection."""
    from ftedge.export.openvino_ir import convert_onnx

    model = convert_onnx(onnx_path, manifest)
    model.set_rt_info("Detection", ["model_info", "model_type"])
    return model


def openvino_artifact(
    check: DetectionCheck, manifest: Manifest, fp32: Artifact, precision: str, calib: Any
) -> Artifact:
    """OpenVINO IR at ``precision`` (fp16: compressed weights; int8: NNCF), verified and gated."""
    from ftedge.export import openvino_ir

    model = convert_openvino(check.bundle_dir / fp32.path, manifest)
    rel = f"{openvino_ir.SUBDIR}/{precision}/model.xml"
    art = Artifact(
        "openvino",
        "int8" if precision == "int8" else "fp16",
        rel,
        input=fp32.input,
        output=fp32.output,
    )
    if precision != "int8":
        art.details["weights"] = precision
        return _save_and_check(check, art, model, fp16=True)
    return _openvino_int8(check, manifest, fp32, art, model, calib)


def _save_and_check(check: DetectionCheck, art: Artifact, model: Any, fp16: bool) -> Artifact:
    from ftedge.export import openvino_ir

    xml = check.bundle_dir / art.path
    openvino_ir.save(model, xml, fp16=fp16)
    art = art.with_files(check.bundle_dir, [xml, xml.with_suffix(".bin")])
    return check.check(art, "openvino")


def _openvino_int8(
    check: DetectionCheck,
    manifest: Manifest,
    fp32: Artifact,
    art: Artifact,
    model: Any,
    calib: Any,
) -> Artifact:
    """The passing ONNX INT8 (Q/DQ) model converted, as for classification (its calibration
    and float layers reused); else, or over the budget, ``nncf.quantize`` with the decode, stem
    and output convolutions ignored, then with what the ONNX INT8 search kept in float."""
    from ftedge.export import openvino_ir
    from ftedge.export.openvino_artifacts import int8_from_qdq

    def save(a: Artifact, model: Any) -> Artifact:
        return _save_and_check(check, a, model, fp16=False)

    qdq = int8_from_qdq(manifest, check.bundle_dir, art, save, convert_openvino)
    if qdq is not None and qdq.status == "ok":
        return qdq
    art = qdq or art
    nodes = float_nodes(check.bundle_dir / fp32.path)
    # OpenVINO names an op after its ONNX node, or after its output when that is a graph
    # output (the final Sqrt is "scores"): ignore both names.
    first = [*nodes.all, *nodes.decode_outputs]
    onnx_int8 = manifest.find("onnx", "int8")
    more = list((onnx_int8.details.get("excluded_nodes") or []) if onnx_int8 else [])
    more = [*more, *nodes.decode_outputs]
    attempts: list[dict[str, Any]] = []
    for keep in (first, more):
        if attempts and (art.status == "ok" or len(keep) <= len(first)):
            break
        q, details = openvino_ir.quantize_int8(
            model, calib, keep_float=keep, fast_bias_correction=False
        )
        art.details.update(details)
        art = _save_and_check(check, art, q, fp16=False)
        attempts.append({"kept_float": len(keep), "accuracy_drop": art.accuracy_drop})
    art.details["attempts"] = attempts
    art.details["float_compute_ops"] = openvino_ir.float_ops(check.bundle_dir / art.path)
    return art
