"""OpenVINO runner: IR (.xml + .bin) or ONNX files on CPU, GPU, NPU or AUTO.

Devices are given and reported in ftedge's lower-case spelling ("cpu", "gpu.1"); OpenVINO's own
("CPU", "GPU.1") is used only when talking to OpenVINO.

    with OpenVinoRunner("bundle/openvino-fp32/model.xml", precision="f32") as r:
        logits = r.infer({"input": x})["logits"]
        r.describe()["execution_precision"]   # what actually ran, e.g. "f32" or "bf16"

On CPUs with AMX/AVX-512-BF16 OpenVINO executes FP32 models in bf16 unless told otherwise
(measured: up to 5e-4 logit difference), so ``precision="f32"`` is what a parity check
wants, and ``describe()`` always reports the precision the compiled model really uses.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any, ClassVar

import numpy as np

from ftedge.errors import FtedgeError, MissingExtraError
from ftedge.runtime.runners.base import Runner, TensorMeta

DEVICES = ("cpu", "gpu", "npu", "auto")
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
PRECISIONS = ("f32", "bf16", "f16")


def default_precision(artifact_precision: str, device: str = "cpu") -> str | None:
    """The execution precision an IR of ``artifact_precision`` runs in on ``device`` unless
    asked otherwise.

    INT8 IRs on the CPU: "f32" for the layers left in float (stem, classifier, pooling). On
    CPUs with AVX-512-BF16 or AMX OpenVINO would run them in bf16: measured on Lite0, top-1
    agreement with FP32 fell from 97.0-97.5 % to 96.5-97.4 % for ~3 % less latency, and INT8
    IRs are verified in f32. Other IRs and other devices (a GPU's or NPU's own precisions): OpenVINO's
    own choice (verification pins FP32 to f32 itself).
    """
    cpu = device.lower().split(":")[0] == "cpu"
    return "f32" if artifact_precision == "int8" and cpu else None


def _import_ov() -> Any:
    try:
        import openvino
    except ImportError:
        raise MissingExtraError("openvino", "openvino") from None
    return openvino


def read_model(path: str) -> Any:
    """An OpenVINO model read from an IR or ONNX file (for inspection, not inference)."""
    return _import_ov().Core().read_model(path)


def _np_dtype(ov_type: Any) -> np.dtype[Any]:
    try:
        return np.dtype(ov_type.to_dtype())
    except Exception:  # an OpenVINO type without a numpy equivalent (e.g. u4)
        raise FtedgeError(f"unsupported OpenVINO tensor type {ov_type}") from None


def _port_meta(port: Any) -> TensorMeta:
    pshape = port.get_partial_shape()
    shape = tuple(
        d.get_length() if d.is_static else -1 for d in pshape
    )  # dynamic dims (batch) -> -1
    return TensorMeta(port.get_any_name(), _np_dtype(port.get_element_type()), shape)


def _short_type(t: Any) -> str:
    """OpenVINO element type -> its short name ('f32', 'bf16', 'i8', ...)."""
    name = str(getattr(t, "get_type_name", lambda: t)())
    return {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}.get(name, name)


class OpenVinoRunner(Runner):
    """Runs an OpenVINO IR or ONNX file with OpenVINO Runtime."""

    backend: ClassVar[str] = "openvino"

    def __init__(
        self,
        model_path: str,
        *,
        device: str = "cpu",
        hint: str = "latency",
        precision: str | None = None,
        threads: int | None = None,
        batch: int | None = None,
        model_bytes: bytes | None = None,
        name: str | None = None,
    ) -> None:
        """``batch``: reshape a dynamic-batch model to this static batch before compiling
        (OpenVINO's CPU plugin runs a static shape faster, which is why benchmark_app wants
        ``-shape``; measured here ~8 % at 1 thread on EfficientNet-Lite0). ``model_bytes``: a
        serialized ONNX model to run instead of reading ``model_path`` (which then only names
        it)."""
        device = device.lower()
        if device.split(":")[0].split(".")[0] not in DEVICES:
            raise FtedgeError(
                f"OpenVINO device must be one of {', '.join(DEVICES)}, got {device!r}"
            )
        if hint not in HINTS:
            raise FtedgeError(f"OpenVINO hint must be latency or throughput, got {hint!r}")
        if precision is not None and precision not in PRECISIONS:
            raise FtedgeError(
                f"OpenVINO precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        if threads is not None and threads < 1:
            raise FtedgeError(f"threads must be >= 1, got {threads}")
        if batch is not None and batch < 1:
            raise FtedgeError(f"batch must be >= 1, got {batch}")
        super().__init__(model_path, device=device, name=name)
        self.ov_device = device.upper()  # OpenVINO's spelling
        self.batch = batch
        self.hint = hint
        self.precision = precision
        self.threads = threads
        self.model_bytes = model_bytes
        self._compiled: Any = None
        self._request: Any = None
        self._inputs: dict[str, TensorMeta] | None = None
        self._outputs: dict[str, TensorMeta] | None = None

    def config(self) -> dict[str, str]:
        """The compile-time properties this runner passes to OpenVINO."""
        cfg = {"PERFORMANCE_HINT": HINTS[self.hint]}
        if self.precision is not None:
            cfg["INFERENCE_PRECISION_HINT"] = self.precision
        if self.threads is not None:
            cfg["INFERENCE_NUM_THREADS"] = str(self.threads)
        return cfg

    def _read_model(self) -> Any:
        ov = _import_ov()
        core = ov.Core()
        try:
            if self.model_bytes is not None:
                model = core.read_model(self.model_bytes, b"")  # ONNX bytes: no weights file
            else:
                model = core.read_model(self.model_path)
        except Exception as e:  # RuntimeError with a multi-line C++ message
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FtedgeError(f"OpenVINO cannot read {self.model_path}: {msg}") from None
        if self.batch is not None:
            self._fix_batch(ov, model, self.batch)
        return core, model

    @staticmethod
    def _fix_batch(ov: Any, model: Any, batch: int) -> None:
        shapes = {}
        for port in model.inputs:
            ps = port.get_partial_shape()
            if ps.rank.is_static and len(ps) >= 1 and ps[0].is_dynamic:
                dims = [batch] + [d.get_length() if d.is_static else -1 for d in list(ps)[1:]]
                shapes[port.get_any_name()] = ov.PartialShape(dims)
        if shapes:
            model.reshape(shapes)

    def _read_metadata(self, model: Any) -> None:
        self._inputs = {m.name: m for m in (_port_meta(p) for p in model.inputs)}
        self._outputs = {m.name: m for m in (_port_meta(p) for p in model.outputs)}

    # -- lifecycle ----------------------------------------------------------------------------
    def _activate(self) -> None:
        core, model = self._read_model()
        base = self.ov_device.split(":")[0].split(".")[0]
        if base != "AUTO" and not any(d.startswith(base) for d in core.available_devices):
            raise FtedgeError(
                f"OpenVINO device {self.ov_device} is not available here "
                f"(available: {', '.join(core.available_devices)})"
            )
        self._read_metadata(model)
        try:
            self._compiled = core.compile_model(model, self.ov_device, self.config())
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FtedgeError(f"OpenVINO cannot compile {self.model_path}: {msg}") from None
        self._request = self._compiled.create_infer_request()
        self._output_names = [p.get_any_name() for p in self._compiled.outputs]
        self._ov = _import_ov()
        self._bound: dict[str, np.ndarray] = {}  # the arrays the request's inputs wrap

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # The request's input tensors wrap the caller's arrays (shared memory, no copy) and are
        # re-bound only when a different array comes in: a caller that refills one buffer per
        # frame (the classifier's fast path) pays neither the binding nor the ~0.15 ms of
        # conversion InferRequest.infer(dict) costs per call. Outputs are copied out so a caller
        # may keep them across calls.
        for name, x in feeds.items():
            if self._bound.get(name) is not x:
                if not x.flags.c_contiguous:
                    x = np.ascontiguousarray(x)
                self._request.set_tensor(name, self._ov.Tensor(x, shared_memory=True))
                self._bound[name] = x  # keeps the shared memory alive while bound
        self._request.infer()
        return {
            name: self._request.get_tensor(port).data.copy()
            for name, port in zip(self._output_names, self._compiled.outputs, strict=True)
        }

    def _deactivate(self) -> None:
        self._bound = {}
        self._request = None
        self._compiled = None

    # -- metadata -----------------------------------------------------------------------------
    def _load_metadata(self) -> None:
        _, model = self._read_model()
        self._read_metadata(model)

    def runtime_precisions(self) -> dict[str, int]:
        """How many execution-graph nodes run in each precision (e.g. {"i8": 60, "f32": 9})."""
        if self._compiled is None:
            return {}
        counts: Counter[str] = Counter()
        try:
            for op in self._compiled.get_runtime_model().get_ordered_ops():
                rt = op.get_rt_info()
                if "runtimePrecision" in rt:
                    value = rt["runtimePrecision"]
                    # An OVAny: .astype(str) gives the plain string ("i8", "f32", ...).
                    counts[str(value.astype(str) if hasattr(value, "astype") else value)] += 1
        except Exception:  # plugins without an execution graph (some NPU/GPU drivers)
            return {}
        counts.pop("", None)
        return dict(counts.most_common())

    def execution_precision(self) -> str | None:
        """The inference precision the compiled model uses (INFERENCE_PRECISION_HINT)."""
        if self._compiled is None:
            return None
        try:
            return _short_type(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        except Exception:  # AUTO/MULTI may not expose it
            return None

    def describe(self) -> dict[str, Any]:
        ov = _import_ov()
        d: dict[str, Any] = {
            "backend": self.backend,
            "device": self.device,
            "version": ov.__version__,
            "hint": self.hint,
            "requested_precision": self.precision,
            "threads": self.threads,
        }
        if self._compiled is not None:
            d["execution_precision"] = self.execution_precision()
            d["runtime_precisions"] = self.runtime_precisions()
            with contextlib.suppress(Exception):  # not every plugin exposes it
                d["execution_devices"] = list(self._compiled.get_property("EXECUTION_DEVICES"))
        return d
