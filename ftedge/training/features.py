"""Cached backbone features: run the frozen backbone once, keep its outputs.

A frozen backbone in eval mode is a fixed function of the (unaugmented) image, so computing it
every epoch repeats identical work. Features are kept on the training device (RAM/VRAM), or in
``.npy`` files under ``--feature-cache-dir`` (memory-mapped) for datasets that do not fit.
"""

from __future__ import annotations

import copy
import hashlib
import sys
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ftedge.training.compiled_backbone import (
    MAX_ABS_DIFF,
    CompiledBackbone,
    FeatureBackend,
    compile_backbone,
)

if TYPE_CHECKING:
    from ftedge.training.steps import StepRunner


def _conv_bn_pairs(
    model: nn.Module, example: torch.Tensor
) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(conv, bn) pairs where the BatchNorm's input *is* the conv's output, in one forward pass."""
    outputs: dict[int, tuple[nn.Conv2d, Any]] = {}
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []

    def conv_hook(mod: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        outputs[id(out)] = (mod, weakref.ref(out))

    def bn_hook(mod: nn.BatchNorm2d, inp: tuple[torch.Tensor, ...]) -> None:
        hit = outputs.get(id(inp[0]))
        if hit is not None and hit[1]() is inp[0]:  # the very tensor the conv returned
            pairs.append((hit[0], mod))

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.BatchNorm2d) and m.track_running_stats:
            hooks.append(m.register_forward_pre_hook(bn_hook))
    try:
        model(example[:1])
    finally:
        for h in hooks:
            h.remove()
    return pairs


@torch.inference_mode()
def fold_frozen_batchnorm(backbone: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of a frozen backbone with every BatchNorm folded into the conv that feeds it.

    An eval-mode BatchNorm is a per-channel affine map, so ``bn(conv(x))`` equals one conv with
    scaled weights and a new bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``); on this CPU
    BatchNorm is ~30% of Lite0's time. Pairs are found generically by following the actual
    tensors of one forward pass, so no per-architecture table is needed. timm's BatchNormAct
    layers keep their dropout and activation. Returns (folded copy, pairs folded).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(backbone).eval()
    parents = {
        id(m): (parent, name) for parent in model.modules() for name, m in parent.named_children()
    }
    folded: set[int] = set()
    for conv, bn in _conv_bn_pairs(model, example):
        if id(conv) in folded:  # a conv feeding two BatchNorms cannot absorb both
            continue
        folded.add(id(conv))
        parent, name = parents[id(conv)]
        setattr(parent, name, fuse_conv_bn_eval(conv, bn))
        after = [
            getattr(bn, a) for a in ("drop", "act") if isinstance(getattr(bn, a, None), nn.Module)
        ]
        parent, name = parents[id(bn)]
        setattr(parent, name, nn.Sequential(*after) if after else nn.Identity())
    return model, len(folded)


def _levels(out: Any) -> list[torch.Tensor]:
    """A backbone's output as a list: pooled features [N, F], or one feature map per level."""
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _max_diff(got: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    return max(float((g.float() - r.float()).abs().max()) for g, r in zip(got, ref, strict=True))


class FrozenExtractor:
    """The backbone used for cached features, checked once against the original.

    The first batch goes through the original backbone and through the fast candidates: the
    backbone compiled by OpenVINO or onnxruntime (``backend``, CPU only; see
    ``compiled_backbone``), else a BatchNorm-folded torch copy. A candidate is used from then on
    only if it agrees (``max_abs_diff`` / ``backend_max_abs_diff`` record by how much). Calling
    it gives a one-output backbone's features; ``levels`` gives every output (the feature maps
    of a multi-scale backbone).
    """

    def __init__(self, backbone: nn.Module, backend: FeatureBackend = "torch") -> None:
        self.reference = backbone
        self.fast: nn.Module | None = None
        self.folded = 0
        self.max_abs_diff: float | None = None
        self.checked = False
        self.wanted: FeatureBackend = backend
        self.compiled: CompiledBackbone | None = None
        self.backend_max_abs_diff: float | None = None
        self.backend_note = ""

    @property
    def backend(self) -> str:
        """What computes the features after the first batch."""
        return self.compiled.backend if self.compiled is not None else "torch"

    def record(self) -> dict[str, Any]:
        """The backend used, its difference from torch on the first batch, and why not faster."""
        return {
            "backend": self.backend,
            "max_abs_diff": self.backend_max_abs_diff,
            "note": self.backend_note or None,
        }

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.levels(x)[0]

    @torch.inference_mode()
    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.checked:
            if self.compiled is not None:
                arrays = self.compiled.run(x.float().contiguous().cpu().numpy())
                return [torch.from_numpy(a) for a in arrays]
            return _levels((self.fast or self.reference)(x))
        self.checked = True
        self.reference.eval()
        ref = _levels(self.reference(x))
        if self.wanted != "torch":
            self._try_compiled(x, ref)
        if self.compiled is None:
            self._try_folding(x, ref)
        return ref

    def _try_compiled(self, x: torch.Tensor, ref: list[torch.Tensor]) -> None:
        compiled, why = compile_backbone(self.reference, x, self.wanted, len(ref))
        if compiled is not None:
            got = [torch.from_numpy(a) for a in compiled.run(x.float().contiguous().cpu().numpy())]
            diff = _max_diff(got, ref)
            self.backend_max_abs_diff = diff
            # Float32 rounding grows with the values: feature maps reach ~40 where pooled
            # features stay near 1, so the limit scales with the largest magnitude above 1.
            limit = MAX_ABS_DIFF * max(1.0, max(float(r.abs().max()) for r in ref))
            if diff <= limit:
                self.compiled = compiled
                return
            why = f"{compiled.backend} features differ from torch by {diff:.2e} > {limit:.2e}"
        self.backend_note = why
        warnings.warn(f"features computed in torch: {why}", stacklevel=3)

    def _try_folding(self, x: torch.Tensor, ref: list[torch.Tensor]) -> None:
        try:
            fast, n = fold_frozen_batchnorm(self.reference, x)
            got = _levels(fast(x))
        except Exception as e:  # an exotic graph: keep the original, and say so
            warnings.warn(f"BatchNorm folding skipped: {e}", stacklevel=3)
            return
        self.max_abs_diff = _max_diff(got, ref)
        # Folding only reorders float arithmetic; a larger difference means a wrong match.
        close = all(
            torch.allclose(g.float(), r.float(), rtol=1e-3, atol=1e-4)
            for g, r in zip(got, ref, strict=True)
        )
        if n and close:
            self.fast, self.folded = fast, n
        elif n:
            warnings.warn(
                f"BatchNorm folding not used: max difference {self.max_abs_diff:.2e}",
                stacklevel=3,
            )


@torch.inference_mode()
def extract_features(
    extractor: FrozenExtractor,
    loader: torch.utils.data.DataLoader,
    ctx: StepRunner,
    name: str,
    cache_dir: str | None = None,
    show: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, F] float32, labels [N] int64) for every batch of ``loader``."""
    from tqdm.auto import tqdm

    chunks: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    writer = None
    for x, y in tqdm(
        loader, desc=f"features ({name})", disable=not show, leave=False, file=sys.stderr
    ):
        x = x.to(ctx.device, non_blocking=True, memory_format=ctx.memory_format)
        with ctx.autocast():
            f = extractor(x).float()
        labels.append(y)
        if cache_dir is None:
            chunks.append(f)
        else:
            if writer is None:
                writer = _DiskWriter(Path(cache_dir), name, len(loader.dataset), f.shape[1])  # type: ignore[arg-type]
            writer.write(f.cpu().numpy())
    y_all = torch.cat(labels).to(ctx.device)
    if writer is not None:
        return torch.from_numpy(writer.finish()), y_all.cpu()
    return torch.cat(chunks), y_all


class _DiskWriter:
    """Append feature rows into a memory-mapped .npy file."""

    def __init__(self, root: Path, name: str, n: int, dim: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        tag = hashlib.sha256(f"{name}-{n}-{dim}".encode()).hexdigest()[:8]
        self.path = root / f"features-{name}-{tag}.npy"
        self.array = np.lib.format.open_memmap(
            self.path, mode="w+", dtype=np.float32, shape=(n, dim)
        )
        self.pos = 0

    def write(self, rows: np.ndarray) -> None:
        self.array[self.pos : self.pos + len(rows)] = rows
        self.pos += len(rows)

    def finish(self) -> np.ndarray:
        self.array.flush()
        return np.load(self.path, mmap_mode="r+")
