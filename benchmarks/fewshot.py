"""Few-shot referee: ftedge's default recipe vs a scikit-learn linear probe, same frozen features.

    apt-get install dataset-fashion-mnist      # the official Fashion-MNIST files
    python benchmarks/fewshot.py [--k 5 10 20 50] [--draws 5] [--json out.json]

For each k (training images per class) and each random draw, images are drawn from the official
Fashion-MNIST *training* file: k train, max(3, round(0.3 k)) val and ``--test`` test images per
class, disjoint, written as an image folder with train/val/test sub-folders. Then:

- **ftedge**: ``ftedge train --data DIR --image-size 128`` with every other option at its default
  (the 128 px of the built-in data, which comes from the same file);
- **probe**: ``sklearn.linear_model.LogisticRegression`` fitted on the train features of that
  very run (read back from its ``--feature-cache-dir``), its ``C`` picked on the val features
  (13 values, 1e-4 ... 1e2), scored on the test features.

It prints, per k, the mean and spread (standard deviation over draws) of both test accuracies and
of their paired difference. Needs scikit-learn (installed with the nncf extra). Without the
Debian package it says so and exits.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ftedge.data.default import read_idx

SRC = Path("/usr/share/datasets/fashion-mnist")
C_GRID = np.logspace(-4, 2, 13)


def write_draw(images: np.ndarray, labels: np.ndarray, k: int, test: int, seed: int, dst: Path):
    """An image folder DIR/{train,val,test}/<class>/*.png for one draw."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    val = max(3, round(0.3 * k))
    for c in range(int(labels.max()) + 1):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = {"train": idx[:k], "val": idx[k : k + val], "test": idx[k + val : k + val + test]}
        for split, rows in cuts.items():
            d = dst / split / f"c{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in rows:
                Image.fromarray(images[i]).save(d / f"{i}.png")


def cached(run_feature_dir: Path, data: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The features the run extracted for ``split`` and their labels, in loader order."""
    from ftedge.data.folders import scan_image_folder

    labels = np.array([s.label for s in scan_image_folder(data).split(split)])  # type: ignore[arg-type]
    (path,) = run_feature_dir.glob(f"features-{split}-*.npy")
    return np.load(path), labels


def probe(train, val, test) -> float:
    from sklearn.linear_model import LogisticRegression

    best = (-1.0, None)
    for c in C_GRID:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = LogisticRegression(C=c, max_iter=1000).fit(*train)
        acc = m.score(*val)
        if acc > best[0]:  # the first (smallest) C of equal val accuracy
            best = (acc, m)
    return float(best[1].score(*test))  # type: ignore[union-attr]


def one_draw(images, labels, k: int, test: int, seed: int) -> dict:
    from ftedge.config import TrainConfig
    from ftedge.training.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        data, feats = Path(tmp) / "data", Path(tmp) / "features"
        write_draw(images, labels, k, test, seed, data)
        cfg = TrainConfig(
            data=str(data),
            out=str(Path(tmp) / "runs"),
            image_size=128,
            feature_cache_dir=str(feats),
        )
        m = train(cfg).metrics
        split = {s: cached(feats, data, s) for s in ("train", "val", "test")}
        chosen = (m.get("tuning") or {}).get("chosen", {}).get("name", "epochs")
        return {
            "k": k,
            "seed": seed,
            "ftedge": m["test"]["accuracy"],
            "probe": probe(split["train"], split["val"], split["test"]),
            "chosen": chosen,
        }


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for k in sorted({r["k"] for r in rows}):
        f = np.array([r["ftedge"] for r in rows if r["k"] == k])
        p = np.array([r["probe"] for r in rows if r["k"] == k])
        out.append(
            {
                "k": k,
                "draws": len(f),
                "ftedge_mean": round(float(f.mean()), 4),
                "ftedge_std": round(float(f.std()), 4),
                "probe_mean": round(float(p.mean()), 4),
                "probe_std": round(float(p.std()), 4),
                "diff_mean": round(float((f - p).mean()), 4),
                "diff_std": round(float((f - p).std()), 4),
            }
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--k", type=int, nargs="+", default=[5, 10, 20, 50])
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--test", type=int, default=30, help="test images per class")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    if not (SRC / "train-images-idx3-ubyte.gz").is_file():
        print(
            f"skipped: needs the Fashion-MNIST files in {SRC} (apt-get install dataset-fashion-mnist)"
        )
        return
    images = read_idx(SRC / "train-images-idx3-ubyte.gz")
    labels = read_idx(SRC / "train-labels-idx1-ubyte.gz")
    rows = []
    for k in a.k:
        for d in range(a.draws):
            rows.append(one_draw(images, labels, k, a.test, seed=1000 * k + d))
            r = rows[-1]
            print(
                f"k={k} draw {d}: ftedge {r['ftedge']:.3f} probe {r['probe']:.3f} ({r['chosen']})",
                flush=True,
            )
    table = summarise(rows)
    print("| k | ftedge (mean ± sd) | probe (mean ± sd) | ftedge - probe (mean ± sd) |")
    print("|---|---|---|---|")
    for t in table:
        print(
            f"| {t['k']} | {t['ftedge_mean']:.3f} ± {t['ftedge_std']:.3f} | "
            f"{t['probe_mean']:.3f} ± {t['probe_std']:.3f} | "
            f"{100 * t['diff_mean']:+.1f} ± {100 * t['diff_std']:.1f} points |"
        )
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "summary": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
