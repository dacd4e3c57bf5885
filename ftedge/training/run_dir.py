"""The run directory: its name, its ownership, the files written once at the start, the config.

A run directory belongs to one process at a time. ``claim_run_dir`` creates it exclusively (a
second ``ftedge train --name same`` fails at once instead of mixing two runs' files) and holds
an advisory lock on it for the life of the run (``--resume`` takes the same lock). A finished
run is only ever replaced with ``exist_ok`` (``--exist-ok``), and then its old result files are
removed first, so nothing of the old run survives into the new one.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from ftedge.config import TrainConfig, build_config, check_run_name, load_yaml, save_yaml
from ftedge.data.folders import DatasetSplits
from ftedge.errors import FtedgeError
from ftedge.files import sweep_stale_temps
from ftedge.training import distributed as dist

LOCK_NAME = ".ftedge.lock"
# What a run writes (classification and detection); removed before a run is replaced.
RUN_FILES = (
    "config.yaml",
    "splits.json",
    "best.*",
    "last.*",
    "metrics.json",
    "curves.png",
    "confusion_matrix.png",
    "pr_curve.png",
    "test_predictions.png",
)
_HELD: dict[Path, int] = {}  # run directories this process holds: path -> lock file descriptor


def lock_run_dir(run_dir: Path) -> None:
    """Hold the run's lock (non-blocking): one process per run directory, or a one-line error."""
    key = run_dir.resolve()
    if key in _HELD:  # this process already holds it (a resume after a run, in one process)
        return
    fd = os.open(key / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FtedgeError(f"{run_dir} is in use by another ftedge process") from None
    except ImportError:  # no fcntl (Windows): the exclusive mkdir still guards new runs
        pass
    _HELD[key] = fd
    sweep_stale_temps(key)  # leftovers of an earlier, killed process of this run


def release_run_dir(run_dir: Path) -> None:
    """Let go of the run's lock (the end of a run; process exit does the same)."""
    fd = _HELD.pop(run_dir.resolve(), None)
    if fd is not None:
        os.close(fd)


def claim_run_dir(out: Path, name: str | None, exist_ok: bool = False) -> Path:
    """``<out>/<name>`` (or ``<out>/<timestamp>[-i]``), created exclusively and locked.

    An existing ``<out>/<name>`` that saved an epoch is refused unless ``exist_ok``; a run
    stopped before that is taken over. Either way it must be a run directory (or empty), not in
    use, and its old result files are removed.
    """
    if name is not None:
        check_run_name(name)
    if out.exists() and not out.is_dir():
        raise FtedgeError(f"--out {out} is a file, expected a folder")
    out.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(out)
    stamp = name or datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        run_dir = out / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            if name is None:
                continue  # timestamped runs are never reused: take the next suffix
            check_run_dir_free(out, name, exist_ok)
            _replace_old_run(run_dir)
            return run_dir
        lock_run_dir(run_dir)
        return run_dir
    raise FtedgeError(f"cannot create a run directory under {out}")


def check_run_dir_free(out: Path, name: str | None, exist_ok: bool) -> None:
    """Refuse, before any work, a ``--name`` whose run saved an epoch (unless ``exist_ok``).

    A run stopped before its first saved epoch holds nothing: it is taken over.
    """
    run_dir = out / name if name is not None else None
    if run_dir is None or exist_ok or not (run_dir.exists() or run_dir.is_symlink()):
        return
    if any(run_dir.glob("*.json")) or not run_dir.is_dir():
        raise FtedgeError(
            f"{run_dir} already exists: choose another --name, continue it with "
            f"--resume {run_dir}, or replace it with --exist-ok"
        )


def _replace_old_run(run_dir: Path) -> None:
    if run_dir.is_symlink() or not run_dir.is_dir():
        raise FtedgeError(f"{run_dir} exists and is not a run directory")
    lock_run_dir(run_dir)  # first: a run being replaced by another process is refused as such
    others = [p for p in run_dir.iterdir() if p.name != LOCK_NAME]
    if others and not (run_dir / "config.yaml").is_file():
        release_run_dir(run_dir)
        raise FtedgeError(f"{run_dir} exists and is not a run directory: refusing to replace it")
    for pattern in RUN_FILES:
        for f in run_dir.glob(pattern):
            f.unlink(missing_ok=True)


def new_run_dir(cfg: TrainConfig, exist_ok: bool = False) -> Path:
    """The run directory of a new run, claimed (``claim_run_dir``)."""
    return claim_run_dir(Path(cfg.out), cfg.name, exist_ok)


def start_run_dir(cfg: TrainConfig, splits: DatasetSplits, exist_ok: bool = False) -> Path:
    """Rank 0 claims the run directory (config.yaml, splits.json); all learn it.

    ``latest`` is pointed at the run once its first epoch is saved (there is something to
    resume or export then), not here.
    """
    if dist.rank() != 0:
        # The others need the path: they read best.safetensors back at the end.
        return Path(dist.broadcast_object(None))
    run_dir = new_run_dir(cfg, exist_ok)
    dist.broadcast_object(str(run_dir))
    save_yaml(cfg, run_dir / "config.yaml")
    splits.save(run_dir / "splits.json")
    return run_dir


def load_run_config(run_dir: Path) -> TrainConfig:
    """The resolved config a run was started with (its ``config.yaml``)."""
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FtedgeError(f"cannot resume: {cfg_path} does not exist")
    return build_config(TrainConfig, load_yaml(cfg_path))


def run_task(run_dir: Path) -> str:
    """The task (``classify`` / ``detect``) a run directory was started with; ``classify``
    where it has no config (resuming then fails with the usual one-line reason)."""
    if not (run_dir / "config.yaml").is_file():
        return "classify"
    return load_run_config(run_dir).task
