"""Building a TensorRT engine here (needs TensorRT and an NVIDIA GPU).

Detects the installed TensorRT, parses the ONNX into a network, configures the builder with the
recipe's flags and optimization profile, reuses a timing cache per (device, TensorRT version) and
writes the stock plan bytes TensorRT serialised (nothing prepended: trtexec, DeepStream and Triton
load it as is). ``build_here`` turns one pending artifact into a built one, named by its cache key.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftedge.errors import FtedgeError
from ftedge.export.trt_onnx import source_onnx
from ftedge.export.trt_recipe import (
    REBUILD_HINT,
    TIMING_CACHE_REL,
    TRT_DIR,
    BuildPlan,
    CacheKey,
    Profile,
    build_plan,
    parse_version,
    trtexec_command,
)
from ftedge.files import atomic_write_bytes, sha256_file
from ftedge.runtime.manifest import Artifact, Manifest

if TYPE_CHECKING:
    import tensorrt as trt

NOT_INSTALLED = (
    "TensorRT is not installed here (no libnvinfer Python module): TensorRT engines are recorded "
    "as skipped with the trtexec command to build them on the device (or run 'ftedge export "
    "--formats tensorrt BUNDLE' there: on a Jetson TensorRT comes with JetPack)"
)


# -- TensorRT detection -------------------------------------------------------------------------
def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None when only stubs/nothing is importable
    (the backend registry's availability check decides)."""
    from ftedge.runtime.backends import get_backend

    if not get_backend("tensorrt").available():
        return None
    import tensorrt as trt

    return str(trt.__version__)


def tensorrt_unavailable_reason() -> str | None:
    """One line saying why TensorRT engines cannot be built here, or None when they can."""
    return None if tensorrt_version() is not None else NOT_INSTALLED


def default_timing_cache(device_slug: str, trt_version: str) -> Path:
    """Per-device, per-version timing cache in ``$FTEDGE_CACHE_DIR`` or ``~/.cache/ftedge/trt``."""
    base = os.environ.get("FTEDGE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ftedge"
    )
    return Path(base) / "trt" / f"timing-{device_slug}-trt{trt_version}.cache"


# -- the engine build --------------------------------------------------------------------------
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
    # The parser owns the parsed weights: it must stay alive until the engine is built.
    network, _parser = _parse_network(builder, logger, onnx_path, plan)
    config = builder.create_builder_config()
    for name in plan.builder_flags:
        config.set_flag(_enum(trt.BuilderFlag, name))
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    config.add_optimization_profile(_optimization_profile(builder, profile))
    _load_timing_cache(config, timing_cache)
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


def _parse_network(
    builder: trt.Builder, logger: trt.ILogger, onnx_path: Path, plan: BuildPlan
) -> tuple[trt.INetworkDefinition, trt.OnnxParser]:
    """The network parsed from ``onnx_path`` (with the recipe's creation flags), and its parser."""
    import tensorrt as trt

    net_flags = 0
    for name in plan.network_flags:
        net_flags |= 1 << int(_enum(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(net_flags)
    parser = trt.OnnxParser(network, logger)
    # parse_from_file (not parse(bytes)) so that external weight files next to the ONNX resolve.
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FtedgeError(f"TensorRT cannot parse {onnx_path.name}: {errors or 'unknown error'}")
    return network, parser


def _optimization_profile(builder: trt.Builder, profile: Profile) -> trt.IOptimizationProfile:
    import tensorrt as trt

    prof = builder.create_optimization_profile()
    prof.set_shape(
        profile.name,
        trt.Dims(list(profile.min)),
        trt.Dims(list(profile.opt)),
        trt.Dims(list(profile.max)),
    )
    return prof


def _load_timing_cache(config: trt.IBuilderConfig, timing_cache: Path) -> None:
    """Start from the saved timing cache; one from another device/version starts afresh."""
    blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(blob)
    # ignore_mismatch=False: a cache from another device/version is refused, not silently used.
    if not config.set_timing_cache(cache, False):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)


def _enum(enum_cls: Any, name: str) -> Any:
    value = getattr(enum_cls, name, None)
    if value is None:
        raise FtedgeError(f"this TensorRT has no {enum_cls.__name__}.{name}")
    return value


# -- one artifact built here --------------------------------------------------------------------
@dataclass(frozen=True)
class Device:
    """The GPU an engine is built on (an engine only runs on the same model of GPU)."""

    name: str
    compute_capability: str
    slug: str


def _select_device(device: str) -> Device:
    from ftedge.runtime.cuda import load_cuda, parse_device

    cuda = load_cuda()
    index = parse_device(device)
    cuda.set_device(index)
    dev = cuda.device_info(index)
    return Device(dev.name, dev.compute_capability, dev.slug)


def build_here(
    art: Artifact,
    bundle_dir: Path,
    manifest: Manifest,
    src: Artifact,
    profile: Profile,
    version: str,
    device: str,
    timing_cache: Path | None,
    calib: Any = None,
) -> Artifact:
    """Build the engine here and record its cache key, device and TensorRT version.

    ``calib``: INT8 calibration images for the Q/DQ ONNX (None: the bundle's own)."""
    major = parse_version(version)[0]
    plan = build_plan(major, art.precision)
    dev = _select_device(device)
    onnx_rel = source_onnx(bundle_dir, manifest, src, plan.onnx, art, calib)
    key = CacheKey(
        sha256_file(bundle_dir / onnx_rel),
        version,
        dev.name,
        dev.compute_capability,
        art.precision,
        profile.batch_range,
    )
    path = f"{TRT_DIR}/{key.plan_name()}"
    cache = timing_cache or default_timing_cache(dev.slug, version)
    info = build_engine(bundle_dir / onnx_rel, bundle_dir / path, plan, profile, cache)
    digest = sha256_file(bundle_dir / path)
    art = replace(art, path=path, sha256=digest, files={**art.files, path: digest}, status="ok")
    cmd = trtexec_command(plan, onnx_rel, art.path, profile, TIMING_CACHE_REL)
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
    return art
