"""The runner lifecycle shared by every backend (after Polygraphy's runners).

    with OnnxRuntimeRunner("model.onnx") as runner:      # __enter__ -> activate(): sessions, buffers
        outputs = runner.infer({"input": batch})         # checked, timed, backend-specific _infer
    # __exit__ -> deactivate(): free everything

The base class checks feeds (names, dtypes, ranks, static dims) and times inference once, so a
backend module only fills in ``_activate``, ``_infer``, ``_deactivate`` and ``input_metadata``.
Backend modules import their library inside ``_activate`` (lazily), so importing them is cheap.
"""

from __future__ import annotations

import abc
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from ftedge.errors import FtedgeError


@dataclass(frozen=True)
class TensorMeta:
    """A model input or output: dtype and shape (``-1`` or a string for a dynamic dim)."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int | str, ...]


# Inference times kept per runner: the most recent ones only, so that a camera app calling
# ``infer`` for days holds a constant amount of memory.
TIMING_WINDOW = 1000


class Runner(abc.ABC):
    """Base class: ``activate`` / ``infer`` / ``deactivate`` with input checking and timing.

    ``last_inference_s`` is the latest inference time and ``inference_times_s`` the last
    ``TIMING_WINDOW`` of them (older ones are dropped).
    """

    backend: ClassVar[str] = "base"

    def __init__(self, model_path: str, *, device: str = "cpu", name: str | None = None) -> None:
        self.model_path = str(model_path)
        self.device = device
        self.name = name or f"{self.backend}:{model_path}"
        self.is_active = False
        self.last_inference_s: float | None = None
        self.inference_times_s: deque[float] = deque(maxlen=TIMING_WINDOW)

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.deactivate()

    def activate(self) -> None:
        if self.is_active:
            raise FtedgeError(f"{self.name} is already active")
        self._activate()
        self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    # -- inference ----------------------------------------------------------------------------
    def infer(self, feeds: dict[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        """Run one inference; ``check=False`` skips input checking (benchmark inner loops)."""
        if not self.is_active:
            raise FtedgeError(f"{self.name} is not active: use it in a 'with' block")
        if check:
            self.check_feeds(feeds)
        start = time.perf_counter()
        out = self._infer(feeds)
        self.last_inference_s = time.perf_counter() - start
        self.inference_times_s.append(self.last_inference_s)
        return out

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        meta = self.input_metadata()
        missing = sorted(set(meta) - set(feeds))
        extra = sorted(set(feeds) - set(meta))
        if missing or extra:
            raise FtedgeError(f"{self.name}: expected inputs {sorted(meta)}, got {sorted(feeds)}")
        for name, m in meta.items():
            x = feeds[name]
            if not isinstance(x, np.ndarray):
                raise FtedgeError(f"input {name!r} must be a numpy array, got {type(x).__name__}")
            if x.dtype != m.dtype:
                raise FtedgeError(f"input {name!r} must be {m.dtype}, got {x.dtype}")
            if x.ndim != len(m.shape):
                raise FtedgeError(
                    f"input {name!r} must have {len(m.shape)} dims {m.shape}, got {x.shape}"
                )
            for i, (want, got) in enumerate(zip(m.shape, x.shape, strict=True)):
                if isinstance(want, int) and want >= 0 and want != got:
                    raise FtedgeError(
                        f"input {name!r} dim {i} must be {want} (shape {m.shape}), got {x.shape}"
                    )

    # -- backend-specific ---------------------------------------------------------------------
    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abc.abstractmethod
    def _deactivate(self) -> None: ...

    # -- I/O metadata -------------------------------------------------------------------------
    # Backends fill ``_inputs``/``_outputs`` when they open the model; ``_load_metadata`` reads
    # them without activating, for callers that ask first (a runner may override both getters).
    _inputs: dict[str, TensorMeta] | None = None
    _outputs: dict[str, TensorMeta] | None = None

    def _load_metadata(self) -> None:
        raise FtedgeError(f"{self.name}: activate the runner before asking for its inputs")

    def input_metadata(self) -> dict[str, TensorMeta]:
        if self._inputs is None:
            self._load_metadata()
        assert self._inputs is not None
        return dict(self._inputs)

    def output_metadata(self) -> dict[str, TensorMeta]:
        if self._outputs is None:
            self._load_metadata()
        assert self._outputs is not None
        return dict(self._outputs)

    def describe(self) -> dict[str, Any]:
        """Facts about the active session (device, execution precision...) for reports."""
        return {"backend": self.backend, "device": self.device}
