"""ONNX INT8: static Q/DQ quantization with onnxruntime, calibrated on a CalibrationSet.

Integer types are chosen for the target (measured on x86 CPUs with AVX-512/VNNI):
- ``cpu`` (onnxruntime CPU): uint8 activations (asymmetric) + int8 per-channel symmetric weights
  ("u8s8"): about 1.6x faster than FP32 on Lite0, while s8s8 was slower than FP32;
- ``tensorrt``: int8 activations *and* weights, both symmetric ("s8s8"): TensorRT only accepts
  symmetric int8 Q/DQ (zero point 0). ``ftedge.export.tensorrt`` calls ``quantize_qdq`` with these.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ftedge.errors import FtedgeError, MissingExtraError

CALIB_METHODS = ("minmax", "entropy", "percentile")

# Per target: (activation_type, symmetric_activations). Weights are always int8 symmetric.
TARGET_TYPES: dict[str, tuple[Literal["uint8", "int8"], bool]] = {
    "cpu": ("uint8", False),
    "tensorrt": ("int8", True),
}


def _quant() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError:
        raise MissingExtraError("onnxruntime", "onnx") from None
    return quantization


class _Reader:
    """onnxruntime CalibrationDataReader over batches of preprocessed images."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self.input_name = input_name
        self._batches = list(batches)
        self._it: Iterator[np.ndarray] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.input_name: x}

    def rewind(self) -> None:
        self._it = iter(self._batches)


def quantize_qdq(
    fp32_onnx: Path,
    calib: Any,
    out_path: Path,
    *,
    activation_type: Literal["uint8", "int8"] = "uint8",
    symmetric_activations: bool = False,
    per_channel: bool = True,
    method: Literal["minmax", "entropy", "percentile"] = "minmax",
    exclude_nodes: Iterable[str] = (),
    batch_size: int = 32,
    calibration_cache: Path | None = None,
) -> Path:
    """Quantize ``fp32_onnx`` to a Q/DQ ONNX at ``out_path``; return ``out_path``.

    ``calib`` is a ``CalibrationSet`` (anything with ``input_name`` and ``batches(n)``).
    Weights are int8, symmetric, per output channel when ``per_channel``. Nodes named in
    ``exclude_nodes`` stay in floating point (the sensitivity fallback uses this).
    ``calibration_cache``: a JSON file of tensor ranges reused across calls with the same model,
    data and method (onnxruntime >= 1.22 only; ignored by older versions), so retrying with
    other ``exclude_nodes`` skips the calibration pass.
    """
    q = _quant()
    if method not in CALIB_METHODS:
        raise FtedgeError(
            f"--calib-method must be one of {', '.join(CALIB_METHODS)}, got {method!r}"
        )
    if activation_type not in ("uint8", "int8"):
        raise FtedgeError(f"activation_type must be uint8 or int8, got {activation_type!r}")
    methods = {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }
    extra = {
        "ActivationSymmetric": bool(symmetric_activations),
        "WeightSymmetric": True,
        # Histogram methods: collect over every batch, and cap the histogram size.
        "CalibPercentile": 99.999,
        "CalibNumBins": 2048,
    }
    act = q.QuantType.QUInt8 if activation_type == "uint8" else q.QuantType.QInt8
    with tempfile.TemporaryDirectory(prefix="ftedge-q-") as tmp:
        src = _pre_process(q, fp32_onnx, Path(tmp) / "prepped.onnx")
        reader = _reader(calib, batch_size)
        try:
            with _per_tensor_notes_quiet():
                q.quantize_static(
                    str(src),
                    str(out_path),
                    reader,
                    quant_format=q.QuantFormat.QDQ,
                    per_channel=per_channel,
                    activation_type=act,
                    weight_type=q.QuantType.QInt8,
                    calibrate_method=methods[method],
                    nodes_to_exclude=list(exclude_nodes),
                    extra_options=extra,
                    **_cache_option(q, calibration_cache),
                )
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FtedgeError(f"INT8 quantization of {fp32_onnx.name} failed: {first}") from None
    return out_path


class _PerTensorFallback(logging.Filter):
    """Drops onnxruntime's "Axis 1 is out-of-range for weight ..." warnings: a rank-1 weight
    (an unfolded BatchNormalization's scale, e.g. in a detector's shared head) cannot be
    per-channel and is quantized per tensor instead, which is expected, not a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is out-of-range for weight" not in record.getMessage()


@contextlib.contextmanager
def _per_tensor_notes_quiet() -> Iterator[None]:
    root = logging.getLogger()
    quiet = _PerTensorFallback()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _pre_process(q: Any, fp32_onnx: Path, prepped: Path) -> Path:
    """Shape inference first (onnxruntime's recommended pre-step); the original on failure."""
    try:
        # No graph optimisation: it would rename nodes, and exclude_nodes must name the FP32
        # graph's nodes.
        q.quant_pre_process(
            str(fp32_onnx), str(prepped), skip_optimization=True, skip_symbolic_shape=True
        )
    except Exception:  # pre-processing is an optimisation: quantize the original instead
        return fp32_onnx
    return prepped


def _reader(calib: Any, batch_size: int) -> _Reader:
    # Equal-sized batches: the histogram methods stack per-batch outputs and fail on a short
    # last batch.
    n = len(calib)
    bs = max(d for d in range(1, min(batch_size, n) + 1) if n % d == 0)
    return _Reader(getattr(calib, "input_name", "input"), calib.batches(bs))


def _cache_option(q: Any, calibration_cache: Path | None) -> dict[str, Any]:
    """``calibration_cache_path`` where this onnxruntime has it (>= 1.22)."""
    if (
        calibration_cache is not None
        and "calibration_cache_path" in inspect.signature(q.quantize_static).parameters
    ):
        return {"calibration_cache_path": str(calibration_cache)}
    return {}
