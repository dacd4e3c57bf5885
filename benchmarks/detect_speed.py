"""Detection: cached backbone features vs the full loop, side by side, on the built-in trees.

    python benchmarks/detect_speed.py [--epochs 10] [--json benchmarks/results/detect_speed.json]

Both runs train the same detector (frozen EfficientNet-Lite0, FPN neck + FCOS head, flips only,
no early stopping) for the same epochs; the only difference is ``--cache-features on`` (features
computed once, plus once mirrored) vs ``off`` (the backbone runs on every batch). Prints the
median seconds per epoch after the first, the one-off extraction, totals and both test mAPs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_speed import machine  # noqa: E402

import ftedge  # noqa: E402


def run(cache: str, epochs: int, out: Path, threads: int) -> dict:
    # ftedge.train applies the detection defaults (batch 16, lr 5e-3) as the CLI does.
    kw = dict(task="detect", epochs=epochs, patience=0, cache_features=cache, threads=threads)
    t0 = time.perf_counter()
    m = ftedge.train(out=str(out), name=f"cache-{cache}", **kw).metrics
    wall = time.perf_counter() - t0
    later = [e["seconds"] for e in m["epochs"][1:]]  # epochs after the first
    return {
        "cache_features": cache,
        "wall_seconds": round(wall, 2),
        "feature_seconds": m["feature_seconds"],
        "first_epoch_seconds": m["epochs"][0]["seconds"],
        "median_epoch_seconds": round(statistics.median(later), 3),
        "total_seconds": m["total_seconds"],
        "test_map": round(m["test"]["map"], 4),
        "test_ap50": round(m["test"]["ap50"], 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cached = run("on", a.epochs, Path(tmp), a.threads)
        full = run("off", a.epochs, Path(tmp), a.threads)
    per_epoch = full["median_epoch_seconds"] / cached["median_epoch_seconds"]
    total = full["total_seconds"] / cached["total_seconds"]
    print(f"machine: {machine()}")
    print(f"{'':24}{'cached':>12}{'full loop':>12}")
    for key in (
        "feature_seconds",
        "first_epoch_seconds",
        "median_epoch_seconds",
        "total_seconds",
        "test_map",
        "test_ap50",
    ):
        print(f"{key:24}{cached[key]:>12}{full[key]:>12}")
    print(
        f"epochs after the first: {per_epoch:.1f}x cheaper cached; whole run ({a.epochs} epochs,"
        f" extraction included): {total:.1f}x; mAP difference "
        f"{100 * (cached['test_map'] - full['test_map']):+.1f} points"
    )
    result = {
        "machine": machine(),
        "epochs": a.epochs,
        "cached": cached,
        "full": full,
        "epoch_speedup": round(per_epoch, 2),
        "total_speedup": round(total, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
