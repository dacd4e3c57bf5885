"""The ONNX FP32 step: the model as ONNX, self-describing, plus the optional baked variant.

``add_fp32_onnx`` exports the PyTorch model (``onnx_export``, the only torch import), writes the
bundle's labels / preprocessing / I/O / provenance into the ONNX metadata and runs the checker;
with ``bake`` it adds a copy that takes uint8 NHWC crops with the normalisation folded in.
``verify_fp32`` compares every FP32 ONNX with PyTorch: a mismatch fails the whole export, since
every other artifact is made from that model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ftedge.errors import FtedgeError
from ftedge.export.verify import EvalData, run_artifact, verify_artifact
from ftedge.runtime.manifest import Artifact, InputSpec, Manifest

ONNX_FP32 = "onnx/model.fp32.onnx"


def add_fp32_onnx(
    bundle_dir: Path, manifest: Manifest, model: Any, *, softmax: bool, bake: str | None
) -> Manifest:
    """``manifest`` with the FP32 ONNX of ``model`` (and its baked copy when ``bake`` is set)."""
    from ftedge.export import onnx_export

    (bundle_dir / "onnx").mkdir()
    t = time.perf_counter()
    path = onnx_export.export_onnx(
        model, bundle_dir / ONNX_FP32, manifest.spec.input_size, softmax=softmax
    )
    seconds = time.perf_counter() - t
    _describe(path, manifest)
    art = Artifact(
        "onnx",
        "fp32",
        ONNX_FP32,
        input=manifest.input,
        output=manifest.output,
        details={
            "opset": onnx_export.OPSET,
            "exporter": "torch.onnx dynamo",
            "export_seconds": round(seconds, 2),
            "checker": "passed",
        },
    )
    manifest = manifest.with_artifact(art.with_files(bundle_dir, [path]))
    if bake:
        manifest = manifest.with_artifact(baked_onnx(bundle_dir, manifest, path, bake))
    return manifest


def _describe(path: Path, manifest: Manifest) -> None:
    """Write what a runtime needs into the ONNX metadata, then run the ONNX checker."""
    from ftedge.export import onnx_graph

    props = {
        "ftedge.labels": list(manifest.labels),
        "ftedge.preprocessing": manifest.spec.to_dict(),
        "ftedge.input": manifest.input.to_dict(),
        "ftedge.output": manifest.output.to_dict(),
        "ftedge.provenance": manifest.provenance.to_dict(),
    }
    onnx_graph.set_metadata(path, props)
    onnx_graph.check_model(path)


def baked_onnx(bundle_dir: Path, manifest: Manifest, path: Path, color: str) -> Artifact:
    """The FP32 ONNX with the normalisation baked in: uint8 NHWC crops in ``color`` order."""
    from ftedge.export import onnx_graph

    spec = manifest.spec
    baked_rel = f"onnx/model.fp32.uint8-{color}.onnx"
    baked = onnx_graph.bake_preprocess(path, bundle_dir / baked_rel, spec, color)
    baked_input = InputSpec(
        "input",
        "uint8",
        "NHWC",
        (-1, spec.height, spec.width, 3),
        "bgr" if color == "bgr" else "rgb",
    )
    onnx_graph.set_metadata(baked, {"ftedge.input": baked_input.to_dict()})
    onnx_graph.check_model(baked)
    b = Artifact(
        "onnx",
        "fp32",
        baked_rel,
        input=baked_input,
        output=manifest.output,
        details={
            "baked_preprocess": color,
            "checker": "passed",
            "note": "feed uint8 crops at network resolution (resize + centre "
            "crop still happen outside)",
        },
    )
    return b.with_files(bundle_dir, [baked])


def verify_fp32(bundle_dir: Path, manifest: Manifest, data: EvalData) -> Manifest:
    """Verify every FP32 ONNX against PyTorch; FtedgeError when one does not match."""
    for a in manifest.artifacts:
        if a.format == "onnx" and a.precision == "fp32":
            outputs = run_artifact(bundle_dir, manifest, a, data)
            if not a.baked and a.output.name == manifest.output.name:
                data.fp32_outputs = outputs[0]
            a = verify_artifact(bundle_dir, manifest, a, data, outputs=outputs)
            a.details["verified_on"] = data.source
            if a.status == "failed":
                raise FtedgeError(f"FP32 ONNX does not match PyTorch: {a.message}")
            manifest = manifest.with_artifact(a)
    return manifest
