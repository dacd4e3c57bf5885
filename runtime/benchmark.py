"""The measurement engine behind ``ftedge benchmark``.

    report = run_benchmark(plan_bundle("bundles/latest", BenchmarkOptions(batches=(1, 8))))

How a number is made:

1. **Plan.** Every artifact of the bundle (or one bare model file) x every backend that can run it
   here: ONNX on onnxruntime and on OpenVINO, OpenVINO IR on OpenVINO twice (the default
   precision hint, which is bf16 on CPUs with AVX-512-BF16/AMX, and the ``f32`` hint), TensorRT
   plans on TensorRT when TensorRT and a GPU exist, and the PyTorch checkpoint in eager mode
   (``inference_mode``, channels_last) as the reference. Each plan entry is a :class:`Job`.
2. **Isolate.** Each job runs in its own child process (``python -m ftedge.runtime.benchmark
   --worker``; never the ``ftedge`` CLI), one after the other. Backends therefore cannot slow
   each other down: onnxruntime's spin-waiting threads once made torch eager 11x slower in the
   same process, OpenVINO and torch keep their own thread pools alive, and each process's
   peak RSS is that backend's alone. onnxruntime's spinning is additionally off by
   default (what ``ftedge.runtime.load`` ships), ``--ort-spin`` turns it on.
3. **Measure.** In the child: cold start = load (session/compile) + first inference, reported
   apart. Then per batch size and mode: warm-up until >= ``warmup_iters`` runs AND >=
   ``warmup_seconds``; timed loop until >= ``min_iters`` runs AND >= ``min_seconds`` (capped by
   ``max_seconds``), one ``perf_counter`` pair per run. *compute* mode feeds an input that is
   already in place (OpenVINO: the request's input tensor is set once and each batch size is
   compiled static, as benchmark_app does); *end_to_end* mode decodes image files from disk, preprocesses them with the
   bundle's numpy pipeline, stacks a batch, infers and takes the top-k. Power is sampled in a
   background thread on a Jetson (``ftedge.runtime.power``) with the idle power (measured once
   before any job) subtracted.
4. **Report.** :mod:`ftedge.runtime.stats` turns latencies into min/mean/p50/p90/p95/p99/max/std/
   CoV and throughput; :mod:`ftedge.runtime.report` writes the table, JSON, CSV and plots.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.runtime.manifest import DataRef
from ftedge.runtime.preprocess import PreprocessSpec, load_uint8_crop, preprocess_file
from ftedge.runtime.stats import LatencyStats

MODES = ("compute", "end_to_end")
MODEL_SUFFIXES = {".onnx": "onnx", ".xml": "openvino", ".plan": "tensorrt", ".engine": "tensorrt"}


@dataclass(frozen=True)
class BenchmarkOptions:
    """How to measure (defaults follow docs/benchmark.md)."""

    batches: tuple[int, ...] = (1,)
    modes: tuple[str, ...] = ("compute",)
    threads: int | None = None
    backends: tuple[str, ...] | None = None  # None: every backend available here
    device: str | None = None  # None: cpu (and cuda:0 for TensorRT plans)
    min_iters: int = 50
    min_seconds: float = 2.0
    max_seconds: float = 60.0  # hard cap per timed loop (slow reference at large batch)
    warmup_iters: int = 10
    warmup_seconds: float = 0.5
    isolate: bool = True  # one child process per job (see module docstring)
    ort_spin: bool = False
    power: str = "auto"  # auto | sysfs | tegrastats | none
    idle_seconds: float = 2.0
    measure_accuracy: bool = False  # re-measure on the test split instead of the manifest's
    include_torch: bool = True
    openvino_f32: bool = True  # also run OpenVINO IRs with the f32 precision hint
    # Compile OpenVINO models per batch with that batch fixed (like benchmark_app -shape and
    # trtexec --shapes); False times the dynamic-batch model as loaded by ftedge.runtime.load().
    openvino_static: bool = True
    topk: int = 5
    job_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        if not self.batches or any(b < 1 for b in self.batches):
            raise FtedgeError(f"batch sizes must be >= 1, got {list(self.batches)}")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise FtedgeError(f"mode must be compute, end_to_end or both, got {bad or 'none'}")
        if self.threads is not None and self.threads < 1:
            raise FtedgeError(f"threads must be >= 1, got {self.threads}")
        if self.min_iters < 1 or self.warmup_iters < 0:
            raise FtedgeError("min-iters must be >= 1 and warmup-iters >= 0")
        if self.min_seconds < 0 or self.warmup_seconds < 0:
            raise FtedgeError("min-seconds and warmup-seconds must be >= 0")


@dataclass
class Job:
    """One (artifact, backend, device, variant) to measure; JSON-serialisable for the child."""

    artifact: str  # display name: onnx-fp32, openvino-int8, pytorch, ...
    format: str  # onnx | openvino | tensorrt | pytorch
    precision: str  # fp32 | fp16 | int8 | unknown
    backend: str  # onnxruntime | openvino | tensorrt | torch
    device: str  # runner device string
    model_path: str  # absolute
    variant: str | None = None  # e.g. "f32" (OpenVINO precision hint)
    runner_options: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)  # manifest input spec (may be empty)
    preprocessing: dict[str, Any] | None = None
    images: list[str] = field(default_factory=list)  # end-to-end inputs (absolute paths)
    accuracy: float | None = None  # fraction in [0, 1], as in the manifest
    accuracy_source: str | None = None  # manifest | measured | None
    bundle_dir: str | None = None  # for --measure-accuracy (export verification data)
    output_kind: str = "logits"
    idle_mw: float | None = None

    @property
    def label(self) -> str:
        v = f"[{self.variant}]" if self.variant else ""
        return f"{self.artifact} on {self.backend}{v}:{self.device}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(**d)


@dataclass
class Plan:
    """What to run: jobs plus the facts the report needs about the source."""

    jobs: list[Job]
    options: BenchmarkOptions
    source: dict[str, Any]  # bundle dir or model file, labels, reference accuracy
    skipped: list[dict[str, Any]] = field(default_factory=list)


# -- planning ----------------------------------------------------------------------------------
def _backends_wanted(options: BenchmarkOptions) -> tuple[str, ...]:
    from ftedge.runtime.backends import BACKENDS, normalize_backend

    if options.backends is None:
        return tuple(BACKENDS)

    return tuple(dict.fromkeys(normalize_backend(b) for b in options.backends))


def _test_images(data: DataRef) -> list[str]:
    """The bundle's test-split image files, when they are on this machine."""
    files = data.test_files()
    return [str(p) for p, _ in files] if files else []


def plan_bundle(
    bundle_dir: str | os.PathLike[str],
    options: BenchmarkOptions,
    *,
    torch_checkpoint: str | None = None,
    images: Sequence[str] | None = None,
) -> Plan:
    """Every artifact x backend x variant of a bundle that can run here (no backend imported)."""
    from ftedge.export.verify import output_kind
    from ftedge.runtime.backends import get_backend
    from ftedge.runtime.classifier import checkpoint_of
    from ftedge.runtime.manifest import Manifest
    from ftedge.runtime.select import candidates

    bdir = Path(bundle_dir).resolve()
    manifest = Manifest.load(bdir)
    bad = manifest.verify_files(bdir)
    if bad:
        raise FtedgeError(f"bundle {bdir} fails its sha256 check for: {', '.join(bad[:5])}")
    test_paths = _test_images(manifest.data)
    e2e_images = list(images) if images else test_paths
    wanted = _backends_wanted(options)
    jobs: list[Job] = []
    skipped: list[dict[str, Any]] = []
    for be in wanted:
        if be == "torch":
            continue
        try:
            cands, reasons = candidates(manifest, backend=be, device=options.device)
        except FtedgeError as e:
            skipped.append({"backend": be, "reason": str(e)})
            continue
        skipped.extend({"backend": be, "reason": r} for r in reasons)
        for c in cands:
            a = c.artifact
            base = Job(
                artifact=a.name,
                format=a.format,
                precision=a.precision,
                backend=be,
                device=c.device,
                model_path=str(bdir / a.path),
                input=a.input.to_dict(),
                preprocessing=manifest.preprocessing.to_dict(),
                images=e2e_images,
                # An artifact's accuracy belongs to the file; for ONNX on OpenVINO it was
                # measured with onnxruntime, hence the source note.
                accuracy=a.accuracy,
                accuracy_source="manifest" if a.accuracy is not None else None,
                bundle_dir=str(bdir),
                output_kind=output_kind(a),
            )
            if be == "onnxruntime":
                base.runner_options = {"spin_wait": options.ort_spin}
                jobs.append(base)
            elif be == "openvino":
                jobs.append(base)
                if options.openvino_f32 and a.format == "openvino" and c.device == "cpu":
                    jobs.append(replace(base, variant="f32", runner_options={"precision": "f32"}))
            else:
                jobs.append(base)
    if "torch" in wanted and options.include_torch:
        ckpt = torch_checkpoint or checkpoint_of(manifest, bdir)
        if ckpt is None:
            skipped.append(
                {
                    "backend": "torch",
                    "reason": "no run checkpoint recorded in the bundle "
                    "(pass --torch-checkpoint RUN_DIR)",
                }
            )
        elif not get_backend("torch").available():
            skipped.append({"backend": "torch", "reason": "torch is not installed"})
        else:
            dev = get_backend("torch").device_for(options.device) or "cpu"
            jobs.append(
                Job(
                    artifact="pytorch",
                    format="pytorch",
                    precision="fp32",
                    backend="torch",
                    device=dev,
                    model_path=ckpt,
                    runner_options={"channels_last": True},
                    input=manifest.input.to_dict(),
                    preprocessing=manifest.preprocessing.to_dict(),
                    images=e2e_images,
                    accuracy=manifest.reference.accuracy,
                    accuracy_source="manifest" if manifest.reference.accuracy is not None else None,
                    bundle_dir=str(bdir),
                )
            )
    source = {
        "kind": "bundle",
        "path": str(bdir),
        "labels": list(manifest.labels),
        "reference_accuracy": manifest.reference.accuracy,
        "test_images": len(test_paths),
        "end_to_end_images": "test split" if e2e_images and not images else "user images",
    }
    return Plan(jobs, options, source, skipped)


def _guess_precision(path: Path, fmt: str) -> str:
    """fp32/fp16/int8 of a bare model file, from its contents (best effort)."""
    try:
        if fmt == "openvino":
            text = path.read_text(errors="replace")
            if "FakeQuantize" in text or 'element_type="i8"' in text or 'element_type="u8"' in text:
                return "int8"
            return "fp32"
        if fmt == "onnx":
            import onnx

            m = onnx.load(str(path), load_external_data=False)
            ops = {n.op_type for n in m.graph.node}
            if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger"}:
                return "int8"
            if any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer):
                return "fp16"
            return "fp32"
    except Exception:  # onnx not installed or unreadable: leave it to the runner
        return "unknown"
    return "unknown"


def plan_model(
    model: str | os.PathLike[str], options: BenchmarkOptions, *, images: Sequence[str] | None = None
) -> Plan:
    """Jobs for one bare model file (.onnx, .xml, .plan/.engine) on each backend that reads it."""
    from ftedge.runtime.backends import get_backend

    path = Path(model).resolve()
    if not path.is_file():
        raise FtedgeError(f"model file {path} does not exist")
    fmt = MODEL_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise FtedgeError(f"unknown model type {path.suffix!r}: use .onnx, .xml, .plan or .engine")
    readers = {"onnx": ("onnxruntime", "openvino"), "openvino": ("openvino",)}.get(
        fmt, ("tensorrt",)
    )
    wanted = _backends_wanted(options)
    precision = _guess_precision(path, fmt)
    jobs: list[Job] = []
    skipped: list[dict[str, Any]] = []
    for be in readers:
        if be not in wanted:
            continue
        entry = get_backend(be)
        dev = entry.device_for(options.device)
        if dev is None:
            skipped.append({"backend": be, "reason": f"{be} cannot run on {options.device!r}"})
            continue
        if not entry.available():
            skipped.append({"backend": be, "reason": f"{be} is not installed"})
            continue
        job = Job(
            artifact=f"{fmt}-{precision}",
            format=fmt,
            precision=precision,
            backend=be,
            device=dev,
            model_path=str(path),
            images=list(images or []),
        )
        if be == "onnxruntime":
            job.runner_options = {"spin_wait": options.ort_spin}
        jobs.append(job)
        if be == "openvino" and fmt == "openvino" and options.openvino_f32 and dev == "cpu":
            jobs.append(replace(job, variant="f32", runner_options={"precision": "f32"}))
    source = {"kind": "model", "path": str(path), "labels": None, "reference_accuracy": None}
    return Plan(jobs, options, source, skipped)


# -- running -----------------------------------------------------------------------------------
def run_benchmark(plan: Plan, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every job of ``plan`` (isolated unless ``options.isolate`` is off); the full report."""
    from ftedge.runtime.environment import capture_environment
    from ftedge.runtime.report import build_report

    options = plan.options
    say = progress or (lambda _m: None)
    env = capture_environment()
    idle_mw = _measure_idle(options)
    results: list[dict[str, Any]] = []
    skipped = list(plan.skipped)
    for i, job in enumerate(plan.jobs, 1):
        job.idle_mw = idle_mw
        say(f"[{i}/{len(plan.jobs)}] {job.label}")
        out = run_job_isolated(job, options) if options.isolate else run_job(job, options)
        if out.get("error"):
            skipped.append({**_job_keys(job), "reason": out["error"]})
            say(f"  failed: {out['error']}")
            continue
        results.extend(out["results"])
        skipped.extend(out.get("skipped", []))
        for r in out["results"]:
            say(
                f"  batch {r['batch']:>3} {r['mode']:<10} p50 {r['latency_ms']['p50']:8.3f} ms "
                f"{r['throughput_ips']:9.1f} img/s" + ("  (unstable)" if r["unstable"] else "")
            )
    return build_report(env, results, skipped, options=asdict(options), source=plan.source)


def _job_keys(job: Job) -> dict[str, Any]:
    return {
        "artifact": job.artifact,
        "format": job.format,
        "precision": job.precision,
        "backend": job.backend,
        "device": job.device,
        "variant": job.variant,
    }


def _measure_idle(options: BenchmarkOptions) -> float | None:
    from ftedge.runtime.power import PowerSampler, detect_power_source

    source = detect_power_source(options.power)
    if source is None:
        return None
    with PowerSampler(source) as sampler:
        sampler.wait_for_samples(1)
        return sampler.idle_mw(options.idle_seconds)


def run_job_isolated(job: Job, options: BenchmarkOptions) -> dict[str, Any]:
    """Run one job in a fresh ``python -m ftedge.runtime.benchmark --worker`` child process."""
    with tempfile.TemporaryDirectory(prefix="ftedge-bench-") as tmp:
        spec, out = Path(tmp) / "job.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps({"job": job.to_dict(), "options": asdict(options)}))
        cmd = [sys.executable, "-m", "ftedge.runtime.benchmark", "--worker", str(spec), str(out)]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=options.job_timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {options.job_timeout_s:.0f} s"}
        if out.is_file():
            result: dict[str, Any] = json.loads(out.read_text())
            return result
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()
        return {"error": f"worker exited with code {proc.returncode}: {tail[-1] if tail else ''}"}


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


@dataclass
class _InputInfo:
    name: str
    dtype: np.dtype[Any]
    nhwc: bool
    batch_dim: int  # -1 dynamic
    height: int
    width: int
    color: str  # rgb | bgr (uint8 inputs)


def _input_info(runner: Any, job: Job) -> _InputInfo:
    meta = runner.input_metadata()
    if len(meta) != 1:
        raise FtedgeError(f"{job.label}: expected one model input, found {sorted(meta)}")
    m = next(iter(meta.values()))
    shape = list(m.shape)
    if len(shape) != 4:
        raise FtedgeError(f"{job.label}: expected a 4-D image input, got shape {shape}")
    layout = str(job.input.get("layout", "")).upper()
    nhwc = layout == "NHWC" or (not layout and shape[3] in (1, 3) and shape[1] not in (1, 3))
    spec = PreprocessSpec.from_dict(job.preprocessing) if job.preprocessing else None
    h, w = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
    height = h if isinstance(h, int) and h > 0 else (spec.height if spec else 224)
    width = w if isinstance(w, int) and w > 0 else (spec.width if spec else 224)
    b = shape[0] if isinstance(shape[0], int) else -1
    return _InputInfo(m.name, m.dtype, nhwc, b, height, width, str(job.input.get("color", "rgb")))


def _spec_for(job: Job, info: _InputInfo) -> PreprocessSpec:
    if job.preprocessing:
        return PreprocessSpec.from_dict(job.preprocessing)
    return PreprocessSpec(input_size=(3, info.height, info.width))


def _load_image(path: str, job: Job, info: _InputInfo, spec: PreprocessSpec) -> np.ndarray:
    """Decode + preprocess one image file into the model's per-image input layout."""
    if info.dtype == np.uint8:  # baked preprocessing: the model takes the cropped uint8 frame
        img = load_uint8_crop(path, spec)
        if info.color == "bgr":
            img = img[:, :, ::-1]
        return img if info.nhwc else img.transpose(2, 0, 1)
    x = preprocess_file(path, spec)  # CHW float32
    return x.transpose(1, 2, 0) if info.nhwc else x


def _compute_input(job: Job, info: _InputInfo, batch: int, spec: PreprocessSpec) -> np.ndarray:
    """A batch already in place: real preprocessed test images when available, else random."""
    if job.images:
        imgs = [_load_image(job.images[i % len(job.images)], job, info, spec) for i in range(batch)]
        return np.ascontiguousarray(np.stack(imgs).astype(info.dtype, copy=False))
    rng = np.random.default_rng(0)
    shape = (
        (batch, info.height, info.width, 3) if info.nhwc else (batch, 3, info.height, info.width)
    )
    if info.dtype == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.standard_normal(shape).astype(info.dtype)


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, scores.shape[-1])
    idx = np.argpartition(-scores, k - 1, axis=-1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, idx, axis=-1), axis=-1)
    return np.take_along_axis(idx, order, axis=-1)


def _synthetic_images(d: Path, n: int) -> list[str]:
    """Camera-like JPEGs (640x480) in ``d`` for end-to-end runs when no images are available."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        # smooth gradients + noise compress like photos, unlike pure noise
        yy, xx = np.mgrid[0:480, 0:640]
        base = np.stack([(xx * (i + 1)) % 256, (yy * 2) % 256, (xx + yy) % 256], axis=-1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        p = d / f"synthetic_{i}.jpg"
        Image.fromarray(img).save(p, quality=90)
        paths.append(str(p))
    return paths


def _timed_loop(
    step: Callable[[], Any],
    options: BenchmarkOptions,
    after: Callable[[], float | None] | None = None,
) -> tuple[list[float], float, float, list[float]]:
    """Warm up, then time ``step``; returns (latencies in s, window start, window end, and what
    ``after()`` — read outside the timed pair — returned each iteration, e.g. the backend's own
    latency in ms)."""
    clock = time.perf_counter
    t_start = clock()
    n = 0
    while n < options.warmup_iters or clock() - t_start < options.warmup_seconds:
        step()
        n += 1
    lat: list[float] = []
    extra: list[float] = []
    w0 = clock()
    total = 0.0
    while len(lat) < options.min_iters or total < options.min_seconds:
        t0 = clock()
        step()
        dt = clock() - t0
        lat.append(dt)
        total += dt
        if after is not None:
            v = after()
            if v is not None:
                extra.append(v)
        if clock() - w0 > options.max_seconds and len(lat) >= 2:
            break
    return lat, w0, clock(), extra


def _backend_latency_probe(runner: Any) -> Callable[[], float | None] | None:
    """The backend's own per-call latency in ms, where it exposes one (OpenVINO's
    ``InferRequest.latency``, the number benchmark_app reports): Python-binding overhead is the
    difference from the wall-clock latency."""
    request = getattr(runner, "_request", None)
    if runner.backend == "openvino" and request is not None and hasattr(request, "latency"):
        return lambda: float(request.latency)
    return None


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return r / 1024.0 if sys.platform != "darwin" else r / (1024.0 * 1024.0)


def _cuda_memory_mb(job: Job) -> float | None:
    """This process's GPU memory (nvidia-smi), or torch's peak allocation; None off CUDA."""
    if not job.device.lower().startswith("cuda"):
        return None
    if job.backend == "torch":
        try:
            import torch

            return float(torch.cuda.max_memory_allocated()) / 2**20
        except Exception:
            return None
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


def _measure_accuracy(runner: Any, job: Job, info: _InputInfo) -> tuple[float, dict[str, Any]]:
    """(accuracy, parity) of this runner — this backend and precision hint — on the bundle's
    test split, with the export verification's data and comparison (``ftedge.export.verify``):
    the dataset's test images when on this machine, else the crops stored in the bundle."""
    from ftedge.export.verify import compare, load_eval_data
    from ftedge.runtime.manifest import Manifest

    assert job.bundle_dir is not None
    manifest = Manifest.load(job.bundle_dir)
    data = load_eval_data(Path(job.bundle_dir), manifest, allow_subset=True)
    if info.dtype == np.uint8:
        x_all = data.crops[..., ::-1] if info.color == "bgr" else data.crops
        if not info.nhwc:
            x_all = x_all.transpose(0, 3, 1, 2)
    else:
        x_all = data.images(manifest)
        if info.nhwc:
            x_all = x_all.transpose(0, 2, 3, 1)
    x_all = np.ascontiguousarray(x_all.astype(info.dtype, copy=False))
    b = 16 if info.batch_dim == -1 else info.batch_dim
    outs = []
    for start in range(0, len(x_all), b):
        x = x_all[start : start + b]
        real = len(x)
        if real < b and info.batch_dim != -1:  # static batch: pad, then drop the padding
            x = np.concatenate([x, np.repeat(x[-1:], b - real, axis=0)])
        y = next(iter(runner.infer({info.name: x}, check=False).values()))
        outs.append(np.asarray(y, np.float32).reshape(len(x), -1)[:real])
    parity, accuracy, _drop = compare(
        np.concatenate(outs), data, job.output_kind, data.reference_accuracy
    )
    return accuracy, parity.to_dict()


def run_job(job: Job, options: BenchmarkOptions) -> dict[str, Any]:
    """Measure one job in this process: ``{"results": [...], "skipped": [...]}`` or ``{"error"}``."""
    try:
        # Synthetic end-to-end images (when needed) live in a folder removed after the job.
        with tempfile.TemporaryDirectory(prefix="ftedge-bench-img-") as scratch:
            return _run_job(job, options, Path(scratch))
    except FtedgeError as e:
        return {"error": str(e)}
    except Exception as e:  # a backend crash must not end the whole benchmark
        return {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"}


def _run_job(job: Job, options: BenchmarkOptions, scratch: Path) -> dict[str, Any]:
    from ftedge.runtime.power import PowerSampler, detect_power_source, summarize_power

    clock = time.perf_counter
    t0 = clock()
    runner = _make_runner(job, options)
    runner.activate()
    try:
        load_s = clock() - t0
        info = _input_info(runner, job)
        spec = _spec_for(job, info)
        if "end_to_end" in options.modes and not job.images:
            job.images = _synthetic_images(scratch, 16)
        batches = list(options.batches)
        skipped: list[dict[str, Any]] = []
        if info.batch_dim > 0:
            for b in [b for b in batches if b != info.batch_dim]:
                skipped.append(
                    {
                        **_job_keys(job),
                        "batch": b,
                        "reason": f"model has a fixed batch size of {info.batch_dim}",
                    }
                )
            batches = [b for b in batches if b == info.batch_dim]
        if not batches:
            return {"results": [], "skipped": skipped}
        # Cold start: load + the first inference at the first batch size.
        x = _compute_input(job, info, batches[0], spec)
        t1 = clock()
        runner.infer({info.name: x})  # checked once, then unchecked in the timed loops
        first_s = clock() - t1
        describe = runner.describe()
        accuracy, acc_source, parity = job.accuracy, job.accuracy_source, None
        if options.measure_accuracy and job.bundle_dir:
            accuracy, parity = _measure_accuracy(runner, job, info)
            acc_source = "measured"
        source = detect_power_source(options.power)
        sampler = PowerSampler(source) if source is not None else None
        if sampler is not None:
            sampler.start()
            sampler.wait_for_samples(1)
        results = []
        static = job.backend == "openvino" and options.openvino_static and info.batch_dim == -1
        if static:
            runner.deactivate()  # each batch gets its own fixed-shape compile below
        try:
            for batch in batches:
                batch_runner = runner
                if static:
                    batch_runner = _make_runner(job, options, fixed_batch=batch)
                    batch_runner.activate()
                    batch_runner.infer({info.name: _compute_input(job, info, batch, spec)})
                for mode in options.modes:
                    try:
                        step = _make_step(batch_runner, job, info, spec, batch, mode, options.topk)
                        probe = _backend_latency_probe(batch_runner) if mode == "compute" else None
                        lat, w0, w1, backend_ms = _timed_loop(step, options, probe)
                    except FtedgeError as e:
                        skipped.append(
                            {**_job_keys(job), "batch": batch, "mode": mode, "reason": str(e)}
                        )
                        continue
                    stats = LatencyStats.from_seconds(lat)
                    power = None
                    if sampler is not None and source is not None:
                        power = summarize_power(
                            sampler.window(w0, w1),
                            idle_mw=job.idle_mw,
                            seconds=stats.total_s,
                            images=batch * stats.n,
                            calls=stats.n,
                            source=source.name,
                            rail=source.rail_description,
                        )
                    results.append(
                        {
                            **_job_keys(job),
                            "batch": batch,
                            "mode": mode,
                            "latency_ms": stats.latency_ms(),
                            "throughput_ips": stats.throughput(batch),
                            "cov": stats.cov,
                            "unstable": stats.unstable,
                            "iterations": stats.n,
                            "seconds": stats.total_s,
                            "cold_start_ms": (load_s + first_s) * 1e3,
                            "load_ms": load_s * 1e3,
                            "first_inference_ms": first_s * 1e3,
                            "peak_rss_mb": _peak_rss_mb(),
                            "device_memory_mb": _cuda_memory_mb(job),
                            "accuracy": accuracy,
                            "accuracy_source": acc_source,
                            "parity": parity,
                            "execution_precision": describe.get("execution_precision"),
                            "threads": options.threads,
                            "power": power,
                            "model_path": job.model_path,
                            "runner": describe,
                            "shape": "static" if static else "dynamic",
                            "backend_latency_ms": (
                                LatencyStats.from_seconds(np.asarray(backend_ms) / 1e3).latency_ms()
                                if backend_ms
                                else None
                            ),
                        }
                    )
                if batch_runner is not runner:
                    batch_runner.deactivate()
        finally:
            if sampler is not None:
                sampler.stop()
        return {"results": results, "skipped": skipped}
    finally:
        runner.deactivate()


def _make_step(
    runner: Any,
    job: Job,
    info: _InputInfo,
    spec: PreprocessSpec,
    batch: int,
    mode: str,
    topk: int,
) -> Callable[[], Any]:
    infer = runner.infer
    if mode == "compute":
        x = _compute_input(job, info, batch, spec)
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
        return lambda: infer(feeds, check=False)

    images = job.images
    state = {"i": 0}

    def end_to_end() -> np.ndarray:
        i = state["i"]
        paths = [images[(i + j) % len(images)] for j in range(batch)]
        state["i"] = (i + batch) % len(images)
        x = np.stack([_load_image(p, job, info, spec) for p in paths])
        out = next(iter(infer({info.name: x}, check=False).values()))
        return _topk(np.asarray(out).reshape(batch, -1), topk)

    return end_to_end


# -- child process entry point -----------------------------------------------------------------
def _worker_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ftedge.runtime.benchmark")
    p.add_argument("--worker", nargs=2, metavar=("JOB_JSON", "OUT_JSON"), required=True)
    args = p.parse_args(argv)
    spec = json.loads(Path(args.worker[0]).read_text())
    job = Job.from_dict(spec["job"])
    o = spec["options"]
    for k in ("batches", "modes", "backends"):
        if o.get(k) is not None:
            o[k] = tuple(o[k])
    options = BenchmarkOptions(**o)
    out = run_job(job, options)
    Path(args.worker[1]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker_main())
