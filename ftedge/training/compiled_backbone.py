"""The frozen backbone compiled for the CPU: OpenVINO or onnxruntime instead of torch eager.

Feature extraction is the largest part of a cached-feature run on a CPU, and an inference
runtime runs Lite0 several times faster than torch eager (measured at 128 px, 1 thread: torch
with BatchNorm folded ~6.8 ms/image, OpenVINO f32 ~1.8, onnxruntime ~2-3). The backbone is
exported once with the TorchScript ONNX exporter into memory (no file: ~0.3 s, against ~6 s for
the dynamo exporter whose cleaner graph matters for a deployed artifact, not here) and compiled
at f32. ``FrozenExtractor`` checks it against torch on the first batch and uses it only when
the features agree within ``MAX_ABS_DIFF``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

FeatureBackend = Literal["auto", "openvino", "onnxruntime", "torch"]
MAX_ABS_DIFF = 1e-4  # features of the compiled backbone vs torch on the first batch, at most
_ORDER: tuple[str, ...] = ("openvino", "onnxruntime")


@dataclass(frozen=True)
class CompiledBackbone:
    """A backbone compiled by ``backend``: float32 NCHW numpy in, features [N, F] out."""

    backend: str
    run: Callable[[np.ndarray], np.ndarray]


def _onnx_bytes(backbone: nn.Module, example: torch.Tensor) -> bytes:
    """The backbone as an ONNX graph (TorchScript exporter, dynamic batch), in memory."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(
            backbone,
            (example[:1].contiguous().float(),),
            buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["features"],
            dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
        )
    return buf.getvalue()


def _openvino(model: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import openvino as ov

    core = ov.Core()
    # f32: OpenVINO would otherwise run bf16 on CPUs that have it, far outside the tolerance.
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    compiled = core.compile_model(core.read_model(model, b""), "CPU", config)
    request = compiled.create_infer_request()
    return lambda x: np.array(request.infer([x])[0])


def _onnxruntime(model: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    return lambda x: np.asarray(session.run(None, {"input": x})[0])


_BUILDERS: dict[str, Callable[[bytes, int], Callable[[np.ndarray], np.ndarray]]] = {
    "openvino": _openvino,
    "onnxruntime": _onnxruntime,
}


def compile_backbone(
    backbone: nn.Module, example: torch.Tensor, backend: FeatureBackend
) -> tuple[CompiledBackbone | None, str]:
    """The backbone compiled by ``backend`` (auto: OpenVINO, else onnxruntime), or None and
    why not (``torch`` asked for, no runtime installed, or the export failed)."""
    if backend == "torch":
        return None, "torch asked for"
    wanted = _ORDER if backend == "auto" else (backend,)
    try:
        model = _onnx_bytes(backbone.eval(), example)
    except Exception as e:  # an exotic backbone the exporter cannot trace: stay in torch
        return None, f"ONNX export failed ({str(e).strip().splitlines()[0][:120]})"
    threads = max(1, torch.get_num_threads())
    why = []
    for name in wanted:
        try:
            return CompiledBackbone(name, _BUILDERS[name](model, threads)), ""
        except ImportError:
            why.append(f"{name} not installed")
        except Exception as e:  # the runtime rejects the graph: try the next one
            why.append(f"{name} failed ({str(e).strip().splitlines()[0][:120]})")
    return None, "; ".join(why)
