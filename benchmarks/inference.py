"""Every artifact of the default bundle on every backend here, against PyTorch eager.

    .venv/bin/python benchmarks/inference.py                      # bundles/latest
    .venv/bin/python benchmarks/inference.py BUNDLE --batch 1,8 --rounds 3 --json out.json

Runs ``ftedge benchmark``'s engine (library call, one child process per backend so none slows
another) for ``--rounds`` rounds, one round after the other (backend order alternates), and
quotes the median over rounds of each p50 — the machines are shared and noisy. Prints, for each
artifact x backend: p50 at batch 1 and its speed-up over torch eager (``inference_mode``,
channels_last) at batch 1; the best batch (highest throughput), per-image latency there and the
throughput ratio to torch eager at torch's best batch; and the artifact's test accuracy. Exits 1
when the fastest artifact is less than ``--target`` (default 5) times faster than torch at batch 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from ftedge.runtime.bench_select import jobs_for_bundle
from ftedge.runtime.benchmark import BenchmarkOptions, run_benchmark
from ftedge.runtime.environment import machine_label
from ftedge.runtime.report import backend_label, precision_label, write_json


def _key(r: dict[str, Any]) -> tuple[str, str, str]:
    return (r["artifact"], backend_label(r), r["device"])


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("bundle", nargs="?", default="bundles/latest")
    p.add_argument("--batch", default="1,2,4,8,16", help="batch sizes (default 1,2,4,8,16)")
    p.add_argument("--rounds", type=int, default=2, help="repeat everything, quote medians")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--min-iters", type=int, default=30)
    p.add_argument("--torch-checkpoint", default=None)
    p.add_argument("--target", type=float, default=5.0, help="required speed-up at batch 1")
    p.add_argument("--json", default="benchmarks/results/inference.json")
    return p.parse_args(argv)


def _run_rounds(args: argparse.Namespace, batches: tuple[int, ...]) -> list[dict[str, Any]]:
    """``--rounds`` full benchmark reports, the job order reversed every other round."""
    opts = BenchmarkOptions(
        batches=batches,
        threads=args.threads,
        min_seconds=args.min_seconds,
        min_iters=args.min_iters,
    )
    reports = []
    for rnd in range(args.rounds):
        plan = jobs_for_bundle(args.bundle, opts, torch_checkpoint=args.torch_checkpoint)
        if rnd % 2:
            plan.jobs.reverse()  # alternate the order so drift does not favour one backend
        print(f"round {rnd + 1}/{args.rounds}: {len(plan.jobs)} jobs", file=sys.stderr)
        reports.append(run_benchmark(plan, progress=lambda m: print(m, file=sys.stderr)))
    return reports


def _medians(reports: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Median over rounds of each (artifact, backend, device, batch) p50 and throughput."""
    by: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for rep in reports:
        for r in rep["results"]:
            by.setdefault((*_key(r), r["batch"]), []).append(r)
    return {
        k: {
            "p50": statistics.median(r["latency_ms"]["p50"] for r in rs),
            "ips": statistics.median(r["throughput_ips"] for r in rs),
            "r": rs[0],
        }
        for k, rs in by.items()
    }


def _summary(med: dict[tuple[Any, ...], dict[str, Any]], batches: tuple[int, ...]) -> list[dict]:
    """One row per artifact x backend: batch 1 and best batch, and the ratios to torch eager."""
    keys = list(dict.fromkeys(k[:3] for k in med))
    torch_key = next((k for k in keys if k[1] == "torch"), None)
    if torch_key is None:
        print("no torch eager reference was measured: ratios need it", file=sys.stderr)

    def best(k: tuple[Any, ...]) -> tuple[int, dict[str, Any]]:
        cands = [(b, med[(*k, b)]) for b in batches if (*k, b) in med]
        return max(cands, key=lambda c: c[1]["ips"])

    t1 = med.get((*torch_key, 1)) if torch_key else None
    tb = best(torch_key)[1] if torch_key else None
    rows = []
    for k in keys:
        b1 = med.get((*k, 1))
        bb, mb = best(k)
        rows.append(
            {
                "artifact": k[0],
                "backend": k[1],
                "device": k[2],
                "precision": precision_label(mb["r"]),
                "accuracy": mb["r"].get("accuracy"),
                "p50_b1_ms": b1["p50"] if b1 else None,
                "speedup_b1": t1["p50"] / b1["p50"] if (t1 and b1) else None,
                "best_batch": bb,
                "ms_per_image_best": 1000.0 / mb["ips"],
                "ips_best": mb["ips"],
                "speedup_best": mb["ips"] / tb["ips"] if tb else None,
            }
        )
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "| artifact | backend | precision | accuracy | p50 b1 ms | vs torch b1 | best batch | "
        "ms/img at best | img/s at best | vs torch best |"
    )
    print("|" + "---|" * 10)
    for row in rows:
        acc, p50, s1, sb = (row[k] for k in ("accuracy", "p50_b1_ms", "speedup_b1", "speedup_best"))
        cells = [
            row["artifact"],
            row["backend"],
            row["precision"],
            "-" if acc is None else f"{100 * acc:.2f}%",
            "-" if p50 is None else f"{p50:.3f}",
            "-" if s1 is None else f"{s1:.2f}x",
            str(row["best_batch"]),
            f"{row['ms_per_image_best']:.3f}",
            f"{row['ips_best']:.1f}",
            "-" if sb is None else f"{sb:.2f}x",
        ]
        print("| " + " | ".join(cells) + " |")


def _meets_target(rows: list[dict[str, Any]], target: float) -> bool:
    """Print the fastest non-torch row at batch 1; whether it is ``target`` times torch."""
    others = [row for row in rows if row["backend"] != "torch" and row["speedup_b1"]]
    if not others:
        return True
    fastest = max(others, key=lambda row: row["speedup_b1"])
    ok = bool(fastest["speedup_b1"] >= target)
    acc = fastest["accuracy"]
    print(
        f"\nfastest at batch 1: {fastest['artifact']} on {fastest['backend']}: "
        f"{fastest['p50_b1_ms']:.3f} ms, {fastest['speedup_b1']:.2f}x torch eager "
        f"(target {target:.0f}x: {'PASS' if ok else 'FAIL'}), accuracy "
        f"{'-' if acc is None else f'{100 * acc:.2f}%'}"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    batches = tuple(int(b) for b in args.batch.split(","))
    reports = _run_rounds(args, batches)
    rows = _summary(_medians(reports), batches)
    env = reports[0]["environment"]
    print(
        f"\nmachine: {machine_label(env)}; threads: {args.threads or 'library default'}; "
        f"rounds: {args.rounds} (medians)\n"
    )
    _print_table(rows)
    ok = _meets_target(rows, args.target)
    out = {
        "schema_version": 1,
        "kind": "ftedge-inference-benchmark",
        "environment": env,
        "rounds": [r["results"] for r in reports],
        "summary": rows,
        "skipped": reports[-1]["skipped"],
    }
    if args.json:
        write_json(out, args.json)
        # the last round alone is a regular `ftedge benchmark --json` report (for --compare)
        write_json(reports[-1], Path(args.json).with_suffix(".report.json"))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
