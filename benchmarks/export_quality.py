"""Export quality of the default run: accuracy, drop, parity, size and export time per artifact.

    .venv/bin/python benchmarks/export_quality.py                        # runs/latest
    .venv/bin/python benchmarks/export_quality.py RUN_DIR --formats onnx,openvino --json out.json

Runs the real ``ftedge export`` pipeline into a temporary bundle (or ``--out``), prints one table
and writes JSON (default ``benchmarks/results/export_quality.json``) with, per artifact: status,
accuracy on the test split, drop in points vs PyTorch, max |logit diff| and top-1 agreement vs
PyTorch, execution precision, size and export seconds; plus the wall time of every pipeline step
and of the whole export, and the CPU count (target: all formats < 2 min on 2 cores).
Exits 1 when a target (all formats < 2 min, FP32 parity, INT8 within budget) is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from ftedge.export.bundle import ExportOptions, export_bundle, format_table, summary_rows

TARGETS = {
    ("onnx", "fp32"): {"max_abs_diff": 1e-4, "top1_agreement": 1.0},
    ("onnx", "int8"): {"accuracy_drop": 1.0},
    ("openvino", "int8"): {"accuracy_drop": 0.5},
}
MAX_SECONDS = 120.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", nargs="?", default="runs/latest")
    p.add_argument("--formats", default=None)
    p.add_argument("--precision", default="fp32,int8")
    p.add_argument("--out", default=None, help="bundle directory (default: a temporary one)")
    p.add_argument("--json", default="benchmarks/results/export_quality.json")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="ftedge-export-quality-") as tmp:
        out = args.out or str(Path(tmp) / "bundle")
        opts = ExportOptions(
            formats=tuple(args.formats.split(",")) if args.formats else None,
            precisions=tuple(args.precision.split(",")),
            out=out,
            progress=False,
        )
        result = export_bundle(args.run, opts)
        print(format_table(result.manifest, result.bundle_dir))
        rows = summary_rows(result.manifest, result.bundle_dir)
        export = result.manifest.provenance.get("exports", [{}])[-1]
    misses = []
    for row in rows:
        for key, limit in TARGETS.get((row["format"], row["precision"]), {}).items():
            if row["artifact"].endswith("-baked"):
                continue
            value = row.get(key)
            ok = value is not None and (
                value >= limit if key == "top1_agreement" else value <= limit
            )
            if not ok:
                misses.append(f"{row['artifact']} {key}={value} (target {limit})")
    if result.seconds > MAX_SECONDS:
        misses.append(f"export took {result.seconds:.1f} s (target < {MAX_SECONDS:.0f} s)")
    payload = {
        "schema_version": 1,
        "run": str(Path(args.run).resolve()),
        "reference_accuracy": result.manifest.reference.get("accuracy"),
        "export_seconds": round(result.seconds, 2),
        "step_seconds": export.get("step_seconds", {}),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "versions": export.get("versions", {}),
        "artifacts": rows,
        "targets_missed": misses,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    print(
        f"export: {result.seconds:.1f} s on {os.cpu_count()} CPUs; steps: {payload['step_seconds']}"
    )
    print(f"json: {args.json}")
    for m in misses:
        print(f"target missed: {m}", file=sys.stderr)
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
