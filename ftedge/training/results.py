"""The end of a run: test the best checkpoint, write metrics.json, the plots, the sidecar."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ftedge.checkpoint import read_checkpoint_meta, write_meta
from ftedge.data.folders import DatasetSplits
from ftedge.files import atomic_write_text
from ftedge.models import FtedgeClassifier
from ftedge.run_reference import write_reference
from ftedge.training import distributed as dist
from ftedge.training.epochs import EpochSource, RunData
from ftedge.training.metrics import classification_report, plot_confusion, plot_curves

METRICS_SCHEMA_VERSION = 1


def evaluate_on_test(
    model: FtedgeClassifier, source: EpochSource, data: RunData
) -> tuple[dict[str, Any], np.ndarray]:
    """Accuracy, per-class metrics, confusion matrix and loss of ``model`` on the test split,
    and this process's test logits (float32, in the order of its share of the split)."""
    model.eval()
    logits, labels = source.test_logits(model)
    splits = data.splits
    preds = dist.gather_predictions(
        data.local("test"), logits.argmax(1).cpu().numpy(), len(splits.test)
    )
    truth = np.array([s.label for s in splits.test])
    report = classification_report(truth, preds, splits.classes)
    loss_n = dist.all_reduce_sum(
        torch.tensor(
            [F.cross_entropy(logits, labels, reduction="sum").item(), len(labels)],
            dtype=torch.float64,
        )
    )
    report["loss"] = float(loss_n[0] / max(1.0, float(loss_n[1])))
    return report, logits.detach().float().cpu().numpy()


def data_summary(splits: DatasetSplits) -> dict[str, Any]:
    return {
        "root": splits.root,
        "train": len(splits.train),
        "val": len(splits.val),
        "test": len(splits.test),
        "skipped": len(splits.skipped),
        "skipped_files": splits.skipped[:20],
    }


def write_results(
    run_dir: Path,
    metrics: dict[str, Any],
    classes: list[str],
    phases: Phases,
    reference: TestReference | None = None,
) -> None:
    """The plots, the stored test logits, the test accuracy in best.json (weights untouched),
    and metrics.json last, with the seconds of every phase including this one."""
    plot_curves(metrics["epochs"], run_dir / "curves.png")
    plot_confusion(metrics["test"]["confusion_matrix"], classes, run_dir / "confusion_matrix.png")
    phases.mark("plots")
    best_json = run_dir / "best.json"
    best = read_checkpoint_meta(best_json)
    write_meta(best_json, dataclasses.replace(best, test_accuracy=metrics["test"]["accuracy"]))
    if reference is not None and best.weights_sha256:
        write_reference(
            run_dir,
            reference.logits,
            best.weights_sha256,
            reference.test,
            best.preprocessing.to_dict(),
            reference.computed_by,
        )
    metrics["stored_test_logits"] = reference is not None
    phases.mark("results")
    metrics["phase_seconds"] = dict(phases.seconds)
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")


@dataclass(frozen=True)
class TestReference:
    """The best checkpoint's test logits, for ``ftedge.run_reference`` (float32 CPU runs)."""

    logits: np.ndarray
    test: list[tuple[str, int]]
    computed_by: dict[str, Any]


@dataclass
class Phases:
    """Wall seconds of each phase of a run, from ``time.perf_counter`` spans (metrics.json)."""

    seconds: dict[str, float] = field(default_factory=dict)
    last: float = field(default_factory=time.perf_counter)

    def mark(self, name: str) -> None:
        """Close the span since the previous mark as phase ``name`` (added up if repeated)."""
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self.last, 3)
        self.last = now
