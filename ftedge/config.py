"""Typed, frozen configs with precedence defaults < YAML file < command-line flags.

Command-line options are generated from the dataclass fields (their ``help`` metadata), so
``--help`` always lists every option with its default and a new field cannot be forgotten.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from ftedge.errors import FtedgeError

T = TypeVar("T")


def opt(default: Any, help: str) -> Any:
    """A config field: its default and the ``--help`` text of its flag."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything ``ftedge train`` does, with its defaults."""

    task: Literal["classify", "detect"] = opt(
        "classify", "classify: one label per image; detect: boxes (YOLO / COCO / VOC folders)"
    )
    data: str | None = opt(
        None,
        "image folder (DIR/<class>/* or DIR/{train,val,test}/<class>/*); default: the built-in Fashion-MNIST sample",
    )
    model: str = opt(
        "tf_efficientnet_lite0",
        "backbone: a timm/torchvision name (timm:NAME, tv:NAME), a checkpoint file (ARCH@PATH), or an offline default (tf_efficientnet_lite0/1/2)",
    )
    out: str = opt("runs", "parent folder of run directories")
    name: str | None = opt(
        None, "run name (default: a timestamp); runs/latest points at the newest run"
    )
    epochs: int = opt(30, "maximum number of epochs")
    batch_size: int = opt(64, "batch size (per process under torchrun)")
    optimizer: Literal["adamw", "sgd"] = opt("adamw", "optimizer")
    lr: float = opt(3e-3, "learning rate of the new head")
    backbone_lr: float = opt(3e-4, "learning rate of unfrozen backbone blocks (lower than --lr)")
    weight_decay: float = opt(1e-4, "weight decay")
    momentum: float = opt(0.9, "SGD momentum")
    warmup_epochs: float = opt(1.0, "linear warm-up length (epochs) before the cosine decay")
    label_smoothing: float = opt(0.1, "label smoothing of the cross-entropy loss")
    grad_clip: float = opt(1.0, "clip the gradient norm to this value (0: off)")
    seed: int = opt(0, "random seed (data order, head init, splits)")
    head_hidden: tuple[int, ...] = opt((), "hidden layer widths of the new head, e.g. 256,128")
    dropout: float = opt(0.0, "dropout in the new head")
    taps: int = opt(
        3,
        "the head also sees the pooled outputs of this many backbone blocks below the top two (0: the pooled features alone)",
    )
    unfreeze: int = opt(0, "number of top backbone blocks to train (0: backbone frozen)")
    unfreeze_epoch: int = opt(0, "epoch (0-based) at which --unfreeze takes effect (staged)")
    augment: Literal["auto", "on", "off"] = opt(
        "auto",
        "training augmentation; auto: off while the whole backbone is frozen (so features can be cached), on otherwise",
    )
    hflip: bool = opt(True, "augmentation: random horizontal flip")
    flips: Literal["auto", "none", "h", "hv", "d4"] = opt(
        "auto",
        "detection: orientations trained on: h (mirror), hv (+ upside down), d4 (+ 90-degree turns: aerial, microscopy); auto: hv on the built-in aerial trees, else h (none with --hflip false)",
    )
    crop_scale: float = opt(
        0.6, "augmentation: random resized crop keeps at least this area fraction"
    )
    color_jitter: float = opt(0.2, "augmentation: brightness/contrast/saturation jitter (0: off)")
    cache_features: Literal["auto", "on", "off"] = opt(
        "auto",
        "train the head on backbone features computed once; auto: when the backbone is frozen and augmentation is off",
    )
    feature_cache_dir: str | None = opt(
        None, "keep cached features on disk here instead of RAM (large datasets)"
    )
    feature_backend: Literal["auto", "openvino", "onnxruntime", "torch"] = opt(
        "auto",
        "what computes cached features on a CPU; auto: OpenVINO, else onnxruntime, else torch (checked against torch on the first batch)",
    )
    image_size: int | None = opt(
        None,
        "network input size (default: the backbone's pretrained size; 128 for the built-in 28 px dataset)",
    )
    val_fraction: float = opt(
        0.15, "fraction of each class held out for validation (when there is no val/ folder)"
    )
    test_fraction: float = opt(
        0.15, "fraction of each class held out for test (when there is no test/ folder)"
    )
    patience: int = opt(8, "early stopping: epochs without val accuracy gain (0: off)")
    min_steps: int = opt(
        300,
        "minimum optimizer steps: small data sets get smaller batches and more epochs (0: off)",
    )
    tune: Literal["auto", "off"] = opt(
        "auto",
        "head tuning on cached features: try a small grid of heads, keep the best by validation (k-fold when val is small); auto: on when features are cached",
    )
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    amp: Literal["auto", "bf16", "fp16", "off"] = opt(
        "auto",
        "mixed precision on CUDA; auto: bf16 where supported, else fp16 with a grad scaler "
        "(detection: its new layers also in bf16 on CPUs with AVX512-BF16/AMX; never fp16)",
    )
    channels_last: bool = opt(
        True, "channels_last memory format (faster convolutions on CUDA and CPU)"
    )
    compile: bool = opt(False, "torch.compile the model")
    workers: int = opt(-1, "data loader worker processes (-1: automatic)")
    threads: int = opt(0, "torch CPU threads (0: torch default)")

    def __post_init__(self) -> None:
        _check_finite(self)
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"--batch-size must be >= 1 (got {self.batch_size})"),
            (self.lr > 0 and self.backbone_lr >= 0, "learning rates must be positive"),
            (self.unfreeze >= 0, f"--unfreeze must be >= 0 (got {self.unfreeze})"),
            (self.taps >= 0, f"--taps must be >= 0 (got {self.taps})"),
            (self.unfreeze_epoch >= 0, "--unfreeze-epoch must be >= 0"),
            (0 <= self.dropout < 1, "--dropout must be in [0, 1)"),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (0 < self.crop_scale <= 1, "--crop-scale must be in (0, 1]"),
            (self.val_fraction > 0 and self.test_fraction > 0, "split fractions must be > 0"),
            (self.val_fraction + self.test_fraction < 1, "val + test fractions must be < 1"),
            (
                self.image_size is None or 16 <= self.image_size <= MAX_IMAGE_SIZE,
                f"--image-size must be in [16, {MAX_IMAGE_SIZE}] (got {self.image_size})",
            ),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0 (got {self.weight_decay})"),
            (self.grad_clip >= 0, f"--grad-clip must be >= 0 (got {self.grad_clip})"),
            (self.momentum >= 0, f"--momentum must be >= 0 (got {self.momentum})"),
            (self.color_jitter >= 0, f"--color-jitter must be >= 0 (got {self.color_jitter})"),
            (self.workers >= -1, f"--workers must be >= -1 (got {self.workers})"),
            (self.threads >= 0, f"--threads must be >= 0 (got {self.threads})"),
            (self.batch_size <= 1 << 16, f"--batch-size must be <= 65536 (got {self.batch_size})"),
            (all(h > 0 for h in self.head_hidden), "--head-hidden widths must be positive"),
            (self.patience >= 0 and self.warmup_epochs >= 0, "--patience/--warmup-epochs >= 0"),
            (self.min_steps >= 0, f"--min-steps must be >= 0 (got {self.min_steps})"),
        ]
        for ok, msg in checks:
            if not ok:
                raise FtedgeError(msg)
        if self.name is not None:
            check_run_name(self.name)
        _check_folder(self.out, "--out")
        _check_folder(self.feature_cache_dir, "--feature-cache-dir")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["head_hidden"] = list(self.head_hidden)
        return d


# Above this a frozen backbone's features no longer fit any machine's memory; real inputs are
# 224-640 px.
MAX_IMAGE_SIZE = 2048
RESERVED_RUN_NAMES = frozenset({"latest", ".", ".."})


def _check_finite(cfg: Any) -> None:
    """Every float field is a real number (inf and nan train to NaN or never stop)."""
    import math

    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise FtedgeError(f"--{f.name.replace('_', '-')} must be a finite number (got {v})")


def _check_folder(path: str | None, flag: str) -> None:
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise FtedgeError(f"{flag} {path} is a file, expected a folder")


def check_run_name(name: str) -> None:
    """A run name is one plain folder name under --out: no path, no reserved or hidden name."""
    import os

    if not name or name in RESERVED_RUN_NAMES:
        raise FtedgeError(f"--name {name!r} is reserved: choose another run name")
    if "/" in name or os.sep in name or (os.altsep and os.altsep in name) or "\0" in name:
        raise FtedgeError(f"--name {name!r} must be a plain folder name, not a path")
    if name.startswith("."):
        raise FtedgeError(f"--name {name!r} must not start with '.' (hidden names are ftedge's)")


# -- generic machinery ---------------------------------------------------------------------


def _base_type(tp: Any) -> Any:
    """Strip Optional[...] from a field type."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _convert(value: Any, tp: Any, name: str) -> Any:
    """Coerce a YAML or command-line value to the field's type, with a one-line error."""
    optional = type(None) in get_args(tp)
    base = _base_type(tp)
    if value is None or (optional and value in ("none", "None", "")):
        if optional:
            return None
        raise FtedgeError(f"{name} cannot be empty")
    _check_kind(value, base, name)
    try:
        if get_origin(base) is Literal:
            if value not in get_args(base):
                raise ValueError(f"choose from {', '.join(map(str, get_args(base)))}")
            return value
        if get_origin(base) is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace(" ", "").split(",") if v]
            elif isinstance(value, int):
                value = [value]
            return tuple(int(v) for v in value)
        if base is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError("expected an integer")
        return base(value)
    except (TypeError, ValueError) as e:
        raise FtedgeError(f"invalid value {value!r} for {name}: {e}") from None


def _check_kind(value: Any, base: Any, name: str) -> None:
    """A YAML value of the wrong kind (``epochs: true``, ``name: {a: 1}``) is refused.

    Command-line values are always strings and are parsed; YAML already typed them, and a
    mapping, a list or a bool where a number or a name belongs is a mistake, not a value.
    """
    if get_origin(base) is tuple:
        ok = isinstance(value, (str, int, list, tuple)) and not isinstance(value, bool)
    elif base is bool:
        ok = isinstance(value, (bool, str, int))
    elif base in (int, float):
        ok = isinstance(value, (int, float, str)) and not isinstance(value, bool)
    else:  # str and Literal
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    if not ok:
        raise FtedgeError(f"invalid value {value!r} for {name}: expected {_kind_name(base)}")


def _kind_name(base: Any) -> str:
    if get_origin(base) is tuple:
        return "a list of integers"
    return {bool: "true or false", int: "an integer", float: "a number"}.get(base, "a string")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per dataclass field; argparse default None means 'not given'."""
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        base = _base_type(f.type if not isinstance(f.type, str) else _resolve(cls, f.name))
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_ = f"{f.metadata.get('help', '')} (default: {shown if shown != () else 'none'})"
        if base is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_
            )
        elif get_origin(base) is Literal:
            parser.add_argument(flag, choices=get_args(base), default=None, help=help_)
        else:
            metavar = "N,N" if get_origin(base) is tuple else f.name.split("_")[-1].upper()
            parser.add_argument(flag, default=None, metavar=metavar, help=help_)


def _resolve(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    from ftedge.files import read_text

    p = Path(path)
    try:
        data = yaml.safe_load(read_text(p, "config")) or {}
    except RecursionError:
        raise FtedgeError(f"invalid YAML in {p}: nested too deeply") from None
    except yaml.YAMLError as e:
        raise FtedgeError(f"invalid YAML in {p}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise FtedgeError(f"{p} must hold a mapping of option: value")
    return data


def build_config(
    cls: type[T], yaml_values: dict[str, Any] | None = None, flags: dict[str, Any] | None = None
) -> T:
    """defaults < YAML < flags. Unknown YAML keys and bad values are one-line errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in (yaml_values or {}).items():
        k = str(key).replace("-", "_")
        if k not in names:
            raise FtedgeError(f"unknown config key {key!r}")
        values[k] = _convert(value, hints[k], k)
    for k, value in (flags or {}).items():
        if k in names and value is not None:
            values[k] = _convert(value, hints[k], "--" + k.replace("_", "-"))
    return cls(**values)


# Defaults that differ for detection (below the YAML file and the flags in precedence): the
# new layers see few, large images, so smaller batches and a higher rate train them best.
# Detection trains the new layers on cached features, 20+ steps per epoch. On the built-in trees,
# val mAP plateaus by epoch 6-10 and longer schedules only fit the few training tiles harder
# (test AP50 0.43 after 10 epochs, 0.34 after 20 and 0.31 after 30, single runs).
DETECT_DEFAULTS: dict[str, Any] = {"epochs": 10, "batch_size": 16, "lr": 5e-3, "patience": 0}


def with_task_defaults(yaml_values: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """``yaml_values`` with the task's own defaults underneath (defaults < task < YAML < flags)."""
    task = flags.get("task") or yaml_values.get("task") or "classify"
    return {**DETECT_DEFAULTS, **yaml_values} if task == "detect" else yaml_values


def save_yaml(config: Any, path: str | Path) -> None:
    import yaml

    from ftedge.files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
