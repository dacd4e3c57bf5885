"""The measurement engine behind ``ftedge benchmark``.

    from ftedge.runtime.bench_select import jobs_for_bundle
    report = run_benchmark(jobs_for_bundle("bundles/latest", BenchmarkOptions(batches=(1, 8))))

How a number is made:

1. **Choose the jobs** (``ftedge.runtime.bench_select``). Every artifact of the bundle (or one
   bare model file) x every backend that can run it here, plus the PyTorch checkpoint as the
   reference. Each entry is a :class:`~ftedge.runtime.bench_spec.Job`.
2. **Isolate** (``ftedge.runtime.bench_worker``). Each job runs in its own child process, one
   after the other, so backends cannot slow each other down and each peak RSS is one backend's.
3. **Measure** (``ftedge.runtime.bench_measure``, ``bench_timing``, ``bench_inputs``,
   ``bench_accuracy``). In the child: cold start = load + first inference, reported apart; then
   per batch size and mode a warm-up and a timed loop, one ``perf_counter`` pair per run, in
   *compute* mode (input already in place) and *end_to_end* mode (decode + preprocess + infer +
   top-k). Power is sampled on a Jetson, the idle power (measured here once, before any job)
   subtracted.
4. **Report.** :mod:`ftedge.runtime.stats` turns latencies into min/mean/p50/p90/p95/p99/max/std/
   CoV and throughput; :mod:`ftedge.runtime.report` writes the table, JSON, CSV and plots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ftedge.runtime.bench_measure import run_job
from ftedge.runtime.bench_select import JobSet, jobs_for_bundle, jobs_for_model
from ftedge.runtime.bench_spec import BenchmarkOptions, Job
from ftedge.runtime.bench_worker import run_job_isolated

__all__ = [
    "BenchmarkOptions",
    "Job",
    "JobSet",
    "jobs_for_bundle",
    "jobs_for_model",
    "run_benchmark",
    "run_job",
    "run_job_isolated",
]


def run_benchmark(jobs: JobSet, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every job of ``jobs`` (isolated unless ``options.isolate`` is off); the full report."""
    from ftedge.runtime.environment import capture_environment
    from ftedge.runtime.report import build_report

    options = jobs.options
    say = progress or (lambda _m: None)
    env = capture_environment()
    idle_mw = _measure_idle(options)
    results: list[dict[str, Any]] = []
    skipped = list(jobs.skipped)
    for i, job in enumerate(jobs.jobs, 1):
        job.idle_mw = idle_mw
        say(f"[{i}/{len(jobs.jobs)}] {job.label}")
        out = run_job_isolated(job, options) if options.isolate else run_job(job, options)
        if out.get("error"):
            skipped.append({**job.identity(), "reason": out["error"]})
            say(f"  failed: {out['error']}")
            continue
        results.extend(out["results"])
        skipped.extend(out.get("skipped", []))
        for r in out["results"]:
            say(_progress_line(r))
    return build_report(env, results, skipped, options=asdict(options), source=jobs.source)


def _progress_line(r: dict[str, Any]) -> str:
    return (
        f"  batch {r['batch']:>3} {r['mode']:<10} p50 {r['latency_ms']['p50']:8.3f} ms "
        f"{r['throughput_ips']:9.1f} img/s" + ("  (unstable)" if r["unstable"] else "")
    )


def _measure_idle(options: BenchmarkOptions) -> float | None:
    """The machine's idle power before any job (Jetson), subtracted from every job's power."""
    from ftedge.runtime.power import PowerSampler, detect_power_source

    source = detect_power_source(options.power)
    if source is None:
        return None
    with PowerSampler(source) as sampler:
        sampler.wait_for_samples(1)
        return sampler.idle_mw(options.idle_seconds)
