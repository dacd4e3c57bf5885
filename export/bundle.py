"""The export pipeline: a run directory (or an existing bundle) -> a verified bundle directory.

    result = export_bundle("runs/latest", formats=("onnx", "openvino"), precisions=("fp32", "int8"))
    result.bundle_dir, result.statuses, result.failed

Modules, each doing one thing and recording what it did in the manifest:
  choosing what to make                         ``options`` (``requested_artifacts``)
  reading the run (checkpoint, splits, ref.)    ``run_source`` (torch for the reference only)
  torch -> ONNX FP32 (+ baked preprocessing)    ``onnx_fp32`` over ``onnx_export`` / ``onnx_graph``
  ONNX INT8 Q/DQ (u8s8, accuracy-gated)         ``onnx_int8_search`` over ``onnx_int8`` + ``sensitivity``
  OpenVINO IR FP32 / FP16 / INT8 (NNCF)         ``openvino_artifacts`` over ``openvino_ir``
  the uint8-input twin of the INT8 IR           ``openvino_baked``
  TensorRT engines or trtexec commands          ``trt_step`` (``ftedge.export.tensorrt``)
  parity + accuracy of every artifact           ``verify``
  staging and the atomic swap into place        ``staging``
  the summary table / JSON rows                 ``summary``

The bundle is built in a temporary directory beside the destination and renamed into place at
the end, so an interrupted or failed export never leaves a half-written bundle that looks valid.
Starting from an existing bundle needs no torch: the FP32 ONNX, the PyTorch reference logits and
the data lists are in it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from ftedge import __version__
from ftedge.errors import FtedgeError, raise_if_terminated
from ftedge.export.calibration import CalibrationSet
from ftedge.export.fast_path import with_fast_path
from ftedge.export.onnx_fp32 import ONNX_FP32, add_fp32_onnx, verify_fp32
from ftedge.export.onnx_int8_search import ONNX_INT8, onnx_int8
from ftedge.export.openvino_artifacts import openvino_artifact
from ftedge.export.openvino_baked import baked_twin
from ftedge.export.options import (
    CALIB_METHODS,
    SUPPORTED,
    BakeColor,
    CalibMethod,
    ExportOptions,
    RequestedArtifacts,
    available_formats,
    requested_artifacts,
)
from ftedge.export.progress import StepProgress
from ftedge.export.run_source import (
    PARITY_SUBSET,
    RunSource,
    calibration_samples,
    default_destination,
    is_bundle,
    read_source,
    run_data,
    run_manifest,
    save_reference,
    torch_reference,
    utc_now,
)
from ftedge.export.staging import (
    check_destination,
    copy_bundle,
    staging_dir,
    swap_into_place,
)
from ftedge.export.summary import artifact_size, format_table, summary_rows
from ftedge.export.verify import EvalData, load_eval_data, verify_artifact
from ftedge.files import point_latest
from ftedge.runtime.manifest import Artifact, Manifest, Status

__all__ = [
    "CALIB_METHODS",
    "ONNX_FP32",
    "ONNX_INT8",
    "PARITY_SUBSET",
    "SUPPORTED",
    "ExportOptions",
    "ExportResult",
    "RequestedArtifacts",
    "artifact_size",
    "available_formats",
    "default_destination",
    "export_bundle",
    "format_table",
    "is_bundle",
    "options_from_keywords",
    "requested_artifacts",
    "summary_rows",
]


@dataclass(frozen=True)
class ExportResult:
    """What an export made: where, its manifest, and which artifacts failed.

    A failed artifact (over the accuracy budget, or a TensorRT build that broke) does not stop the
    export: the bundle is written with that artifact marked ``failed``, and ``failed`` names it.
    """

    bundle_dir: Path
    manifest: Manifest
    seconds: float
    failed: tuple[str, ...] = ()  # artifact names, e.g. "openvino-int8"
    notes: tuple[str, ...] = ()  # what was asked for but not made, and why

    @property
    def statuses(self) -> dict[str, Status]:
        """Artifact name -> ``ok`` | ``failed`` | ``skipped`` (TensorRT without TensorRT here)."""
        return {a.name: a.status for a in self.manifest.artifacts}

    @property
    def ok(self) -> bool:
        """True when no artifact failed."""
        return not self.failed


def export_bundle(
    source: str | Path = "runs/latest",
    options: ExportOptions | None = None,
    *,
    formats: str | Sequence[str] | None = None,
    precisions: str | Sequence[str] = ("fp32", "int8"),
    calib_images: int | None = None,
    calib_method: CalibMethod = "minmax",
    batch_range: Sequence[int] = (1, 8, 32),
    bake_preprocess: BakeColor | None = None,
    softmax: bool = False,
    max_accuracy_drop: float = 1.0,
    min_agreement: float = 0.95,
    out: str | Path | None = None,
    progress: bool = True,
) -> ExportResult:
    """Make (or extend) a verified bundle from a run directory or an existing bundle.

    ``ftedge export`` calls this. Options are keywords (or one ``ExportOptions`` as ``options``,
    then no other option may be given); lists may also be comma-separated strings:

    - ``source`` ("runs/latest"): a run directory (or its checkpoint) or an existing bundle,
      which is then extended in place without torch.
    - ``formats`` (None): any of "onnx", "openvino", "tensorrt"; None: every format available on
      this machine (the others are listed in ``notes``). TensorRT without TensorRT here is
      ``skipped``, with the trtexec commands to build it on the device.
    - ``precisions`` (("fp32", "int8")): any of "fp32", "fp16", "int8"; a format that cannot make
      one gets a note (an error when it is the only format asked for).
    - ``calib_images`` (None): INT8 calibration images from the train split; None: 300, or all of
      them if fewer.
    - ``calib_method`` ("minmax"): "minmax", "entropy" or "percentile" (ONNX INT8 calibration).
    - ``batch_range`` ((1, 8, 32)): TensorRT profile batch sizes (min, opt, max).
    - ``bake_preprocess`` (None): "rgb" or "bgr" adds an FP32 ONNX taking uint8 NHWC crops with
      the normalisation inside.
    - ``softmax`` (False): the models output probabilities instead of logits.
    - ``max_accuracy_drop`` (1.0): INT8 accuracy budget in points against PyTorch on the test
      split; over it the artifact is re-made with sensitive layers in float, else ``failed``.
    - ``min_agreement`` (0.95): INT8/FP16 top-1 agreement with the PyTorch FP32 reference on the
      test split, at least; part of the same gate as ``max_accuracy_drop``.
    - ``out`` (None): the bundle directory; None: ``bundles/<run name>`` (then ``bundles/latest``
      points at it), or the source bundle itself.
    - ``progress`` (True): a progress bar on stderr.

    Returns an ``ExportResult`` (bundle directory, manifest, per-artifact statuses, failed
    artifacts, notes). Raises ``FtedgeError`` (one line) for anything to fix before exporting: an
    unknown format or precision, a missing run or bundle, a format not installed here, an FP32
    ONNX that does not match PyTorch. Nothing is left half-written.
    """
    keywords = {
        "formats": formats,
        "precisions": precisions,
        "calib_images": calib_images,
        "calib_method": calib_method,
        "batch_range": batch_range,
        "bake_preprocess": bake_preprocess,
        "softmax": softmax,
        "max_accuracy_drop": max_accuracy_drop,
        "min_agreement": min_agreement,
        "out": out,
        "progress": progress,
    }
    opts = _resolve_options(options, keywords)
    return _export(Path(source).expanduser(), opts)


def _resolve_options(options: ExportOptions | None, keywords: dict[str, Any]) -> ExportOptions:
    """``options`` as given, or the keyword options as an ExportOptions (never both)."""
    opts = options_from_keywords(**keywords)
    if options is None:
        return opts
    given = [f.name for f in dataclasses.fields(opts) if getattr(opts, f.name) != f.default]
    if given:
        raise TypeError(
            f"export_bundle: pass options or keyword options, not both ({', '.join(given)})"
        )
    return options


def options_from_keywords(
    *,
    formats: str | Sequence[str] | None = None,
    precisions: str | Sequence[str] = ("fp32", "int8"),
    batch_range: Sequence[int] = (1, 8, 32),
    out: str | Path | None = None,
    **rest: Any,
) -> ExportOptions:
    """An ExportOptions from friendlier values: "onnx,openvino" strings, lists, a Path."""
    if len(batch_range) != 3:
        raise FtedgeError(f"batch_range must be (min, opt, max), got {tuple(batch_range)}")
    lo, opt, hi = (int(b) for b in batch_range)
    return ExportOptions(
        formats=_names(formats) or None,
        precisions=_names(precisions),
        batch_range=(lo, opt, hi),
        out=str(out) if out is not None else None,
        **rest,
    )


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(v).strip() for v in items if str(v).strip())


# -- the pipeline -----------------------------------------------------------------------------
def _export(source: Path, opts: ExportOptions) -> ExportResult:
    from ftedge.export.detection import export_detection, is_detection_run

    if is_detection_run(source):
        return cast(ExportResult, export_detection(source, opts))
    start = time.perf_counter()
    request = requested_artifacts(opts)
    run = read_source(source)  # fails early, before anything is written
    dest = _destination(source, run, opts)
    progress = StepProgress(4 + request.count, opts.progress)
    notes = list(request.notes)
    with contextlib.closing(progress), staging_dir(dest) as tmp:
        manifest, data = _start(source, run, tmp, opts, progress)
        manifest = _with_export_record(manifest, opts, source)
        with progress.step("verify ONNX FP32"):
            manifest = verify_fp32(tmp, manifest, data)
        with progress.step("fast-path check"):
            manifest = with_fast_path(tmp, manifest, data)
        manifest = _make_requested(tmp, manifest, data, request, opts, progress, notes)
        manifest = _finish_export_record(manifest, progress.seconds, time.perf_counter() - start)
        manifest.save(tmp)
        raise_if_terminated()  # the last point where a terminated export leaves nothing
        swap_into_place(tmp, dest)
        if not opts.out and run is not None:
            point_latest(dest)
    failed = tuple(a.name for a in manifest.artifacts if a.status == "failed")
    return ExportResult(dest, manifest, time.perf_counter() - start, failed, tuple(notes))


def _destination(source: Path, run: RunSource | None, opts: ExportOptions) -> Path:
    """Where the bundle goes; extending a bundle through a link (``bundles/latest``) writes the
    bundle it points at and keeps the link. Stale temporary folders of killed exports beside it
    (and calibration caches) are removed first."""
    import tempfile

    from ftedge.export.run_source import is_bundle
    from ftedge.files import sweep_stale_temps

    dest = Path(opts.out).expanduser() if opts.out else default_destination(source, run is None)
    if run is None and dest.is_symlink() and is_bundle(dest):
        dest = dest.resolve()
    check_destination(dest)  # before any work, not after it
    sweep_stale_temps(dest.parent)
    sweep_stale_temps(tempfile.gettempdir())
    return dest


def _start(
    source: Path, run: RunSource | None, tmp: Path, opts: ExportOptions, progress: StepProgress
) -> tuple[Manifest, EvalData]:
    """The staged bundle's manifest (with its FP32 ONNX) and the data to verify on."""
    if run is None:
        return _from_bundle(source, tmp, opts, progress)
    return _from_run(run, tmp, opts, progress)


def _from_bundle(
    source: Path, tmp: Path, opts: ExportOptions, progress: StepProgress
) -> tuple[Manifest, EvalData]:
    """Copy an existing bundle (torch-free): its FP32 ONNX and reference are the starting point."""
    copy_bundle(source, tmp)
    manifest = Manifest.load(tmp)
    with progress.step("load test data"):
        data = load_eval_data(tmp, manifest, allow_subset=True)
    fp32 = manifest.find("onnx", "fp32")
    if fp32 is None or fp32.status != "ok":
        raise FtedgeError(f"bundle {source} has no verified FP32 ONNX to export from")
    pool = manifest.data.train or manifest.data.calibration
    calib = calibration_samples(list(pool), opts.calib_images)
    manifest = replace(manifest, data=replace(manifest.data, calibration=tuple(calib)))
    return manifest, data


def _from_run(
    run: RunSource, tmp: Path, opts: ExportOptions, progress: StepProgress
) -> tuple[Manifest, EvalData]:
    """Load the checkpoint (torch), store the reference, export ONNX FP32 (+ baked)."""
    with progress.step("reference logits"):
        data = run_data(run, opts)
        ref = torch_reference(run, data)
        manifest = run_manifest(run, data, ref, save_reference(tmp, ref), opts.softmax)
    with progress.step("ONNX export"):
        manifest = add_fp32_onnx(
            tmp, manifest, ref.model, softmax=opts.softmax, bake=opts.bake_preprocess
        )
    return manifest, ref.eval_data()


def _make_requested(
    tmp: Path,
    manifest: Manifest,
    data: EvalData,
    request: RequestedArtifacts,
    opts: ExportOptions,
    progress: StepProgress,
    notes: list[str],
) -> Manifest:
    """Every requested artifact beyond the FP32 ONNX, in order, TensorRT last."""
    fp32 = manifest.find("onnx", "fp32")
    assert fp32 is not None
    calib = None
    if request.needs_calibration:
        calib = CalibrationSet.from_samples(
            str(manifest.data.root), list(manifest.data.calibration), manifest.spec
        )
    for f in request.formats:
        for p in request.precisions[f]:
            if f == "tensorrt" or (f == "onnx" and p == "fp32"):
                continue
            with progress.step(f"{f} {p}"):
                t = time.perf_counter()
                if f == "onnx":
                    art = onnx_int8(tmp, manifest, fp32, calib, data, opts)
                else:
                    art = openvino_artifact(tmp, manifest, fp32, p, calib, data, opts)
                art.details["export_seconds"] = round(time.perf_counter() - t, 2)
                manifest = manifest.with_artifact(art)
                if f == "openvino" and p == "int8" and art.status == "ok":
                    manifest = _with_baked_twin(tmp, manifest, art, data, opts, notes)
    if "tensorrt" in request.formats and request.precisions["tensorrt"]:
        with progress.step("tensorrt"):
            manifest = _tensorrt(tmp, manifest, request.precisions["tensorrt"], data, opts, notes)
    return manifest


def _with_baked_twin(
    tmp: Path,
    manifest: Manifest,
    ir: Artifact,
    data: EvalData,
    opts: ExportOptions,
    notes: list[str],
) -> Manifest:
    """``manifest`` with the uint8-input twin of the passing IR ``ir`` (the runtime's default)
    when it passes its checks; otherwise its files go and a note says why (the original IR is
    what the runtime then uses, so the export has not failed)."""
    t = time.perf_counter()
    twin = baked_twin(tmp, manifest, ir, data, opts)
    if twin.status != "ok":
        shutil.rmtree((tmp / twin.path).parent, ignore_errors=True)
        notes.append(f"not kept: {twin.message}")
        return manifest
    twin.details["export_seconds"] = round(time.perf_counter() - t, 2)
    return manifest.with_artifact(twin)


def _tensorrt(
    tmp: Path,
    manifest: Manifest,
    precisions: Sequence[str],
    data: EvalData,
    opts: ExportOptions,
    notes: list[str],
) -> Manifest:
    """TensorRT engines, verified where built; a skip's reason becomes a note (once)."""
    from ftedge.export.trt_step import export_tensorrt

    arts = export_tensorrt(tmp, manifest, list(precisions), opts.batch_range)
    for a in arts:
        if a.status == "ok":
            a = _verified_engine(tmp, manifest, a, data, opts)
        elif a.status == "skipped" and a.message and a.message not in notes:
            notes.append(a.message)
        manifest = manifest.with_artifact(a)
    return manifest


def _verified_engine(
    tmp: Path, manifest: Manifest, art: Artifact, data: EvalData, opts: ExportOptions
) -> Artifact:
    try:
        return verify_artifact(
            tmp,
            manifest,
            art,
            data,
            max_accuracy_drop=opts.max_accuracy_drop,
            min_agreement=opts.min_agreement,
        )
    except FtedgeError as e:  # e.g. no GPU to run it: the engine stays, marked failed
        return replace(art, status="failed", message=str(e))


# -- the export record in the manifest's provenance ---------------------------------------------
def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"ftedge": __version__}
    for pkg in ("torch", "onnx", "onnxruntime", "openvino", "nncf"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def _with_export_record(manifest: Manifest, opts: ExportOptions, source: Path) -> Manifest:
    """``manifest`` with this export appended to ``provenance.exports``."""
    record: dict[str, Any] = {
        "at": utc_now(),
        "options": opts.to_dict(),
        "versions": _versions(),
        "source": str(source),
    }
    prov = manifest.provenance
    return replace(manifest, provenance=replace(prov, exports=(*prov.exports, record)))


def _finish_export_record(
    manifest: Manifest, step_seconds: Mapping[str, float], seconds: float
) -> Manifest:
    """The last export record with the time each step and the whole export took."""
    prov = manifest.provenance
    *before, record = prov.exports
    record = {**record, "step_seconds": dict(step_seconds), "seconds": round(seconds, 2)}
    return replace(manifest, provenance=replace(prov, exports=(*before, record)))
