"""TensorRT engine build step, torch-free (runs on a Jetson with JetPack's TensorRT + numpy).

``export_tensorrt(bundle_dir, manifest, precisions, batch_range)`` turns the bundle's FP32 ONNX
into stock TensorRT plan files, one per precision, under ``tensorrt/`` in the bundle:

- FP32: the FP32 ONNX as is.
- FP16: TensorRT 10.x parses the FP32 ONNX and sets ``BuilderFlag.FP16`` (weak typing);
  TensorRT 11.x removed that flag, so it parses an FP16-typed copy of the ONNX
  (``fp16_onnx``, float32 I/O kept through Cast nodes) into a strongly typed network.
- INT8: an explicit Q/DQ ONNX with *symmetric* int8 activations (TensorRT only takes zero-point-0
  Q/DQ), made by ``ftedge.export.onnx_int8.quantize_qdq`` from the bundle's calibration images.
  TensorRT 11.x has no INT8 flag and no calibrators, 10.x needs ``BuilderFlag.INT8`` for a weakly
  typed network holding Q/DQ; either way the precision comes from the Q/DQ nodes only.

Engines are named by a cache key over (ONNX sha256, TensorRT version, device name + compute
capability, precision, batch profile): ``tensorrt/model.fp16.<key16>.plan``. The plan is the
bytes TensorRT serialised, nothing prepended (trtexec, DeepStream and Triton load it as is).
A timing cache per (device, TensorRT version) under ``~/.cache/ftedge/trt`` makes rebuilds fast.

Without TensorRT (this x86 build machine), each artifact is recorded as ``skipped`` with the
exact ``trtexec`` command lines (TensorRT 10.x and 11.x) that build the same engine on the device,
run from the bundle directory; the FP16 and Q/DQ ONNX inputs those commands need are still
written into the bundle so the device needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.files import atomic_write_bytes, sha256_file
from ftedge.runtime.manifest import Artifact, Manifest

TRT_DIR = "tensorrt"
PRECISIONS = ("fp32", "fp16", "int8")
MIN_MAJOR = 10  # JetPack 6 ships 10.x; 8.x/9.x engines need the removed implicit-batch APIs
FP16_MAX = float(np.finfo(np.float16).max)
REBUILD_HINT = "ftedge export --formats tensorrt BUNDLE"  # the path differs on the device
NOT_INSTALLED = (
    "TensorRT is not installed here (no libnvinfer Python module): TensorRT engines are recorded "
    "as skipped with the trtexec command to build them on the device (or run 'ftedge export "
    "--formats tensorrt BUNDLE' there: on a Jetson TensorRT comes with JetPack)"
)


# -- TensorRT detection -------------------------------------------------------------------------
def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None when only stubs/nothing is importable.

    ``import tensorrt`` alone proves nothing: the ``tensorrt-stubs`` folder makes it an empty
    namespace package, so the real module is recognised by its ``Builder`` class.
    """
    try:
        import tensorrt as trt
    except ImportError:
        return None
    if not hasattr(trt, "Builder"):
        return None
    return str(getattr(trt, "__version__", "0"))


def tensorrt_unavailable_reason() -> str | None:
    """One line saying why TensorRT engines cannot be built here, or None when they can."""
    return None if tensorrt_version() is not None else NOT_INSTALLED


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


# -- precisions, profiles, cache keys ----------------------------------------------------------
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


@dataclass(frozen=True)
class Profile:
    """An optimization profile for one input: min/opt/max shapes."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

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


# -- ONNX inputs: FP16-typed copy and Q/DQ INT8 ------------------------------------------------
def convert_fp16_onnx(src: Path, dst: Path) -> dict[str, Any]:
    """Write an FP16-typed copy of an FP32 ONNX model (``onnxconverter_common.float16``).

    Float32 weights and constants become float16; graph inputs and outputs stay float32 through
    Cast nodes (``keep_io_types``), so callers feed and read float32 exactly as with the FP32
    model (and the TensorRT 11 strongly typed engine has the same I/O). Weights beyond the
    float16 range are clipped (counted in the returned stats).
    """
    import warnings

    import onnx

    try:
        from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError:
        raise FtedgeError(
            "onnxconverter-common is not installed (it makes the FP16 ONNX for TensorRT): "
            "pip install onnxconverter-common"
        ) from None
    fp32 = onnx.load(str(src))
    with warnings.catch_warnings():
        # It warns once per clipped value; the count is returned instead.
        warnings.simplefilter("ignore", UserWarning)
        fp16 = convert_float_to_float16(
            onnx.load(str(src)),  # converted in place: a second copy
            # 0 keeps tiny weights as float16 rounds them (the default lifts them to 1e-7);
            # clipping at the float16 maximum, not the default 1e4, keeps every finite weight.
            min_positive_val=0.0,
            max_finite_val=FP16_MAX,
            keep_io_types=True,
            # The converter types a Cast-to-float's output float16 but leaves the Cast
            # emitting float32 (onnxruntime refuses the model): run such Casts in float32.
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, "Cast"],
        )
    fp16.metadata_props.append(onnx.StringStringEntryProto(key="ftedge.precision", value="fp16"))
    onnx.checker.check_model(fp16)
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dst, fp16.SerializeToString())
    return _fp16_stats(fp32, fp16)


def _fp16_stats(fp32: Any, fp16: Any) -> dict[str, int]:
    """Initializers made float16, and float32 weight values beyond the float16 range."""
    from onnx import TensorProto, numpy_helper

    now16 = {i.name for i in fp16.graph.initializer if i.data_type == TensorProto.FLOAT16}
    tensors = [
        i for i in fp32.graph.initializer if i.data_type == TensorProto.FLOAT and i.name in now16
    ]
    constants = [
        a.t
        for n in fp32.graph.node
        if n.op_type in ("Constant", "ConstantOfShape")
        for a in n.attribute
        if a.name == "value" and a.t.data_type == TensorProto.FLOAT
    ]
    clipped = sum(
        int(np.count_nonzero(np.abs(numpy_helper.to_array(t)) > FP16_MAX))
        for t in [*tensors, *constants]
    )
    return {"initializers_fp16": len(tensors), "clipped_values": clipped}


def calibration_set(manifest: Manifest, input_name: str) -> Any:
    """The bundle's calibration images (``manifest.data``) as a ``CalibrationSet``.

    No data is a clear error, never random or foreign data (INT8 scales would be meaningless).
    """
    from ftedge.export.calibration import CalibrationSet

    root = manifest.data.get("root")
    items = manifest.data.get("calibration") or []
    if not root or not items:
        raise FtedgeError("INT8 needs calibration images: the bundle manifest lists none")
    if not Path(root).is_dir():
        raise FtedgeError(
            f"INT8 calibration data root {root} is not on this machine: make the TensorRT Q/DQ "
            "ONNX where the data is ('ftedge export' writes it into the bundle)"
        )
    samples = [(str(s[0]), int(s[1])) for s in items]
    calib = CalibrationSet.from_samples(root, samples, manifest.spec)
    calib.input_name = input_name
    return calib


def _int8_onnx(
    bundle_dir: Path, manifest: Manifest, fp32: Artifact, out_rel: str
) -> dict[str, Any]:
    """Reuse the bundle's TensorRT Q/DQ ONNX when it was made from this FP32 ONNX, else make it.

    Same calibration method and float-kept nodes as the bundle's (accuracy-gated) ONNX INT8.
    """
    out = bundle_dir / out_rel
    fp32_sha = sha256_file(bundle_dir / fp32.path)
    for a in manifest.artifacts:
        d = a.details.get("source_onnx", {})
        same = a.format == "tensorrt" and a.precision == "int8" and d.get("path") == out_rel
        fresh = same and d.get("from_sha256") == fp32_sha and out.is_file()
        if fresh and sha256_file(out) == d.get("sha256"):
            return {"reused": True, "method": d.get("method")}
    from ftedge.export.onnx_int8 import quantize_qdq

    ref = manifest.find("onnx", "int8")
    ref_details = ref.details if ref is not None else {}
    methods: dict[str, Literal["minmax", "entropy", "percentile"]] = {
        "minmax": "minmax",
        "entropy": "entropy",
        "percentile": "percentile",
    }
    method = methods.get(
        str(ref_details.get("calib_method") or ref_details.get("method")), "minmax"
    )
    exclude = [str(n) for n in ref_details.get("excluded_nodes") or []]
    out.parent.mkdir(parents=True, exist_ok=True)
    quantize_qdq(
        bundle_dir / fp32.path,
        calibration_set(manifest, str(fp32.input["name"])),
        out,
        activation_type="int8",
        symmetric_activations=True,
        per_channel=True,
        method=method,
        exclude_nodes=exclude,
    )
    if not out.is_file():
        raise FtedgeError(f"INT8 quantization did not write {out_rel}")
    return {"reused": False, "method": method, "excluded_nodes": exclude}


# -- the engine build (needs TensorRT + a GPU) -------------------------------------------------
def default_timing_cache(device_slug: str, trt_version: str) -> Path:
    """Per-device, per-version timing cache in ``$FTEDGE_CACHE_DIR`` or ``~/.cache/ftedge/trt``."""
    base = os.environ.get("FTEDGE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ftedge"
    )
    return Path(base) / "trt" / f"timing-{device_slug}-trt{trt_version}.cache"


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    plan: BuildPlan,
    profile: Profile,
    timing_cache: Path,
    workspace_mib: int = 1024,
) -> dict[str, Any]:
    """Parse ``onnx_path`` and build a serialized engine into ``plan_path`` (stock plan bytes)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    net_flags = 0
    for name in plan.network_flags:
        net_flags |= 1 << int(_enum(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(net_flags)
    parser = trt.OnnxParser(network, logger)
    # parse_from_file (not parse(bytes)) so that external weight files next to the ONNX resolve.
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FtedgeError(f"TensorRT cannot parse {onnx_path.name}: {errors or 'unknown error'}")
    config = builder.create_builder_config()
    for name in plan.builder_flags:
        config.set_flag(_enum(trt.BuilderFlag, name))
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    prof = builder.create_optimization_profile()
    prof.set_shape(
        profile.name,
        trt.Dims(list(profile.min)),
        trt.Dims(list(profile.opt)),
        trt.Dims(list(profile.max)),
    )
    config.add_optimization_profile(prof)
    blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(blob)
    # ignore_mismatch=False: a cache from another device/version is refused, not silently used.
    if not config.set_timing_cache(cache, False):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise FtedgeError(
            f"TensorRT failed to build an engine from {onnx_path.name} (see log above)"
        )
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(plan_path, memoryview(serialized).tobytes())
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(timing_cache, memoryview(config.get_timing_cache().serialize()).tobytes())
    return {"build_seconds": round(seconds, 3), "timing_cache": str(timing_cache)}


def _enum(enum_cls: Any, name: str) -> Any:
    value = getattr(enum_cls, name, None)
    if value is None:
        raise FtedgeError(f"this TensorRT has no {enum_cls.__name__}.{name}")
    return value


# -- the export step --------------------------------------------------------------------------
def _source_onnx(
    bundle_dir: Path, manifest: Manifest, fp32: Artifact, kind: str, art: Artifact
) -> str:
    """Relative path of the ONNX a plan parses, making (and listing) the FP16 / Q/DQ copy."""
    if kind == "fp32":
        return str(fp32.path)
    notes = art.details.setdefault("onnx_notes", {})
    if kind == "fp16":
        rel = f"{TRT_DIR}/model.fp16.onnx"
        notes.update(convert_fp16_onnx(bundle_dir / fp32.path, bundle_dir / rel))
    else:
        rel = f"{TRT_DIR}/model.int8-qdq.onnx"
        notes.update(_int8_onnx(bundle_dir, manifest, fp32, rel))
        art.details["source_onnx"] = {
            "path": rel,
            "sha256": sha256_file(bundle_dir / rel),
            "from_sha256": sha256_file(bundle_dir / fp32.path),
            "method": notes.get("method"),
        }
    art.files[rel] = sha256_file(bundle_dir / rel)
    return rel


def export_tensorrt(
    bundle_dir: Path,
    manifest: Manifest,
    precisions: list[str],
    batch_range: tuple[int, int, int],
    *,
    device: str = "cuda:0",
    timing_cache: Path | None = None,
) -> list[Artifact]:
    """Build one TensorRT engine per precision from the bundle's FP32 ONNX.

    Returns one Artifact per precision: ``ok`` (engine built here), ``skipped`` (no TensorRT
    here: the message says so and ``details.trtexec`` holds the device-side commands) or
    ``failed`` (with the reason). Bad arguments raise FtedgeError before anything is written.
    """
    bundle_dir = Path(bundle_dir)
    precisions = check_precisions(precisions)
    batch_range = check_batch_range(batch_range)
    src = manifest.find("onnx", "fp32")
    if src is None or src.status != "ok" or src.input.get("dtype", "float32") != "float32":
        raise FtedgeError("TensorRT needs the bundle's FP32 ONNX (float input): export onnx first")
    profile = make_profile(src.input, batch_range)
    version = tensorrt_version()
    artifacts = []
    for precision in precisions:
        art = Artifact(
            format="tensorrt",
            precision=precision,
            path="",
            input=dict(src.input),
            output=dict(src.output),
            details={"batch_range": list(batch_range), "profile": profile.to_dict()},
        )
        try:
            if version is None:
                _record_skipped(art, bundle_dir, manifest, src, profile)
            else:
                _build_one(art, bundle_dir, manifest, src, profile, version, device, timing_cache)
        except FtedgeError as e:
            art.status, art.message = "failed", str(e)
        artifacts.append(art)
    return artifacts


def _record_skipped(
    art: Artifact, bundle_dir: Path, manifest: Manifest, src: Artifact, profile: Profile
) -> None:
    """No TensorRT here: write the ONNX inputs the device needs, record the trtexec commands."""
    lo, opt, hi = profile.min[0], profile.opt[0], profile.max[0]
    art.path = f"{TRT_DIR}/model.{art.precision}.b{lo}-{opt}-{hi}.plan"
    sources: dict[str, str] = {}
    commands: dict[str, str] = {}
    for major in (10, 11):  # the device's TensorRT version is unknown here: record both
        plan = build_plan(major, art.precision)
        if plan.onnx not in sources:
            sources[plan.onnx] = _source_onnx(bundle_dir, manifest, src, plan.onnx, art)
        commands[f"tensorrt{major}"] = trtexec_command(
            plan, sources[plan.onnx], art.path, profile, f"{TRT_DIR}/timing.cache"
        )
    hint = REBUILD_HINT
    art.status = "skipped"
    art.message = (
        f"TensorRT is not installed here: build on the device with '{hint}' "
        "or the trtexec command in details.trtexec (run in the bundle directory)"
    )
    art.details.update(trtexec=commands, rebuild=hint)


def _build_one(
    art: Artifact,
    bundle_dir: Path,
    manifest: Manifest,
    src: Artifact,
    profile: Profile,
    version: str,
    device: str,
    timing_cache: Path | None,
) -> None:
    """Build the engine here and record its cache key, device and TensorRT version."""
    from ftedge.runtime.cuda import load_cuda, parse_device

    major = parse_version(version)[0]
    plan = build_plan(major, art.precision)
    cuda = load_cuda()
    index = parse_device(device)
    cuda.set_device(index)
    dev = cuda.device_info(index)
    onnx_rel = _source_onnx(bundle_dir, manifest, src, plan.onnx, art)
    batch = (profile.min[0], profile.opt[0], profile.max[0])
    key = CacheKey(
        sha256_file(bundle_dir / onnx_rel),
        version,
        dev.name,
        dev.compute_capability,
        art.precision,
        batch,
    )
    art.path = f"{TRT_DIR}/{key.plan_name()}"
    cache = timing_cache or default_timing_cache(dev.slug, version)
    info = build_engine(bundle_dir / onnx_rel, bundle_dir / art.path, plan, profile, cache)
    art.sha256 = sha256_file(bundle_dir / art.path)
    art.files[art.path] = art.sha256
    art.status = "ok"
    cmd = trtexec_command(plan, onnx_rel, art.path, profile, f"{TRT_DIR}/timing.cache")
    art.details.update(
        cache_key=key.digest,
        cache_key_parts=key.parts(),
        tensorrt_version=version,
        device_name=dev.name,
        compute_capability=dev.compute_capability,
        onnx=onnx_rel,
        build_plan={
            "builder_flags": list(plan.builder_flags),
            "network_flags": list(plan.network_flags),
        },
        trtexec={f"tensorrt{major}": cmd},
        rebuild=REBUILD_HINT,
        **info,
    )
