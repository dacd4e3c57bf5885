"""INT8 agreement with FP32: what each quantization setting gives, on one bundle.

    python benchmarks/int8_agreement.py bundles/latest [--json benchmarks/results/int8_agreement.json]
        [--only openvino] [--filter TEXT] [--ov-precision f32]

Every variant quantizes the bundle's FP32 ONNX (or its OpenVINO conversion) with the bundle's own
calibration list, or (the last OpenVINO row) reads the bundle's own ONNX INT8, and is run on the
full test split (OpenVINO: its float layers in OpenVINO's choice of precision, or f32); accuracy, drop (points) and top-1 agreement
are against the PyTorch reference logits stored in the bundle (the same numbers verification
writes to the manifest). Seconds are the quantization time only (noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.export.calibration import CalibrationSet
from ftedge.export.verify import EvalData, load_eval_data
from ftedge.runtime.manifest import Manifest


def _score(logits: np.ndarray, data: EvalData) -> dict[str, float]:
    top = logits.argmax(1)
    acc = float((top == data.labels).mean())
    return {
        "accuracy": round(acc * 100, 2),
        "drop": round((data.reference_accuracy - acc) * 100, 2),
        "agreement": round(float((top == data.reference.argmax(1)).mean()) * 100, 2),
    }


def _ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i : i + 100]})[0] for i in range(0, len(x), 100)])


def _ov_logits(model: Any, x: np.ndarray, hint: str | None = None) -> np.ndarray:
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": hint} if hint else {}
    compiled = ov.Core().compile_model(model, "CPU", config)
    out = compiled.outputs[0]
    return np.concatenate([compiled(x[i : i + 100])[out] for i in range(0, len(x), 100)])


def onnx_variants(fp32: Path, calib: CalibrationSet, big: CalibrationSet) -> dict[str, Callable]:
    from ftedge.export.onnx_int8 import quantize_qdq
    from ftedge.export.sensitivity import fallback_order

    stem_head = fallback_order(fp32, [])[:2]

    def q(c: CalibrationSet, **kw: Any) -> Callable[[Path], Path]:
        return lambda out: quantize_qdq(fp32, c, out, **kw)

    return {
        "minmax": q(calib),
        "percentile": q(calib, method="percentile"),
        "entropy": q(calib, method="entropy"),
        f"minmax, {len(big)} images": q(big),
        "minmax, stem+head float": q(calib, exclude_nodes=stem_head),
        "minmax, bias corrected": lambda out: _bias_corrected(fp32, calib, out),
        "minmax, bias corrected, stem+head float": lambda out: _bias_corrected(
            fp32, calib, out, exclude=stem_head
        ),
        "minmax, bias corrected, stem float": lambda out: _bias_corrected(
            fp32, calib, out, exclude=stem_head[:1]
        ),
        "minmax, bias corrected, head float": lambda out: _bias_corrected(
            fp32, calib, out, exclude=stem_head[1:]
        ),
    }


def _bias_corrected(fp32: Path, calib: CalibrationSet, out: Path, exclude: Any = ()) -> Path:
    from ftedge.export.onnx_int8 import quantize_qdq
    from ftedge.export.qdq_bias import correct_biases

    quantize_qdq(fp32, calib, out, exclude_nodes=exclude)
    correct_biases(fp32, out, calib)
    return out


def _onnx_path(bundle: Path, manifest: Manifest, precision: str) -> Path:
    """The file of the bundle's ONNX artifact of ``precision``, as its manifest names it."""
    art = manifest.find("onnx", precision)
    if art is None:
        raise SystemExit(f"the bundle has no onnx-{precision} artifact")
    return bundle / art.path


def openvino_variants(bundle: Path, manifest: Manifest, calib: CalibrationSet, big: Any) -> dict:
    from ftedge.export import openvino_ir
    from ftedge.export.sensitivity import fallback_order

    fp32 = _onnx_path(bundle, manifest, "fp32")
    stem_head = fallback_order(fp32, [])[:2]
    model = openvino_ir.convert_onnx(fp32, manifest)

    def q(c: CalibrationSet, **kw: Any) -> Callable[[], Any]:
        return lambda: openvino_ir.quantize_int8(model, c, **kw)[0]

    return {
        "nncf default (fast bias correction)": q(calib),
        "full bias correction": q(calib, fast_bias_correction=False),
        f"fast bias correction, {len(big)} images": q(big),
        f"full bias correction, {len(big)} images": q(big, fast_bias_correction=False),
        "stem+head float": q(calib, keep_float=stem_head),
        "full bias correction, stem+head float": q(
            calib, keep_float=stem_head, fast_bias_correction=False
        ),
        # What ftedge export builds now: the bundle's own ONNX INT8 (Q/DQ) read by OpenVINO.
        "the bundle's ONNX INT8 Q/DQ model converted": lambda: openvino_ir.convert_onnx(
            _onnx_path(bundle, manifest, "int8"), manifest
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", default="bundles/latest")
    ap.add_argument("--big", type=int, default=1000, help="calibration images of the 'more' rows")
    ap.add_argument("--only", choices=("onnx", "openvino"), default=None)
    ap.add_argument("--filter", default="", help="only variants whose name contains this")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--ov-precision",
        choices=("default", "f32"),
        default="default",
        help="OpenVINO execution precision of the float layers (default: OpenVINO's choice)",
    )
    args = ap.parse_args()
    bundle = Path(args.bundle)
    manifest = Manifest.load(bundle)
    data = load_eval_data(bundle, manifest, allow_subset=False)
    x = data.images(manifest)
    root = str(manifest.data.root)
    calib = CalibrationSet.from_samples(root, list(manifest.data.calibration), manifest.spec)
    from ftedge.export.run_source import calibration_samples

    big = CalibrationSet.from_samples(
        root, calibration_samples(list(manifest.data.train), args.big), manifest.spec
    )
    fp32 = _onnx_path(bundle, manifest, "fp32")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "onnx"):
            for name, make in onnx_variants(fp32, calib, big).items():
                if args.filter not in name:
                    continue
                t = time.perf_counter()
                path = make(Path(tmp) / "m.onnx")
                sec = time.perf_counter() - t
                rows.append({"format": "onnx", "variant": name, "seconds": round(sec, 1)})
                rows[-1].update(_score(_ort_logits(path, x), data))
                print(json.dumps(rows[-1]), flush=True)
        if args.only in (None, "openvino"):
            for name, make in openvino_variants(bundle, manifest, calib, big).items():
                if args.filter not in name:
                    continue
                t = time.perf_counter()
                model = make()
                sec = time.perf_counter() - t
                rows.append({"format": "openvino", "variant": name, "seconds": round(sec, 1)})
                hint = None if args.ov_precision == "default" else args.ov_precision
                rows[-1]["ov_precision"] = args.ov_precision
                rows[-1].update(_score(_ov_logits(model, x, hint), data))
                print(json.dumps(rows[-1]), flush=True)
    report = {"load_average": os.getloadavg(), "bundle": str(bundle), "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
