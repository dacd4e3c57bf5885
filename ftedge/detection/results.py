"""The end of a detection run: the best layers on the test split, metrics.json and pictures."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftedge.detection.evaluate import Detections, NmsSettings, detect_on_features, score
from ftedge.detection.grid import Grid
from ftedge.detection.model import DetectionLayers
from ftedge.detection.types import DetectionDataset
from ftedge.files import atomic_write_text

METRICS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RunFacts:
    """How a run computed, recorded in metrics.json as it is."""

    feature_seconds: float
    cached: bool = True  # trained on cached features (else the full loop)
    amp: str = "off"  # the new layers' training dtype: "bfloat16" or "off" (float32)
    device: str = "cpu"
    feature_backend: dict[str, Any] | None = None  # what computed the cached features


def finish(
    run_dir: Path,
    layers: DetectionLayers,
    splits: tuple[Any, Any],
    grid: Grid,
    data: DetectionDataset,
    history: list[Any],
    best: Any,
    facts: RunFacts,
) -> dict[str, Any]:
    """Test the best checkpoint's layers and choose their score threshold on val (``splits``:
    the val and test caches); write metrics.json and the PNGs; return the metrics."""
    from ftedge.detection.threshold import choose_conf
    from ftedge.models.registry import read_state_dict

    val_c, test_c = splits
    state = read_state_dict(run_dir / "best.safetensors")
    layers.load_state_dict(
        {k.removeprefix("layers."): v for k, v in state.items() if k.startswith("layers.")}
    )
    dets = detect_on_features(layers, test_c.feats, grid.centers, NmsSettings())
    names = list(data.class_names)
    m = score(dets, test_c.inputs.boxes, test_c.inputs.labels, names)
    val_dets = detect_on_features(layers, val_c.feats, grid.centers, NmsSettings())
    threshold = choose_conf(val_dets, val_c.inputs.boxes, val_c.inputs.labels)
    metrics = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "task": "detection",
        "run_dir": str(run_dir),
        "epochs": [dataclasses.asdict(r) for r in history],
        "best_epoch": best.epoch,
        "best_val_map": best.val_map,
        "test": m.to_dict(),
        "threshold": threshold.to_dict(),
        "data": {
            "counts": data.counts(),
            "annotations": data.report.to_dict(),
            "format": data.source_format,
            "split": data.split_method,
        },
        "cached_features": facts.cached,
        "feature_backend": facts.feature_backend,
        "device": facts.device,
        "amp": facts.amp,
        "feature_seconds": round(facts.feature_seconds, 3),
        "total_seconds": round(facts.feature_seconds + sum(r.seconds for r in history), 3),
    }
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    _plots(run_dir, test_c, dets, names, threshold.conf)
    return metrics


def _plots(
    run_dir: Path, test_c: Any, dets: list[Detections], names: list[str], conf: float
) -> None:
    try:
        import matplotlib
    except ImportError:  # plots are optional
        return
    matplotlib.use("Agg")
    _pr_curve(run_dir / "pr_curve.png", test_c, dets, names)
    _grid(run_dir / "test_predictions.png", test_c, dets, names, conf)


def _pr_curve(path: Path, test_c: Any, dets: list[Detections], names: list[str]) -> None:
    import matplotlib.pyplot as plt

    from ftedge.detection.metrics import precision_recall_curve

    gt = list(zip(test_c.inputs.boxes, test_c.inputs.labels, strict=True))
    curve = precision_recall_curve(gt, dets, names)
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, prec in zip(curve.class_names, curve.precision, strict=True):
        ax.plot(curve.recall, prec, label=name)
    ax.set(
        xlabel="recall",
        ylabel="precision",
        title="test precision-recall at IoU 0.5",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _grid(
    path: Path, test_c: Any, dets: list[Detections], names: list[str], conf: float, n: int = 8
) -> None:
    """Up to ``n`` test images: true boxes in green, predictions (score >= ``conf``) in red."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    k = min(n, len(dets))
    cols = min(4, k)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= k:
            continue
        ax.imshow(test_c.inputs.images[i])
        for b in test_c.inputs.boxes[i]:
            ax.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, color="lime", lw=1))
        boxes, scores, labels = dets[i]
        for b, s, lab in zip(boxes, scores, labels, strict=True):
            if s >= conf:
                ax.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, color="red", lw=1))
                if len(names) > 1:
                    ax.text(b[0], b[1], f"{names[int(lab)]} {s:.2f}", color="red", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
