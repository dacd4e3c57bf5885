"""OnnxRuntimeRunner and OpenVinoRunner on a small real ONNX model (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ftedge.errors import FtedgeError
from ftedge.runtime.runners.onnxruntime import OnnxRuntimeRunner
from ftedge.runtime.runners.openvino import OpenVinoRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")


def _tiny_classifier(path: Path, classes: int = 5) -> Path:
    """Conv -> Relu -> global mean -> Gemm, dynamic batch, input 'input', output 'logits'."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=(8, classes)).astype(np.float32), "fc"),
        numpy_helper.from_array(rng.normal(size=(classes,)).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc", "fc_b"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_classifier(tmp_path_factory.mktemp("runners") / "tiny.onnx")


@pytest.fixture(scope="module")
def tiny_ir(tiny_onnx: Path) -> Path:
    import openvino as ov

    xml = tiny_onnx.with_suffix(".xml")
    ov.save_model(ov.convert_model(str(tiny_onnx)), str(xml), compress_to_fp16=False)
    return xml


def _x(n: int = 4) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 3, 16, 16)).astype(np.float32)


def _numpy_reference(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    """The same network in plain numpy: an independent check of both runners."""
    import onnx
    from onnx import numpy_helper

    w = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer}
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((x.shape[0], 8, 16, 16), np.float64)
    for i in range(3):
        for j in range(3):
            patch = xp[:, :, i : i + 16, j : j + 16]
            conv += np.einsum("nchw,oc->nohw", patch, w["w"][:, :, i, j])
    pooled = np.maximum(conv, 0).mean(axis=(2, 3))
    return pooled @ w["fc"] + w["fc_b"]


def test_ort_runner_infers_and_reports(tiny_onnx: Path) -> None:
    x = _x()
    runner = OnnxRuntimeRunner(str(tiny_onnx), threads=1)
    meta = runner.input_metadata()  # works before activation
    assert meta["input"].shape == (-1, 3, 16, 16)
    assert meta["input"].dtype == np.float32
    assert runner.output_metadata()["logits"].shape == (-1, 5)
    with runner:
        out = runner.infer({"input": x})["logits"]
        one = runner.infer({"input": x[:1]})["logits"]  # dynamic batch
        info = runner.describe()
    assert out.shape == (4, 5)
    np.testing.assert_allclose(out, _numpy_reference(tiny_onnx, x), atol=1e-4)
    np.testing.assert_allclose(one, out[:1], atol=1e-5)
    assert info["providers"] == ["CPUExecutionProvider"]
    # Threads spin within a run and stop at its end: nothing spins between runs by default.
    assert info["spin_wait"] is False
    config = runner._make_session(1).get_session_options().get_session_config_entry
    assert config("session.intra_op.allow_spinning") == "1"
    assert config("session.force_spinning_stop") == "1"
    assert runner.last_inference_s is not None and len(runner.inference_times_s) == 2


def test_ort_runner_rejects_bad_feeds_and_devices(tiny_onnx: Path) -> None:
    with pytest.raises(FtedgeError, match="device"):
        OnnxRuntimeRunner(str(tiny_onnx), device="tpu")
    with pytest.raises(FtedgeError, match="threads"):
        OnnxRuntimeRunner(str(tiny_onnx), threads=0)
    with OnnxRuntimeRunner(str(tiny_onnx)) as r:
        with pytest.raises(FtedgeError, match="float32"):
            r.infer({"input": _x().astype(np.float64)})
        with pytest.raises(FtedgeError, match="dim 2"):
            r.infer({"input": np.zeros((1, 3, 8, 16), np.float32)})
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(FtedgeError, match="CUDAExecutionProvider"):
            OnnxRuntimeRunner(str(tiny_onnx), device="cuda").activate()


def test_ort_runner_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FtedgeError, match="cannot load"):
        OnnxRuntimeRunner(str(tmp_path / "nope.onnx")).activate()


def test_ov_runner_f32_parity_and_reported_precision(tiny_onnx: Path, tiny_ir: Path) -> None:
    x = _x()
    ref = _numpy_reference(tiny_onnx, x)
    runner = OpenVinoRunner(str(tiny_ir), precision="f32", threads=1)
    assert runner.input_metadata()["input"].shape == (-1, 3, 16, 16)
    with runner:
        out = runner.infer({"input": x})["logits"]
        info = runner.describe()
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert info["execution_precision"] == "f32"
    assert info["runtime_precisions"], "execution graph precisions are reported"


def test_ov_runner_default_precision_is_reported(tiny_ir: Path) -> None:
    import openvino as ov

    with OpenVinoRunner(str(tiny_ir)) as r:
        r.infer({"input": _x(2)})
        reported = r.describe()["execution_precision"]
    compiled = ov.Core().compile_model(str(tiny_ir), "CPU")
    expected = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    # Whatever the plugin picked (bf16 on AMX/AVX512-BF16 CPUs, f32 elsewhere) is what we report.
    assert reported in ("f32", "bf16", "f16")
    assert {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[reported] in expected or (
        reported in expected
    )


def test_ov_runner_reads_onnx_and_throughput_hint(tiny_onnx: Path) -> None:
    x = _x(3)
    with OpenVinoRunner(str(tiny_onnx), hint="throughput", precision="f32") as r:
        out = r.infer({"input": x})["logits"]
    np.testing.assert_allclose(out, _numpy_reference(tiny_onnx, x), atol=1e-4)


def test_ov_runner_errors(tiny_ir: Path, tmp_path: Path) -> None:
    with pytest.raises(FtedgeError, match="device"):
        OpenVinoRunner(str(tiny_ir), device="TPU")
    with pytest.raises(FtedgeError, match="precision"):
        OpenVinoRunner(str(tiny_ir), precision="int4")
    with pytest.raises(FtedgeError, match="hint"):
        OpenVinoRunner(str(tiny_ir), hint="fast")
    with pytest.raises(FtedgeError, match="cannot read"):
        OpenVinoRunner(str(tmp_path / "missing.xml")).activate()
    import openvino as ov

    if not any(d.startswith("NPU") for d in ov.Core().available_devices):
        with pytest.raises(FtedgeError, match="not available"):
            OpenVinoRunner(str(tiny_ir), device="NPU").activate()
