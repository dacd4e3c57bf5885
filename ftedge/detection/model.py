"""The detector: a frozen pretrained backbone's stride 8/16/32 features -> FPN neck -> FCOS head.

``DetectionLayers`` (neck + head) are the new layers that training fits; the backbone is any
timm model that reports its feature maps (``feature_info``), frozen like the classifier's.
``ExportDetector`` adds the decoding that goes into the exported graph: boxes in input pixels
and per-class scores for every cell, so a runtime needs only thresholding and NMS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ftedge.detection.decode import distances_to_boxes, scores
from ftedge.detection.grid import level_sizes, make_grid
from ftedge.detection.head import FCOSHead
from ftedge.detection.neck import FPNNeck
from ftedge.errors import FtedgeError

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class DetectorSpec:
    """Shape of the new layers (saved with the checkpoint, enough to rebuild them)."""

    num_classes: int
    in_channels: tuple[int, ...]
    strides: tuple[int, ...] = STRIDES
    # 128 channels, 4 separable layers per branch (torchvision's FCOS head is 4 full 3x3 layers):
    # on the built-in trees, single 15-epoch runs gave test AP50 0.37 with 64 x 2, 0.40 with
    # 96 x 3 and 0.45 with 128 x 4 (run-to-run spread about 0.05); still cheap (about
    # 0.45 GFLOPs per 256 x 256 input, the backbone 0.95) as every layer is depthwise-separable.
    channels: int = 128
    depth: int = 4


class MultiScaleBackbone(nn.Module):
    """A timm model's feature maps at the last block of each of ``strides``."""

    def __init__(self, model: nn.Module, strides: tuple[int, ...] = STRIDES) -> None:
        super().__init__()
        info = getattr(model, "feature_info", None)
        if not info or not hasattr(model, "forward_intermediates"):
            raise FtedgeError(
                f"{type(model).__name__} does not expose multi-scale features: detection needs "
                "a timm backbone (e.g. tf_efficientnet_lite0, mobilenetv3_large_100, resnet18)"
            )
        reductions = [int(f["reduction"]) for f in info]
        missing = [s for s in strides if s not in reductions]
        if missing:
            raise FtedgeError(f"backbone has no feature map at stride {missing[0]}")
        # The last block at each stride: the deepest features of that resolution.
        self.indices = [max(i for i, r in enumerate(reductions) if r == s) for s in strides]
        self.channels = tuple(int(info[i]["num_chs"]) for i in self.indices)
        self.model = model
        self.units = _used_units(model, str(info[self.indices[-1]]["module"]))
        self.freeze(0)

    def freeze(self, unfreeze_top: int = 0) -> None:
        """Freeze every block but the top ``unfreeze_top`` of those the features come from
        (BatchNorm included); blocks past the last feature map (the classifier's) never train."""
        for p in self.model.parameters():
            p.requires_grad_(False)
        for unit in self.units[len(self.units) - unfreeze_top :] if unfreeze_top else []:
            for m in unit:
                m.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> MultiScaleBackbone:
        super().train(mode)
        # A frozen block runs in eval mode: BatchNorm keeps its pretrained running statistics.
        for m in self.model.modules():
            if not any(p.requires_grad for p in m.parameters()):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(
            self.model.forward_intermediates(x, indices=self.indices, intermediates_only=True)
        )


def _used_units(model: nn.Module, last: str) -> list[list[nn.Module]]:
    """The backbone's blocks, bottom first, up to the one that gives the deepest feature map."""
    from ftedge.models.classifier import backbone_units

    units = backbone_units(model)
    target = model.get_submodule(last)
    for i, unit in enumerate(units):
        if any(m is target or any(c is target for c in m.modules()) for m in unit):
            return units[: i + 1]
    return units


class DetectionLayers(nn.Module):
    """Neck + head: ``forward(features) -> (cls logits, ltrb distances, ctr logits)``.

    ``train_dtype``: with bfloat16, training forward passes run under autocast and their
    outputs come back as float32, so the loss (focal, GIoU, BCE) is computed in float32;
    evaluation and export always run in float32.
    """

    def __init__(self, spec: DetectorSpec) -> None:
        super().__init__()
        self.spec = spec
        self.neck = FPNNeck(list(spec.in_channels), spec.channels)
        self.head = FCOSHead(spec.num_classes, spec.channels, spec.depth, spec.strides)
        self.train_dtype: torch.dtype | None = None

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.train_dtype is None or not self.training:
            return self.head(self.neck(feats))
        with torch.autocast(feats[0].device.type, dtype=self.train_dtype):
            cls, ltrb, ctr = self.head(self.neck(feats))
        return cls.float(), ltrb.float(), ctr.float()


class Detector(nn.Module):
    """Backbone + new layers, raw per-cell outputs (what training and the loss use)."""

    def __init__(self, backbone: MultiScaleBackbone, layers: DetectionLayers) -> None:
        super().__init__()
        self.backbone = backbone
        self.layers = layers

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.layers(self.backbone(x))


class ExportDetector(nn.Module):
    """``forward(images) -> (boxes (N, P, 4) xyxy input pixels, scores (N, P, K))``.

    The cell grid depends only on the input's height and width, which are fixed at export, so
    it is computed once here and becomes a constant of the graph.
    """

    def __init__(self, detector: Detector, height: int, width: int) -> None:
        super().__init__()
        self.detector = detector
        strides = detector.layers.spec.strides
        grid = make_grid(level_sizes(height, width, strides), strides)
        self.register_buffer("centers", grid.centers, persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls, ltrb, ctr = self.detector(x)
        return distances_to_boxes(self.centers, ltrb), scores(cls, ctr)
