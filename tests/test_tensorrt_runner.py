"""TensorRT runner and CUDA helpers, without libnvinfer or a GPU.

The error paths run against what is really installed here (tensorrt-stubs only, cuda-python and
libcudart without a driver). The runner's data flow (shapes per batch, growing buffers,
set_tensor_address, copies, CUDA graph capture/replay) runs against a fake TensorRT engine and a
fake CUDA runtime that really move bytes through host memory, so a wrong address, size or
missing copy gives wrong numbers. A strict mypy run checks all three modules against the real
tensorrt-stubs.
"""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ftedge.runtime.runners.tensorrt as R
from ftedge.errors import FtedgeError
from ftedge.runtime import cuda as C
from tests.typecheck import run_mypy

REPO = Path(__file__).resolve().parents[1]


# -- what is really installed here ---------------------------------------------------------------
def test_runner_without_tensorrt_names_the_extra_and_jetpack(tmp_path: Path) -> None:
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not a plan")
    runner = R.TensorRTRunner(str(plan))
    with pytest.raises(FtedgeError) as e:
        runner.activate()
    msg = str(e.value)
    assert "TensorRT is not installed" in msg and "JetPack" in msg and "ftedge[tensorrt]" in msg
    assert "\n" not in msg and not runner.is_active
    with pytest.raises(FtedgeError, match="JetPack"):
        R.import_tensorrt()


def test_missing_plan_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FtedgeError, match="plan not found"):
        R.TensorRTRunner(str(tmp_path / "nope.plan")).activate()


@pytest.mark.parametrize("backend", ["cuda-python", "ctypes"])
def test_cuda_without_a_gpu_is_a_clear_error(backend: str) -> None:
    """cuda-python and libcudart are installed here, the driver/GPU is not."""
    with pytest.raises(FtedgeError) as e:
        C.load_cuda(backend)
    assert re.search(r"no usable CUDA GPU|no CUDA GPU|no CUDA runtime", str(e.value))
    assert "\n" not in str(e.value)


def test_cuda_backends_load_without_a_device() -> None:
    cuda = C.load_cuda("cuda-python", require_device=False)
    assert "cuda-python" in cuda.backend and cuda.runtime_version() >= 11000
    try:
        lib = C.load_cuda("ctypes", require_device=False)
    except FtedgeError:
        pytest.skip("no libcudart.so on this machine")
    assert "ctypes" in lib.backend and lib.runtime_version() >= 11000
    with pytest.raises(FtedgeError, match="CUDA cudaMalloc failed"):
        lib.malloc(16)
    with pytest.raises(FtedgeError, match="backend must be"):
        C.load_cuda("pycuda")


def test_parse_device() -> None:
    assert C.parse_device("cuda") == 0 and C.parse_device("cuda:1") == 1
    assert C.parse_device("GPU:2") == 2
    for bad in ("cpu", "cuda:x", "npu:0"):
        with pytest.raises(FtedgeError, match="cuda:N"):
            C.parse_device(bad)
    assert R.TensorRTRunner("x.plan", device="tensorrt").device == "cuda:0"


def test_import_is_torch_and_tensorrt_free() -> None:
    code = (
        "import sys, ftedge.runtime.runners.tensorrt, ftedge.runtime.cuda\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'tensorrt' not in sys.modules, 'tensorrt imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- plan metadata and compatibility -------------------------------------------------------------
DETAILS = {
    "tensorrt_version": "10.3.0.30",
    "device_name": "Orin",
    "compute_capability": "8.7",
    "cache_key": "ab" * 32,
    "trtexec": {"tensorrt10": "trtexec --onnx=model.onnx --saveEngine=tensorrt/m.plan"},
}


def test_check_compatibility() -> None:
    assert R.check_compatibility(DETAILS, "10.3.0.30", "Orin", "8.7") is None
    assert "built with TensorRT 10.3.0.30, this is TensorRT 10.7.0.23" in (
        R.check_compatibility(DETAILS, "10.7.0.23", "Orin", "8.7") or ""
    )
    why = R.check_compatibility(DETAILS, "10.3.0.30", "NVIDIA H100", "9.0") or ""
    assert "built for Orin (sm 8.7)" in why and "NVIDIA H100 (sm 9.0)" in why
    assert "built for Orin" in (R.check_compatibility(DETAILS, "10.3.0.30", "Xavier", "8.7") or "")
    assert R.check_compatibility({}, "11.0", "any", "1.0") is None  # a bare plan: nothing to check


def write_bundle(root: Path, plan_bytes: bytes, details: dict[str, Any]) -> Path:
    (root / "tensorrt").mkdir(parents=True)
    plan = root / "tensorrt" / "model.fp16.abcd.plan"
    plan.write_bytes(plan_bytes)
    art = {
        "format": "tensorrt",
        "precision": "fp16",
        "path": "tensorrt/model.fp16.abcd.plan",
        "details": details,
    }
    (root / "manifest.json").write_text(json.dumps({"schema_version": 1, "artifacts": [art]}))
    return plan


def test_find_plan_metadata(tmp_path: Path) -> None:
    plan = write_bundle(tmp_path / "b", b"x", DETAILS)
    bundle, details = R.find_plan_metadata(plan)
    assert bundle == (tmp_path / "b").resolve() and details["device_name"] == "Orin"
    bare = tmp_path / "bare.plan"
    bare.write_bytes(b"x")
    assert R.find_plan_metadata(bare) == (None, {})


# -- a fake TensorRT + CUDA that really move bytes ------------------------------------------------
class FakeCuda(C.CudaRuntime):
    """Device memory is host memory; copies are memmoves; graphs replay recorded work."""

    backend = "fake"

    def __init__(self) -> None:
        self.mem: dict[int, np.ndarray] = {}
        self.capturing: list[Any] | None = None
        self.graphs: dict[int, list[Any]] = {}
        self.launches = 0

    def device_count(self) -> int:
        return 1

    def set_device(self, index: int) -> None:
        assert index == 0

    def device_info(self, index: int) -> C.DeviceInfo:
        return C.DeviceInfo(index, "Orin", "8.7")

    def malloc(self, nbytes: int) -> int:
        buf = np.zeros(nbytes, np.uint8)
        self.mem[buf.ctypes.data] = buf
        return int(buf.ctypes.data)

    def free(self, ptr: int) -> None:
        del self.mem[ptr]

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        assert self.capturing is None, "host copies must stay outside the graph"
        dev = dst if kind == 1 else src
        assert any(p <= dev and dev + nbytes <= p + b.nbytes for p, b in self.mem.items())
        ctypes.memmove(dst, src, nbytes)

    def stream_create(self) -> int:
        return 7

    def stream_synchronize(self, stream: int) -> None:
        assert stream == 7

    def stream_destroy(self, stream: int) -> None:
        pass

    def begin_capture(self, stream: int) -> None:
        self.capturing = []

    def end_capture(self, stream: int) -> int:
        assert self.capturing is not None
        gid = len(self.graphs) + 1
        self.graphs[gid], self.capturing = self.capturing, None
        return gid

    def graph_instantiate(self, graph: int) -> int:
        return graph + 1000

    def graph_launch(self, graph_exec: int, stream: int) -> None:
        self.launches += 1
        for work in self.graphs[graph_exec - 1000]:
            work()

    def graph_destroy(self, graph: int, graph_exec: int) -> None:
        del self.graphs[graph]


class FakeContext:
    """Computes logits = mean over H, W of the input, reading/writing the bound addresses."""

    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda = cuda
        self.addr: dict[str, int] = {}
        self.shape: tuple[int, ...] = ()
        self.runs = 0

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        return index == 0

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        assert name == "input"
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> list[int]:
        return [self.shape[0], 3] if name == "logits" else list(self.shape)

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addr[name] = ptr
        return True

    def _run(self) -> None:
        self.runs += 1
        n = int(np.prod(self.shape))
        x = np.ctypeslib.as_array((ctypes.c_float * n).from_address(self.addr["input"]))
        y = x.reshape(self.shape).mean(axis=(2, 3)).astype(np.float32)
        ctypes.memmove(self.addr["logits"], y.ctypes.data, y.nbytes)

    def execute_async_v3(self, stream: int) -> bool:
        if self.cuda.capturing is not None:
            self.cuda.capturing.append(self._run)
        else:
            self._run()
        return True


class FakeEngine:
    def __init__(self, cuda: FakeCuda) -> None:
        self.cuda = cuda
        self.num_io_tensors = 2
        self.contexts: list[FakeContext] = []

    def get_tensor_name(self, i: int) -> str:
        return ["input", "logits"][i]

    def get_tensor_dtype(self, name: str) -> Any:
        return types.SimpleNamespace(name="FLOAT")

    def get_tensor_shape(self, name: str) -> list[int]:
        return [-1, 3, 4, 4] if name == "input" else [-1, 3]

    def get_tensor_mode(self, name: str) -> str:
        return "in" if name == "input" else "out"

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[list[int]]:
        return [[1, 3, 4, 4], [4, 3, 4, 4], [8, 3, 4, 4]]

    def create_execution_context(self) -> FakeContext:
        self.contexts.append(FakeContext(self.cuda))
        return self.contexts[-1]


def fake_trt(cuda: FakeCuda, log: list[str]) -> types.SimpleNamespace:
    class Runtime:
        def __init__(self, logger: object) -> None:
            pass

        def deserialize_cuda_engine(self, blob: bytes) -> FakeEngine | None:
            log.append("deserialize")
            return FakeEngine(cuda) if blob == b"PLAN" else None  # 10.x: None on a foreign plan

    class Logger:
        ERROR = 1

        def __init__(self, severity: int) -> None:
            pass

    return types.SimpleNamespace(
        __version__="10.3.0.30",
        Runtime=Runtime,
        Logger=Logger,
        TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"),
    )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeCuda, list[str]]:
    cuda, log = FakeCuda(), []
    trt = fake_trt(cuda, log)
    monkeypatch.setattr(R, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(R, "load_cuda", lambda: cuda)
    return cuda, log


def test_runner_data_flow_with_growing_batches(
    fake: tuple[FakeCuda, list[str]], tmp_path: Path
) -> None:
    cuda, _ = fake
    plan = write_bundle(tmp_path / "b", b"PLAN", DETAILS)
    rng = np.random.default_rng(0)
    with R.TensorRTRunner(str(plan)) as r:
        meta = r.input_metadata()["input"]
        assert meta.shape == (-1, 3, 4, 4) and meta.dtype == np.float32
        assert r.output_metadata()["logits"].shape == (-1, 3)
        for batch in (1, 4, 2, 8, 1):  # grows twice, shrinks without reallocating
            x = rng.normal(size=(batch, 3, 4, 4)).astype(np.float32)
            out = r.infer({"input": x})["logits"]
            np.testing.assert_allclose(out, x.mean(axis=(2, 3)), rtol=1e-6)
        assert len(cuda.mem) == 2  # one buffer per tensor, old ones freed
        d = r.describe()
        assert d["built_device_name"] == "Orin" and d["version"] == "10.3.0.30"
        with pytest.raises(FtedgeError, match="outside the engine's profile"):
            r.infer({"input": np.zeros((9, 3, 4, 4), np.float32)})
        with pytest.raises(FtedgeError, match="must be float32"):
            r.infer({"input": np.zeros((1, 3, 4, 4), np.float64)})
    assert cuda.mem == {}  # deactivate frees everything


def test_runner_cuda_graph_captures_once_per_shape_and_replays(
    fake: tuple[FakeCuda, list[str]], tmp_path: Path
) -> None:
    cuda, _ = fake
    plan = write_bundle(tmp_path / "b", b"PLAN", DETAILS)
    rng = np.random.default_rng(1)
    with R.TensorRTRunner(str(plan), cuda_graph=True) as r:
        for _ in range(3):
            x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)  # new values each time
            np.testing.assert_allclose(
                r.infer({"input": x})["logits"], x.mean(axis=(2, 3)), rtol=1e-6
            )
        assert len(cuda.graphs) == 1 and cuda.launches == 3
        x = rng.normal(size=(4, 3, 4, 4)).astype(np.float32)  # bigger: buffers move, re-capture
        np.testing.assert_allclose(r.infer({"input": x})["logits"], x.mean(axis=(2, 3)), rtol=1e-6)
        assert len(cuda.graphs) == 1 and cuda.launches == 4  # the stale graph was destroyed
    assert cuda.graphs == {} and cuda.mem == {}


def test_runner_refuses_a_plan_for_another_device_before_deserializing(
    fake: tuple[FakeCuda, list[str]], tmp_path: Path
) -> None:
    _, log = fake
    plan = write_bundle(
        tmp_path / "b",
        b"PLAN",
        {**DETAILS, "compute_capability": "9.0", "device_name": "NVIDIA H100"},
    )
    with pytest.raises(FtedgeError) as e:
        R.TensorRTRunner(str(plan)).activate()
    msg = str(e.value)
    assert "built for NVIDIA H100 (sm 9.0), this GPU is Orin (sm 8.7)" in msg
    assert "ftedge export --formats tensorrt" in msg and str((tmp_path / "b").resolve()) in msg
    assert "trtexec --onnx=model.onnx" in msg
    assert log == []  # refused from the metadata, the plan was never deserialized
    with R.TensorRTRunner(str(plan), check_compat=False) as r:  # the user's explicit choice
        assert r.infer({"input": np.ones((1, 3, 4, 4), np.float32)})["logits"].shape == (1, 3)


def test_runner_reports_a_plan_tensorrt_cannot_deserialize(
    fake: tuple[FakeCuda, list[str]], tmp_path: Path
) -> None:
    plan = tmp_path / "foreign.plan"
    plan.write_bytes(b"built by TensorRT 8.6")
    with pytest.raises(FtedgeError) as e:
        R.TensorRTRunner(str(plan)).activate()
    msg = str(e.value)
    assert "cannot load TensorRT plan foreign.plan with TensorRT 10.3.0.30 on Orin" in msg
    assert "ftedge export --formats tensorrt BUNDLE" in msg


# -- strict type check against tensorrt-stubs ----------------------------------------------------
MODULES = ["ftedge.export.tensorrt", "ftedge.runtime.runners.tensorrt", "ftedge.runtime.cuda"]


def _run_strict_mypy(
    tmp_path: Path, extra: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_mypy(tmp_path, MODULES, strict=True, extra=extra)


def test_mypy_strict_against_tensorrt_stubs(tmp_path: Path) -> None:
    probe = REPO / "runtime" / "runners" / "tensorrt.py"
    res = _run_strict_mypy(tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Success: no issues found in 3 source files" in res.stdout
    # Prove the stubs are in effect (not silently Any): a wrong TensorRT call must be caught.
    bad = tmp_path / "src" / "bad_trt.py"
    bad.write_text(
        "import tensorrt as trt\n\n\ndef f(e: trt.ICudaEngine) -> None:\n"
        "    e.execute_async_v9(0)\n"
    )
    assert probe.is_file()
    res = _run_strict_mypy(tmp_path, ["-m", "bad_trt"])
    assert res.returncode == 1 and 'has no attribute "execute_async_v9"' in res.stdout
