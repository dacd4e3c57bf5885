"""Detection on the built-in trees: how densely the train tiles are cut, and which flips, over seeds.

    python benchmarks/detect_tiles.py [--steps 256,64] [--flips hv] [--seeds 0,1,2]
        [--json benchmarks/results/detect_tiles.json]

For each train-tile step (px between neighbouring train tiles cut from the train bands; the
default data uses 64) the built-in data is materialised into a temporary folder, and for each
``--flips`` and seed the default detector trains on it through ``ftedge.train`` (defaults
otherwise). The val and test tiles are the same in every variant. Single runs on a 22-tile
test split move by about 0.05 AP50 between seeds, so the table gives the mean and spread over
seeds of val AP50 (best epoch), test AP50 and test mAP, and the mean of val and test AP50
(44 tiles), which is what a variant should be judged on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_speed import machine  # noqa: E402

import ftedge  # noqa: E402


def materialise(step: int, folder: Path) -> tuple[Path, int]:
    """The built-in data with train tiles every ``step`` px: (its folder, train tiles)."""
    from ftedge.detection.default import materialise_default_detection_data

    dest = materialise_default_detection_data(folder / f"trees-step{step}", train_step=step)
    return dest, len(list((dest / "images" / "train").iterdir()))


def train(data: Path, flips: str, seed: int, out: Path) -> dict:
    t0 = time.perf_counter()
    kw = dict(task="detect", data=str(data), flips=flips, seed=seed, out=str(out))
    m = ftedge.train(name=f"{data.name}-{flips}-{seed}", **kw).metrics
    best = m["epochs"][m["best_epoch"]]
    return {
        "seed": seed,
        "val_ap50": round(best["val_ap50"], 4),
        "test_ap50": round(m["test"]["ap50"], 4),
        "test_map": round(m["test"]["map"], 4),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }


def _stats(runs: list[dict], key: str) -> tuple[float, float]:
    v = [r[key] for r in runs]
    return statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0


def summary(step: int, flips: str, tiles: int, runs: list[dict]) -> dict:
    out: dict = {"step": step, "flips": flips, "train_tiles": tiles, "runs": runs}
    for key in ("val_ap50", "test_ap50", "test_map", "train_seconds"):
        mean, sd = _stats(runs, key)
        out[key] = {"mean": round(mean, 4), "sd": round(sd, 4)}
    both = [(r["val_ap50"] + r["test_ap50"]) / 2 for r in runs]
    out["val_test_ap50"] = round(statistics.mean(both), 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", default="256,64", help="train-tile steps in px, comma-separated")
    p.add_argument("--flips", default="hv", help="--flips values, comma-separated")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    steps = [int(s) for s in a.steps.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for step in steps:
            data, tiles = materialise(step, Path(tmp))
            for flips in a.flips.split(","):
                runs = [train(data, flips, s, Path(tmp) / "runs") for s in seeds]
                rows.append(summary(step, flips, tiles, runs))
    print(f"machine: {machine()}")
    head = f"{'step':>5} {'flips':>5} {'tiles':>6} {'val AP50':>14} {'test AP50':>14}"
    print(head + f" {'test mAP':>14} {'val+test':>9} {'train s':>8}")
    for r in rows:
        cells = [f"{r[k]['mean']:.3f} ± {r[k]['sd']:.3f}" for k in ("val_ap50", "test_ap50")]
        cells.append(f"{r['test_map']['mean']:.3f} ± {r['test_map']['sd']:.3f}")
        print(
            f"{r['step']:>5} {r['flips']:>5} {r['train_tiles']:>6} "
            + " ".join(f"{c:>14}" for c in cells)
            + f" {r['val_test_ap50']:>9.3f} {r['train_seconds']['mean']:>8.1f}"
        )
    if a.json:
        a.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
