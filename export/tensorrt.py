"""TensorRT engines from a bundle, torch-free (runs on a Jetson with JetPack's TensorRT + numpy).

``export_tensorrt(bundle_dir, manifest, precisions, batch_range)`` turns the bundle's FP32 ONNX
into stock TensorRT plan files, one per precision, under ``tensorrt/`` in the bundle:

- FP32: the FP32 ONNX as is.
- FP16: TensorRT 10.x parses the FP32 ONNX and sets ``BuilderFlag.FP16`` (weak typing);
  TensorRT 11.x removed that flag, so it parses an FP16-typed copy of the ONNX
  (``convert_fp16_onnx`` below, float32 I/O kept through Cast nodes) into a strongly typed network.
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

This module is the public face of the step; the work is split by responsibility:
  ``trt_recipe``   what to build and how, without TensorRT: versions, precisions, batch ranges,
                   optimization profiles, cache keys, build plan per major version, trtexec lines
  ``trt_onnx``     the ONNX each engine parses (FP32, FP16-typed copy, Q/DQ INT8)
  ``trt_engine``   the build itself: TensorRT detection, builder, network, timing cache, plan
  ``trt_skipped``  the skipped artifact with its trtexec commands when TensorRT is missing here
  ``trt_step``     ``export_tensorrt``: one artifact per precision, built, skipped or failed
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.export.trt_engine import (
    NOT_INSTALLED,
    build_engine,
    default_timing_cache,
    tensorrt_unavailable_reason,
    tensorrt_version,
)
from ftedge.export.trt_onnx import calibration_set
from ftedge.export.trt_recipe import (
    MIN_MAJOR,
    PRECISIONS,
    REBUILD_HINT,
    TRT_DIR,
    BuildPlan,
    CacheKey,
    Profile,
    build_plan,
    check_batch_range,
    check_precisions,
    make_profile,
    parse_batch_range,
    parse_version,
    trtexec_command,
)
from ftedge.export.trt_step import export_tensorrt
from ftedge.files import atomic_write_bytes

__all__ = [
    "FP16_MAX",
    "MIN_MAJOR",
    "NOT_INSTALLED",
    "PRECISIONS",
    "REBUILD_HINT",
    "TRT_DIR",
    "BuildPlan",
    "CacheKey",
    "Profile",
    "build_engine",
    "build_plan",
    "calibration_set",
    "check_batch_range",
    "check_precisions",
    "convert_fp16_onnx",
    "default_timing_cache",
    "export_tensorrt",
    "make_profile",
    "parse_batch_range",
    "parse_version",
    "tensorrt_unavailable_reason",
    "tensorrt_version",
    "trtexec_command",
]

FP16_MAX = float(np.finfo(np.float16).max)


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
        from onnxconverter_common.float16 import convert_float_to_float16
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
            # By node name, not op type: the Casts the converter inserts around a blocked op
            # (a detector's Resize) would be blocked in turn and it would never finish.
            node_block_list=[n.name for n in fp32.graph.node if n.op_type == "Cast"],
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
