"""Few-shot referee: ftedge's default recipe vs a scikit-learn linear probe, same frozen features.

    apt-get install dataset-fashion-mnist opencv-doc python3-imageio   # the images, the videos
    python benchmarks/fewshot.py [--set fashion video] [--k 5 10 20 50] [--draws 5] [--json F]

Two image sets, each written per draw as an image folder with train/val/test sub-folders of
k train, max(3, round(0.3 k)) val and ``--test`` test images per class:

- ``fashion``: drawn from the official Fashion-MNIST *training* file (10 classes, 28 px gray);
- ``video``: real RGB photos, cut from five real videos that Debian packages install, one class
  per video (see ``VIDEOS``). Each video is split **by time** into a train, a val and a test
  stretch with gaps of unused frames between them, so no test frame is a neighbour of a training
  frame. An image is a random square crop (half to nine tenths of the frame's shorter side) of a
  random frame of its stretch, resized to 256 px; near-uniform frames (fades) are skipped.

Then, on each draw:

- **ftedge**: ``ftedge train --data DIR`` with every option at its default except, on
  ``fashion``, ``--image-size 128`` (the 128 px of the built-in data, which comes from the same
  file); ``video`` trains at the backbone's own 224 px, as user data does;
- **probe**: ``sklearn.linear_model.LogisticRegression`` fitted on the train features of that
  very run (read back from its ``--feature-cache-dir``), its ``C`` picked on the val features
  (13 values, 1e-4 ... 1e2), scored on the test features. The probe gets the backbone's pooled
  features only (the first of the run's feature groups in ``metrics.json``), as a practitioner
  would extract them: ftedge's head also sees its taps' pooled outputs, which are part of what
  is being compared.

It prints, per k, the mean and spread (standard deviation over draws) of both test accuracies and
of their paired difference. Needs scikit-learn (installed with the nncf extra) and, for
``video``, OpenCV (the video extra). A set whose Debian files are missing is skipped with a line.
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
_CV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
_IMAGEIO = Path("/usr/lib/python3/dist-packages/imageio/resources/images")
VIDEOS = {  # class -> video (Debian opencv-doc: BSD-3; python3-imageio: BSD-2)
    "tree": _CV_DATA / "tree.avi",  # 68 frames, a tree in the wind
    "street": _CV_DATA / "vtest.avi",  # 795 frames, pedestrians on a campus
    "cartoon": _CV_DATA / "Megamind.avi",  # 270 frames, an animated film trailer
    "cockatoo": _IMAGEIO / "cockatoo.mp4",  # 280 frames, a cockatoo indoors
    "plants": _IMAGEIO / "realshort.mp4",  # 36 frames, house plants on a window sill
}
# Fractions of each video's length: train, val and test stretches, with unused gaps between.
STRETCHES = {"train": (0.0, 0.55), "val": (0.62, 0.72), "test": (0.79, 1.0)}


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


def video_frames() -> dict[str, np.ndarray]:
    """Every non-uniform frame (RGB) of every video, in time order."""
    import cv2

    out = {}
    for name, path in VIDEOS.items():
        cap, frames = cv2.VideoCapture(str(path)), []
        while True:
            ok, f = cap.read()
            if not ok:
                break
            if f.std() > 12:  # fades to black or white carry no class
                frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
        cap.release()
        out[name] = np.stack(frames)
    return out


def write_video_draw(videos: dict[str, np.ndarray], k: int, test: int, seed: int, dst: Path):
    """An image folder of random crops of each video's train/val/test stretch (see top)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    count = {"train": k, "val": max(3, round(0.3 * k)), "test": test}
    for name, frames in videos.items():
        n = len(frames)
        for split, (a, b) in STRETCHES.items():
            d = dst / split / name
            d.mkdir(parents=True, exist_ok=True)
            for j in range(count[split]):
                f = frames[rng.integers(int(a * n), int(b * n))]
                side = int(min(f.shape[:2]) * rng.uniform(0.5, 0.9))
                y, x = (rng.integers(0, f.shape[i] - side + 1) for i in (0, 1))
                crop = Image.fromarray(f[y : y + side, x : x + side]).resize((256, 256))
                crop.save(d / f"{j}.jpg", quality=95)


def cached(
    run_feature_dir: Path, data: Path, split: str, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``width`` features the run extracted for ``split`` (the pooled features) and
    their labels, in loader order."""
    from ftedge.data.folders import scan_image_folder

    labels = np.array([s.label for s in scan_image_folder(data).split(split)])  # type: ignore[arg-type]
    (path,) = run_feature_dir.glob(f"features-{split}-*.npy")
    return np.load(path)[:, :width], labels


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


def one_draw(image_set: str, source, k: int, test: int, seed: int) -> dict:
    from ftedge.config import TrainConfig
    from ftedge.training.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        data, feats = Path(tmp) / "data", Path(tmp) / "features"
        if image_set == "fashion":
            write_draw(*source, k, test, seed, data)
        else:
            write_video_draw(source, k, test, seed, data)
        cfg = TrainConfig(
            data=str(data),
            out=str(Path(tmp) / "runs"),
            image_size=128 if image_set == "fashion" else None,
            feature_cache_dir=str(feats),
        )
        m = train(cfg).metrics
        pooled = m["features"]["groups"][0]
        split = {s: cached(feats, data, s, pooled) for s in ("train", "val", "test")}
        chosen = (m.get("tuning") or {}).get("chosen", {}).get("name", "epochs")
        return {
            "set": image_set,
            "k": k,
            "seed": seed,
            "ftedge": m["test"]["accuracy"],
            "probe": probe(split["train"], split["val"], split["test"]),
            "chosen": chosen,
        }


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for s, k in sorted({(r["set"], r["k"]) for r in rows}):
        f = np.array([r["ftedge"] for r in rows if (r["set"], r["k"]) == (s, k)])
        p = np.array([r["probe"] for r in rows if (r["set"], r["k"]) == (s, k)])
        out.append(
            {
                "set": s,
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


def load_set(name: str):
    """The source of one image set, or None (with the reason printed) when it is not installed."""
    if name == "fashion":
        if not (SRC / "train-images-idx3-ubyte.gz").is_file():
            print(f"skipped fashion: no {SRC} (apt-get install dataset-fashion-mnist)")
            return None
        return read_idx(SRC / "train-images-idx3-ubyte.gz"), read_idx(
            SRC / "train-labels-idx1-ubyte.gz"
        )
    missing = [str(p) for p in VIDEOS.values() if not p.is_file()]
    if missing:
        print(f"skipped video: no {missing[0]} (apt-get install opencv-doc python3-imageio)")
        return None
    return video_frames()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--set", nargs="+", choices=["fashion", "video"], default=["fashion", "video"])
    p.add_argument("--k", type=int, nargs="+", default=[5, 10, 20, 50])
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--test", type=int, default=30, help="test images per class")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    rows = []
    for image_set in a.set:
        source = load_set(image_set)
        for k in a.k if source is not None else []:
            for d in range(a.draws):
                rows.append(one_draw(image_set, source, k, a.test, seed=1000 * k + d))
                r = rows[-1]
                print(
                    f"{image_set} k={k} draw {d}: ftedge {r['ftedge']:.3f} "
                    f"probe {r['probe']:.3f} ({r['chosen']})",
                    flush=True,
                )
    table = summarise(rows)
    print("| set | k | ftedge (mean ± sd) | probe (mean ± sd) | ftedge - probe (mean ± sd) |")
    print("|---|---|---|---|---|")
    for t in table:
        print(
            f"| {t['set']} | {t['k']} | {t['ftedge_mean']:.3f} ± {t['ftedge_std']:.3f} | "
            f"{t['probe_mean']:.3f} ± {t['probe_std']:.3f} | "
            f"{100 * t['diff_mean']:+.1f} ± {100 * t['diff_std']:.1f} points |"
        )
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "summary": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
