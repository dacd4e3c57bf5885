"""Recording a TensorRT artifact that cannot be built here (no TensorRT on this machine).

The artifact is ``skipped`` with the exact ``trtexec`` command lines for TensorRT 10.x and 11.x
(the device's version is unknown here) that build the same engine, run from the bundle directory.
The FP16 and Q/DQ ONNX inputs those commands need are still written into the bundle.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ftedge.export.trt_onnx import source_onnx
from ftedge.export.trt_recipe import (
    REBUILD_HINT,
    TIMING_CACHE_REL,
    TRT_DIR,
    Profile,
    build_plan,
    trtexec_command,
)
from ftedge.runtime.manifest import Artifact, Manifest

DEVICE_MAJORS = (10, 11)  # the TensorRT versions a device may have: commands for each


def skipped_plan_path(precision: str, profile: Profile) -> str:
    """Where the engine goes when built on the device (no cache key: the device is unknown)."""
    lo, opt, hi = profile.batch_range
    return f"{TRT_DIR}/model.{precision}.b{lo}-{opt}-{hi}.plan"


def record_skipped(
    art: Artifact,
    bundle_dir: Path,
    manifest: Manifest,
    src: Artifact,
    profile: Profile,
    calib: Any = None,
) -> Artifact:
    """No TensorRT here: write the ONNX inputs the device needs, record the trtexec commands.

    ``calib``: INT8 calibration images for the Q/DQ ONNX (None: the bundle's own)."""
    art = replace(art, path=skipped_plan_path(art.precision, profile))
    sources: dict[str, str] = {}
    commands: dict[str, str] = {}
    for major in DEVICE_MAJORS:
        plan = build_plan(major, art.precision)
        if plan.onnx not in sources:
            sources[plan.onnx] = source_onnx(bundle_dir, manifest, src, plan.onnx, art, calib)
        commands[f"tensorrt{major}"] = trtexec_command(
            plan, sources[plan.onnx], art.path, profile, TIMING_CACHE_REL
        )
    art.details.update(trtexec=commands, rebuild=REBUILD_HINT)
    return replace(
        art,
        status="skipped",
        message=f"TensorRT is not installed here: build on the device with '{REBUILD_HINT}' "
        "or the trtexec command in details.trtexec (run in the bundle directory)",
    )
