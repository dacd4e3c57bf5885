"""Checkpoints: safetensors weights + a JSON sidecar, written atomically, never pickled.

``<stem>.safetensors`` holds the full model (backbone + head) and ``<stem>.json`` what is needed
to rebuild and use it without the training code's state: classes, backbone source, head spec,
preprocessing, the resolved training config. Optimizer/scheduler state for ``--resume`` lives in
``<stem>.state.pt``, saved with torch.save of plain tensors and containers and read back with
``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftedge import __version__
from ftedge.errors import FtedgeError
from ftedge.files import atomic_write_text, atomic_write_with

FORMAT = "ftedge-checkpoint"
VERSION = 1


def config_sha256(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def save_checkpoint(
    stem: str | Path,
    model: nn.Module,
    meta: dict[str, Any],
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``stem.safetensors`` (+ ``stem.json``, + ``stem.state.pt``) atomically.

    The JSON is written last: a checkpoint counts as present only when its JSON exists, and
    the JSON records the sha256 of the weights, so a torn pair is detected on load.
    """
    from safetensors.torch import save_file

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights = stem.with_suffix(".safetensors")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_with(weights, lambda tmp: save_file(state, tmp))
    if train_state is not None:
        atomic_write_with(stem.with_suffix(".state.pt"), lambda tmp: torch.save(train_state, tmp))
    from ftedge.files import sha256_file

    full = {
        "format": FORMAT,
        "version": VERSION,
        "ftedge_version": __version__,
        "weights": weights.name,
        "weights_sha256": sha256_file(weights),
        **meta,
    }
    atomic_write_text(stem.with_suffix(".json"), json.dumps(full, indent=2) + "\n")
    return weights


@dataclass
class LoadedCheckpoint:
    model: nn.Module  # FtedgeClassifier, in eval mode, on CPU
    meta: dict[str, Any]
    path: Path  # the .safetensors file

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A run directory (uses ``which``), a .json or a .safetensors -> the .json sidecar."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / f"{which}.json"
    elif p.suffix == ".safetensors":
        p = p.with_suffix(".json")
    if not p.is_file():
        raise FtedgeError(f"no checkpoint at {p} (train first: ftedge train)")
    return p


def read_meta(path: str | Path, which: str = "best") -> dict[str, Any]:
    p = resolve_checkpoint(path, which)
    try:
        meta = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FtedgeError(f"unreadable checkpoint metadata {p}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FtedgeError(f"{p} is not an ftedge checkpoint")
    meta["_json_path"] = str(p)
    return meta


def load_checkpoint(path: str | Path, which: str = "best") -> LoadedCheckpoint:
    """Rebuild the trained classifier from a run dir / checkpoint, without hub downloads."""
    from ftedge.files import sha256_file
    from ftedge.models import BackboneSource, HeadSpec, build_classifier
    from ftedge.models.registry import read_state_dict

    meta = read_meta(path, which)
    weights = Path(meta["_json_path"]).with_name(meta["weights"])
    if not weights.is_file():
        raise FtedgeError(f"checkpoint weights {weights} are missing")
    if sha256_file(weights) != meta["weights_sha256"]:
        raise FtedgeError(f"checkpoint weights {weights} do not match their sha256 (corrupt?)")
    src = BackboneSource(**meta["backbone"])
    built = build_classifier(src, HeadSpec.from_dict(meta["head"]), pretrained=False)
    state = read_state_dict(weights)
    try:
        built.model.load_state_dict(state)
    except RuntimeError as e:
        raise FtedgeError(f"{weights} does not fit its metadata: {str(e)[:200]}") from None
    built.model.eval()
    return LoadedCheckpoint(built.model, meta, weights)
