"""What a TensorRT engine is built from and how, decided without TensorRT (pure, testable here).

Versions, precisions, batch ranges, optimization profiles, engine cache keys, the build recipe per
TensorRT major version (10.x weak typing + builder flags, 11.x strong typing) and the equivalent
``trtexec`` command lines. Nothing here imports TensorRT: ``trt_engine`` resolves the names
recorded here against whatever enums the installed TensorRT has.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from ftedge.errors import FtedgeError

TRT_DIR = "tensorrt"
PRECISIONS = ("fp32", "fp16", "int8")
MIN_MAJOR = 10  # JetPack 6 ships 10.x; 8.x/9.x engines need the removed implicit-batch APIs
REBUILD_HINT = "ftedge export --formats tensorrt BUNDLE"  # the path differs on the device
TIMING_CACHE_REL = f"{TRT_DIR}/timing.cache"  # what the recorded trtexec commands use


# -- versions ----------------------------------------------------------------------------------
def parse_version(version: str) -> tuple[int, int, int]:
    """``"10.3.0.30"`` -> ``(10, 3, 0)``; FtedgeError for anything that is not a version."""
    parts = version.strip().split(".")
    try:
        nums = [int(p) for p in parts[:3]]
    except ValueError:
        raise FtedgeError(f"cannot parse TensorRT version {version!r}") from None
    if not nums or nums[0] < 1:
        raise FtedgeError(f"cannot parse TensorRT version {version!r}")
    return (nums + [0, 0])[0], (nums + [0, 0])[1], (nums + [0, 0])[2]


# -- precisions and batch ranges ---------------------------------------------------------------
def check_precisions(precisions: list[str]) -> list[str]:
    """Validated, de-duplicated precisions (order kept); FtedgeError for anything else."""
    out: list[str] = []
    for p in precisions:
        q = p.strip().lower()
        if q not in PRECISIONS:
            raise FtedgeError(
                f"TensorRT precision must be one of {', '.join(PRECISIONS)}, got {p!r}"
            )
        if q not in out:
            out.append(q)
    if not out:
        raise FtedgeError("no TensorRT precision requested")
    return out


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """``"1:8:32"`` (min:opt:max) or ``"8"`` (fixed) -> a validated batch range."""
    try:
        vals = [int(v) for v in text.split(":")]
    except ValueError:
        raise FtedgeError(f"batch range must be MIN:OPT:MAX integers, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise FtedgeError(f"batch range must be MIN:OPT:MAX, got {text!r}")
    return check_batch_range((vals[0], vals[1], vals[2]))


def check_batch_range(batch_range: tuple[int, int, int]) -> tuple[int, int, int]:
    """FtedgeError unless 1 <= min <= opt <= max."""
    if len(batch_range) != 3 or not all(isinstance(b, int) for b in batch_range):
        raise FtedgeError(f"batch range must be three integers (min, opt, max), got {batch_range}")
    lo, opt, hi = batch_range
    if lo < 1:
        raise FtedgeError(f"batch range minimum must be >= 1, got {batch_range}")
    if not lo <= opt <= hi:
        raise FtedgeError(f"batch range must satisfy min <= opt <= max, got {lo}:{opt}:{hi}")
    return lo, opt, hi


# -- optimization profiles ---------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """An optimization profile for one input: min/opt/max shapes."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def batch_range(self) -> tuple[int, int, int]:
        """(min, opt, max) of the batch dimension."""
        return self.min[0], self.opt[0], self.max[0]

    def trtexec_args(self) -> list[str]:
        def fmt(s: tuple[int, ...]) -> str:
            return f"{self.name}:{'x'.join(map(str, s))}"

        return [
            f"--minShapes={fmt(self.min)}",
            f"--optShapes={fmt(self.opt)}",
            f"--maxShapes={fmt(self.max)}",
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.name,
            "min": list(self.min),
            "opt": list(self.opt),
            "max": list(self.max),
        }


def make_profile(input_meta: dict[str, Any], batch_range: tuple[int, int, int]) -> Profile:
    """Profile shapes from an artifact's ``input`` (``shape`` like [-1, 3, H, W]) and a range.

    The first dim is the batch (dynamic, -1 or a name); every other dim must be fixed.
    """
    lo, opt, hi = check_batch_range(batch_range)
    name = input_meta.get("name")
    shape = input_meta.get("shape")
    if not isinstance(name, str) or not name or not isinstance(shape, list) or len(shape) < 2:
        raise FtedgeError(f"artifact input needs a name and a [batch, ...] shape, got {input_meta}")
    rest = shape[1:]
    if not all(isinstance(d, int) and d > 0 for d in rest):
        raise FtedgeError(f"input {name!r}: only the batch dim may be dynamic, got shape {shape}")
    fixed = shape[0]
    if isinstance(fixed, int) and fixed > 0 and not lo == opt == hi == fixed:
        raise FtedgeError(
            f"input {name!r} has a fixed batch of {fixed}; batch range {lo}:{opt}:{hi} needs a "
            "model exported with a dynamic batch"
        )
    dims = tuple(int(d) for d in rest)
    return Profile(name, (lo, *dims), (opt, *dims), (hi, *dims))


# -- engine cache keys -------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheKey:
    """What an engine depends on; change any part and the engine must be rebuilt."""

    onnx_sha256: str
    tensorrt_version: str
    device_name: str
    compute_capability: str
    precision: str
    batch_range: tuple[int, int, int]

    @property
    def digest(self) -> str:
        blob = json.dumps(self.parts(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def short(self) -> str:
        return self.digest[:16]

    def parts(self) -> dict[str, Any]:
        return {
            "onnx_sha256": self.onnx_sha256,
            "tensorrt_version": self.tensorrt_version,
            "device_name": self.device_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
            "batch_range": list(self.batch_range),
        }

    def plan_name(self) -> str:
        return f"model.{self.precision}.{self.short}.plan"


# -- TensorRT 10.x vs 11.x ---------------------------------------------------------------------
@dataclass(frozen=True)
class BuildPlan:
    """How to build one precision with one TensorRT major version (names, not enums, so that it
    is testable without TensorRT and resolved against whatever enums the installed one has)."""

    major: int
    precision: str
    onnx: str  # which ONNX to parse: "fp32" | "fp16" | "int8" (Q/DQ)
    builder_flags: tuple[str, ...] = ()
    network_flags: tuple[str, ...] = ()
    trtexec_flags: tuple[str, ...] = field(default=())


def build_plan(major: int, precision: str) -> BuildPlan:
    """The flags and ONNX input for ``precision`` on TensorRT ``major`` (10 or 11+)."""
    (precision,) = check_precisions([precision])
    if major < MIN_MAJOR:
        raise FtedgeError(
            f"TensorRT {major}.x is not supported: ftedge needs TensorRT >= 10 (JetPack 6)"
        )
    if major == 10:
        # Weak typing: TensorRT picks kernels per layer among the precisions the flags allow.
        # EXPLICIT_BATCH is deprecated and ignored in 10.x (networks are always explicit batch).
        if precision == "fp32":
            return BuildPlan(major, precision, "fp32")
        if precision == "fp16":
            return BuildPlan(major, precision, "fp32", ("FP16",), (), ("--fp16",))
        # A weakly typed network with Q/DQ nodes still needs the INT8 flag; no calibrator: the
        # scales come from the Q/DQ ONNX. Layers outside Q/DQ stay FP32 (same as on 11.x).
        return BuildPlan(major, precision, "int8", ("INT8",), (), ("--int8",))
    # 11.x removed BuilderFlag.FP16/INT8, the calibrators and weak typing: the ONNX carries the
    # types. STRONGLY_TYPED is always on there; passing it is harmless and documents intent.
    onnx = {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}[precision]
    return BuildPlan(major, precision, onnx, (), ("STRONGLY_TYPED",), ("--stronglyTyped",))


def trtexec_command(
    plan: BuildPlan, onnx_rel: str, engine_rel: str, profile: Profile, timing_cache_rel: str
) -> str:
    """The trtexec command line (run from the bundle directory) that builds the same engine."""
    args = [
        "trtexec",
        f"--onnx={onnx_rel}",
        f"--saveEngine={engine_rel}",
        *profile.trtexec_args(),
        f"--timingCacheFile={timing_cache_rel}",
        *plan.trtexec_flags,
        "--skipInference",
    ]
    return shlex.join(args)
