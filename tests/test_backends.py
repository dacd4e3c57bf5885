"""The backend registry: one entry per backend, used by load, benchmark and export verification."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ftedge.errors import FtedgeError
from ftedge.runtime.backends import (
    BACKENDS,
    format_available,
    get_backend,
    native_backend,
    normalize_backend,
)

MODEL = Path(__file__).parent / "fixtures" / "bundle_v1" / "onnx" / "model.fp32.onnx"


def test_every_backend_has_one_entry_with_its_extra() -> None:
    assert list(BACKENDS) == ["onnxruntime", "openvino", "tensorrt", "torch"]
    assert {b: e.extra for b, e in BACKENDS.items()} == {
        "onnxruntime": "onnx",
        "openvino": "openvino",
        "tensorrt": "tensorrt",
        "torch": "train",
    }
    assert get_backend("ov").formats == ("openvino", "onnx")
    assert [normalize_backend(a) for a in ("ORT", "trt", "pytorch", "auto")] == [
        "onnxruntime",
        "tensorrt",
        "torch",
        "auto",
    ]
    with pytest.raises(FtedgeError, match="unknown backend 'tflite'"):
        get_backend("tflite")
    assert native_backend("openvino").name == "openvino"
    assert native_backend("onnx").name == "onnxruntime"
    with pytest.raises(FtedgeError, match="unknown artifact format"):
        native_backend("tflite")


def test_devices_are_reported_lower_case() -> None:
    ov, ort, trt = get_backend("openvino"), get_backend("onnxruntime"), get_backend("tensorrt")
    assert [ov.device_for(d) for d in (None, "CPU", "GPU.1", "npu", "cuda")] == [
        "cpu",
        "cpu",
        "gpu.1",
        "npu",
        None,
    ]
    assert [ort.device_for(d) for d in (None, "cuda:1", "tensorrt", "gpu")] == [
        "cpu",
        "cuda",
        "tensorrt",
        None,
    ]
    assert [trt.device_for(d) for d in (None, "cuda:1", "cpu")] == ["cuda:0", "cuda:1", None]


def test_registry_makes_real_runners_and_openvino_speaks_lower_case() -> None:
    x = np.zeros((2, 3, 8, 8), np.float32)
    outs = []
    for name in ("onnxruntime", "openvino"):
        entry = get_backend(name)
        assert entry.available()
        with entry.create_runner(str(MODEL), device="cpu", threads=1) as runner:
            assert runner.backend == name and runner.device == "cpu"
            assert runner.describe()["device"] == "cpu"
            outs.append(next(iter(runner.infer({"input": x}).values())))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)


def test_openvino_static_batch_option_fixes_the_input_shape() -> None:
    runner = get_backend("openvino").create_runner(str(MODEL), device="cpu", batch=4)
    with runner:
        assert runner.input_metadata()["input"].shape == (4, 3, 8, 8)


def test_missing_backend_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    entry = get_backend("onnxruntime")
    assert not entry.available() and not format_available("onnx")
    assert "pip install 'ftedge[onnx]'" in str(entry.missing_error())


def test_tensorrt_stubs_are_not_tensorrt() -> None:
    try:
        import tensorrt
    except ImportError:
        tensorrt = None
    real = tensorrt is not None and hasattr(tensorrt, "Runtime")
    assert get_backend("tensorrt").available() is real
    assert format_available("tensorrt") is real


def test_registry_import_is_cheap() -> None:
    code = (
        "import sys, ftedge.runtime.backends as b; b.get_backend('ov').available(); "
        "assert not {'onnxruntime', 'openvino', 'tensorrt', 'torch'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
