"""Which jobs a benchmark runs: every artifact of a bundle, or one bare model file, x every
backend that can run it here.

ONNX runs on onnxruntime and on OpenVINO, an OpenVINO IR on OpenVINO twice (the default
precision hint, which is bf16 on CPUs with AVX-512-BF16/AMX, and the ``f32`` hint), TensorRT
engines on TensorRT when TensorRT and a GPU exist, and the PyTorch checkpoint in eager mode
(``inference_mode``, channels_last) as the reference. Each entry is a :class:`Job`; what cannot
run here is listed in ``JobSet.skipped`` with the reason. No backend is imported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftedge.errors import FtedgeError
from ftedge.runtime.bench_spec import BenchmarkOptions, Job

if TYPE_CHECKING:
    from ftedge.runtime.manifest import DataRef, Manifest

MODEL_SUFFIXES = {".onnx": "onnx", ".xml": "openvino", ".plan": "tensorrt", ".engine": "tensorrt"}


@dataclass
class JobSet:
    """What to run: jobs plus the facts the report needs about the source."""

    jobs: list[Job]
    options: BenchmarkOptions
    source: dict[str, Any]  # bundle dir or model file, labels, reference accuracy
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, backend: str, reason: str) -> None:
        self.skipped.append({"backend": backend, "reason": reason})


def _backends_wanted(options: BenchmarkOptions) -> tuple[str, ...]:
    from ftedge.runtime.backends import BACKENDS, normalize_backend

    if options.backends is None:
        return tuple(BACKENDS)

    return tuple(dict.fromkeys(normalize_backend(b) for b in options.backends))


def _with_variants(job: Job, options: BenchmarkOptions) -> list[Job]:
    """``job`` with its backend's options, plus the OpenVINO f32-hint variant of an IR on CPU.

    An OpenVINO job runs in the precision ``load()`` would use (f32 for INT8 IRs, see
    ``default_precision``); the f32 variant is added where that differs from OpenVINO's choice.
    """
    from ftedge.runtime.runners.openvino import default_precision

    if job.backend == "onnxruntime":
        job.runner_options = {"spin_wait": options.ort_spin}
    default = default_precision(job.precision, job.device) if job.backend == "openvino" else None
    if default is not None:
        job.runner_options = {"precision": default}
    jobs = [job]
    if (
        job.backend == "openvino"
        and job.format == "openvino"
        and options.openvino_f32
        and job.device == "cpu"
        and default is None
    ):
        jobs.append(replace(job, variant="f32", runner_options={"precision": "f32"}))
    return jobs


# -- a bundle ----------------------------------------------------------------------------------
def _test_images(data: DataRef) -> list[str]:
    """The bundle's test-split image files, when they are on this machine."""
    files = data.test_files()
    return [str(p) for p, _ in files] if files else []


def _verified_manifest(bdir: Path) -> Manifest:
    from ftedge.runtime.manifest import Manifest

    manifest = Manifest.load(bdir)
    if manifest.task not in ("classification", "detection"):
        raise FtedgeError(
            f"{bdir} is a {manifest.task} bundle: ftedge benchmark measures classification and "
            "detection bundles"
        )
    bad = manifest.verify_files(bdir)
    if bad:
        raise FtedgeError(f"bundle {bdir} fails its sha256 check for: {', '.join(bad[:5])}")
    return manifest


DETECTION_ACCURACY_NOTE = (
    "each artifact's test-split mAP@[.5:.95] from the manifest (measured by ftedge export "
    "through the runtime's letterbox + NMS path); a detection bundle does not record its test "
    "images, so the benchmark does not re-measure it"
)


def _bundle_source(
    bdir: Path, manifest: Manifest, test_paths: list[str], end_to_end_images: str
) -> dict[str, Any]:
    from ftedge.runtime.tasks import TASKS

    source = {
        "kind": "bundle",
        "path": str(bdir),
        "task": manifest.task,
        "metric": TASKS[manifest.task].metric,
        "labels": list(manifest.labels),
        "reference_accuracy": manifest.reference.accuracy,
        "test_images": len(test_paths),
        "end_to_end_images": end_to_end_images,
    }
    if manifest.task == "detection":
        source["accuracy_note"] = DETECTION_ACCURACY_NOTE
    return source


def _add_artifact_jobs(
    found: JobSet, backend: str, manifest: Manifest, bdir: Path, images: list[str]
) -> None:
    """A job per artifact of the bundle that ``backend`` can run on the requested device."""
    from ftedge.export.verify import output_kind
    from ftedge.runtime.select import candidates

    try:
        cands, reasons = candidates(manifest, backend=backend, device=found.options.device)
    except FtedgeError as e:
        found.skip(backend, str(e))
        return
    for r in reasons:
        found.skip(backend, r)
    for c in cands:
        a = c.artifact
        job = Job(
            artifact=a.name,
            format=a.format,
            precision=a.precision,
            backend=backend,
            device=c.device,
            model_path=str(bdir / a.path),
            input=a.input.to_dict(),
            preprocessing=manifest.preprocessing.to_dict(),
            images=images,
            # An artifact's accuracy belongs to the file; for ONNX on OpenVINO it was
            # measured with onnxruntime, hence the source note.
            accuracy=a.accuracy,
            accuracy_source="manifest" if a.accuracy is not None else None,
            bundle_dir=str(bdir),
            output_kind=output_kind(a),
            task=manifest.task,
            output=manifest.output.to_dict(),
        )
        found.jobs.extend(_with_variants(job, found.options))


def _add_torch_job(
    found: JobSet, manifest: Manifest, bdir: Path, images: list[str], checkpoint: str | None
) -> None:
    """The PyTorch reference (eager, channels_last) from the run checkpoint the bundle records."""
    from ftedge.runtime.backends import get_backend
    from ftedge.runtime.classifier import checkpoint_of

    if manifest.task != "classification":
        found.skip(
            "torch", f"the PyTorch reference runner rebuilds classifiers, not {manifest.task}"
        )
        return
    ckpt = checkpoint or checkpoint_of(manifest, bdir)
    if ckpt is None:
        found.skip(
            "torch", "no run checkpoint recorded in the bundle (pass --torch-checkpoint RUN_DIR)"
        )
        return
    if not get_backend("torch").available():
        found.skip("torch", "torch is not installed")
        return
    reference = manifest.reference.accuracy
    found.jobs.append(
        Job(
            artifact="pytorch",
            format="pytorch",
            precision="fp32",
            backend="torch",
            device=get_backend("torch").device_for(found.options.device) or "cpu",
            model_path=ckpt,
            runner_options={"channels_last": True},
            input=manifest.input.to_dict(),
            preprocessing=manifest.preprocessing.to_dict(),
            images=images,
            accuracy=reference,
            accuracy_source="manifest" if reference is not None else None,
            bundle_dir=str(bdir),
        )
    )


def jobs_for_bundle(
    bundle_dir: str | os.PathLike[str],
    options: BenchmarkOptions,
    *,
    torch_checkpoint: str | None = None,
    images: Sequence[str] | None = None,
) -> JobSet:
    """Every artifact x backend x variant of a bundle that can run here (no backend imported).

    ``images``: end-to-end inputs; the bundle's test split (when on this machine) by default.
    ``torch_checkpoint``: a run directory for the PyTorch reference, if the bundle records none.
    """
    bdir = Path(bundle_dir).resolve()
    manifest = _verified_manifest(bdir)
    # A detection manifest's data refers to no labelled test images: end-to-end mode reads
    # --images or synthetic camera-like frames.
    test_paths = _test_images(manifest.data) if manifest.task == "classification" else []
    e2e_images = list(images) if images else test_paths
    e2e_from = "user images" if images else "test split" if e2e_images else "synthetic"
    if options.frames is not None:
        w, h = options.frames
        e2e_from = f"{w}x{h} BGR frames in memory ({options.preprocessing} preprocessing)"
    found = JobSet([], options, _bundle_source(bdir, manifest, test_paths, e2e_from))
    wanted = _backends_wanted(options)
    for backend in wanted:
        if backend != "torch":
            _add_artifact_jobs(found, backend, manifest, bdir, e2e_images)
    if "torch" in wanted and options.include_torch:
        _add_torch_job(found, manifest, bdir, e2e_images, torch_checkpoint)
    return found


# -- a bare model file -------------------------------------------------------------------------
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


def _model_format(path: Path) -> str:
    if not path.is_file():
        raise FtedgeError(f"model file {path} does not exist")
    fmt = MODEL_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise FtedgeError(f"unknown model type {path.suffix!r}: use .onnx, .xml, .plan or .engine")
    return fmt


def jobs_for_model(
    model: str | os.PathLike[str], options: BenchmarkOptions, *, images: Sequence[str] | None = None
) -> JobSet:
    """Jobs for one bare model file (.onnx, .xml, .plan/.engine) on each backend that reads it."""
    from ftedge.runtime.backends import get_backend

    path = Path(model).resolve()
    fmt = _model_format(path)
    readers = {"onnx": ("onnxruntime", "openvino"), "openvino": ("openvino",)}.get(
        fmt, ("tensorrt",)
    )
    wanted = _backends_wanted(options)
    precision = _guess_precision(path, fmt)
    source = {"kind": "model", "path": str(path), "labels": None, "reference_accuracy": None}
    found = JobSet([], options, source)
    for be in readers:
        if be not in wanted:
            continue
        entry = get_backend(be)
        dev = entry.device_for(options.device)
        if dev is None:
            found.skip(be, f"{be} cannot run on {options.device!r}")
            continue
        if not entry.available():
            found.skip(be, f"{be} is not installed")
            continue
        job = Job(
            f"{fmt}-{precision}", fmt, precision, be, dev, str(path), images=list(images or [])
        )
        found.jobs.extend(_with_variants(job, options))
    return found
