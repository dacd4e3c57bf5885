"""Bias correction of a Q/DQ ONNX model: remove the mean shift quantization adds per channel.

Rounding weights (and input activations) to int8 shifts the *mean* of each output channel of a
convolution: ``E[Wq xq] - E[W x]`` is not zero, and with few weights per output channel
(depthwise 3x3 / 5x5 kernels) the shift is a sizeable fraction of the signal. Every later layer
sees a biased input, and the errors add up to changed top-1 answers.

The shift is measured layer by layer on the calibration set: the FP32 model runs once with every
Conv/Gemm input exposed; per input channel the mean of the float activation and the mean of the
same activation after its quantizer (the Q/DQ model's scale and zero point) are accumulated;
with the per-channel kernel sums of the FP32 and the dequantized weights that gives each output
channel's shift exactly (zero padding quantizes to zero), and it is subtracted from the int32
bias. Each layer is corrected for its own error only (its inputs are the FP32 activations), so
corrections do not compound. Cost: one FP32 pass over the calibration images.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CORRECTED_OPS = ("Conv", "Gemm")
# Calibration images the means are taken over (the first ones: the set is stratified round-robin
# over classes). On Lite0, 100 images gave 97.3 % top-1 agreement, all 300 98.0 %.
MEAN_IMAGES = 300


@dataclass(frozen=True)
class _Layer:
    """One quantized Conv/Gemm of the Q/DQ graph and what its correction needs."""

    node: str
    x_name: str  # its float input in the FP32 graph
    x_scale: float
    x_zero: int
    x_range: tuple[int, int]  # integer range of the input quantizer
    w: np.ndarray  # FP32 weight
    wq: np.ndarray  # dequantized int8 weight
    bias_q: str  # int32 bias initializer
    bias_scale: np.ndarray
    group: int
    trans_b: bool  # Gemm only


def correct_biases(
    fp32_onnx: Path,
    qdq_onnx: Path,
    calib: Any,
    *,
    batch_size: int = 50,
    images: int = MEAN_IMAGES,
    cache: dict[tuple[str, float, int], tuple[np.ndarray, np.ndarray]] | None = None,
) -> int:
    """Rewrite ``qdq_onnx`` in place with bias-corrected Conv/Gemm; returns layers corrected.

    ``cache``: input means by (tensor, scale, zero point), filled and reused across calls on the
    same FP32 model and calibration set (quantization retries with other nodes kept in float).
    """
    import onnx
    from onnx import numpy_helper

    fp = onnx.load(str(fp32_onnx))
    q = onnx.load(str(qdq_onnx))
    layers = _layers(fp.graph, q.graph)
    if not layers:
        return 0
    cache = {} if cache is None else cache
    todo = [layer for layer in layers if _key(layer) not in cache]
    if todo:
        batches = list(calib.batches(batch_size))[: -(-images // batch_size)]
        means = _input_means(fp32_onnx, todo, batches, calib.input_name)
        cache.update({_key(layer): means[layer.x_name] for layer in todo})
    inits = {i.name: i for i in q.graph.initializer}
    for layer in layers:
        mean_x, mean_xq = cache[_key(layer)]
        shift = _kernel_dot(layer, layer.wq, mean_xq) - _kernel_dot(layer, layer.w, mean_x)
        init = inits[layer.bias_q]
        bias = numpy_helper.to_array(init).astype(np.float64) * layer.bias_scale
        new = np.round((bias - shift) / layer.bias_scale)
        info = np.iinfo(np.int32)
        init.CopyFrom(
            numpy_helper.from_array(np.clip(new, info.min, info.max).astype(np.int32), init.name)
        )
    onnx.save(q, str(qdq_onnx))
    return len(layers)


def _key(layer: _Layer) -> tuple[str, float, int]:
    return (layer.x_name, layer.x_scale, layer.x_zero)


def _kernel_dot(layer: _Layer, w: np.ndarray, mean_in: np.ndarray) -> np.ndarray:
    """Per output channel: sum over the kernel of ``w`` times the input channel's mean."""
    if w.ndim == 2:  # Gemm: y = x W^T (transB) or x W
        return (w @ mean_in) if layer.trans_b else (mean_in @ w)
    sums = w.reshape(w.shape[0], w.shape[1], -1).sum(-1).astype(np.float64)  # Cout, Cin/g
    cout, cin_g = sums.shape
    per_group = mean_in.reshape(layer.group, cin_g)  # g, Cin/g
    groups = np.repeat(np.arange(layer.group), cout // layer.group)
    return np.einsum("oc,oc->o", sums, per_group[groups])


def _layers(fp: Any, q: Any) -> list[_Layer]:
    """The Conv/Gemm nodes of the Q/DQ graph with quantized input, weight and int32 bias."""
    from onnx import helper, numpy_helper

    fp_nodes = {n.name: n for n in fp.node}
    fp_inits = {i.name: i for i in fp.initializer}
    q_inits = {i.name: numpy_helper.to_array(i) for i in q.initializer}
    producer = {o: n for n in q.node for o in n.output}
    layers = []
    for node in q.node:
        orig = fp_nodes.get(node.name)
        if node.op_type not in CORRECTED_OPS or orig is None or len(node.input) < 3:
            continue
        x_dq, w_dq, b_dq = (producer.get(i) for i in node.input[:3])
        if not all(d is not None and d.op_type == "DequantizeLinear" for d in (x_dq, w_dq, b_dq)):
            continue
        xq = producer.get(x_dq.input[0])  # type: ignore[union-attr]
        w_name = orig.input[1]
        if xq is None or xq.op_type != "QuantizeLinear" or w_name not in fp_inits:
            continue
        scale = q_inits.get(x_dq.input[1])  # type: ignore[union-attr]
        zero = q_inits.get(x_dq.input[2]) if len(x_dq.input) > 2 else None  # type: ignore[union-attr]
        if scale is None or scale.size != 1 or b_dq.input[0] not in q_inits:  # type: ignore[union-attr]
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        zdt = zero.dtype if zero is not None else np.dtype(np.uint8)
        layers.append(
            _Layer(
                node=node.name,
                x_name=orig.input[0],
                x_scale=float(scale),
                x_zero=int(zero) if zero is not None else 0,
                x_range=(int(np.iinfo(zdt).min), int(np.iinfo(zdt).max)),
                w=numpy_helper.to_array(fp_inits[w_name]).astype(np.float64),
                wq=_dequantized(w_dq, q_inits),
                bias_q=b_dq.input[0],  # type: ignore[union-attr]
                bias_scale=np.asarray(q_inits[b_dq.input[1]], np.float64),  # type: ignore[union-attr]
                group=int(attrs.get("group", 1)),
                trans_b=bool(attrs.get("transB", 0)),
            )
        )
    return layers


def _dequantized(dq: Any, inits: dict[str, np.ndarray]) -> np.ndarray:
    """The float weight a DequantizeLinear of an int8 initializer produces."""
    from onnx import helper

    w = inits[dq.input[0]].astype(np.float64)
    scale = inits[dq.input[1]].astype(np.float64)
    zero = inits[dq.input[2]].astype(np.float64) if len(dq.input) > 2 else np.zeros_like(scale)
    axis = next((helper.get_attribute_value(a) for a in dq.attribute if a.name == "axis"), 1)
    if scale.size > 1:
        shape = [1] * w.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (w - zero) * scale


def _input_means(
    fp32_onnx: Path, layers: list[_Layer], batches: Iterable[np.ndarray], input_name: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per layer input: (per-channel mean of x, per-channel mean of its fake-quantized x).

    The means are computed inside onnxruntime (QuantizeLinear -> DequantizeLinear -> ReduceMean
    appended to the FP32 graph), so only per-channel vectors come back per batch.
    """
    from ftedge.runtime.backends import get_backend

    model, outputs = _with_mean_outputs(fp32_onnx, layers)
    sums: dict[str, list[np.ndarray]] = {}
    weight = 0
    runner = get_backend("onnxruntime").create_runner(
        str(fp32_onnx), device="cpu", optimization="basic", model_bytes=model
    )
    with runner:
        for x in batches:
            outs = runner.infer({input_name: x})
            for name, (m, mq) in outputs.items():
                s = sums.setdefault(name, [0.0, 0.0])  # type: ignore[list-item]
                s[0] = s[0] + len(x) * np.asarray(outs[m], np.float64).reshape(-1)
                s[1] = s[1] + len(x) * np.asarray(outs[mq], np.float64).reshape(-1)
            weight += len(x)
    return {n: (s[0] / weight, s[1] / weight) for n, s in sums.items()}


def _with_mean_outputs(fp32_onnx: Path, layers: list[_Layer]) -> tuple[bytes, dict[str, Any]]:
    """The FP32 model with per-channel means of each layer input, raw and fake-quantized."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(fp32_onnx))
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    outputs: dict[str, tuple[str, str]] = {}
    for i, layer in enumerate({layer.x_name: layer for layer in layers}.values()):
        x, p = layer.x_name, f"ftedge_bias_{i}"
        rank = layer.w.ndim  # Conv: input rank = weight rank; Gemm: 2
        zdt = TensorProto.UINT8 if layer.x_range[0] == 0 else TensorProto.INT8
        g.initializer.extend(
            [
                helper.make_tensor(f"{p}_s", TensorProto.FLOAT, [], [layer.x_scale]),
                helper.make_tensor(f"{p}_z", zdt, [], [layer.x_zero]),
                helper.make_tensor(f"{p}_axes", TensorProto.INT64, [rank - 1], _axes(rank)),
            ]
        )
        g.node.extend(
            [
                helper.make_node("QuantizeLinear", [x, f"{p}_s", f"{p}_z"], [f"{p}_q"]),
                helper.make_node("DequantizeLinear", [f"{p}_q", f"{p}_s", f"{p}_z"], [f"{p}_fq"]),
                _reduce_mean(x, f"{p}_axes", f"{p}_m", opset, rank),
                _reduce_mean(f"{p}_fq", f"{p}_axes", f"{p}_mq", opset, rank),
            ]
        )
        for o in (f"{p}_m", f"{p}_mq"):
            g.output.append(helper.make_empty_tensor_value_info(o))
        outputs[x] = (f"{p}_m", f"{p}_mq")
    return bytes(model.SerializeToString()), outputs


def _axes(rank: int) -> list[int]:
    return [0, *range(2, rank)]


def _reduce_mean(x: str, axes: str, out: str, opset: int, rank: int) -> Any:
    from onnx import helper

    if opset >= 18:  # axes became an input in opset 18
        return helper.make_node("ReduceMean", [x, axes], [out], keepdims=0)
    return helper.make_node("ReduceMean", [x], [out], keepdims=0, axes=_axes(rank))
