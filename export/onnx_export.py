"""torch -> ONNX FP32 (the only export step that imports torch).

Uses the dynamo exporter with a dynamic batch dimension (``dynamic_shapes``) and one
self-contained file (``external_data=False``). On EfficientNet-Lite it gives a clean graph
(Conv/Clip/Add/ReduceMean/Gemm: the TF-style "same" padding is folded into the Conv pads),
where the legacy TorchScript exporter leaves ~400 Shape/Gather/Pad nodes computing the padding
at run time (measured here).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError

OPSET = 18
INPUT_NAME = "input"
LOGITS_NAME = "logits"
PROBS_NAME = "probabilities"


def export_onnx(
    model: Any,
    out_path: Path,
    input_size: tuple[int, int, int],
    *,
    softmax: bool = False,
    opset: int = OPSET,
    output_names: tuple[str, ...] | None = None,
) -> Path:
    """Export ``model`` (eval mode, CPU) to ``out_path`` with a dynamic batch axis.

    A model with several outputs (a detector's boxes and scores) names them ``output_names``.

    The output is ``logits``, or ``probabilities`` when ``softmax`` is set.
    """
    import torch

    class _WithSoftmax(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.inner(x), dim=-1)

    net = _WithSoftmax(model) if softmax else model
    net.eval()
    example = torch.zeros((2, *input_size), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=4096)
    names = output_names or (PROBS_NAME if softmax else LOGITS_NAME,)
    # The exporter prints progress lines on stdout: keep them out of the CLI output.
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), torch.no_grad():
            program = torch.onnx.export(
                net,
                (example,),
                None,
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(names),
                dynamic_shapes=({0: batch},),
                external_data=False,
                optimize=True,
                verbose=False,
            )
            if program is None:
                raise RuntimeError("exporter returned no program")
            program.save(str(out_path), external_data=False)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FtedgeError(f"ONNX export failed: {first}") from None
    return out_path


def reference_logits(model: Any, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """PyTorch logits of ``images`` (N, 3, H, W float32) — the reference every artifact meets.

    Large batches: eager timm models with TF "same" padding pay a per-call overhead on CPU
    (measured here: 1000 images at 128 px took ~2x longer in batches of 64 than of 250).
    """
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            outs.append(model(torch.from_numpy(images[i : i + batch_size])).float().numpy())
    return np.concatenate(outs).astype(np.float32)


def torch_versions() -> dict[str, str]:
    import torch

    return {"torch": torch.__version__}
