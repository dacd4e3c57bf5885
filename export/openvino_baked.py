"""The uint8-input twin of a passing OpenVINO INT8 IR (``openvino-int8-baked``).

The same IR with OpenVINO's preprocessing in front: it takes uint8 NCHW RGB crops and converts
and normalises them inside the graph. The CPU plugin folds that into the input conversion it
runs anyway (float NCHW to its own layout and precision), so the camera frame's float
normalisation, the largest preprocessing step after the resize, costs nothing measurable
(at 128 px: 18 us of numpy per frame gone, inference time unchanged). The runtime prefers the
twin to its original.

OpenVINO normalises with one rounding (``x * a + b`` fused); the exact path's ``(x / 255 - mean)
/ std`` rounds three times, and the fast path's numpy ``x * a + b`` twice. Each moves a few
answers that sit on a class boundary of an INT8 model. So the twin is verified twice: like any
INT8 artifact (accuracy drop and agreement with FP32), and against its original on the exact
path with the rule the fast path follows (``fast_preprocess.MIN_AGREEMENT`` top-1 agreement,
accuracy at most ``MAX_ACCURACY_DROP`` below). Measured on the built-in data: 99.7 % agreement
with the original, 86.7 % against 86.8 %, the same as the original fed by the fast path's numpy.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ftedge.export.openvino_artifacts import IrTarget
from ftedge.export.options import ExportOptions
from ftedge.export.verify import EvalData, run_artifact, verdict
from ftedge.runtime.manifest import Artifact, InputSpec, Manifest


def baked_twin(
    bundle_dir: Path, manifest: Manifest, ir: Artifact, data: EvalData, opts: ExportOptions
) -> Artifact:
    """The verified IR ``ir`` taking uint8 NCHW RGB crops, normalised inside the graph."""
    from ftedge.export import openvino_ir

    spec = manifest.spec
    rel = f"{openvino_ir.SUBDIR}/{ir.precision}-uint8-rgb/model.xml"
    input_spec = InputSpec(ir.input.name, "uint8", "NCHW", (-1, 3, spec.height, spec.width), "rgb")
    details = {
        "baked_preprocess": "rgb",
        "from": ir.path,
        "method": "OpenVINO PrePostProcessor: uint8 NCHW input, convert, mean, scale",
        "note": "feed uint8 crops at network resolution (resize + centre crop happen outside)",
        "verified_on": data.source,
    }
    art = Artifact(
        "openvino", ir.precision, rel, input=input_spec, output=ir.output, details=details
    )
    target = IrTarget.at(bundle_dir, manifest, rel, data, opts)
    art = target.save(art, openvino_ir.bake_normalisation(bundle_dir / ir.path, spec, input_spec))
    outputs = run_artifact(bundle_dir, manifest, art, data)  # kept for the second check
    art = target.verify(art, outputs)
    if art.status != "ok":
        return art
    original, _ = run_artifact(bundle_dir, manifest, ir, data)
    return _against_original(art, outputs[0].argmax(1), original.argmax(1), data.labels)


def _against_original(
    art: Artifact, mine: np.ndarray, theirs: np.ndarray, labels: np.ndarray
) -> Artifact:
    """``art`` failed unless its top-1 answers stay as close to its original's as the fast
    preprocessing path's must to the exact path's."""
    from ftedge.runtime.fast_preprocess import MAX_ACCURACY_DROP, MIN_AGREEMENT

    agreement = float((mine == theirs).mean())
    # in images, so that a drop of exactly the budget is not lost to float rounding
    lost = int((theirs == labels).sum()) - int((mine == labels).sum())
    details = {**art.details, "agreement_with_original": round(agreement, 6)}
    details["accuracy_below_original_pt"] = round(100.0 * lost / len(labels), 4)
    problems = []
    if agreement < MIN_AGREEMENT:
        problems.append(f"top-1 agreement with {art.details['from']} {agreement:.4f}")
    if lost > round(MAX_ACCURACY_DROP * len(labels)):
        problems.append(f"{lost} more test images wrong than {art.details['from']}")
    return verdict(replace(art, details=details), problems)
