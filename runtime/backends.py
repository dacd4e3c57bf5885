"""The backend registry: every inference backend ftedge can run, described once.

    from ftedge.runtime.backends import get_backend
    be = get_backend("ov")                     # aliases: ort, ov, trt, pytorch
    if be.available():
        runner = be.create_runner("model.xml", device=be.device_for("cpu"), threads=2)

Each :class:`Backend` entry names its runner class (imported only when a runner is made), the
artifact formats it reads (best first), its one availability check, how a user device string
maps to its device, and the pip extra that installs it. ``load``, ``ftedge benchmark`` and
export verification all make runners and check availability here, so adding a backend is one
entry below plus one module in ``ftedge.runtime.runners``.

Devices are reported in one lower-case spelling everywhere ("cpu", "cuda:0", "gpu", "npu");
a runner translates to its library's own spelling (OpenVINO's "CPU") internally.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ftedge.errors import FtedgeError, MissingExtraError

if TYPE_CHECKING:
    from ftedge.runtime.runners.base import Runner

BackendName = Literal["onnxruntime", "openvino", "tensorrt", "torch"]
ArtifactFormat = Literal["onnx", "openvino", "tensorrt"]


def module_importable(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (a cheap ``find_spec``)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # sys.modules[module] is None (blocked) or broken
        return False


def tensorrt_usable() -> bool:
    """True when a real TensorRT is importable.

    ``import tensorrt`` alone is not proof: the ``tensorrt-stubs`` type stubs make it an empty
    namespace package, so look for the runtime API and a version.
    """
    if not module_importable("tensorrt"):
        return False
    try:
        import tensorrt
    except Exception:  # ImportError, or OSError from a missing libnvinfer
        return False
    return hasattr(tensorrt, "Runtime") and hasattr(tensorrt, "__version__")


def _cpu_device(d: str) -> str | None:
    return "cpu" if d in ("", "cpu") else None


def _onnxruntime_device(d: str) -> str | None:
    if d == "cuda" or d.startswith("cuda:"):
        return "cuda"
    if d == "tensorrt":  # onnxruntime's TensorRT execution provider
        return "tensorrt"
    return _cpu_device(d)


def _openvino_device(d: str) -> str | None:
    if d.split(":")[0].split(".")[0] in ("gpu", "npu", "auto"):  # gpu, gpu.1, npu, auto:...
        return d
    return _cpu_device(d)


def _tensorrt_device(d: str) -> str | None:
    if d in ("", "cuda", "gpu"):
        return "cuda:0"
    return d if d.startswith("cuda:") else None


def _torch_device(d: str) -> str | None:
    if d == "cuda" or d.startswith("cuda:"):
        return d
    return _cpu_device(d)


@dataclass(frozen=True)
class Backend:
    """One inference backend: its runner, what it reads, whether it is here, its devices."""

    name: BackendName
    runner: str  # "package.module:Class", imported when a runner is made
    formats: tuple[ArtifactFormat, ...]  # artifact formats it runs, best first (torch: none)
    module: str  # the Python package that provides it
    extra: str  # pip install 'ftedge[<extra>]'
    probe: Callable[[], bool]  # the one availability check
    map_device: Callable[[str], str | None]  # normalised user device -> runner device
    threaded: bool = True  # the runner takes ``threads=``

    def available(self) -> bool:
        """Whether the backend can be imported here (cheap: nothing heavy is imported)."""
        return self.probe()

    def device_for(self, device: str | None) -> str | None:
        """This backend's device for a user device string, or None when it cannot use it."""
        return self.map_device((device or "").strip().lower())

    def missing_error(self) -> MissingExtraError:
        return MissingExtraError(self.module, self.extra)

    def runner_class(self) -> type[Runner]:
        module, _, cls = self.runner.partition(":")
        runner: type[Runner] = getattr(importlib.import_module(module), cls)
        return runner

    def create_runner(
        self, model_path: str, *, device: str, threads: int | None = None, **options: Any
    ) -> Runner:
        """An inactive runner for ``model_path``; ``options`` go to the runner's constructor."""
        if self.threaded:
            options["threads"] = threads
        return self.runner_class()(model_path, device=device, **options)


_RUNNERS = "ftedge.runtime.runners"
BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "onnxruntime",
            f"{_RUNNERS}.onnxruntime:OnnxRuntimeRunner",
            ("onnx",),
            "onnxruntime",
            "onnx",
            lambda: module_importable("onnxruntime"),
            _onnxruntime_device,
        ),
        Backend(
            "openvino",
            f"{_RUNNERS}.openvino:OpenVinoRunner",
            ("openvino", "onnx"),  # OpenVINO reads ONNX files too, after its own IR
            "openvino",
            "openvino",
            lambda: module_importable("openvino"),
            _openvino_device,
        ),
        Backend(
            "tensorrt",
            f"{_RUNNERS}.tensorrt:TensorRTRunner",
            ("tensorrt",),
            "tensorrt",
            "tensorrt",
            lambda: tensorrt_usable(),  # looked up at call time: tests can patch it
            _tensorrt_device,
            threaded=False,
        ),
        Backend(
            "torch",
            f"{_RUNNERS}.torch_ref:TorchRunner",
            (),
            "torch",
            "train",
            lambda: module_importable("torch"),
            _torch_device,
        ),
    )
}
ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "ov": "openvino", "trt": "tensorrt"}
ALIASES["pytorch"] = "torch"


def normalize_backend(backend: str) -> str:
    """A backend name or alias -> its registry name ("auto" stays "auto")."""
    key = backend.strip().lower()
    key = ALIASES.get(key, key)
    if key != "auto" and key not in BACKENDS:
        raise FtedgeError(
            f"unknown backend {backend!r}: use auto, {', '.join(BACKENDS)} (or ort, ov, trt)"
        )
    return key


def get_backend(name: str) -> Backend:
    """The registry entry for a backend name or alias (not "auto")."""
    key = normalize_backend(name)
    if key == "auto":
        raise FtedgeError("'auto' is a choice among backends, not a backend")
    return BACKENDS[key]


def native_backend(fmt: str) -> Backend:
    """The backend an artifact format is verified with: the one that reads it best."""
    for b in BACKENDS.values():
        if b.formats and b.formats[0] == fmt:
            return b
    raise FtedgeError(f"unknown artifact format {fmt!r}")


def format_available(fmt: str) -> bool:
    """Whether this machine can run (and so verify) artifacts of format ``fmt``."""
    return native_backend(fmt).available()
