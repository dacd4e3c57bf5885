"""What one benchmark job is and how to measure it: ``BenchmarkOptions`` and ``Job``.

Both travel to the worker process as JSON (``ftedge.runtime.bench_worker``), so they hold only
plain values: strings, numbers, tuples, lists and dicts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ftedge.errors import FtedgeError

MODES = ("compute", "end_to_end")


@dataclass(frozen=True)
class BenchmarkOptions:
    """How to measure (defaults follow docs/benchmark.md)."""

    batches: tuple[int, ...] = (1,)
    modes: tuple[str, ...] = ("compute",)
    threads: int | None = None
    backends: tuple[str, ...] | None = None  # None: every backend available here
    device: str | None = None  # None: cpu (and cuda:0 for TensorRT plans)
    min_iters: int = 50
    min_seconds: float = 2.0
    max_seconds: float = 60.0  # hard cap per timed loop (slow reference at large batch)
    warmup_iters: int = 10
    warmup_seconds: float = 0.5
    isolate: bool = True  # one child process per job (see ftedge.runtime.bench_worker)
    ort_spin: bool = False
    power: str = "auto"  # auto | sysfs | tegrastats | none
    idle_seconds: float = 2.0
    measure_accuracy: bool = False  # re-measure on the test split instead of the manifest's
    include_torch: bool = True
    openvino_f32: bool = True  # also run OpenVINO IRs with the f32 precision hint
    # Compile OpenVINO models per batch with that batch fixed (like benchmark_app -shape and
    # trtexec --shapes); False times the dynamic-batch model as loaded by ftedge.runtime.load().
    openvino_static: bool = True
    topk: int = 5
    job_timeout_s: float = 900.0
    # End-to-end on in-memory BGR frames of this (width, height) instead of image files, with
    # this preprocessing choice (auto | fast | exact, as ftedge.runtime.load takes).
    frames: tuple[int, int] | None = None
    preprocessing: str = "auto"

    def __post_init__(self) -> None:
        if not self.batches or any(b < 1 for b in self.batches):
            raise FtedgeError(f"batch sizes must be >= 1, got {list(self.batches)}")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise FtedgeError(f"mode must be compute, end_to_end or both, got {bad or 'none'}")
        if self.threads is not None and self.threads < 1:
            raise FtedgeError(f"threads must be >= 1, got {self.threads}")
        if self.min_iters < 1 or self.warmup_iters < 0:
            raise FtedgeError("min-iters must be >= 1 and warmup-iters >= 0")
        if not all(0 <= s < math.inf for s in (self.min_seconds, self.warmup_seconds)):
            raise FtedgeError("min-seconds and warmup-seconds must be finite and >= 0")
        if self.preprocessing not in ("auto", "fast", "exact"):
            raise FtedgeError(
                f"preprocessing must be auto, fast or exact, got {self.preprocessing!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchmarkOptions:
        """The inverse of ``to_dict`` after a JSON round trip (lists back to tuples)."""
        o = dict(d)
        for k in ("batches", "modes", "backends", "frames"):
            if o.get(k) is not None:
                o[k] = tuple(o[k])
        return cls(**o)


@dataclass
class Job:
    """One (artifact, backend, device, variant) to measure; JSON-serialisable for the child."""

    artifact: str  # display name: onnx-fp32, openvino-int8, pytorch, ...
    format: str  # onnx | openvino | tensorrt | pytorch
    precision: str  # fp32 | fp16 | int8 | unknown
    backend: str  # onnxruntime | openvino | tensorrt | torch
    device: str  # runner device string
    model_path: str  # absolute
    variant: str | None = None  # e.g. "f32" (OpenVINO precision hint)
    runner_options: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)  # manifest input spec (may be empty)
    preprocessing: dict[str, Any] | None = None
    images: list[str] = field(default_factory=list)  # end-to-end inputs (absolute paths)
    accuracy: float | None = None  # fraction in [0, 1], as in the manifest
    accuracy_source: str | None = None  # manifest | measured | None
    bundle_dir: str | None = None  # for --measure-accuracy (export verification data)
    output_kind: str = "logits"
    task: str = "classification"  # the bundle's task: classification | detection
    output: dict[str, Any] = field(default_factory=dict)  # the manifest's output spec (detection)
    idle_mw: float | None = None

    @property
    def label(self) -> str:
        v = f"[{self.variant}]" if self.variant else ""
        return f"{self.artifact} on {self.backend}{v}:{self.device}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(**d)

    def identity(self) -> dict[str, Any]:
        """The columns that name this job in every result and skipped row."""
        return {
            "artifact": self.artifact,
            "format": self.format,
            "precision": self.precision,
            "backend": self.backend,
            "device": self.device,
            "variant": self.variant,
        }
