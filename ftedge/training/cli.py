"""``ftedge train``: options generated from TrainConfig; precedence defaults < YAML < flags."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    from ftedge.config import TrainConfig, add_config_arguments

    p = sub.add_parser(
        "train",
        help="fine-tune a pretrained backbone on an image folder",
        description="Fine-tune a pretrained backbone with a new head on an image folder "
        "(default: the built-in Fashion-MNIST sample). Writes runs/<name>/ and runs/latest.",
    )
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of options (flags override it)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="runs/latest",
        metavar="RUN_DIR",
        help="continue a killed run from its last completed epoch (default: runs/latest); "
        "its saved config is used",
    )
    p.add_argument(
        "--exist-ok",
        action="store_true",
        help="replace a finished run of the same --name (otherwise refused)",
    )
    add_config_arguments(p, TrainConfig)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ftedge.config import TrainConfig, build_config, load_yaml, with_task_defaults
    from ftedge.errors import FtedgeError
    from ftedge.training.loop import train
    from ftedge.training.summary import print_summary

    if args.resume:
        given = [
            f.name for f in dataclasses.fields(TrainConfig) if getattr(args, f.name) is not None
        ]
        given += ["config"] * bool(args.config) + ["exist_ok"] * bool(args.exist_ok)
        if given:
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            raise FtedgeError(f"--resume continues the run with its saved config: drop {flags}")
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise FtedgeError(f"cannot resume: {run_dir} is not a run directory")
        from ftedge.training.run_dir import run_task

        if run_task(run_dir) == "detect":
            return _train_detector(None, False, resume=run_dir)
        result = train(resume=run_dir)
    else:
        yaml_values = load_yaml(args.config) if args.config else {}
        cfg = build_config(TrainConfig, with_task_defaults(yaml_values, vars(args)), vars(args))
        if cfg.task == "detect":
            return _train_detector(cfg, args.exist_ok)
        result = train(cfg, exist_ok=args.exist_ok)
    if result.metrics.get("world_size", 1) == 1 or _is_rank0():
        print_summary(result, file=sys.stdout)
    return 0


def _is_rank0() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _train_detector(cfg: Any, exist_ok: bool, resume: Any = None) -> int:
    from ftedge.detection.train import train_detector

    result = train_detector(cfg, exist_ok=exist_ok, resume=resume)
    test = result.metrics["test"]
    print(
        f"run {result.run_dir}: test mAP {test['map']:.3f}  AP50 {test['ap50']:.3f}  "
        f"AP75 {test['ap75']:.3f}  (best epoch {result.metrics['best_epoch']}, "
        f"{result.metrics['total_seconds']:.0f} s)"
    )
    th = result.metrics["threshold"]
    print(
        f"score threshold {th['conf']:g} (chosen on val: precision {th['val_precision']:.2f}, "
        f"recall {th['val_recall']:.2f} at IoU 0.5); detect() and predict use it by default"
    )
    return 0
