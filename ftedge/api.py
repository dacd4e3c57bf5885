"""The Python API: the same functions the CLI calls, for notebooks and scripts.

    import ftedge

    run = ftedge.train(epochs=10)                      # built-in data; or ftedge.train("photos/")
    bundle = ftedge.export(run.run_dir)                # every artifact verified
    report = ftedge.benchmark(bundle.bundle_dir, batch=(1, 8))
    clf = ftedge.runtime.load(bundle.bundle_dir)       # torch-free

Each function raises ``ftedge.FtedgeError`` with a one-line message on bad input, exactly as
the CLI would print it, and returns a typed result.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftedge.errors import FtedgeError

if TYPE_CHECKING:
    from ftedge.detection.train import DetectResult
    from ftedge.training.loop import TrainResult


def _check_names(options: dict[str, Any], cls: type, what: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise FtedgeError(
            f"unknown {what} option {unknown[0]!r}: choose from {', '.join(sorted(names))}"
        )


def train(
    data: str | Path | None = None,
    *,
    config: str | Path | None = None,
    resume: str | Path | None = None,
    **options: Any,
) -> TrainResult | DetectResult:
    """Fine-tune a pretrained backbone with a new head; returns the run directory and metrics.

    ``data``: an image folder (``DIR/<class>/*`` or ``DIR/{train,val,test}/<class>/*``);
    None trains on the built-in sample. ``config``: a YAML file of options. ``options``: any
    ``TrainConfig`` field (``epochs=10``, ``model="tv:mobilenet_v3_large"``, ``lr=0.01``...),
    overriding the YAML file, as flags do on the command line. ``resume``: a killed run's
    directory, continued with its saved config (give no other option then).
    ``task="detect"`` trains an object detector on a YOLO / COCO / VOC folder (or the built-in
    tree crowns) and returns a ``DetectResult`` (test mAP instead of accuracy).
    """
    from ftedge.config import TrainConfig, build_config, load_yaml, with_task_defaults
    from ftedge.training.loop import train as run_training

    if resume is not None:
        if data is not None or config is not None or options:
            raise FtedgeError("resume continues a run with its saved config: give no other option")
        return run_training(resume=resume)
    _check_names(options, TrainConfig, "train")
    flags = dict(options)
    if data is not None:
        flags["data"] = str(data)
    yaml_values = load_yaml(config) if config else {}
    cfg = build_config(TrainConfig, with_task_defaults(yaml_values, flags), flags)
    if cfg.task == "detect":
        from ftedge.detection.train import train_detector

        return train_detector(cfg)
    return run_training(cfg)
