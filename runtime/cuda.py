"""Minimal CUDA runtime helpers for the TensorRT runner and builder: no torch, no pycuda.

Everything a TensorRT engine needs from CUDA fits in a dozen calls: device memory, async copies
on a stream, stream synchronisation, and CUDA graph capture/replay. They come from
cuda-python (``cuda.bindings.runtime`` in cuda-python >= 12.6, ``cuda.cudart`` before that;
``pip install 'ftedge[tensorrt]'``) or, when cuda-python is missing (a bare JetPack image), from
``libcudart.so`` through ctypes. Handles (pointers, streams, graphs) are plain ``int``.

    cuda = load_cuda()                  # FtedgeError when neither backend or no GPU is usable
    ptr = cuda.malloc(x.nbytes)
    stream = cuda.stream_create()
    cuda.memcpy_htod_async(ptr, x, stream); cuda.stream_synchronize(stream)
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError

INSTALL_HINT = (
    "pip install 'ftedge[tensorrt]' (cuda-python), or use a JetPack/CUDA install with libcudart.so"
)

# cudaMemcpyKind and cudaStreamCaptureMode values from the CUDA runtime headers (stable ABI).
_H2D, _D2H = 1, 2
_CAPTURE_THREAD_LOCAL = 1  # other threads' CUDA calls do not invalidate our capture
_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76  # cudaDevAttrComputeCapabilityMajor/Minor


@dataclass(frozen=True)
class DeviceInfo:
    """What identifies a GPU for TensorRT engine compatibility."""

    index: int
    name: str
    compute_capability: str  # "8.7"

    @property
    def slug(self) -> str:
        """File-name-safe device id, e.g. ``orin-sm87``."""
        safe = "".join(c if c.isalnum() else "-" for c in self.name.lower()).strip("-")
        return f"{safe}-sm{self.compute_capability.replace('.', '')}"


class CudaRuntime:
    """The CUDA runtime calls we use, as ints in and ints out; raises FtedgeError on failure."""

    backend = "none"

    # Each backend implements these with the same int-handle signatures.
    def device_count(self) -> int:
        raise NotImplementedError

    def set_device(self, index: int) -> None:
        raise NotImplementedError

    def device_info(self, index: int) -> DeviceInfo:
        raise NotImplementedError

    def runtime_version(self) -> int:
        raise NotImplementedError

    def malloc(self, nbytes: int) -> int:
        raise NotImplementedError

    def free(self, ptr: int) -> None:
        raise NotImplementedError

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        raise NotImplementedError

    def stream_create(self) -> int:
        raise NotImplementedError

    def stream_synchronize(self, stream: int) -> None:
        raise NotImplementedError

    def stream_destroy(self, stream: int) -> None:
        raise NotImplementedError

    def begin_capture(self, stream: int) -> None:
        raise NotImplementedError

    def end_capture(self, stream: int) -> int:
        raise NotImplementedError

    def graph_instantiate(self, graph: int) -> int:
        raise NotImplementedError

    def graph_launch(self, graph_exec: int, stream: int) -> None:
        raise NotImplementedError

    def graph_destroy(self, graph: int, graph_exec: int) -> None:
        raise NotImplementedError

    # -- numpy conveniences -------------------------------------------------------------------
    def memcpy_htod_async(self, dst: int, host: np.ndarray, stream: int) -> None:
        """Copy a C-contiguous host array to device memory ``dst`` (async on ``stream``)."""
        if not host.flags.c_contiguous:
            raise FtedgeError("host array must be C-contiguous for a device copy")
        self.memcpy_async(dst, int(host.ctypes.data), host.nbytes, _H2D, stream)

    def memcpy_dtoh_async(self, host: np.ndarray, src: int, stream: int) -> None:
        """Copy device memory ``src`` into a C-contiguous host array (async on ``stream``)."""
        if not host.flags.c_contiguous:
            raise FtedgeError("host array must be C-contiguous for a device copy")
        self.memcpy_async(int(host.ctypes.data), src, host.nbytes, _D2H, stream)


# -- cuda-python ------------------------------------------------------------------------------
class _BindingsRuntime(CudaRuntime):
    """cuda-python: every call returns ``(err, *values)``; handles convert with ``int()``."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.backend = f"cuda-python ({rt.__name__})"

    def _call(self, fn: str, *args: Any) -> Any:
        res = getattr(self.rt, fn)(*args)
        err = res[0]
        if int(err) != 0:
            _, msg = self.rt.cudaGetErrorString(err)
            text = msg.decode() if isinstance(msg, bytes) else str(msg)
            raise FtedgeError(f"CUDA {fn} failed: {text} (error {int(err)})")
        return res[1] if len(res) == 2 else None

    def device_count(self) -> int:
        return int(self._call("cudaGetDeviceCount"))

    def set_device(self, index: int) -> None:
        self._call("cudaSetDevice", index)

    def device_info(self, index: int) -> DeviceInfo:
        prop = self._call("cudaGetDeviceProperties", index)
        name = prop.name.split(b"\0", 1)[0].decode() if isinstance(prop.name, bytes) else prop.name
        return DeviceInfo(index, str(name), f"{int(prop.major)}.{int(prop.minor)}")

    def runtime_version(self) -> int:
        return int(self._call("cudaRuntimeGetVersion"))

    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", nbytes))

    def free(self, ptr: int) -> None:
        self._call("cudaFree", ptr)

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        self._call("cudaMemcpyAsync", dst, src, nbytes, self.rt.cudaMemcpyKind(kind), stream)

    def stream_create(self) -> int:
        # Non-blocking: no implicit sync with the legacy default stream (other libraries' work).
        return int(self._call("cudaStreamCreateWithFlags", 1))

    def stream_synchronize(self, stream: int) -> None:
        self._call("cudaStreamSynchronize", stream)

    def stream_destroy(self, stream: int) -> None:
        self._call("cudaStreamDestroy", stream)

    def begin_capture(self, stream: int) -> None:
        mode = self.rt.cudaStreamCaptureMode(_CAPTURE_THREAD_LOCAL)
        self._call("cudaStreamBeginCapture", stream, mode)

    def end_capture(self, stream: int) -> int:
        return int(self._call("cudaStreamEndCapture", stream))

    def graph_instantiate(self, graph: int) -> int:
        # WithFlags: same (graph, flags) signature from CUDA 11.4 to 13 (plain cudaGraphInstantiate
        # changed its arguments in CUDA 12).
        return int(self._call("cudaGraphInstantiateWithFlags", graph, 0))

    def graph_launch(self, graph_exec: int, stream: int) -> None:
        self._call("cudaGraphLaunch", graph_exec, stream)

    def graph_destroy(self, graph: int, graph_exec: int) -> None:
        self._call("cudaGraphExecDestroy", graph_exec)
        self._call("cudaGraphDestroy", graph)


# -- ctypes libcudart -------------------------------------------------------------------------
def _libcudart_candidates() -> list[str]:
    """Where libcudart usually is: the loader path, CUDA/JetPack installs, pip CUDA wheels."""
    names = ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]
    dirs = [
        Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "lib64",
        Path("/usr/lib/aarch64-linux-gnu"),
    ]
    for p in map(Path, sys.path):
        dirs += [p / "nvidia" / "cu13" / "lib", p / "nvidia" / "cuda_runtime" / "lib"]
    found = [str(d / n) for d in dirs for n in names if (d / n).is_file()]
    return names + found


class _CtypesRuntime(CudaRuntime):
    """libcudart.so through ctypes: every call returns a cudaError_t (0 = success)."""

    def __init__(self, lib: ctypes.CDLL, path: str) -> None:
        self.lib = lib
        self.backend = f"ctypes ({path})"
        self.lib.cudaGetErrorString.restype = ctypes.c_char_p
        for fn in ("cudaMalloc", "cudaFree", "cudaMemcpyAsync", "cudaStreamSynchronize"):
            getattr(self.lib, fn).restype = ctypes.c_int

    def _check(self, fn: str, *args: Any) -> None:
        err = int(getattr(self.lib, fn)(*args))
        if err != 0:
            msg = self.lib.cudaGetErrorString(err)
            text = msg.decode() if isinstance(msg, bytes) else str(msg)
            raise FtedgeError(f"CUDA {fn} failed: {text} (error {err})")

    def _out(self, fn: str, ctype: Any, *args: Any) -> Any:
        out = ctype()
        self._check(fn, ctypes.byref(out), *args)
        return out.value

    def device_count(self) -> int:
        return int(self._out("cudaGetDeviceCount", ctypes.c_int))

    def set_device(self, index: int) -> None:
        self._check("cudaSetDevice", ctypes.c_int(index))

    def device_info(self, index: int) -> DeviceInfo:
        major = self._out("cudaDeviceGetAttribute", ctypes.c_int, _ATTR_CC_MAJOR, index)
        minor = self._out("cudaDeviceGetAttribute", ctypes.c_int, _ATTR_CC_MINOR, index)
        # cudaDeviceProp starts with char name[256] in every CUDA version; the struct is ~1 KiB,
        # so a generous buffer avoids depending on its exact (version-specific) layout.
        buf = ctypes.create_string_buffer(8192)
        fn = (
            "cudaGetDeviceProperties_v2"
            if hasattr(self.lib, "cudaGetDeviceProperties_v2")
            else "cudaGetDeviceProperties"
        )
        self._check(fn, buf, ctypes.c_int(index))
        name = buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace")
        return DeviceInfo(index, name, f"{major}.{minor}")

    def runtime_version(self) -> int:
        return int(self._out("cudaRuntimeGetVersion", ctypes.c_int))

    def malloc(self, nbytes: int) -> int:
        return int(self._out("cudaMalloc", ctypes.c_void_p, ctypes.c_size_t(nbytes)) or 0)

    def free(self, ptr: int) -> None:
        self._check("cudaFree", ctypes.c_void_p(ptr))

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        self._check(
            "cudaMemcpyAsync",
            ctypes.c_void_p(dst),
            ctypes.c_void_p(src),
            ctypes.c_size_t(nbytes),
            ctypes.c_int(kind),
            ctypes.c_void_p(stream),
        )

    def stream_create(self) -> int:
        return int(self._out("cudaStreamCreateWithFlags", ctypes.c_void_p, ctypes.c_uint(1)) or 0)

    def stream_synchronize(self, stream: int) -> None:
        self._check("cudaStreamSynchronize", ctypes.c_void_p(stream))

    def stream_destroy(self, stream: int) -> None:
        self._check("cudaStreamDestroy", ctypes.c_void_p(stream))

    def begin_capture(self, stream: int) -> None:
        self._check(
            "cudaStreamBeginCapture", ctypes.c_void_p(stream), ctypes.c_int(_CAPTURE_THREAD_LOCAL)
        )

    def end_capture(self, stream: int) -> int:
        graph = ctypes.c_void_p()
        self._check("cudaStreamEndCapture", ctypes.c_void_p(stream), ctypes.byref(graph))
        return int(graph.value or 0)

    def graph_instantiate(self, graph: int) -> int:
        # CUDA 12 changed cudaGraphInstantiate to (exec*, graph, flags); cudaGraphInstantiateWithFlags
        # has had that signature since CUDA 11.4, so it works on both.
        exec_ = ctypes.c_void_p()
        self._check(
            "cudaGraphInstantiateWithFlags",
            ctypes.byref(exec_),
            ctypes.c_void_p(graph),
            ctypes.c_ulonglong(0),
        )
        return int(exec_.value or 0)

    def graph_launch(self, graph_exec: int, stream: int) -> None:
        self._check("cudaGraphLaunch", ctypes.c_void_p(graph_exec), ctypes.c_void_p(stream))

    def graph_destroy(self, graph: int, graph_exec: int) -> None:
        self._check("cudaGraphExecDestroy", ctypes.c_void_p(graph_exec))
        self._check("cudaGraphDestroy", ctypes.c_void_p(graph))


def _import_bindings() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart  # cuda-python < 12.6

        return cudart
    except ImportError:
        return None


def _open_libcudart() -> _CtypesRuntime | None:
    for cand in _libcudart_candidates():
        try:
            return _CtypesRuntime(ctypes.CDLL(cand), cand)
        except OSError:
            continue
    return None


def load_cuda(prefer: str = "auto", *, require_device: bool = True) -> CudaRuntime:
    """The CUDA runtime: cuda-python if installed, else libcudart via ctypes.

    ``prefer`` is "auto", "cuda-python" or "ctypes". With ``require_device`` (default) a machine
    without a usable GPU raises FtedgeError naming the reason (no device, driver too old...).
    """
    if prefer not in ("auto", "cuda-python", "ctypes"):
        raise FtedgeError(f"CUDA backend must be auto, cuda-python or ctypes, got {prefer!r}")
    cuda: CudaRuntime | None = None
    if prefer in ("auto", "cuda-python"):
        rt = _import_bindings()
        cuda = _BindingsRuntime(rt) if rt is not None else None
    if cuda is None and prefer in ("auto", "ctypes"):
        cuda = _open_libcudart()
    if cuda is None:
        raise FtedgeError(
            f"no CUDA runtime found (neither cuda-python nor libcudart.so): {INSTALL_HINT}"
        )
    if require_device:
        try:
            n = cuda.device_count()
        except FtedgeError as e:
            raise FtedgeError(
                f"no usable CUDA GPU here ({e}); TensorRT needs an NVIDIA GPU"
            ) from None
        if n < 1:
            raise FtedgeError("no CUDA GPU found here; TensorRT needs an NVIDIA GPU")
    return cuda


def parse_device(device: str) -> int:
    """``"cuda"``, ``"cuda:1"`` or ``"gpu:0"`` -> device index; anything else is an error."""
    d = device.strip().lower()
    head, _, idx = d.partition(":")
    if head not in ("cuda", "gpu") or (idx and not idx.isdigit()):
        raise FtedgeError(f"TensorRT device must be 'cuda' or 'cuda:N', got {device!r}")
    return int(idx or 0)
