"""Small building blocks of the detection neck and head.

Depthwise-separable 3x3 convolutions (a depthwise 3x3 + a pointwise 1x1, each followed by
BatchNorm and ReLU6) cost about an eighth of a full 3x3 convolution at 64 channels, quantize to
INT8 without surprises (ReLU6 bounds the activations) and run fast on every backend.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_act(c_in: int, c_out: int, k: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU6, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(inplace=True),
    )


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 + pointwise 1x1, each with BatchNorm and ReLU6."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(conv_bn_act(c_in, c_in, 3, groups=c_in), conv_bn_act(c_in, c_out, 1))


class Scale(nn.Module):
    """A learnable scalar: lets each pyramid level tune the size of its box regression."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale
