"""Cached backbone features vs the plain loop, side by side, on the built-in data.

    python benchmarks/train_speed.py [--epochs 10] [--json out.json]

Both runs use the same config (frozen Lite0 backbone, no augmentation, 10 epochs, no early
stopping); the only difference is ``--cache-features on`` vs ``off``. The cached run's total
includes the one-off feature extraction. With a CUDA GPU it also measures training images/s with
the top blocks unfrozen, AMP + channels_last vs plain fp32.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from ftedge.config import TrainConfig
from ftedge.data.default import materialize_default
from ftedge.training.loop import train


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {torch.get_num_threads()} threads, {gpu}, torch {torch.__version__}"


def run(cache: str, epochs: int, out: Path, **kw) -> dict:
    cfg = TrainConfig(
        out=str(out), name=f"cache-{cache}", epochs=epochs, patience=0, cache_features=cache, **kw
    )
    t0 = time.perf_counter()
    m = train(cfg).metrics
    wall = time.perf_counter() - t0
    per_epoch = [e["seconds"] for e in m["epochs"]]
    return {
        "cache_features": cache,
        "wall_seconds": round(wall, 2),
        "total_seconds": m["total_seconds"],  # extraction + epochs
        "feature_seconds": m["feature_seconds"],
        "median_epoch_seconds": round(sorted(per_epoch)[len(per_epoch) // 2], 4),
        "test_accuracy": m["test"]["accuracy"],
    }


def gpu_amp(out: Path, data: str) -> dict:
    """Images/s with the top 2 blocks unfrozen: AMP + channels_last vs fp32 (CUDA only)."""
    res = {}
    for name, kw in (
        ("fp32", dict(amp="off", channels_last=False)),
        ("amp_channels_last", dict(amp="auto", channels_last=True)),
    ):
        cfg = TrainConfig(
            data=data,
            out=str(out),
            name=f"gpu-{name}",
            epochs=3,
            patience=0,
            unfreeze=2,
            image_size=224,
            batch_size=128,
            **kw,
        )
        m = train(cfg).metrics
        secs = sorted(e["seconds"] for e in m["epochs"])[1]
        res[name] = {"images_per_s": round(m["data"]["train"] / secs, 1), "amp": m["amp"]}
    res["speedup"] = round(
        res["amp_channels_last"]["images_per_s"] / res["fp32"]["images_per_s"], 2
    )
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    data = str(materialize_default())
    with tempfile.TemporaryDirectory() as tmp:
        cached = run("on", a.epochs, Path(tmp), data=data, image_size=128)
        full = run("off", a.epochs, Path(tmp), data=data, image_size=128)
        gpu = gpu_amp(Path(tmp), data) if torch.cuda.is_available() else None
    ratio = full["total_seconds"] / cached["total_seconds"]
    print(f"machine: {machine()}")
    print(f"{'':24}{'cached':>12}{'full loop':>12}")
    for key in ("median_epoch_seconds", "feature_seconds", "total_seconds", "test_accuracy"):
        print(f"{key:24}{cached[key]:>12}{full[key]:>12}")
    print(
        f"speed-up over {a.epochs} epochs: {ratio:.1f}x; accuracy difference: "
        f"{100 * abs(cached['test_accuracy'] - full['test_accuracy']):.2f} points"
    )
    if gpu:
        print(f"GPU, top blocks unfrozen: {gpu}")
    result = {
        "machine": machine(),
        "epochs": a.epochs,
        "cached": cached,
        "full": full,
        "speedup": round(ratio, 2),
        "gpu_amp": gpu,
    }
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
