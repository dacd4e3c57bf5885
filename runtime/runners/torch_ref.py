"""The PyTorch reference runner: the trained checkpoint itself, for comparisons only.

    with TorchRunner("runs/latest") as r:              # run dir, best.json or best.safetensors
        logits = r.infer({"input": x})["logits"]       # x: float32 NCHW, preprocessed

torch is imported in ``_activate`` only (this module is importable without it). The model is
rebuilt with ``ftedge.checkpoint.load_checkpoint`` (eval mode, no hub downloads), converted to
channels_last and run under ``torch.inference_mode`` — the fastest honest eager baseline.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ftedge.errors import FtedgeError, MissingExtraError
from ftedge.runtime.runners.base import Runner, TensorMeta


class TorchRunner(Runner):
    """Runs the run checkpoint with PyTorch eager on ``device`` ("cpu", "cuda", "cuda:N")."""

    backend: ClassVar[str] = "torch"

    def __init__(
        self,
        model_path: str,
        *,
        device: str = "cpu",
        threads: int | None = None,
        channels_last: bool = True,
        input_name: str = "input",
        output_name: str = "logits",
        name: str | None = None,
    ) -> None:
        super().__init__(model_path, device=device, name=name)
        self.threads = threads
        self.channels_last = channels_last
        self.input_name = input_name
        self.output_name = output_name
        self._model: Any = None
        self._torch: Any = None
        self._meta: dict[str, Any] | None = None

    def _read_meta(self) -> dict[str, Any]:
        if self._meta is None:
            from ftedge.checkpoint import read_meta

            self._meta = read_meta(self.model_path)
        return self._meta

    def _activate(self) -> None:
        try:
            import torch

            from ftedge.checkpoint import load_checkpoint
        except ImportError:
            raise MissingExtraError("PyTorch (for the torch reference runner)", "train") from None
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        loaded = load_checkpoint(self.model_path)
        self._meta = loaded.meta
        model = loaded.model.eval()
        try:
            model = model.to(self.device)
        except (RuntimeError, AssertionError) as e:
            raise FtedgeError(f"torch cannot use device {self.device!r}: {e}") from None
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._torch = torch
        self._model = model

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(feeds[self.input_name])).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self._model(x)
        return {self.output_name: y.float().cpu().numpy()}

    def _deactivate(self) -> None:
        self._model = None
        self._torch = None

    def input_metadata(self) -> dict[str, TensorMeta]:
        c, h, w = (int(v) for v in self._read_meta()["preprocessing"]["input_size"])
        return {self.input_name: TensorMeta(self.input_name, np.dtype(np.float32), (-1, c, h, w))}

    def output_metadata(self) -> dict[str, TensorMeta]:
        n = len(self._read_meta()["classes"])
        return {self.output_name: TensorMeta(self.output_name, np.dtype(np.float32), (-1, n))}

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "backend": self.backend,
            "device": self.device,
            "channels_last": self.channels_last,
        }
        if self._torch is not None:
            d["version"] = self._torch.__version__
            d["threads"] = self._torch.get_num_threads()
        return d
