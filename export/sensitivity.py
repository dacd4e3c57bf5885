"""Per-layer INT8 sensitivity of a Q/DQ ONNX model, measured cheaply in one pass.

Both the FP32 and the Q/DQ model are run on a few calibration batches with every float tensor of
the original graph exposed as an output (the Q/DQ model keeps the original tensor names; it is run
without graph optimisation, i.e. with onnxruntime's reference Q/DQ arithmetic). For each tensor
the noise-to-signal ratio ``||int8 - fp32||^2 / ||fp32||^2`` is accumulated; the error a node
*adds* is its output's ratio minus the largest ratio among its inputs. Nodes are ranked by added
error: keeping the top few in float removes most of the quantization error.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from ftedge.runtime.runners.base import Runner

QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose", "Add", "Mul", "AveragePool")


def _with_outputs(path: Path, names: list[str]) -> bytes:
    import onnx

    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    for n in names:
        if n not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    return bytes(model.SerializeToString())


def _runner(path: Path, names: list[str], optimization: Literal["basic", "none"]) -> Runner:
    """An (inactive) onnxruntime runner of ``path`` with ``names`` exposed as outputs."""
    from ftedge.runtime.backends import get_backend

    return get_backend("onnxruntime").create_runner(
        str(path), device="cpu", optimization=optimization, model_bytes=_with_outputs(path, names)
    )


def _activation_bounds(graph: Any) -> dict[str, tuple[float, float]]:
    """Output tensor -> (lo, hi) of every Clip/Relu node (the Q/DQ model may fold them away)."""
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute:
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    bounds = {}
    for n in graph.node:
        if n.op_type == "Relu":
            bounds[n.output[0]] = (0.0, float("inf"))
        elif n.op_type == "Clip":
            lo, hi = float("-inf"), float("inf")
            if len(n.input) > 1 and n.input[1] in consts:
                lo = float(consts[n.input[1]])
            if len(n.input) > 2 and n.input[2] in consts:
                hi = float(consts[n.input[2]])
            bounds[n.output[0]] = (lo, hi)
    return bounds


def rank_sensitive_nodes(
    fp32_onnx: Path,
    int8_onnx: Path,
    batches: Iterable[np.ndarray],
    *,
    input_name: str = "input",
    op_types: tuple[str, ...] = QUANTIZABLE_OPS,
) -> list[tuple[str, float]]:
    """``[(node name, added noise-to-signal ratio), ...]``, most sensitive first."""
    import onnx

    graph = onnx.load(str(fp32_onnx), load_external_data=False).graph
    producer = {o: node.name for node in graph.node for o in node.output if o}
    int8_graph = onnx.load(str(int8_onnx), load_external_data=False).graph
    int8_tensors = {o for n in int8_graph.node for o in n.output}
    int8_nodes = {n.name for n in int8_graph.node}
    measured = [t for t in producer if t in int8_tensors]
    # The quantizer drops a Clip/Relu after a Conv (the Q/DQ range does the clipping), leaving
    # the activation's output name on the raw conv output: clip it here before comparing.
    bounds = {
        t: b for t, b in _activation_bounds(graph).items() if producer.get(t) not in int8_nodes
    }
    nsr = _noise_to_signal(fp32_onnx, int8_onnx, measured, bounds, batches, input_name)
    return _added_error(graph, nsr, bounds, op_types)


def _noise_to_signal(
    fp32_onnx: Path,
    int8_onnx: Path,
    measured: list[str],
    bounds: dict[str, tuple[float, float]],
    batches: Iterable[np.ndarray],
    input_name: str,
) -> dict[str, float]:
    """``||int8 - fp32||^2 / ||fp32||^2`` per tensor, accumulated over ``batches``."""
    # The Q/DQ model runs unoptimised: onnxruntime's reference Q/DQ arithmetic, every tensor kept.
    noise = dict.fromkeys(measured, 0.0)
    signal = dict.fromkeys(measured, 0.0)
    with _runner(fp32_onnx, measured, "basic") as r_fp, _runner(int8_onnx, measured, "none") as r_q:
        for x in batches:
            _accumulate(
                r_fp.infer({input_name: x}),
                r_q.infer({input_name: x}),
                measured,
                bounds,
                noise,
                signal,
            )
    return {t: noise[t] / signal[t] if signal[t] > 0 else 0.0 for t in measured}


def _accumulate(
    a: dict[str, np.ndarray],
    b: dict[str, np.ndarray],
    measured: list[str],
    bounds: dict[str, tuple[float, float]],
    noise: dict[str, float],
    signal: dict[str, float],
) -> None:
    """Add one batch's squared error and squared signal per tensor."""
    for t in measured:
        ra, rb = a[t], b[t]
        if t in bounds:
            rb = np.clip(rb, *bounds[t])
        if not np.issubdtype(ra.dtype, np.floating) or ra.shape != rb.shape:
            continue
        ra64 = ra.astype(np.float64)
        noise[t] += float(np.sum((rb.astype(np.float64) - ra64) ** 2))
        signal[t] += float(np.sum(ra64**2))


def _added_error(
    graph: Any,
    nsr: dict[str, float],
    bounds: dict[str, tuple[float, float]],
    op_types: tuple[str, ...],
) -> list[tuple[str, float]]:
    """Per node: its output's ratio minus the largest among its inputs; largest first."""
    inits = {i.name for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    ranked = []
    for node in graph.node:
        if node.op_type not in op_types or not node.output:
            continue
        out = node.output[0]
        after = consumers.get(out, [])
        if (out not in nsr or out in bounds) and len(after) == 1 and after[0].output[0] in nsr:
            out = after[0].output[0]  # Conv + fused ReLU6: measure after the activation
        if out not in nsr:
            continue
        ins = [i for i in node.input if i and i not in inits]
        before = max((nsr.get(i, 0.0) for i in ins), default=0.0)
        ranked.append((node.name, nsr[out] - before))
    ranked.sort(key=lambda kv: kv[1], reverse=True)
    return ranked


def fallback_order(
    fp32_onnx: Path, ranked: list[tuple[str, float]], *, last: list[str] | None = None
) -> list[str]:
    """The order in which nodes are kept in float: stem, classifier, then by added error.

    ``last``: the output layers to keep in float with the stem instead of the classifier (the
    last Gemm/MatMul), e.g. a detector's class / box / centerness convolutions.

    Added error at a node under-rates the layers nearest the input, whose error every later
    layer amplifies (NNCF's accuracy control reverts the stem convolution first on Lite0 here),
    and the final classifier layer decides top-1 directly; so those two go first.
    """
    import onnx

    graph = onnx.load(str(fp32_onnx), load_external_data=False).graph
    inputs = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    names = [n for n, _ in ranked] or [n.name for n in graph.node if n.op_type in QUANTIZABLE_OPS]
    stem = [n.name for n in graph.node if n.name in names and set(n.input) & inputs]
    if last is None:
        last = [n.name for n in graph.node if n.name in names and n.op_type in ("Gemm", "MatMul")]
        last = last[-1:]
    head = list(dict.fromkeys(stem + last))
    return head + [n for n in names if n not in head]
