"""Regenerate ftedge/data/assets/fashion_mnist_sample.npz from Debian's Fashion-MNIST files.

    apt-get install dataset-fashion-mnist
    python tools/make_default_dataset.py

Draws a stratified sample from the official *training* file only (never from t10k), with a fixed
seed: per class TRAIN train images, VAL validation images and TEST test images, disjoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ftedge.data.default import read_idx

SRC = Path("/usr/share/datasets/fashion-mnist")
DST = Path(__file__).resolve().parents[1] / "ftedge" / "data" / "assets"
CLASSES = [
    "t-shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train", type=int, default=200)
    p.add_argument("--val", type=int, default=50)
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--seed", type=int, default=20261122)
    a = p.parse_args()
    images = read_idx(SRC / "train-images-idx3-ubyte.gz")
    labels = read_idx(SRC / "train-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(a.seed)
    out: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in range(len(CLASSES)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = np.cumsum([a.train, a.val, a.test])
        out["train"].append(idx[: cut[0]])
        out["val"].append(idx[cut[0] : cut[1]])
        out["test"].append(idx[cut[1] : cut[2]])
    arrays = {}
    for split, parts in out.items():
        idx = np.sort(np.concatenate(parts))
        arrays[f"{split}_images"] = images[idx]
        arrays[f"{split}_labels"] = labels[idx]
        arrays[f"{split}_source_index"] = idx.astype(np.int32)
    arrays["classes"] = np.array(CLASSES)
    DST.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(DST / "fashion_mnist_sample.npz", **arrays)
    print({k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    main()
