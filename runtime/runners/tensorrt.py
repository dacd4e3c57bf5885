"""TensorRT runner: a stock plan file on an NVIDIA GPU, with CUDA through cuda-python or ctypes.

    with TensorRTRunner("bundle/tensorrt/model.fp16.0123abcd.plan", cuda_graph=True) as r:
        logits = r.infer({"input": x})["logits"]

Lifecycle (after Polygraphy's TrtRunner): ``activate`` checks the plan was built for this
TensorRT version and GPU (from the bundle manifest next to it), deserializes it, creates an
execution context and a CUDA stream; ``infer`` sets the input shapes for the batch, grows the
device buffers when needed, copies host -> device, binds every I/O tensor with
``set_tensor_address``, runs ``execute_async_v3`` (or replays a CUDA graph captured for that
input shape), copies device -> host and synchronises; ``deactivate`` frees everything.
TensorRT itself is imported lazily: importing this module needs numpy only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.runtime.cuda import CudaRuntime, load_cuda, parse_device
from ftedge.runtime.runners.base import Runner, TensorMeta

if TYPE_CHECKING:  # typed against tensorrt-stubs; imported for real only in _load_engine
    import tensorrt as trt

INSTALL_HINT = (
    "TensorRT is not installed: on a Jetson it comes with JetPack (apt install "
    "python3-libnvinfer), on x86 pip install tensorrt; CUDA memory needs pip install "
    "'ftedge[tensorrt]' (cuda-python)"
)
REBUILD = "ftedge export --formats tensorrt {bundle}"

# TensorRT DataType names -> numpy (not trt.nptype: it is untyped, and it fails on types numpy
# lacks, e.g. FP8/INT4, which an image-classifier I/O tensor never has anyway).
_NP_DTYPES: dict[str, Any] = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}


def import_tensorrt() -> Any:
    """The real TensorRT module, or FtedgeError naming where to get it.

    ``tensorrt-stubs`` makes ``import tensorrt`` succeed as an empty namespace package: the
    backend registry's availability check tells the real thing apart.
    """
    from ftedge.runtime.backends import get_backend

    if not get_backend("tensorrt").available():
        raise FtedgeError(INSTALL_HINT)
    import tensorrt as trt

    return trt


def find_plan_metadata(plan_path: Path) -> tuple[Path | None, dict[str, Any]]:
    """The bundle directory and artifact details recorded for ``plan_path``, if any.

    Engines live in ``BUNDLE/tensorrt/``; a bare plan (no manifest) has no metadata to check.
    """
    plan = plan_path.resolve()
    for bundle in (plan.parent, plan.parent.parent):
        mf = bundle / "manifest.json"
        if not mf.is_file():
            continue
        try:
            arts = json.loads(mf.read_text()).get("artifacts", [])
        except (OSError, ValueError, AttributeError):
            return bundle, {}
        for a in arts:
            if isinstance(a, dict) and (bundle / str(a.get("path", ""))).resolve() == plan:
                details = a.get("details")
                return bundle, dict(details) if isinstance(details, dict) else {}
        return bundle, {}
    return None, {}


def check_compatibility(
    expected: dict[str, Any], trt_version: str, device_name: str, compute_capability: str
) -> str | None:
    """Why a plan built as ``expected`` (artifact details) cannot run here, or None if it can.

    TensorRT plans are tied to the exact TensorRT version and to the GPU model (they hold
    kernels tuned for one compute capability), unless built version/hardware compatible.
    """
    want_v = expected.get("tensorrt_version")
    if want_v and str(want_v) != trt_version:
        return f"it was built with TensorRT {want_v}, this is TensorRT {trt_version}"
    want_cc = expected.get("compute_capability")
    if want_cc and str(want_cc) != compute_capability:
        return (
            f"it was built for {expected.get('device_name', '?')} (sm {want_cc}), this GPU is "
            f"{device_name} (sm {compute_capability})"
        )
    want_name = expected.get("device_name")
    if want_name and str(want_name) != device_name:
        return f"it was built for {want_name}, this GPU is {device_name}"
    return None


def _dims(d: trt.Dims) -> tuple[int, ...]:
    return tuple(int(d[i]) for i in range(len(d)))


def rebuild_hint(bundle: Path | None, expected: dict[str, Any]) -> str:
    """How to rebuild a plan on this device: our builder, or trtexec from the bundle dir."""
    hint = f"rebuild it on this device: {REBUILD.format(bundle=bundle or 'BUNDLE')}"
    cmds = expected.get("trtexec")
    if isinstance(cmds, dict) and cmds:
        hint += f" (or, in the bundle directory: {next(iter(cmds.values()))})"
    return hint


class _DeviceBuffer:
    """A device allocation that grows (never shrinks) to the largest size asked for."""

    def __init__(self) -> None:
        self.ptr = 0
        self.nbytes = 0

    def ensure(self, cuda: CudaRuntime, nbytes: int) -> bool:
        """Make room for ``nbytes``; True when the address changed (rebind, re-capture)."""
        if nbytes <= self.nbytes:
            return False
        if self.ptr:
            cuda.free(self.ptr)
        self.ptr, self.nbytes = cuda.malloc(max(nbytes, 1)), nbytes
        return True


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine (plan) on ``device`` "cuda:N"."""

    backend: ClassVar[str] = "tensorrt"

    def __init__(
        self,
        model_path: str,
        *,
        device: str = "cuda:0",
        cuda_graph: bool = False,
        expected: dict[str, Any] | None = None,
        check_compat: bool = True,
        name: str | None = None,
    ) -> None:
        """``expected``: the artifact details the plan was built with (read from the bundle
        manifest next to the plan when None); ``check_compat=False`` skips that check."""
        self.device_index = parse_device("cuda:0" if device == "tensorrt" else device)
        super().__init__(str(model_path), device=f"cuda:{self.device_index}", name=name)
        self.cuda_graph = cuda_graph
        self.check_compat = check_compat
        self._bundle, found = find_plan_metadata(Path(model_path))
        self.expected = dict(expected) if expected is not None else found
        self._trt: Any = None  # the tensorrt module
        self._cuda: CudaRuntime | None = None
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._stream = 0
        self._inputs: dict[str, TensorMeta] = {}
        self._outputs: dict[str, TensorMeta] = {}
        self._profile: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self._buffers: dict[str, _DeviceBuffer] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._graphs: dict[tuple[tuple[int, ...], ...], tuple[int, int]] = {}
        self.device_name = ""
        self.compute_capability = ""

    # -- lifecycle ----------------------------------------------------------------------------
    def _load_engine(self) -> None:
        """Import TensorRT, open CUDA, check compatibility, deserialize: everything but the
        execution context (so ``input_metadata`` works before ``activate``)."""
        if self._engine is not None:
            return
        plan = Path(self.model_path)
        if not plan.is_file():
            raise FtedgeError(f"TensorRT plan not found: {plan}")
        trt_mod = import_tensorrt()
        cuda = load_cuda()
        cuda.set_device(self.device_index)
        info = cuda.device_info(self.device_index)
        self.device_name, self.compute_capability = info.name, info.compute_capability
        hint = rebuild_hint(self._bundle, self.expected)
        if self.check_compat:
            why = check_compatibility(
                self.expected, str(trt_mod.__version__), info.name, info.compute_capability
            )
            if why:
                raise FtedgeError(
                    f"TensorRT plan {plan.name} does not fit this device: {why}; {hint}"
                )
        runtime: trt.Runtime = trt_mod.Runtime(trt_mod.Logger(trt_mod.Logger.ERROR))
        engine: trt.ICudaEngine | None
        try:
            engine = runtime.deserialize_cuda_engine(plan.read_bytes())
        except Exception as e:  # pybind raises RuntimeError/TypeError depending on version
            engine, err = None, str(e).splitlines()[0] if str(e) else type(e).__name__
        else:
            err = "TensorRT could not deserialize it"
        if engine is None:
            # 10.x returns None (and logs) for a plan from another version or GPU.
            raise FtedgeError(
                f"cannot load TensorRT plan {plan.name} with TensorRT {trt_mod.__version__} on "
                f"{info.name}: {err} (built for another TensorRT version or GPU?); {hint}"
            )
        self._trt, self._cuda, self._runtime, self._engine = trt_mod, cuda, runtime, engine
        self._read_io(engine)

    def _read_io(self, engine: trt.ICudaEngine) -> None:
        self._inputs, self._outputs, self._profile = {}, {}, {}
        for i in range(engine.num_io_tensors):
            name = str(engine.get_tensor_name(i))
            dt = engine.get_tensor_dtype(name)
            np_dtype = _NP_DTYPES.get(getattr(dt, "name", str(dt)))
            if np_dtype is None:
                raise FtedgeError(f"unsupported TensorRT I/O type {dt} for tensor {name!r}")
            meta = TensorMeta(name, np.dtype(np_dtype), _dims(engine.get_tensor_shape(name)))
            if engine.get_tensor_mode(name) == self._trt.TensorIOMode.INPUT:
                self._inputs[name] = meta
                lo, _, hi = engine.get_tensor_profile_shape(name, 0)
                self._profile[name] = (_dims(lo), _dims(hi))
            else:
                self._outputs[name] = meta

    def _activate(self) -> None:
        self._load_engine()
        assert self._cuda is not None and self._engine is not None
        context = self._engine.create_execution_context()
        if context is None:
            raise FtedgeError(f"TensorRT could not create an execution context for {self.name}")
        self._context = context
        self._stream = self._cuda.stream_create()
        context.set_optimization_profile_async(0, self._stream)
        self._buffers = {n: _DeviceBuffer() for n in (*self._inputs, *self._outputs)}
        self._shapes, self._graphs = {}, {}

    def _deactivate(self) -> None:
        cuda = self._cuda
        if cuda is not None:
            if self._stream:
                cuda.stream_synchronize(self._stream)
            self._drop_graphs()
            for buf in self._buffers.values():
                if buf.ptr:
                    cuda.free(buf.ptr)
            if self._stream:
                cuda.stream_destroy(self._stream)
        self._buffers, self._stream, self._context = {}, 0, None

    def _drop_graphs(self) -> None:
        if self._cuda is not None:
            for graph, graph_exec in self._graphs.values():
                self._cuda.graph_destroy(graph, graph_exec)
        self._graphs = {}

    # -- inference ----------------------------------------------------------------------------
    def _set_shapes(self, feeds: dict[str, np.ndarray]) -> bool:
        """Set input shapes that changed, grow buffers; True when any device address changed."""
        ctx, cuda = self._context, self._cuda
        assert cuda is not None and ctx is not None
        moved = False
        for name in self._inputs:
            shape = tuple(feeds[name].shape)
            lo, hi = self._profile[name]
            if not all(a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True)):
                raise FtedgeError(
                    f"input {name!r} shape {shape} is outside the engine's profile {lo}..{hi} "
                    "(rebuild with a larger --batch-range)"
                )
            if self._shapes.get(name) != shape:
                if not ctx.set_input_shape(name, shape):
                    raise FtedgeError(f"TensorRT rejected input shape {shape} for {name!r}")
                self._shapes[name] = shape
            moved |= self._buffers[name].ensure(cuda, feeds[name].nbytes)
        for name, meta in self._outputs.items():
            shape = _dims(ctx.get_tensor_shape(name))
            self._shapes[name] = shape
            nbytes = int(np.prod(shape, dtype=np.int64)) * meta.dtype.itemsize
            moved |= self._buffers[name].ensure(cuda, nbytes)
        return moved

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda, ctx, stream = self._cuda, self._context, self._stream
        assert cuda is not None and ctx is not None
        host = {n: np.ascontiguousarray(feeds[n], dtype=m.dtype) for n, m in self._inputs.items()}
        if self._set_shapes(host):
            # New device addresses: rebind every tensor, and graphs captured with the old ones
            # would write to freed memory.
            for name, buf in self._buffers.items():
                ctx.set_tensor_address(name, buf.ptr)
            self._drop_graphs()
        for name, x in host.items():
            cuda.memcpy_htod_async(self._buffers[name].ptr, x, stream)
        if self.cuda_graph:
            self._launch_graph(tuple(self._shapes[n] for n in self._inputs))
        elif not ctx.execute_async_v3(stream):
            raise FtedgeError(f"TensorRT execute_async_v3 failed for {self.name}")
        outs = {n: np.empty(self._shapes[n], m.dtype) for n, m in self._outputs.items()}
        for name, y in outs.items():
            cuda.memcpy_dtoh_async(y, self._buffers[name].ptr, stream)
        cuda.stream_synchronize(stream)
        return outs

    def _launch_graph(self, key: tuple[tuple[int, ...], ...]) -> None:
        """Replay the CUDA graph captured for these input shapes (capture it on first use).

        Only the engine's kernels are captured; the host copies stay outside (copies from
        pageable host memory cannot be captured).
        """
        cuda, ctx, stream = self._cuda, self._context, self._stream
        assert cuda is not None and ctx is not None
        if key not in self._graphs:
            # One plain run first: TensorRT does shape-dependent setup on the first enqueue
            # after a shape change, which must not end up inside the graph.
            if not ctx.execute_async_v3(stream):
                raise FtedgeError(f"TensorRT execute_async_v3 failed for {self.name}")
            cuda.stream_synchronize(stream)
            cuda.begin_capture(stream)
            ok = ctx.execute_async_v3(stream)
            graph = cuda.end_capture(stream)
            if not ok:
                raise FtedgeError(f"TensorRT could not be captured in a CUDA graph ({self.name})")
            self._graphs[key] = (graph, cuda.graph_instantiate(graph))
        cuda.graph_launch(self._graphs[key][1], stream)

    # -- metadata -----------------------------------------------------------------------------
    def input_metadata(self) -> dict[str, TensorMeta]:
        self._load_engine()
        return dict(self._inputs)

    def output_metadata(self) -> dict[str, TensorMeta]:
        self._load_engine()
        return dict(self._outputs)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "backend": self.backend,
            "device": self.device,
            "cuda_graph": self.cuda_graph,
        }
        if self._trt is not None:
            d["version"] = str(self._trt.__version__)
            d["device_name"] = self.device_name
            d["compute_capability"] = self.compute_capability
            assert self._cuda is not None
            d["cuda"] = self._cuda.backend
        for k in ("tensorrt_version", "device_name", "cache_key"):
            if k in self.expected:
                d[f"built_{k}"] = self.expected[k]
        return d
