"""Soak test: ``load(bundle).classify`` on camera-size frames for minutes; memory must stay flat.

    .venv/bin/python benchmarks/soak.py                     # bundles/latest, 2 minutes
    .venv/bin/python benchmarks/soak.py BUNDLE --minutes 10 --json soak.json

Feeds 640x480 BGR frames (a few different ones, cycled) to ``classify`` one at a time, as a
camera app does, and prints the process's resident memory (RSS, MB) after a warm-up, every
``--interval`` seconds, and at the end, with the change since the warm-up. Exits 1 when RSS grew
by more than ``--max-growth-mb`` (default 5).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.runtime import load


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc; psutil elsewhere)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def frames(n: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    out = []
    for i in range(n):
        base = np.stack([(xx * (i + 1)) % 256, (yy * 2) % 256, (xx + yy) % 256], axis=-1)
        out.append(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
    return out


def soak(
    bundle: str, minutes: float, interval_s: float, warmup: int, backend: str
) -> dict[str, Any]:
    clf = load(bundle, backend=backend)
    imgs = frames()
    for i in range(warmup):
        clf.classify(imgs[i % len(imgs)], topk=3, color="bgr")
    start_rss = rss_mb()
    samples = [{"t_s": 0.0, "calls": 0, "rss_mb": round(start_rss, 1)}]
    print(f"{clf!r}: warm-up {warmup} calls, RSS {start_rss:.1f} MB", flush=True)
    t0 = time.monotonic()
    next_report, calls = interval_s, 0
    end = minutes * 60.0
    while (elapsed := time.monotonic() - t0) < end:
        clf.classify(imgs[calls % len(imgs)], topk=3, color="bgr")
        calls += 1
        if elapsed >= next_report:
            rss = rss_mb()
            samples.append({"t_s": round(elapsed, 1), "calls": calls, "rss_mb": round(rss, 1)})
            print(f"  {elapsed:6.0f} s  {calls:8d} calls  RSS {rss:.1f} MB", flush=True)
            next_report += interval_s
    end_rss = rss_mb()
    elapsed = time.monotonic() - t0
    samples.append({"t_s": round(elapsed, 1), "calls": calls, "rss_mb": round(end_rss, 1)})
    clf.close()
    return {
        "bundle": str(bundle),
        "artifact": clf.artifact.name,
        "backend": clf.backend,
        "device": clf.device,
        "frame": [480, 640, 3],
        "minutes": minutes,
        "calls": calls,
        "calls_per_s": round(calls / elapsed, 1),
        "rss_start_mb": round(start_rss, 1),
        "rss_end_mb": round(end_rss, 1),
        "rss_max_mb": max(s["rss_mb"] for s in samples),
        "rss_delta_mb": round(end_rss - start_rss, 1),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("bundle", nargs="?", default="bundles/latest")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--interval", type=float, default=30.0, help="seconds between RSS reports")
    p.add_argument("--warmup", type=int, default=200, help="classify calls before the baseline")
    p.add_argument("--backend", default="auto")
    p.add_argument("--max-growth-mb", type=float, default=5.0)
    p.add_argument("--json", default="soak.json", help="where to write the result")
    args = p.parse_args(argv)
    result = soak(args.bundle, args.minutes, args.interval, args.warmup, args.backend)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['calls']} calls in {args.minutes:g} min ({result['calls_per_s']}/s): RSS "
        f"{result['rss_start_mb']} -> {result['rss_end_mb']} MB "
        f"(delta {result['rss_delta_mb']:+.1f} MB, max {result['rss_max_mb']} MB); "
        f"JSON: {args.json}"
    )
    return 0 if result["rss_delta_mb"] <= args.max_growth_mb else 1


if __name__ == "__main__":
    sys.exit(main())
