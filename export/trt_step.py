"""The TensorRT export step: one engine per precision from the bundle's FP32 ONNX, torch-free.

Each precision is built here when TensorRT is installed (``trt_engine``), otherwise recorded as
skipped with the device-side trtexec commands (``trt_skipped``). What is built and how is decided
without TensorRT in ``trt_recipe``; the ONNX each engine parses comes from ``trt_onnx``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from ftedge.errors import FtedgeError
from ftedge.export import trt_engine
from ftedge.export.trt_recipe import Profile, check_batch_range, check_precisions, make_profile
from ftedge.export.trt_skipped import record_skipped
from ftedge.runtime.manifest import Artifact, Manifest, Precision


def export_tensorrt(
    bundle_dir: Path,
    manifest: Manifest,
    precisions: list[str],
    batch_range: tuple[int, int, int],
    *,
    device: str = "cuda:0",
    timing_cache: Path | None = None,
    calib: Any = None,
) -> list[Artifact]:
    """Build one TensorRT engine per precision from the bundle's FP32 ONNX.

    Returns one Artifact per precision: ``ok`` (engine built here), ``skipped`` (no TensorRT
    here: the message says so and ``details.trtexec`` holds the device-side commands) or
    ``failed`` (with the reason). Bad arguments raise FtedgeError before anything is written.
    ``calib``: the INT8 calibration images (a ``CalibrationSet``) for the Q/DQ ONNX; None reads
    the bundle's own list (classification crops), so a detector passes its letterboxed images.
    """
    bundle_dir = Path(bundle_dir)
    precisions = check_precisions(precisions)
    batch_range = check_batch_range(batch_range)
    src = fp32_source(manifest)
    profile = make_profile(src.input.to_dict(), batch_range)
    version = trt_engine.tensorrt_version()
    artifacts = []
    for precision in precisions:
        art = pending_artifact(src, precision, profile)
        try:
            if version is None:
                art = record_skipped(art, bundle_dir, manifest, src, profile, calib)
            else:
                art = trt_engine.build_here(
                    art, bundle_dir, manifest, src, profile, version, device, timing_cache, calib
                )
        except FtedgeError as e:
            art = replace(art, status="failed", message=str(e))
        artifacts.append(art)
    return artifacts


def fp32_source(manifest: Manifest) -> Artifact:
    """The bundle's verified FP32 ONNX with a float input: what every engine starts from."""
    src = manifest.find("onnx", "fp32")
    if src is None or src.status != "ok" or src.input.dtype != "float32":
        raise FtedgeError("TensorRT needs the bundle's FP32 ONNX (float input): export onnx first")
    return src


def pending_artifact(src: Artifact, precision: str, profile: Profile) -> Artifact:
    """The artifact for ``precision`` before it is built or skipped (no path yet)."""
    return Artifact(
        format="tensorrt",
        precision=cast(Precision, precision),  # checked by check_precisions
        path="",
        input=src.input,
        output=src.output,
        details={"batch_range": list(profile.batch_range), "profile": profile.to_dict()},
    )
