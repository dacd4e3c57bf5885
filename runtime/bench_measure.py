"""One benchmark job, measured in this process (the worker's body, or ``--in-process``).

Cold start = load (session/compile) + first inference, reported apart. Then every batch size x
mode is timed (``ftedge.runtime.bench_timing``). Power is sampled in a background thread on a
Jetson (``ftedge.runtime.power``) with the idle power (measured once before any job) subtracted.
Every result row carries the job's memory (peak RSS, GPU memory) and accuracy.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.runtime.bench_accuracy import JobAccuracy, job_accuracy
from ftedge.runtime.bench_inputs import (
    InputInfo,
    compute_input,
    input_info,
    spec_for,
    synthetic_images,
)
from ftedge.runtime.bench_spec import BenchmarkOptions, Job
from ftedge.runtime.bench_timing import (
    TimedLoop,
    backend_latency_probe,
    cuda_memory_mb,
    make_step,
    peak_rss_mb,
    timed_loop,
)
from ftedge.runtime.preprocess import PreprocessSpec
from ftedge.runtime.stats import LatencyStats

if TYPE_CHECKING:
    from ftedge.runtime.power import PowerSampler, PowerSource


@dataclass(frozen=True)
class JobOutcome:
    """Rows measured for one job and the (batch, mode) combinations it could not run."""

    results: list[dict[str, Any]]
    skipped: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"results": self.results, "skipped": self.skipped}


@dataclass(frozen=True)
class ColdStart:
    load_s: float  # runner creation + activation (session/compile)
    first_s: float  # the first inference, at the first batch size


@dataclass(frozen=True)
class PowerProbe:
    source: PowerSource
    sampler: PowerSampler


@dataclass(frozen=True)
class JobContext:
    """What every (batch, mode) measurement of one job shares."""

    job: Job
    options: BenchmarkOptions
    info: InputInfo
    spec: PreprocessSpec
    cold: ColdStart
    describe: dict[str, Any]  # the runner's own description (execution precision, ...)
    accuracy: JobAccuracy
    static: bool  # OpenVINO compiled per batch size with that batch fixed
    power: PowerProbe | None


def run_job(job: Job, options: BenchmarkOptions) -> dict[str, Any]:
    """Measure one job in this process: ``{"results": [...], "skipped": [...]}`` or ``{"error"}``."""
    try:
        # Synthetic end-to-end images (when needed) live in a folder removed after the job.
        with tempfile.TemporaryDirectory(prefix="ftedge-bench-img-") as scratch:
            return _measure_job(job, options, Path(scratch)).to_dict()
    except FtedgeError as e:
        return {"error": str(e)}
    except Exception as e:  # a backend crash must not end the whole benchmark
        return {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"}


def _make_runner(job: Job, options: BenchmarkOptions, fixed_batch: int | None = None) -> Any:
    """The job's (inactive) runner, from the backend registry; ``fixed_batch`` compiles an
    OpenVINO model with that static batch (as benchmark_app -shape and trtexec --shapes do)."""
    from ftedge.runtime.backends import get_backend

    opts = dict(job.runner_options)
    if fixed_batch is not None:
        opts["batch"] = fixed_batch
    return get_backend(job.backend).create_runner(
        job.model_path, device=job.device, threads=options.threads, **opts
    )


def _measure_job(job: Job, options: BenchmarkOptions, scratch: Path) -> JobOutcome:
    """Cold start, then every batch size x mode; ``scratch`` holds synthetic images."""
    t0 = time.perf_counter()
    runner = _make_runner(job, options)
    runner.activate()
    try:
        load_s = time.perf_counter() - t0
        info = input_info(runner, job)
        spec = spec_for(job, info)
        if "end_to_end" in options.modes and not job.images and options.frames is None:
            job.images = synthetic_images(scratch, 16)
        batches, skipped = _runnable_batches(job, options, info)
        if not batches:
            return JobOutcome([], skipped)
        first_s = _first_inference(runner, job, info, spec, batches[0])
        describe = runner.describe()
        accuracy = job_accuracy(runner, job, options, info)
        cold = ColdStart(load_s, first_s)
        static = job.backend == "openvino" and options.openvino_static and info.batch_dim == -1
        results: list[dict[str, Any]] = []
        with _power_probe(options) as power:
            ctx = JobContext(job, options, info, spec, cold, describe, accuracy, static, power)
            if static:
                runner.deactivate()  # each batch gets its own fixed-shape compile below
            for batch in batches:
                done = _measure_batch(ctx, runner, batch)
                results += done.results
                skipped += done.skipped
        return JobOutcome(results, skipped)
    finally:
        runner.deactivate()


def _runnable_batches(
    job: Job, options: BenchmarkOptions, info: InputInfo
) -> tuple[list[int], list[dict[str, Any]]]:
    """The requested batch sizes this model takes (a fixed-batch model: only its own)."""
    batches = list(options.batches)
    if info.batch_dim <= 0:
        return batches, []
    reason = f"model has a fixed batch size of {info.batch_dim}"
    skipped = [
        {**job.identity(), "batch": b, "reason": reason} for b in batches if b != info.batch_dim
    ]
    return [b for b in batches if b == info.batch_dim], skipped


def _first_inference(
    runner: Any, job: Job, info: InputInfo, spec: PreprocessSpec, batch: int
) -> float:
    """Seconds of the first inference: the second half of the cold start."""
    x = compute_input(job, info, batch, spec)
    t1 = time.perf_counter()
    runner.infer({info.name: x})  # checked once, then unchecked in the timed loops
    return time.perf_counter() - t1


@contextlib.contextmanager
def _power_probe(options: BenchmarkOptions) -> Iterator[PowerProbe | None]:
    """A running power sampler with a first sample in, on a machine that has a power source."""
    from ftedge.runtime.power import PowerSampler, detect_power_source

    source = detect_power_source(options.power)
    if source is None:
        yield None
        return
    sampler = PowerSampler(source)
    sampler.start()
    try:
        sampler.wait_for_samples(1)
        yield PowerProbe(source, sampler)
    finally:
        sampler.stop()


@contextlib.contextmanager
def _batch_runner(ctx: JobContext, runner: Any, batch: int) -> Iterator[Any]:
    """``runner``, or, for static OpenVINO, a runner compiled for ``batch`` and warmed once."""
    if not ctx.static:
        yield runner
        return
    fixed = _make_runner(ctx.job, ctx.options, fixed_batch=batch)
    fixed.activate()
    try:
        fixed.infer({ctx.info.name: compute_input(ctx.job, ctx.info, batch, ctx.spec)})
        yield fixed
    finally:
        fixed.deactivate()


# ``--mode both``: compute and end-to-end are timed in this many alternating stretches each, so
# that their ratio compares the same machine conditions (a shared or throttling machine drifts
# over seconds, more than the preprocessing costs).
MODE_ROUNDS = 4


def _measure_batch(ctx: JobContext, runner: Any, batch: int) -> JobOutcome:
    """Every mode at ``batch``: a result row each, or a skipped row with the reason."""
    done = JobOutcome([], [])
    rounds = MODE_ROUNDS if len(ctx.options.modes) > 1 else 1
    parts: dict[str, list[TimedLoop]] = {mode: [] for mode in ctx.options.modes}
    steps: dict[str, Any] = {}  # each mode's last step (a FrameStep tells its path and split)
    splits: list[tuple[float, float]] = []
    with _batch_runner(ctx, runner, batch) as batch_runner:
        for r in range(rounds):
            for mode in list(parts):
                try:
                    loop, steps[mode] = _time_mode(ctx, batch_runner, batch, mode, r, rounds)
                except FtedgeError as e:
                    where = {"batch": batch, "mode": mode, "reason": str(e)}
                    done.skipped.append({**ctx.job.identity(), **where})
                    del parts[mode]
                    continue
                parts[mode].append(loop)
                # the timed calls' own split (the warm-up calls came first)
                splits += getattr(steps[mode], "split", [])[-len(loop.latencies_s) :]
    for mode, loops in parts.items():
        row = _result_row(ctx, batch, mode, TimedLoop.merged(loops))
        if mode == "end_to_end" and ctx.options.frames is not None:
            from ftedge.runtime.bench_frames import split_ms

            row["frames"] = "x".join(str(v) for v in ctx.options.frames)
            row["preprocessing"] = steps[mode].preprocessing
            row["split_ms"] = split_ms(splits)
        done.results.append(row)
    return done


def _time_mode(
    ctx: JobContext, runner: Any, batch: int, mode: str, round_: int = 0, rounds: int = 1
) -> tuple[TimedLoop, Any]:
    """One timed stretch (of ``rounds``), and the step it timed. The step is made afresh each
    stretch: it binds its own input to the runner."""
    opts = ctx.options
    step = make_step(runner, ctx.job, ctx.info, ctx.spec, batch, mode, opts.topk, opts)
    probe = backend_latency_probe(runner) if mode == "compute" else None
    loop = timed_loop(step, opts, probe, share=1.0 / rounds, warm=round_ == 0)
    return loop, step


def _power_summary(
    ctx: JobContext, loop: TimedLoop, stats: LatencyStats, batch: int
) -> dict[str, Any] | None:
    """Mean power and energy per image over the timed window, idle power subtracted."""
    from ftedge.runtime.power import summarize_power

    if ctx.power is None:
        return None
    source = ctx.power.source
    return summarize_power(
        [s for t0, t1 in loop.windows for s in ctx.power.sampler.window(t0, t1)],
        idle_mw=ctx.job.idle_mw,
        seconds=stats.total_s,
        images=batch * stats.n,
        calls=stats.n,
        source=source.name,
        rail=source.rail_description,
    )


def _metric_fields(ctx: JobContext) -> dict[str, Any]:
    """What the accuracy column means for the job's task; a detection row also names it
    ``map`` (mAP@[.5:.95], the same number as ``accuracy``)."""
    from ftedge.runtime.tasks import TASKS

    task = TASKS.get(ctx.job.task)
    fields: dict[str, Any] = {
        "task": ctx.job.task,
        "metric": task.metric if task is not None else None,
    }
    if ctx.job.task == "detection":
        fields["map"] = ctx.accuracy.value
    return fields


def _result_row(ctx: JobContext, batch: int, mode: str, loop: TimedLoop) -> dict[str, Any]:
    """One row of the report (its JSON keys, in this order)."""
    stats = LatencyStats.from_seconds(loop.latencies_s)
    power = _power_summary(ctx, loop, stats, batch)
    cold = ctx.cold
    backend_ms = loop.backend_ms
    return {
        **ctx.job.identity(),
        "batch": batch,
        "mode": mode,
        "latency_ms": stats.latency_ms(),
        "throughput_ips": stats.throughput(batch),
        "cov": stats.cov,
        "unstable": stats.unstable,
        "iterations": stats.n,
        "seconds": stats.total_s,
        "cold_start_ms": (cold.load_s + cold.first_s) * 1e3,
        "load_ms": cold.load_s * 1e3,
        "first_inference_ms": cold.first_s * 1e3,
        "peak_rss_mb": peak_rss_mb(),
        "device_memory_mb": cuda_memory_mb(ctx.job),
        "accuracy": ctx.accuracy.value,
        "accuracy_source": ctx.accuracy.source,
        "parity": ctx.accuracy.parity,
        **_metric_fields(ctx),
        "execution_precision": ctx.describe.get("execution_precision"),
        "threads": ctx.options.threads,
        "power": power,
        "model_path": ctx.job.model_path,
        "runner": ctx.describe,
        "shape": "static" if ctx.static else "dynamic",
        "backend_latency_ms": (
            LatencyStats.from_seconds(np.asarray(backend_ms) / 1e3).latency_ms()
            if backend_ms
            else None
        ),
    }
