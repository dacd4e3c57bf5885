"""The anchor-free head (FCOS family): per cell, class scores, box distances and centerness.

One head is shared by every pyramid level (the same weights look at stride 8, 16 and 32), which
is what makes a small head learn from few images: every object, whatever its size, trains the
same weights. Per level, only a learnable ``Scale`` of the box regression differs.

For each cell of each level the head predicts:
- ``cls``: one logit per class (sigmoid, not softmax: a cell may be background for every class);
- ``reg``: distances (left, top, right, bottom) from the cell centre to the box edges, in units of
  the level's stride, made positive with ``exp``;
- ``ctr``: centerness logit, high near an object's centre; it down-weights the poor boxes that
  cells near an object's border predict, before NMS.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ftedge.detection.layers import Scale, SeparableConv


class FCOSHead(nn.Module):
    """``forward([p3, p4, p5]) -> (cls, reg, ctr)`` flattened over all levels' cells.

    Shapes: cls (N, P, K) logits; reg (N, P, 4) distances in pixels (already times the stride);
    ctr (N, P) logits; P = sum of H_l * W_l over levels, in level order then row-major.
    """

    def __init__(
        self,
        num_classes: int,
        channels: int = 64,
        depth: int = 2,
        strides: tuple[int, ...] = (8, 16, 32),
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.strides = strides
        self.cls_tower = nn.Sequential(*(SeparableConv(channels, channels) for _ in range(depth)))
        self.reg_tower = nn.Sequential(*(SeparableConv(channels, channels) for _ in range(depth)))
        self.cls_out = nn.Conv2d(channels, num_classes, 1)
        self.reg_out = nn.Conv2d(channels, 4, 1)
        self.ctr_out = nn.Conv2d(channels, 1, 1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in strides)
        # Start every cell as background with p = 0.01: otherwise the focal loss of thousands of
        # easy negatives swamps the first steps (the RetinaNet prior).
        nn.init.constant_(self.cls_out.bias, -math.log((1 - 0.01) / 0.01))
        for conv in (self.cls_out, self.reg_out, self.ctr_out):
            nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(self.reg_out.bias)
        nn.init.zeros_(self.ctr_out.bias)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cls_all, reg_all, ctr_all = [], [], []
        for feat, stride, scale in zip(feats, self.strides, self.scales, strict=True):
            c = self.cls_tower(feat)
            r = self.reg_tower(feat)
            n = feat.shape[0]
            cls_all.append(self.cls_out(c).flatten(2).transpose(1, 2))
            # exp keeps distances positive; the clamp keeps an early wild step from overflowing.
            dist = torch.exp(scale(self.reg_out(r)).clamp(max=8.0)) * stride
            reg_all.append(dist.flatten(2).transpose(1, 2))
            ctr_all.append(self.ctr_out(r).reshape(n, -1))
        return torch.cat(cls_all, 1), torch.cat(reg_all, 1), torch.cat(ctr_all, 1)
