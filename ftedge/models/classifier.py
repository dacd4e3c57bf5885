"""Head surgery and freezing, generic over architectures (no per-architecture ladder).

- ``strip_classifier``: timm models drop their head with ``reset_classifier(0)``; any other
  model has its last ``nn.Linear`` replaced by ``nn.Identity`` — that is the output layer of every
  torchvision classifier.
- ``backbone_units``: the backbone as an ordered list of blocks, for ``--unfreeze N``: its
  top-level children, with Sequential/ModuleList children expanded one level, and lone norm or
  parameter-free layers merged into the block before them (so EfficientNet's ``conv_head + bn2``
  or a ResNet ``layer4`` is one block).
- ``FtedgeClassifier.train()`` keeps frozen blocks in eval mode, so frozen BatchNorm layers
  never update their running statistics.
- Taps (``HeadSpec.taps``): the head sees the pooled features *and* the global-average-pooled
  outputs of a few blocks lower down (``tap_names``), concatenated; see ``docs/training.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ftedge.errors import FtedgeError
from ftedge.models.registry import BackboneSource, create_backbone
from ftedge.runtime.preprocess import PreprocessSpec

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class HeadSpec:
    """The new classifier head: optional hidden layers (ReLU + dropout) then a linear layer,
    fed the pooled features and the pooled outputs of ``taps`` backbone blocks below the top."""

    num_classes: int
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0
    taps: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self) | {"hidden": list(self.hidden)}
        if not self.taps:  # written as before taps existed: older ftedge reads it unchanged
            del d["taps"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadSpec:
        hidden = tuple(int(h) for h in d["hidden"])
        # Checkpoints written before taps existed have none.
        return cls(int(d["num_classes"]), hidden, float(d["dropout"]), int(d.get("taps", 0)))


def build_head(num_features: int, spec: HeadSpec) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = num_features
    for h in spec.hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        if spec.dropout > 0:
            layers.append(nn.Dropout(spec.dropout))
        width = h
    if spec.dropout > 0 and not spec.hidden:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(nn.Linear(width, spec.num_classes))
    return nn.Sequential(*layers)


def strip_classifier(model: nn.Module) -> int:
    """Remove the output layer in place; return the width of the features it consumed."""
    reset = getattr(model, "reset_classifier", None)
    if callable(reset) and hasattr(model, "num_features"):
        reset(0)
        # Some timm models (MobileNetV3) keep a conv_head after pooling: its width is the
        # pre-logits width, not num_features.
        width: Any = getattr(model, "head_hidden_size", None) or model.num_features
        return int(width)
    last: tuple[str, nn.Linear] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (name, module)
    if last is None:
        raise FtedgeError(f"{type(model).__name__} has no Linear output layer to replace")
    name, linear = last
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Identity())
    return int(linear.in_features)


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def backbone_units(backbone: nn.Module) -> list[list[nn.Module]]:
    """The backbone's blocks in forward order (each a list of modules), bottom first."""
    flat: list[nn.Module] = []
    for child in backbone.children():
        if isinstance(child, nn.Sequential | nn.ModuleList) and len(child) > 1:
            flat.extend(child.children())
        else:
            flat.append(child)
    units: list[list[nn.Module]] = []
    for m in flat:
        lone_norm = isinstance(m, _NORMS) or not _has_params(m)
        if units and lone_norm:
            units[-1].append(m)
        else:
            units.append([m])
    return [u for u in units if any(_has_params(m) for m in u)]


# Taps are counted from below the top two blocks: the last stage and the projection that makes
# the pooled features (EfficientNet's conv_head) are what the pooled features already are.
TAP_SKIP = 2


def tap_names(backbone: nn.Module, taps: int) -> tuple[str, ...]:
    """Module names of the ``taps`` blocks below the top ``TAP_SKIP`` (bottom first): on
    EfficientNet-Lite0, ``blocks.3``-``blocks.5`` (80, 112 and 192 channels)."""
    units = backbone_units(backbone)
    top = max(0, len(units) - TAP_SKIP)
    names = {id(m): n for n, m in backbone.named_modules()}
    return tuple(names[id(u[-1])] for u in units[max(0, top - max(0, taps)) : top])


def _run_tapped(
    backbone: nn.Module, taps: tuple[str, ...], x: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``backbone(x)`` and the output of each ``taps`` module, in forward order."""
    grabbed: list[torch.Tensor] = []

    def grab(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        grabbed.append(out)

    # Hooks live for this call only: nothing accumulates when the backbone runs on its own,
    # and a copy of the backbone carries no hook.
    handles = [backbone.get_submodule(n).register_forward_hook(grab) for n in taps]
    try:
        feats = backbone(x)
    finally:
        for h in handles:
            h.remove()
    if len(grabbed) != len(taps) or any(g.dim() != 4 for g in grabbed):
        raise FtedgeError(f"taps {list(taps)} did not each give one [N, C, H, W] feature map")
    return feats, grabbed


def pooled_features(backbone: nn.Module, taps: tuple[str, ...], x: torch.Tensor) -> torch.Tensor:
    """``backbone(x)`` [N, F] with the spatial means of the ``taps`` modules' outputs appended."""
    if not taps:
        return backbone(x)
    feats, grabbed = _run_tapped(backbone, taps, x)
    return torch.cat([feats, *(g.mean((2, 3)) for g in grabbed)], 1)


def _tap_widths(
    backbone: nn.Module, taps: tuple[str, ...], size: tuple[int, int]
) -> tuple[int, ...]:
    """Channels of each tap, from one forward pass in eval mode (BatchNorm on one image)."""
    was = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            _, grabbed = _run_tapped(backbone, taps, torch.zeros(1, 3, *size))
    finally:
        backbone.train(was)
    return tuple(int(g.shape[1]) for g in grabbed)


class PooledFeatures(nn.Module):
    """``pooled_features`` as a module: what cached-feature extraction runs and compiles."""

    def __init__(self, backbone: nn.Module, taps: tuple[str, ...]) -> None:
        super().__init__()
        self.backbone = backbone
        self.taps = taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.backbone, self.taps, x)


class FtedgeClassifier(nn.Module):
    """``head(features(x))``: the backbone's pooled features with its taps' pooled outputs
    appended (``feature_groups``: the width of each part, the pooled features first)."""

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Sequential,
        feature_groups: tuple[int, ...],
        taps: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.feature_groups = feature_groups
        self.taps = taps
        self.units = backbone_units(backbone)

    @property
    def num_features(self) -> int:
        """Width of the features the head sees: every group together."""
        return sum(self.feature_groups)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.backbone, self.taps, x)

    def feature_module(self) -> PooledFeatures:
        """A module computing ``features`` (sharing the backbone, not part of the state dict)."""
        return PooledFeatures(self.backbone, self.taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    # -- freezing -----------------------------------------------------------------------------
    def freeze_backbone(self, unfreeze_top: int = 0) -> None:
        """Freeze every backbone block but the top ``unfreeze_top`` (BatchNorm included)."""
        if unfreeze_top < 0:
            raise FtedgeError("--unfreeze must be >= 0")
        n = len(self.units)
        for i, unit in enumerate(self.units):
            trainable = i >= n - unfreeze_top
            for m in unit:
                m.requires_grad_(trainable)
        # Anything not inside a unit (rare: bare parameters) follows the bottom-most block.
        self.train(self.training)

    @property
    def backbone_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.backbone.parameters())

    def train(self, mode: bool = True) -> FtedgeClassifier:
        super().train(mode)
        # A frozen block runs in eval mode: BatchNorm uses (and keeps) its running statistics
        # and dropout/drop-path is off, exactly as when the features were pretrained.
        for unit in self.units:
            for m in unit:
                if not any(p.requires_grad for p in m.parameters()):
                    m.eval()
        return self

    def param_groups(self, lr: float, backbone_lr: float, weight_decay: float) -> list[dict]:
        """Optimizer groups: the new head at ``lr``, the backbone at ``backbone_lr``.

        Every backbone parameter is listed even while frozen: their grad stays None, so the
        optimizer skips them (no weight decay either) until staged unfreezing turns them on.
        """
        return [
            {"params": list(self.head.parameters()), "lr": lr, "weight_decay": weight_decay},
            {
                "params": list(self.backbone.parameters()),
                "lr": backbone_lr,
                "weight_decay": weight_decay,
            },
        ]


@dataclass(frozen=True)
class BuiltModel:
    """A new classifier and the preprocessing its backbone was pretrained with."""

    model: FtedgeClassifier
    preprocess: PreprocessSpec


def build_classifier(
    source: BackboneSource, head: HeadSpec, *, pretrained: bool = True
) -> BuiltModel:
    """Pretrained backbone with its classifier removed + a new head for ``head.num_classes``.

    ``model.taps`` may hold fewer names than ``head.taps`` asks for: a small backbone has fewer
    blocks, and a backbone whose blocks do not give [N, C, H, W] maps (a transformer) none.
    """
    backbone, spec = create_backbone(source, pretrained=pretrained)
    groups = (strip_classifier(backbone),)
    taps = tap_names(backbone, head.taps)
    try:
        groups += _tap_widths(backbone, taps, (spec.height, spec.width)) if taps else ()
    except FtedgeError:
        taps = ()
    model = FtedgeClassifier(backbone, build_head(sum(groups), head), groups, taps)
    return BuiltModel(model, spec)
