"""Referee: ftedge's median latency for an OpenVINO IR vs OpenVINO's own ``benchmark_app``.

    .venv/bin/python benchmarks/openvino_referee.py                    # bundles/latest, fp32 IR
    .venv/bin/python benchmarks/openvino_referee.py model.xml --batch 1 --seconds 10 --rounds 3

Both sides use the same configuration: CPU device, ``PERFORMANCE_HINT=LATENCY``, one synchronous
infer request, the same static shape (``-shape``, required on a dynamic-batch model), the library's
default thread count, and either OpenVINO's default inference precision (bf16 on AVX-512-BF16/AMX
CPUs) or ``f32`` (``-infer_precision f32`` / ``INFERENCE_PRECISION_HINT=f32``). ftedge runs
through its own engine (``ftedge.runtime.benchmark``, a child process, compute-only mode);
benchmark_app is its own process. The two alternate ``--rounds`` times back to back and the
medians of each side's medians are compared. Exits 1 when ``ftedge / benchmark_app`` leaves
``[1/1.15, 1.15]``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from ftedge.errors import FtedgeError
from ftedge.runtime.bench_select import jobs_for_model
from ftedge.runtime.benchmark import BenchmarkOptions, run_benchmark
from ftedge.runtime.manifest import Manifest

_MEDIAN_RE = re.compile(r"Median:\s*([\d.]+)\s*(ms|us)")


def find_ir(path: str) -> Path:
    """An .xml given directly, or a bundle's OpenVINO fp32 IR."""
    p = Path(path)
    if p.suffix == ".xml":
        return p
    m = Manifest.load(p)
    for prec in ("fp32", "fp16", "int8"):
        a = m.find("openvino", prec)
        if a is not None and a.status == "ok":
            return p / a.path
    raise FtedgeError(f"bundle {p} has no OpenVINO IR")


def benchmark_app_median(
    xml: Path, shape: list[int], seconds: float, precision: str | None, threads: int | None
) -> tuple[float, str]:
    """benchmark_app's median latency in ms (and its command line)."""
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    cmd = [
        exe,
        "-m",
        str(xml),
        "-d",
        "CPU",
        "-hint",
        "latency",
        "-api",
        "sync",
        "-nireq",
        "1",
        "-shape",
        "[" + ",".join(map(str, shape)) + "]",
        "-t",
        str(int(max(1, seconds))),
    ]
    if precision:
        cmd += ["-infer_precision", precision]
    if threads:
        # benchmark_app's rule: -nthreads only with -hint none; one stream = what LATENCY gives
        i = cmd.index("-hint")
        cmd[i + 1] = "none"
        cmd += ["-nstreams", "1", "-nthreads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    m = _MEDIAN_RE.search(out.stdout)
    if out.returncode != 0 or not m:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise FtedgeError(f"benchmark_app failed: {' | '.join(tail)}")
    value = float(m.group(1))
    return (value / 1000.0 if m.group(2) == "us" else value), " ".join(cmd)


def ftedge_median(
    xml: Path, batch: int, seconds: float, precision: str | None, threads: int | None
) -> tuple[float, dict[str, Any]]:
    opts = BenchmarkOptions(
        batches=(batch,),
        threads=threads,
        backends=("openvino",),
        min_seconds=seconds,
        min_iters=50,
        include_torch=False,
        openvino_f32=precision == "f32",
        power="none",
        idle_seconds=0.0,
        openvino_static=True,  # the same static shape as benchmark_app's -shape
    )
    plan = jobs_for_model(xml, opts)
    plan.jobs = [j for j in plan.jobs if (j.variant == "f32") == (precision == "f32")]
    report = run_benchmark(plan)
    if not report["results"]:
        raise FtedgeError(f"ftedge could not run {xml}: {report['skipped']}")
    r = report["results"][0]
    return float(r["latency_ms"]["p50"]), r


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", nargs="?", default="bundles/latest", help="bundle dir or .xml")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per run")
    p.add_argument("--rounds", type=int, default=6, help="alternating runs per side")
    p.add_argument("--threads", type=int, default=None, help="inference threads, both sides")
    p.add_argument("--precision", choices=["default", "f32", "both"], default="both")
    p.add_argument("--tolerance", type=float, default=0.15)
    p.add_argument("--json", default="benchmarks/results/openvino_referee.json")
    return p.parse_args(argv)


def static_shape(xml: Path, batch: int) -> list[int]:
    """The IR's input shape with ``batch`` (and every other dynamic dimension) filled in."""
    from ftedge.runtime.runners.openvino import OpenVinoRunner

    meta = next(iter(OpenVinoRunner(str(xml)).input_metadata().values()))
    shape = [
        batch if (i == 0 or not isinstance(d, int) or d < 0) else d
        for i, d in enumerate(meta.shape)
    ]
    if any(d < 1 for d in shape):
        raise FtedgeError(f"cannot make a static shape from {meta.shape}")
    return shape


def referee(xml: Path, shape: list[int], prec: str | None, args: argparse.Namespace) -> dict:
    """``--rounds`` alternating runs of both sides at one precision hint, and the verdict."""
    ours: list[float] = []
    theirs: list[float] = []
    inner: list[float] = []
    exec_prec = None
    cmd = ""
    for _ in range(args.rounds):
        v, r = ftedge_median(xml, args.batch, args.seconds, prec, args.threads)
        ours.append(v)
        if r.get("backend_latency_ms"):
            inner.append(float(r["backend_latency_ms"]["p50"]))
        exec_prec = r.get("execution_precision")
        t, cmd = benchmark_app_median(xml, shape, args.seconds, prec, args.threads)
        theirs.append(t)
    a, b = statistics.median(ours), statistics.median(theirs)
    c = statistics.median(inner) if inner else None
    return {
        "precision_hint": prec or "default",
        "execution_precision": exec_prec,
        "ftedge_p50_ms": a,
        "benchmark_app_median_ms": b,
        "ratio": a / b,
        "ftedge_backend_p50_ms": c,
        "backend_ratio": c / b if c else None,
        "ftedge_backend_runs_ms": inner,
        "agree": 1 / (1 + args.tolerance) <= a / b <= 1 + args.tolerance,
        "ftedge_runs_ms": ours,
        "benchmark_app_runs_ms": theirs,
        "benchmark_app_command": cmd,
    }


def print_rows(rows: list[dict[str, Any]], tolerance: float) -> None:
    print(
        "| precision hint | runs in | ftedge p50 ms | benchmark_app median ms | ratio | within "
        f"{100 * tolerance:.0f}% | ftedge backend-side p50 ms | its ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        inner_ms, inner_ratio = r["ftedge_backend_p50_ms"], r["backend_ratio"]
        print(
            f"| {r['precision_hint']} | {r['execution_precision']} | {r['ftedge_p50_ms']:.3f} | "
            f"{r['benchmark_app_median_ms']:.3f} | {r['ratio']:.3f} | "
            f"{'yes' if r['agree'] else 'NO'} | "
            f"{'-' if inner_ms is None else f'{inner_ms:.3f}'} | "
            f"{'-' if inner_ratio is None else f'{inner_ratio:.3f}'} |"
        )


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    xml = find_ir(args.model).resolve()
    shape = static_shape(xml, args.batch)
    precisions = {"default": [None], "f32": ["f32"], "both": [None, "f32"]}[args.precision]
    rows = [referee(xml, shape, prec, args) for prec in precisions]
    print(
        f"model: {xml}  shape: {shape}  threads: {args.threads or 'default'}  "
        f"rounds: {args.rounds} x {args.seconds:.0f} s per side, alternating"
    )
    print_rows(rows, args.tolerance)
    if args.json:
        from ftedge.runtime.environment import capture_environment
        from ftedge.runtime.report import write_json

        write_json(
            {
                "schema_version": 1,
                "kind": "ftedge-openvino-referee",
                "model": str(xml),
                "shape": shape,
                "threads": args.threads,
                "environment": capture_environment(),
                "rows": rows,
            },
            args.json,
        )
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except FtedgeError as e:
        print(f"openvino_referee: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
