"""Torch-free ONNX graph edits: metadata_props, baked-in preprocessing, checks.

``bake_preprocess`` prepends Cast -> (Gather BGR->RGB) -> Mul -> Add -> Transpose to an FP32
classifier so it takes the uint8 NHWC crops a camera app has (at network resolution) and does
``(x / 255 - mean) / std`` plus HWC -> CHW inside the graph, with ``scale = 1 / (255 * std)``
and ``bias = -mean / std`` folded into one multiply-add.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.runtime.preprocess import PreprocessSpec


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        from ftedge.errors import MissingExtraError

        raise MissingExtraError("onnx", "onnx") from None
    return onnx


def set_metadata(path: Path, props: dict[str, Any]) -> None:
    """Write ``props`` (values JSON-encoded unless str) into the model's ``metadata_props``."""
    onnx = _onnx()
    model = onnx.load(str(path))
    keep = {p.key: p.value for p in model.metadata_props if p.key not in props}
    del model.metadata_props[:]
    for k, v in {**keep, **props}.items():
        entry = model.metadata_props.add()
        entry.key = k
        entry.value = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    onnx.save(model, str(path))


def read_metadata(path: Path) -> dict[str, str]:
    onnx = _onnx()
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def check_model(path: Path) -> None:
    """The ONNX checker (full check: with shape inference) or a one-line FtedgeError."""
    onnx = _onnx()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise FtedgeError(f"ONNX checker rejected {path.name}: {str(e).splitlines()[0]}") from None


def io_names(path: Path) -> tuple[list[str], list[str]]:
    onnx = _onnx()
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits], [
        o.name for o in model.graph.output
    ]


def bake_preprocess(src: Path, dst: Path, spec: PreprocessSpec, color: str) -> Path:
    """Write a copy of ``src`` whose input is uint8 NHWC ``color`` frames at network size."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if color not in ("rgb", "bgr"):
        raise FtedgeError(f"--bake-preprocess must be rgb or bgr, got {color!r}")
    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise FtedgeError(f"{src.name} has {len(inputs)} inputs; baking needs exactly one")
    old = inputs[0]
    name = old.name
    inner = f"{name}_nchw"
    for node in graph.node:
        for i, n in enumerate(node.input):
            if n == name:
                node.input[i] = inner
    mean = np.asarray(spec.mean, np.float64)
    std = np.asarray(spec.std, np.float64)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    bias = (-mean / std).astype(np.float32)
    pre_inits = [
        numpy_helper.from_array(scale, "preprocess_scale"),
        numpy_helper.from_array(bias, "preprocess_bias"),
    ]
    nodes = [helper.make_node("Cast", [name], ["preprocess_f32"], to=TensorProto.FLOAT)]
    x = "preprocess_f32"
    if color == "bgr":
        pre_inits.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_to_rgb"))
        nodes.append(helper.make_node("Gather", [x, "bgr_to_rgb"], ["preprocess_rgb"], axis=3))
        x = "preprocess_rgb"
    nodes += [
        helper.make_node("Mul", [x, "preprocess_scale"], ["preprocess_scaled"]),
        helper.make_node("Add", ["preprocess_scaled", "preprocess_bias"], ["preprocess_norm"]),
        helper.make_node("Transpose", ["preprocess_norm"], [inner], perm=[0, 3, 1, 2]),
    ]
    batch = old.type.tensor_type.shape.dim[0]
    batch_dim: str | int = batch.dim_param or (batch.dim_value if batch.dim_value > 0 else "batch")
    new_input = helper.make_tensor_value_info(
        name, TensorProto.UINT8, [batch_dim, spec.height, spec.width, 3]
    )
    graph.input.remove(old)
    graph.input.insert(0, new_input)
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + rest)
    graph.initializer.extend(pre_inits)
    onnx.save(model, str(dst))
    return dst
