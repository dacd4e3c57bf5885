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

import os
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
# (op_type, input index) that must stay float32 whatever the model's float type (ONNX spec).
_FLOAT32_ONLY_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}


def convert_fp16_onnx(src: Path, dst: Path) -> dict[str, Any]:
    """Write an FP16-typed copy of an FP32 ONNX model (onnx + numpy only).

    Float32 initializers, Constant values and Cast-to-float become float16; graph inputs and
    outputs stay float32 through Cast nodes, so callers feed and read float32 exactly as with
    the FP32 model (and the TensorRT 11 strongly typed engine has the same I/O). Weights beyond
    the float16 range are clipped (counted in the returned stats). Models with subgraphs
    (If/Loop) are refused: image classifiers have none.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    if any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        for n in g.node
        for a in n.attribute
    ):
        raise FtedgeError(f"{src.name}: FP16 conversion does not handle subgraphs (If/Loop)")
    keep32 = {
        n.input[i]
        for n in g.node
        for (op, i) in _FLOAT32_ONLY_INPUTS
        if n.op_type == op and len(n.input) > i
    }
    clipped = 0

    def to16(arr: np.ndarray) -> np.ndarray:
        nonlocal clipped
        clipped += int(np.count_nonzero(np.abs(arr) > FP16_MAX))
        out: np.ndarray = np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)
        return out

    converted = 0
    for i, init in enumerate(g.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in keep32:
            g.initializer[i].CopyFrom(
                numpy_helper.from_array(to16(numpy_helper.to_array(init)), init.name)
            )
            converted += 1
    for n in g.node:
        for a in n.attribute:
            if (
                n.op_type in ("Constant", "ConstantOfShape")
                and a.name == "value"
                and a.t.data_type == TensorProto.FLOAT
            ):
                if n.op_type == "Constant" and n.output[0] in keep32:
                    continue
                a.t.CopyFrom(numpy_helper.from_array(to16(numpy_helper.to_array(a.t)), a.t.name))
            elif n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.FLOAT16
    init_names = {i.name for i in g.initializer}
    new_nodes = []
    for inp in g.input:
        if inp.name in init_names or inp.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        cast_out = f"{inp.name}__fp16"
        for n in g.node:
            for k, name in enumerate(n.input):
                if name == inp.name:
                    n.input[k] = cast_out
        new_nodes.append(
            helper.make_node(
                "Cast", [inp.name], [cast_out], to=TensorProto.FLOAT16, name=f"{inp.name}__to_fp16"
            )
        )
    tail = []
    for out in g.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{out.name}__fp16"
        for n in g.node:
            for k, name in enumerate(n.output):
                if name == out.name:
                    n.output[k] = inner
            for k, name in enumerate(n.input):
                if name == out.name:  # an output also consumed inside the graph
                    n.input[k] = inner
        tail.append(
            helper.make_node(
                "Cast", [inner], [out.name], to=TensorProto.FLOAT, name=f"{out.name}__to_fp32"
            )
        )
    nodes = new_nodes + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    # Intermediate type annotations still say float32: drop them, consumers re-infer.
    del g.value_info[:]
    model.metadata_props.append(onnx.StringStringEntryProto(key="ftedge.precision", value="fp16"))
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)
    return {"initializers_fp16": converted, "clipped_values": clipped}
