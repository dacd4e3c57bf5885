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


# Per backend, the runner options that keep the features within MAX_ABS_DIFF of torch's.
# f32: OpenVINO would otherwise run bf16 on CPUs that have it, far outside the tolerance.
_OPTIONS: dict[str, dict[str, Any]] = {"openvino": {"precision": "f32"}, "onnxruntime": {}}


def _compiled(name: str, model: bytes, threads: int) -> CompiledBackbone:
    """The backbone's ONNX bytes as an active runner of backend ``name`` (the one registry)."""
    from ftedge.runtime.backends import get_backend

    backend = get_backend(name)
    if not backend.available():
        raise ImportError(name)
    runner = backend.create_runner(
        "frozen-backbone.onnx", device="cpu", threads=threads, model_bytes=model, **_OPTIONS[name]
    )
    runner.activate()
    return CompiledBackbone(name, lambda x: runner.infer({"input": x}, check=False)["features"])


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
            return _compiled(name, model, threads), ""
        except ImportError:
            why.append(f"{name} not installed")
        except Exception as e:  # the runtime rejects the graph: try the next one
            why.append(f"{name} failed ({str(e).strip().splitlines()[0][:120]})")
    return None, "; ".join(why)
