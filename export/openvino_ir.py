"""OpenVINO IR from the bundle's FP32 ONNX (torch-free): FP32, FP16 weights, INT8 via NNCF.

- FP32: ``ov.save_model(compress_to_fp16=False)`` (the default would silently halve weights);
- FP16: ``compress_to_fp16=True`` (FP16 weights, decompressed or executed in f16 by the plugin);
- INT8: ``nncf.quantize`` on the OpenVINO model with the bundle's calibration set; when the
  accuracy budget is exceeded, ``nncf.quantize_with_accuracy_control`` reverts the most
  sensitive layers to float until the drop is within budget (NNCF ranks the layers);
- uint8 input: an IR with OpenVINO's preprocessing (convert, mean, scale) put in front.

Labels and preprocessing go into ``rt_info`` so the .xml alone still makes sense: OpenVINO's Model
API keys (``model_info/labels``, ``model_info/mean_values`` ...) and ``ftedge/*`` as JSON.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError, MissingExtraError
from ftedge.runtime.manifest import InputSpec, Manifest
from ftedge.runtime.preprocess import PreprocessSpec

SUBDIR = "openvino"


def _ov() -> Any:
    try:
        import openvino
    except ImportError:
        raise MissingExtraError("openvino", "openvino") from None
    return openvino


def convert_onnx(onnx_path: Path, manifest: Manifest) -> Any:
    """Read the ONNX into an ``ov.Model`` and attach labels/preprocessing as rt_info."""
    ov = _ov()
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as e:
        raise FtedgeError(
            f"OpenVINO cannot convert {onnx_path.name}: {str(e).splitlines()[0]}"
        ) from None
    spec = manifest.spec
    model.set_rt_info("Classification", ["model_info", "model_type"])
    model.set_rt_info(
        " ".join(c.replace(" ", "_") for c in manifest.labels), ["model_info", "labels"]
    )
    model.set_rt_info(" ".join(str(m * 255) for m in spec.mean), ["model_info", "mean_values"])
    model.set_rt_info(" ".join(str(s * 255) for s in spec.std), ["model_info", "scale_values"])
    model.set_rt_info(json.dumps(list(manifest.labels)), ["ftedge", "labels"])
    model.set_rt_info(
        json.dumps(manifest.preprocessing.to_dict(), sort_keys=True), ["ftedge", "preprocessing"]
    )
    model.set_rt_info(
        json.dumps(manifest.provenance.to_dict(), sort_keys=True, default=str),
        ["ftedge", "provenance"],
    )
    return model


def bake_normalisation(xml_path: Path, spec: PreprocessSpec, input_spec: InputSpec) -> Any:
    """The IR at ``xml_path`` taking uint8 NCHW RGB crops: OpenVINO's own preprocessing converts
    and normalises them (``(x - 255 mean) / (255 std)``) inside the graph, where the CPU plugin
    folds it into the input conversion it runs anyway."""
    ov = _ov()
    from openvino.preprocess import PrePostProcessor

    model = ov.Core().read_model(str(xml_path))
    ppp = PrePostProcessor(model)
    nchw = ov.Layout("NCHW")
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(nchw)
    ppp.input().model().set_layout(nchw)
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(
        [m * 255 for m in spec.mean]
    ).scale([s * 255 for s in spec.std])
    model = ppp.build()
    # The model's own metadata now describes raw pixels: no mean or scale left to apply.
    model.set_rt_info("0 0 0", ["model_info", "mean_values"])
    model.set_rt_info("1 1 1", ["model_info", "scale_values"])
    model.set_rt_info(json.dumps(input_spec.to_dict(), sort_keys=True), ["ftedge", "input"])
    return model


def save(model: Any, xml_path: Path, *, fp16: bool) -> list[Path]:
    """Write ``xml_path`` + its .bin; return both paths."""
    ov = _ov()
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    return [xml_path, xml_path.with_suffix(".bin")]


def _nncf() -> Any:
    try:
        import nncf
    except ImportError:
        raise MissingExtraError("nncf", "openvino") from None
    nncf.set_log_level(logging.ERROR)  # its INFO lines would drown the export summary
    return nncf


@contextlib.contextmanager
def _progress_to_stderr() -> Iterator[None]:
    """NNCF's rich progress bars write to stdout: keep stdout for results (``--json -``)."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _calib_dataset(calib: Any) -> Any:
    nncf = _nncf()
    n = len(calib)
    # Equal batches of up to 32: ~2.5x faster statistics than batch 1, same accuracy here.
    bs = max(d for d in range(1, min(32, n) + 1) if n % d == 0)
    return nncf.Dataset(list(calib.batches(bs))), n // bs


def quantize_int8(
    model: Any,
    calib: Any,
    *,
    keep_float: list[str] | None = None,
    fast_bias_correction: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Post-training INT8 with NNCF defaults (symmetric int8, per-channel weights).

    ``keep_float``: ONNX node names to leave in float (OpenVINO names its ops after them,
    e.g. ``node_Conv_869/WithoutBiases``).
    """
    import re

    nncf = _nncf()
    dataset, items = _calib_dataset(calib)
    kwargs: dict[str, Any] = {}
    if keep_float:
        kwargs["ignored_scope"] = nncf.IgnoredScope(
            patterns=[f"^{re.escape(n)}(/.*)?$" for n in keep_float], validate=False
        )
    t = time.perf_counter()
    with _progress_to_stderr():
        q = nncf.quantize(
            model, dataset, subset_size=items, fast_bias_correction=fast_bias_correction, **kwargs
        )
    return q, {
        "kept_float": list(keep_float or []),
        "method": "nncf.quantize",
        "nncf_version": nncf.__version__,
        "calibration_images": len(calib),
        "fast_bias_correction": fast_bias_correction,
        "quantize_seconds": round(time.perf_counter() - t, 2),
    }


def quantize_int8_accuracy_control(
    model: Any,
    calib: Any,
    images: np.ndarray,
    labels: np.ndarray,
    max_drop_points: float,
    *,
    batch_size: int = 50,
) -> tuple[Any, dict[str, Any]]:
    """INT8 with NNCF accuracy control: keep the most sensitive layers float within budget.

    Validation is top-1 accuracy on ``images``/``labels`` (the test split, as the budget is).
    """
    nncf = _nncf()
    dataset, items = _calib_dataset(calib)
    val = nncf.Dataset(
        [
            (images[i : i + batch_size], labels[i : i + batch_size])
            for i in range(0, len(images), batch_size)
        ]
    )

    def validate(compiled: Any, data: Any) -> float:
        hit = 0
        total = 0
        out = compiled.outputs[0]
        for x, y in data:
            pred = compiled(x)[out].argmax(1)
            hit += int((pred == y).sum())
            total += len(y)
        return hit / max(1, total)

    t = time.perf_counter()
    with _progress_to_stderr():
        q = nncf.quantize_with_accuracy_control(
            model,
            dataset,
            val,
            validate,
            max_drop=max_drop_points / 100.0,
            drop_type=nncf.DropType.ABSOLUTE,
            subset_size=items,
        )
    return q, {
        "method": "nncf.quantize_with_accuracy_control",
        "nncf_version": nncf.__version__,
        "calibration_images": len(calib),
        "max_drop_points": max_drop_points,
        "quantize_seconds": round(time.perf_counter() - t, 2),
    }


def float_ops(model_path: Path) -> int:
    """Number of Convolution/MatMul ops left without a FakeQuantize input (kept in float)."""
    from ftedge.runtime.runners.openvino import read_model

    model = read_model(str(model_path))
    kept = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul"):
            src = op.input_value(0).get_node()
            if src.get_type_name() != "FakeQuantize":
                kept += 1
    return kept
