"""The run directory: its name, the files written once at the start, the config to resume."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ftedge.config import TrainConfig, build_config, load_yaml, save_yaml
from ftedge.data.folders import DatasetSplits
from ftedge.errors import FtedgeError
from ftedge.files import point_latest
from ftedge.training import distributed as dist


def new_run_dir(cfg: TrainConfig) -> Path:
    """``<out>/<name>``, or ``<out>/<timestamp>[-i]`` when no name is given (never reused)."""
    out = Path(cfg.out)
    name = cfg.name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir, i = out / name, 1
    while run_dir.exists() and cfg.name is None:
        run_dir, i = out / f"{name}-{i}", i + 1
    run_dir.mkdir(parents=True, exist_ok=cfg.name is not None)
    return run_dir


def start_run_dir(cfg: TrainConfig, splits: DatasetSplits) -> Path:
    """Rank 0 creates the run directory (config.yaml, splits.json, ``latest``); all learn it."""
    if dist.rank() != 0:
        # The others need the path: they read best.safetensors back at the end.
        return Path(dist.broadcast_object(None))
    run_dir = new_run_dir(cfg)
    dist.broadcast_object(str(run_dir))
    save_yaml(cfg, run_dir / "config.yaml")
    splits.save(run_dir / "splits.json")
    point_latest(run_dir)
    return run_dir


def load_run_config(run_dir: Path) -> TrainConfig:
    """The resolved config a run was started with (its ``config.yaml``)."""
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FtedgeError(f"cannot resume: {cfg_path} does not exist")
    return build_config(TrainConfig, load_yaml(cfg_path))
