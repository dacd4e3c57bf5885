"""The timed part of a benchmark job: the step being timed, the timed loop, and memory.

Per batch size and mode: warm-up until >= ``warmup_iters`` runs AND >= ``warmup_seconds``; timed
loop until >= ``min_iters`` runs AND >= ``min_seconds`` (capped by ``max_seconds``), one
``perf_counter`` pair per run. *compute* mode feeds an input that is already in place (OpenVINO:
the request's input tensor is set once and each batch size is compiled static, as benchmark_app
does); *end_to_end* mode decodes image files from disk, preprocesses them with the bundle's
numpy pipeline, stacks a batch, infers and takes the top-k.
"""

from __future__ import annotations

import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ftedge.runtime.bench_inputs import InputInfo, compute_input, load_image, topk
from ftedge.runtime.bench_spec import BenchmarkOptions, Job
from ftedge.runtime.preprocess import PreprocessSpec


@dataclass(frozen=True)
class TimedLoop:
    """What one timed loop measured (or several stretches of it, ``merged``)."""

    latencies_s: list[float]  # one per timed call
    windows: tuple[tuple[float, float], ...]  # perf_counter (start, end) of each timed stretch
    backend_ms: list[float]  # the backend's own latency per call, where it reports one

    @staticmethod
    def merged(loops: Sequence[TimedLoop]) -> TimedLoop:
        """One loop from stretches timed apart (``--mode both`` alternates the modes)."""
        return TimedLoop(
            [t for loop in loops for t in loop.latencies_s],
            tuple(w for loop in loops for w in loop.windows),
            [v for loop in loops for v in loop.backend_ms],
        )


# A later stretch of an alternating measurement re-warms the caches with this many calls.
REWARM_ITERS = 5


def timed_loop(
    step: Callable[[], Any],
    options: BenchmarkOptions,
    after: Callable[[], float | None] | None = None,
    *,
    share: float = 1.0,
    warm: bool = True,
) -> TimedLoop:
    """Warm up, then time ``step``; ``after()`` is read outside the timed pair each iteration
    (e.g. the backend's own latency in ms). ``share``: the fraction of the iteration and
    second budgets this stretch gets; ``warm=False``: a short re-warm instead of the warm-up
    (a later stretch of the same measurement)."""
    clock = time.perf_counter
    t_start = clock()
    n = 0
    warmup_iters = options.warmup_iters if warm else REWARM_ITERS
    warmup_s = options.warmup_seconds if warm else 0.0
    while n < warmup_iters or clock() - t_start < warmup_s:
        step()
        n += 1
    lat: list[float] = []
    extra: list[float] = []
    min_iters = max(1, math.ceil(options.min_iters * share))
    min_s, max_s = options.min_seconds * share, options.max_seconds * share
    w0 = clock()
    total = 0.0
    while len(lat) < min_iters or total < min_s:
        t0 = clock()
        step()
        dt = clock() - t0
        lat.append(dt)
        total += dt
        if after is not None:
            v = after()
            if v is not None:
                extra.append(v)
        if clock() - w0 > max_s and len(lat) >= 2:
            break
    return TimedLoop(lat, ((w0, clock()),), extra)


def backend_latency_probe(runner: Any) -> Callable[[], float | None] | None:
    """The backend's own per-call latency in ms, where it exposes one (OpenVINO's
    ``InferRequest.latency``, the number benchmark_app reports): Python-binding overhead is the
    difference from the wall-clock latency."""
    request = getattr(runner, "_request", None)
    if runner.backend == "openvino" and request is not None and hasattr(request, "latency"):
        return lambda: float(request.latency)
    return None


# -- the step being timed ----------------------------------------------------------------------
def _compute_step(
    runner: Any, job: Job, info: InputInfo, spec: PreprocessSpec, batch: int
) -> Callable[[], Any]:
    x = compute_input(job, info, batch, spec)
    feeds = {info.name: x}
    request = getattr(runner, "_request", None)
    if runner.backend == "openvino" and request is not None:
        # Inputs in place: the request's input tensor wraps ``x`` once, so each timed call is
        # the inference alone — as benchmark_app and trtexec time it. Passing a dict to
        # InferRequest.infer() every call costs ~0.15 ms of Python-side conversion here
        # (end_to_end mode, which goes through runner.infer, keeps that cost).
        import openvino as ov

        request.set_tensor(info.name, ov.Tensor(x, shared_memory=True))
        return lambda: request.infer()
    infer = runner.infer
    return lambda: infer(feeds, check=False)


def _end_to_end_step(
    runner: Any, job: Job, info: InputInfo, spec: PreprocessSpec, batch: int, k: int
) -> Callable[[], np.ndarray]:
    infer = runner.infer
    images = job.images
    i = 0

    def end_to_end() -> np.ndarray:
        nonlocal i
        paths = [images[(i + j) % len(images)] for j in range(batch)]
        i = (i + batch) % len(images)
        x = np.stack([load_image(p, info, spec) for p in paths])
        out = next(iter(infer({info.name: x}, check=False).values()))
        return topk(np.asarray(out).reshape(batch, -1), k)

    return end_to_end


def make_step(
    runner: Any,
    job: Job,
    info: InputInfo,
    spec: PreprocessSpec,
    batch: int,
    mode: str,
    k: int,
    options: BenchmarkOptions | None = None,
) -> Callable[[], Any]:
    """One timed call of ``mode`` (compute | end_to_end) at ``batch``; a detection job's
    end-to-end call letterboxes and runs NMS instead of the top-k; with ``options.frames``
    the end-to-end call classifies in-memory camera frames (``ftedge.runtime.bench_frames``)."""
    if mode == "compute":
        return _compute_step(runner, job, info, spec, batch)
    if options is not None and options.frames is not None:
        from ftedge.runtime.bench_frames import frame_step

        size = (options.frames[0], options.frames[1])
        return frame_step(runner, job, size, batch, k, options.preprocessing)
    if job.task == "detection":
        from ftedge.runtime.bench_detect import end_to_end_step

        return end_to_end_step(runner, job, info, spec, batch)
    return _end_to_end_step(runner, job, info, spec, batch, k)


# -- memory ------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak resident memory (one job per process: that backend's alone)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return r / 1024.0 if sys.platform != "darwin" else r / (1024.0 * 1024.0)


def _nvidia_smi_mb() -> float | None:
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-compute-apps=pid,used_memory",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(os.getpid()) and parts[1].isdigit():
            return float(parts[1])
    return None


def cuda_memory_mb(job: Job) -> float | None:
    """This process's GPU memory (nvidia-smi), or torch's peak allocation; None off CUDA."""
    if not job.device.lower().startswith("cuda"):
        return None
    if job.backend == "torch":
        try:
            import torch

            return float(torch.cuda.max_memory_allocated()) / 2**20
        except Exception:
            return None
    return _nvidia_smi_mb()
