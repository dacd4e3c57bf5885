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
# Features of the compiled backbone vs torch on the first batch: at most this, times the
# largest feature magnitude when that is above 1.
MAX_ABS_DIFF = 1e-4
_ORDER: tuple[str, ...] = ("openvino", "onnxruntime")


@dataclass(frozen=True)
class CompiledBackbone:
    """A backbone compiled by ``backend``: float32 NCHW numpy in, its outputs out (one array
    per output of the backbone: pooled features [N, F], or feature maps per level)."""

    backend: str
    run: Callable[[np.ndarray], list[np.ndarray]]


def _output_names(outputs: int) -> list[str]:
    """The graph's output names: one pooled output, or one per feature map."""
    return ["features"] if outputs == 1 else [f"features{i}" for i in range(outputs)]


def _onnx_bytes(backbone: nn.Module, example: torch.Tensor, outputs: int) -> bytes:
    """The backbone as an ONNX graph (TorchScript exporter, dynamic batch), in memory."""
    names = _output_names(outputs)
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
            output_names=names,
            dynamic_axes={n: {0: "batch"} for n in ["input", *names]},
        )
    return buf.getvalue()


# Per backend, the runner options that keep the features within MAX_ABS_DIFF of torch's.
# f32: OpenVINO would otherwise run bf16 on CPUs that have it, far outside the tolerance.
_OPTIONS: dict[str, dict[str, Any]] = {"openvino": {"precision": "f32"}, "onnxruntime": {}}


def _compiled(name: str, model: bytes, threads: int, outputs: int) -> CompiledBackbone:
    """The backbone's ONNX bytes as an active runner of backend ``name`` (the one registry)."""
    from ftedge.runtime.backends import get_backend

    backend = get_backend(name)
    if not backend.available():
        raise ImportError(name)
    runner = backend.create_runner(
        "frozen-backbone.onnx", device="cpu", threads=threads, model_bytes=model, **_OPTIONS[name]
    )
    runner.activate()
    names = _output_names(outputs)

    def run(x: np.ndarray) -> list[np.ndarray]:
        out = runner.infer({"input": x}, check=False)
        return [out[n] for n in names]

    return CompiledBackbone(name, run)


def compile_backbone(
    backbone: nn.Module, example: torch.Tensor, backend: FeatureBackend, outputs: int = 1
) -> tuple[CompiledBackbone | None, str]:
    """The backbone (with ``outputs`` outputs) compiled by ``backend`` (auto: OpenVINO, else
    onnxruntime), or None and why not (``torch`` asked for, no runtime installed, or the export
    failed)."""
    if backend == "torch":
        return None, "torch asked for"
    wanted = _ORDER if backend == "auto" else (backend,)
    try:
        model = _onnx_bytes(backbone.eval(), example, outputs)
    except Exception as e:  # an exotic backbone the exporter cannot trace: stay in torch
        return None, f"ONNX export failed ({str(e).strip().splitlines()[0][:120]})"
    threads = max(1, torch.get_num_threads())
    why = []
    for name in wanted:
        try:
            return _compiled(name, model, threads, outputs), ""
        except ImportError:
            why.append(f"{name} not installed")
        except Exception as e:  # the runtime rejects the graph: try the next one
            why.append(f"{name} failed ({str(e).strip().splitlines()[0][:120]})")
    return None, "; ".join(why)
