"""Head tuning inside a run: tune on the cached features, install the head, record the choice.

The tuner (``ftedge.training.tune``) runs once, before any epoch, and its choice is written to
``tuning.json`` in the run directory. A resumed run reads that file instead of tuning again, so
it rebuilds exactly the head it saved. The tuned head is fitted in one go: the run records it
as epoch 0 (saved as ``best`` and ``last``) and runs no further epochs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ftedge.errors import FtedgeError
from ftedge.models import FtedgeClassifier, HeadSpec
from ftedge.models.classifier import build_head
from ftedge.training.resume import BestSoFar, EpochRecord

if TYPE_CHECKING:
    from ftedge.training.epochs import CachedFeatures

TUNING_FILE = "tuning.json"


def tuning_for_run(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    model: FtedgeClassifier,
    run_dir: Path,
    seed: int,
    *,
    resumed: bool,
) -> dict[str, Any]:
    """The tuning record of this run; the model's head becomes the chosen one.

    A new run tunes (the fitted head is installed) and writes ``tuning.json``; a resumed run
    reads it and rebuilds an untrained head of the chosen shape (its weights come from
    ``last.safetensors``).
    """
    from ftedge.files import atomic_write_text
    from ftedge.training.tune import tune_head

    head_out = model.head[-1]
    assert isinstance(head_out, nn.Linear)
    num_classes = head_out.out_features
    path = run_dir / TUNING_FILE
    device = next(model.head.parameters()).device
    if resumed:
        try:
            doc: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise FtedgeError(f"cannot resume {run_dir}: unreadable {TUNING_FILE} ({e})") from None
        hidden = tuple(int(h) for h in doc["chosen"]["hidden"])
        model.head = build_head(model.num_features, HeadSpec(num_classes, hidden)).to(device)
        return doc
    result = tune_head(train, val, num_classes, seed, groups=model.feature_groups)
    model.head = result.head.to(device)
    doc = result.to_dict()
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    return doc


def model_head_spec(model: FtedgeClassifier, spec: HeadSpec) -> HeadSpec:
    """The spec of the model's (tuned) head: its hidden widths, no dropout."""
    widths = [m.out_features for m in model.head if isinstance(m, nn.Linear)]
    return HeadSpec(spec.num_classes, tuple(widths[:-1]), 0.0, spec.taps)


def tuned_epoch_record(
    source: CachedFeatures, model: FtedgeClassifier, tuning: dict[str, Any]
) -> tuple[EpochRecord, BestSoFar]:
    """Epoch 0 of a tuned run: train and val statistics of the fitted head.

    The run's validation score is the chosen candidate's (its k-fold accuracy when the val
    split was folded into the fit, where the val split's own accuracy says little).
    """
    tr = source.evaluate(model, "train")
    va = source.validate(model)
    record = EpochRecord(
        epoch=0,
        train_loss=round(tr.loss, 6),
        train_accuracy=round(tr.accuracy, 6),
        val_loss=round(va.loss, 6),
        val_accuracy=round(va.accuracy, 6),
        lr=0.0,
        seconds=float(tuning["seconds"]),
    )
    score = float(tuning["chosen"]["accuracy"])
    return record, BestSoFar(score, 0, 0, score, va.loss)
