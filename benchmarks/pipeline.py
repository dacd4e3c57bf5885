"""The README's main job, ``ftedge train`` then ``ftedge export``, timed phase by phase.

    python benchmarks/pipeline.py [--threads 1] [--json out.json] [--compare before.json]

Both commands run as subprocesses (as a user runs them), on the built-in data, in a temporary
folder that is removed afterwards (``--keep DIR`` keeps the run and the bundle there instead).
Phases come from the timers the code records, not from parsing its output: ``phase_seconds``
in the run's ``metrics.json`` and ``step_seconds`` in the bundle manifest's export record (with
each artifact's ``export_seconds`` / ``verify_seconds``). What the timers do not cover (the
interpreter, imports, argument parsing, the run directory's checks) is the command's wall time
minus their sum: ``start-up + rest``. ``--threads`` sets ``OMP_NUM_THREADS`` and ``ftedge
train --threads``; on a shared machine 1 thread is the comparison that load disturbs least.

``--compare REF_JSON`` prints a previous run's seconds beside these (and their ratio). Runs of
older versions without some timers, or whose steps were named or split differently, show those
phases as ``-`` on one side. The load average before and
after is recorded: seconds from a loaded machine only mean something as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUN_NAME = "pipeline"


def _run(cmd: list[str], cwd: Path, threads: int) -> float:
    """Wall seconds of ``python -m ftedge CMD`` in ``cwd``; its output goes to a log beside."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = cwd / f"{cmd[0]}.log"
    t = time.perf_counter()
    with log.open("w") as f:
        r = subprocess.run(
            [sys.executable, "-m", "ftedge", *cmd], cwd=cwd, env=env, stdout=f, stderr=f
        )
    wall = time.perf_counter() - t
    if r.returncode != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        raise SystemExit(f"ftedge {cmd[0]} failed (exit {r.returncode}):\n" + "\n".join(tail))
    return wall


def train_phases(metrics: dict[str, Any], wall: float) -> dict[str, float]:
    """Seconds per training phase; older runs without ``phase_seconds``: what they recorded."""
    phases = dict(metrics.get("phase_seconds") or {})
    if not phases:
        feats = float(metrics.get("feature_seconds", 0.0))
        phases = {"features": feats, "epochs": float(metrics.get("total_seconds", 0.0)) - feats}
    phases["start-up + rest"] = wall - sum(phases.values())
    return {k: round(v, 2) for k, v in phases.items()}


OF_WHICH = "  of which verify"  # a part of the step above it, not added to the total


def export_phases(manifest: dict[str, Any], wall: float) -> dict[str, float]:
    """Seconds per export step; under each artifact's step, its verification where recorded
    (a part of the step: the step keeps its whole time, comparable with older versions)."""
    record = manifest["provenance"]["exports"][-1]
    steps: dict[str, float] = {}
    verify = {
        f"{a['format']} {a['precision']}": a.get("details", {}).get("verify_seconds")
        for a in manifest["artifacts"]
    }
    for name, seconds in (record.get("step_seconds") or {}).items():
        steps[name] = seconds
        if verify.get(name) is not None:
            steps[f"{name}:{OF_WHICH}"] = verify[name]
    counted = sum(v for k, v in steps.items() if not k.endswith(OF_WHICH))
    in_process = float(record.get("seconds", counted))
    steps["other (calibration images, writing)"] = in_process - counted
    steps["start-up + rest"] = wall - in_process
    return {k: round(v, 2) for k, v in steps.items()}


def measure(work: Path, threads: int) -> dict[str, Any]:
    """Train then export in ``work``; every phase's seconds, the totals and the accuracies."""
    load_before = os.getloadavg()
    train_wall = _run(
        ["train", "--threads", str(threads), "--name", RUN_NAME, "--out", "runs"], work, threads
    )
    metrics = json.loads((work / "runs" / RUN_NAME / "metrics.json").read_text())
    bundle = work / "bundles" / RUN_NAME
    export_wall = _run(["export", f"runs/{RUN_NAME}", "--out", str(bundle)], work, threads)
    manifest = json.loads((bundle / "manifest.json").read_text())
    return {
        "threads": threads,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "train": {"wall": round(train_wall, 2), "phases": train_phases(metrics, train_wall)},
        "export": {"wall": round(export_wall, 2), "phases": export_phases(manifest, export_wall)},
        "total_wall": round(train_wall + export_wall, 2),
        "test_accuracy": metrics["test"]["accuracy"],
        "artifacts": {
            f"{a['format']}-{a['precision']}": {"status": a["status"], "accuracy": a["accuracy"]}
            for a in manifest["artifacts"]
        },
        "feature_backend": (metrics.get("feature_backend") or {}).get("backend", "torch"),
        "reference_logits": manifest["provenance"].get("reference_logits", {}).get("from"),
    }


def _rows(res: dict[str, Any]) -> list[tuple[str, float | None]]:
    rows: list[tuple[str, float | None]] = []
    for part in ("train", "export"):
        rows += [(f"{part}: {k}", v) for k, v in res[part]["phases"].items()]
        rows.append((f"{part}: WALL", res[part]["wall"]))
    rows.append(("TOTAL WALL", res["total_wall"]))
    return rows


def table(res: dict[str, Any], ref: dict[str, Any] | None = None) -> str:
    """The phase table; with ``ref``, its seconds and after/before ratios beside."""
    before = dict(_rows(ref)) if ref else {}
    names = [n for n, _ in _rows(ref)] if ref else []
    now = dict(_rows(res))
    names += [n for n in now if n not in names]
    head = f"{'phase':<46} {'seconds':>8}"
    if ref:
        head = f"{'phase':<46} {'before':>8} {'after':>8} {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for n in names:
        a, b = now.get(n), before.get(n)
        cell = f"{a:8.2f}" if a is not None else f"{'-':>8}"
        if not ref:
            lines.append(f"{n:<46} {cell}")
            continue
        old = f"{b:8.2f}" if b is not None else f"{'-':>8}"
        ratio = f"{a / b:6.2f}" if a is not None and b else f"{'':>6}"
        lines.append(f"{n:<46} {old} {cell} {ratio}")
    acc = f"test accuracy {res['test_accuracy']:.4f}"
    if ref:
        acc += f" (before {ref['test_accuracy']:.4f})"
    load = f"load average {res['load_average_before']} -> {res['load_average_after']}"
    return "\n".join([*lines, acc, f"threads {res['threads']}, {load}"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS and --threads")
    ap.add_argument("--json", help="write the measurement here")
    ap.add_argument("--compare", help="a previous --json to print beside this one")
    ap.add_argument("--keep", help="run in this folder and keep the run and bundle")
    args = ap.parse_args(argv)
    ref = json.loads(Path(args.compare).read_text()) if args.compare else None
    if args.keep:
        work = Path(args.keep).resolve()
        work.mkdir(parents=True, exist_ok=True)
        res = measure(work, args.threads)
    else:
        work = Path(tempfile.mkdtemp(prefix="ftedge-pipeline-"))
        try:
            res = measure(work, args.threads)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(table(res, ref))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
