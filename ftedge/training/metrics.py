"""Classification metrics, the metrics.json document and the two PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def classification_report(
    labels: np.ndarray, preds: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/f1/support and the confusion matrix (rows = truth)."""
    cm = confusion_matrix(labels, preds, len(classes))
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(0), cm.sum(1)
    per_class = {}
    for i, c in enumerate(classes):
        p = tp[i] / predicted[i] if predicted[i] else 0.0
        r = tp[i] / actual[i] if actual[i] else 0.0
        per_class[c] = {
            "precision": round(float(p), 6),
            "recall": round(float(r), 6),
            "f1": round(float(2 * p * r / (p + r)) if p + r else 0.0, 6),
            "support": int(actual[i]),
        }
    return {
        "accuracy": float(tp.sum() / max(1, cm.sum())),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "classes": classes,
    }


def plot_curves(epochs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [e["epoch"] for e in epochs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(x, [e["train_loss"] for e in epochs], label="train")
    ax1.plot(x, [e["val_loss"] for e in epochs], label="val")
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax2.plot(x, [e["train_accuracy"] for e in epochs], label="train")
    ax2.plot(x, [e["val_accuracy"] for e in epochs], label="val")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1))
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(cm: list[list[int]], classes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(cm)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 1.0 + 0.5 * n))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test)")
    for i in range(n):
        for j in range(n):
            color = "white" if m[i, j] > m.max() / 2 else "black"
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
