"""One image's classification result (``Prediction``) and the softmax / top-k that make it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image, best first, with softmax probabilities."""

    labels: tuple[str, ...]
    scores: tuple[float, ...]
    indices: tuple[int, ...]
    probabilities: np.ndarray = field(repr=False, compare=False)  # all classes, float32

    @property
    def label(self) -> str:
        return self.labels[0]

    @property
    def score(self) -> float:
        return self.scores[0]

    @property
    def index(self) -> int:
        return self.indices[0]

    def topk(self) -> list[tuple[str, float]]:
        return list(zip(self.labels, self.scores, strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "topk": [
                {"label": lab, "index": i, "score": round(s, 6)}
                for lab, i, s in zip(self.labels, self.indices, self.scores, strict=True)
            ]
        }

    def __str__(self) -> str:
        return " | ".join(f"{lab} {s:.3f}" for lab, s in self.topk())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable), returned as float32."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> Prediction:
    """The ``k`` most probable classes of one probability vector (ties: lower index first)."""
    order = np.argsort(-probs, kind="stable")[: max(1, min(k, len(labels)))].tolist()
    return Prediction(
        labels=tuple([labels[i] for i in order]),
        scores=tuple(probs[order].tolist()),
        indices=tuple(order),
        probabilities=probs,
    )
