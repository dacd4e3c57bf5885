"""The export pipeline: a run directory (or an existing bundle) -> a verified bundle directory.

    result = export_bundle("runs/latest", ExportOptions(formats=("onnx", "openvino")))

Steps, each a small module recording what it did in the manifest:
  torch -> ONNX FP32 (+ baked preprocessing)  ``onnx_export`` / ``onnx_graph`` (torch only here)
  ONNX INT8 Q/DQ (u8s8, accuracy-gated)         ``onnx_int8`` + ``sensitivity``
  OpenVINO IR FP32 / FP16 / INT8 (NNCF)         ``openvino_ir``
  TensorRT engines or trtexec commands          ``tensorrt`` (another module's step)
  parity + accuracy of every artifact           ``verify``

The bundle is built in a temporary directory beside the destination and renamed into place at
the end, so an interrupted or failed export never leaves a half-written bundle that looks valid.
Starting from an existing bundle needs no torch: the FP32 ONNX, the PyTorch reference logits and
the data lists are in it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from ftedge import __version__
from ftedge.errors import FtedgeError
from ftedge.export.calibration import DEFAULT_CALIB_IMAGES, CalibrationSet, select_calibration
from ftedge.export.verify import (
    PARITY_INPUTS,
    REFERENCE_LOGITS,
    EvalData,
    load_eval_data,
    verify_artifact,
)
from ftedge.files import mkdtemp_beside, point_latest, sha256_file
from ftedge.runtime.backends import format_available, native_backend
from ftedge.runtime.manifest import (
    FORMATS,
    MANIFEST_NAME,
    PRECISIONS,
    Artifact,
    CheckpointRef,
    DataRef,
    InputSpec,
    Manifest,
    Precision,
    Provenance,
    Reference,
)
from ftedge.runtime.preprocess import PreprocessSpec
from ftedge.runtime.tasks import ClassificationOutput, OutputKind

# What each format can produce. ONNX FP16 is not made: on CPU onnxruntime runs FP16 slower than
# FP32, and the GPU paths get FP16 from OpenVINO (FP16 IR) or TensorRT (FP16 engines).
SUPPORTED: dict[str, tuple[str, ...]] = {
    "onnx": ("fp32", "int8"),
    "openvino": ("fp32", "fp16", "int8"),
    "tensorrt": ("fp32", "fp16", "int8"),
}
CALIB_METHODS = ("minmax", "entropy", "percentile")
PARITY_SUBSET = 100  # test crops stored in the bundle for --check on machines without the data
ONNX_FP32 = "onnx/model.fp32.onnx"
ONNX_INT8 = "onnx/model.int8.onnx"


@dataclass(frozen=True)
class ExportOptions:
    """What ``ftedge export`` makes (CLI flags map one to one)."""

    formats: tuple[str, ...] | None = None  # None: every format available on this machine
    precisions: tuple[str, ...] = ("fp32", "int8")
    calib_images: int | None = None  # None: DEFAULT_CALIB_IMAGES or all training images if fewer
    calib_method: str = "minmax"
    batch_range: tuple[int, int, int] = (1, 8, 32)
    bake_preprocess: str | None = None  # rgb | bgr
    softmax: bool = False
    max_accuracy_drop: float = 1.0  # points
    out: str | None = None
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "formats": list(self.formats) if self.formats else None,
            "precisions": list(self.precisions),
            "calib_images": self.calib_images,
            "calib_method": self.calib_method,
            "batch_range": list(self.batch_range),
            "bake_preprocess": self.bake_preprocess,
            "softmax": self.softmax,
            "max_accuracy_drop": self.max_accuracy_drop,
        }


@dataclass
class ExportResult:
    bundle_dir: Path
    manifest: Manifest
    seconds: float
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def available_formats() -> list[str]:
    """Formats this machine can build: onnx (onnx + onnxruntime), openvino, tensorrt."""
    return [f for f in FORMATS if format_available(f)]


def plan(opts: ExportOptions) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Check the options; return (formats, {format: precisions}, notes). Raises FtedgeError."""
    for p in opts.precisions:
        if p not in PRECISIONS:
            raise FtedgeError(f"unknown precision {p!r} (choose from {', '.join(PRECISIONS)})")
    if not opts.precisions:
        raise FtedgeError("--precision is empty")
    if opts.calib_method not in CALIB_METHODS:
        raise FtedgeError(
            f"unknown --calib-method {opts.calib_method!r} (choose from {', '.join(CALIB_METHODS)})"
        )
    if opts.bake_preprocess not in (None, "rgb", "bgr"):
        raise FtedgeError(f"--bake-preprocess must be rgb or bgr, got {opts.bake_preprocess!r}")
    if opts.calib_images is not None and opts.calib_images < 1:
        raise FtedgeError(f"--calib-images must be >= 1, got {opts.calib_images}")
    if opts.max_accuracy_drop != opts.max_accuracy_drop:  # NaN
        raise FtedgeError("--max-accuracy-drop must be a number")
    lo, opt, hi = opts.batch_range
    if not 1 <= lo <= opt <= hi:
        raise FtedgeError(
            f"--batch-range must be min:opt:max with 1 <= min <= opt <= max, got {lo}:{opt}:{hi}"
        )
    notes: list[str] = []
    if opts.formats:
        for f in opts.formats:
            if f not in FORMATS:
                raise FtedgeError(f"unknown format {f!r} (choose from {', '.join(FORMATS)})")
        formats = list(dict.fromkeys(opts.formats))
        explicit = True
    else:
        formats = available_formats()
        explicit = False
        missing = [f for f in FORMATS if f not in formats]
        if missing:
            notes.append(f"not available here, not built: {', '.join(missing)}")
    per: dict[str, list[str]] = {}
    for f in formats:
        want = [p for p in opts.precisions if p in SUPPORTED[f]]
        unsupported = [p for p in opts.precisions if p not in SUPPORTED[f]]
        if unsupported and explicit and len(formats) == 1:
            raise FtedgeError(
                f"{f} does not support {', '.join(unsupported)} (supported: "
                f"{', '.join(SUPPORTED[f])})"
            )
        if unsupported:
            notes.append(
                f"{f}: no {', '.join(unsupported)} artifact (supported: {', '.join(SUPPORTED[f])})"
            )
        per[f] = want
    for p in opts.precisions:
        if not any(p in per[f] for f in formats):
            raise FtedgeError(
                f"precision {p} is not supported by {', '.join(formats)} "
                f"(fp16: openvino or tensorrt)"
            )
    if explicit:
        for f in formats:
            if f != "tensorrt" and not format_available(f):
                extra = native_backend(f).extra
                raise FtedgeError(f"{f} is not installed here: pip install 'ftedge[{extra}]'")
    return formats, per, notes


# -- progress ---------------------------------------------------------------------------------
class _Steps:
    """A tqdm bar over pipeline steps (stderr); the description names the current step."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar: Any = None
        self.seconds: dict[str, float] = {}
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                desc="export",
                unit="step",
                leave=False,
                bar_format="{desc:<40} {n_fmt}/{total_fmt} [{elapsed}]",
            )

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.bar is not None:
            self.bar.set_description_str(name)
        t = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - t, 2)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- sources ----------------------------------------------------------------------------------
def is_bundle(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file()


def _run_source(run: Path) -> tuple[dict[str, Any], Any]:
    """(checkpoint meta, DatasetSplits) of a run directory, with one-line errors."""
    from ftedge.checkpoint import read_meta
    from ftedge.data.folders import DatasetSplits

    if not run.exists():
        raise FtedgeError(f"{run} does not exist (train first: ftedge train)")
    meta = read_meta(run)
    splits_path = run / "splits.json" if run.is_dir() else run.parent / "splits.json"
    if not splits_path.is_file():
        raise FtedgeError(f"{splits_path} is missing: the run's data splits are needed to verify")
    try:
        splits = DatasetSplits.load(splits_path)
    except (OSError, ValueError, KeyError) as e:
        raise FtedgeError(f"unreadable {splits_path}: {e}") from None
    if list(splits.classes) != list(meta.get("classes", [])):
        raise FtedgeError(f"{splits_path} classes do not match the checkpoint's classes")
    return meta, splits


def default_destination(source: Path, source_is_bundle: bool) -> Path:
    if source_is_bundle:
        return source
    run = source.resolve()
    if run.is_file():
        run = run.parent
    return Path("bundles") / run.name


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"ftedge": __version__}
    for pkg in ("torch", "onnx", "onnxruntime", "openvino", "nncf"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def _fmt_input(spec: PreprocessSpec) -> InputSpec:
    return InputSpec("input", "float32", "NCHW", (-1, 3, spec.height, spec.width))


# -- the pipeline -----------------------------------------------------------------------------
def export_bundle(
    source: str | Path = "runs/latest", opts: ExportOptions | None = None
) -> ExportResult:
    """Make (or extend) a verified bundle from a run directory or an existing bundle."""
    opts = opts or ExportOptions()
    start = time.perf_counter()
    source = Path(source).expanduser()
    formats, per, notes = plan(opts)
    src_is_bundle = is_bundle(source)
    if not src_is_bundle and source.is_dir() and not (source / "best.json").is_file():
        raise FtedgeError(
            f"{source} is neither a run directory (no best.json: train first) nor a bundle "
            "(no manifest.json)"
        )
    meta = splits = None
    if not src_is_bundle:
        meta, splits = _run_source(source)  # fails early, before anything is written
    dest = Path(opts.out).expanduser() if opts.out else default_destination(source, src_is_bundle)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = mkdtemp_beside(dest, prefix=f".{dest.name}.tmp-")
    steps = _Steps(2 + sum(len(v) for v in per.values()), opts.progress)
    try:
        if src_is_bundle:
            shutil.copytree(
                source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*.tmp")
            )
            manifest = Manifest.load(tmp)
            with steps.step("load test data"):
                data = load_eval_data(tmp, manifest, allow_subset=True)
            fp32 = manifest.find("onnx", "fp32")
            if fp32 is None or fp32.status != "ok":
                raise FtedgeError(f"bundle {source} has no verified FP32 ONNX to export from")
            calib_pool = manifest.data.train or manifest.data.calibration
            calib_samples = _calibration_samples(list(calib_pool), opts)
            manifest = replace(
                manifest, data=replace(manifest.data, calibration=tuple(calib_samples))
            )
        else:
            assert meta is not None and splits is not None
            with steps.step("torch reference + ONNX FP32"):
                manifest, data = _from_run(source, tmp, meta, splits, opts)
            fp32 = manifest.find("onnx", "fp32")
            assert fp32 is not None
        export_record: dict[str, Any] = {
            "at": _now(),
            "options": opts.to_dict(),
            "versions": _versions(),
            "source": str(source),
        }
        prov = manifest.provenance
        manifest = replace(
            manifest, provenance=replace(prov, exports=(*prov.exports, export_record))
        )
        with steps.step("verify ONNX FP32"):
            manifest = _verify_base(tmp, manifest, data, opts)
            fp32 = manifest.find("onnx", "fp32")
            assert fp32 is not None
        need_calib = any("int8" in per[f] for f in formats if f != "tensorrt")
        calib = None
        if need_calib:
            calib = CalibrationSet.from_samples(
                str(manifest.data.root), list(manifest.data.calibration), manifest.spec
            )
        for f in formats:
            for p in per[f]:
                if f == "onnx" and p == "fp32":
                    continue
                if f == "tensorrt":
                    continue
                with steps.step(f"{f} {p}"):
                    t = time.perf_counter()
                    if f == "onnx":
                        art = _onnx_int8(tmp, manifest, fp32, calib, data, opts)
                    else:
                        art = _openvino(tmp, manifest, fp32, p, calib, data, opts)
                    art.details["export_seconds"] = round(time.perf_counter() - t, 2)
                    manifest = manifest.with_artifact(art)
        if "tensorrt" in formats and per["tensorrt"]:
            with steps.step("tensorrt"):
                manifest = _tensorrt(tmp, manifest, per["tensorrt"], data, opts, notes)
        export_record["step_seconds"] = steps.seconds
        export_record["seconds"] = round(time.perf_counter() - start, 2)
        manifest.save(tmp)
        _swap_into_place(tmp, dest)
        if not opts.out and not src_is_bundle:
            point_latest(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        steps.close()
    failed = [a.name for a in manifest.artifacts if a.status == "failed"]
    return ExportResult(dest, manifest, time.perf_counter() - start, failed, notes)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _calibration_samples(train: list[Any], opts: ExportOptions) -> list[tuple[str, int]]:
    pool = [(str(p), int(y)) for p, y in train]
    if not pool:
        raise FtedgeError("no training images recorded for calibration (the train split is empty)")
    n = opts.calib_images if opts.calib_images is not None else min(DEFAULT_CALIB_IMAGES, len(pool))
    return select_calibration(pool, n)


def _from_run(
    run: Path, tmp: Path, meta: dict[str, Any], splits: Any, opts: ExportOptions
) -> tuple[Manifest, EvalData]:
    """Load the checkpoint (torch), store the reference, export ONNX FP32 (+ baked)."""
    from ftedge.checkpoint import load_checkpoint
    from ftedge.export import onnx_export, onnx_graph
    from ftedge.export.calibration import load_crops
    from ftedge.runtime.preprocess import normalize

    spec = PreprocessSpec.from_dict(meta["preprocessing"])
    labels = [str(c) for c in meta["classes"]]
    test = [(s.path, s.label) for s in splits.test]
    train = [(s.path, s.label) for s in splits.train]
    if not test:
        raise FtedgeError("the run's test split is empty: nothing to verify the export on")
    calib_samples = _calibration_samples(train, opts)
    loaded = load_checkpoint(run)
    crops = load_crops(splits.root, test, spec)
    y = np.array([lbl for _, lbl in test])
    images = normalize(crops, spec)
    ref = onnx_export.reference_logits(loaded.model, images)
    np.save(tmp / REFERENCE_LOGITS, ref)
    k = min(PARITY_SUBSET, len(test))
    np.savez_compressed(tmp / PARITY_INPUTS, crops=crops[:k], labels=y[:k])
    ref_acc = float((ref.argmax(1) == y).mean())
    provenance = Provenance(
        checkpoint=CheckpointRef(str(loaded.path), meta.get("weights_sha256"), meta.get("epoch")),
        record=_provenance_record(run, meta),
    )
    out_kind: OutputKind = "probabilities" if opts.softmax else "logits"
    out_name = onnx_export.PROBS_NAME if opts.softmax else onnx_export.LOGITS_NAME
    manifest = Manifest(
        labels=tuple(labels),
        preprocessing=spec,
        input=_fmt_input(spec),
        output=ClassificationOutput(out_name, out_kind),
        provenance=provenance,
        data=DataRef(splits.root, tuple(test), tuple(calib_samples), tuple(train)),
        reference=Reference(
            accuracy=ref_acc,
            logits=REFERENCE_LOGITS,
            logits_sha256=sha256_file(tmp / REFERENCE_LOGITS),
            parity_inputs=PARITY_INPUTS,
            parity_count=k,
            parity_inputs_sha256=sha256_file(tmp / PARITY_INPUTS),
        ),
    )
    (tmp / "onnx").mkdir()
    t = time.perf_counter()
    path = onnx_export.export_onnx(
        loaded.model, tmp / ONNX_FP32, spec.input_size, softmax=opts.softmax
    )
    seconds = time.perf_counter() - t
    props = {
        "ftedge.labels": labels,
        "ftedge.preprocessing": spec.to_dict(),
        "ftedge.input": manifest.input.to_dict(),
        "ftedge.output": manifest.output.to_dict(),
        "ftedge.provenance": provenance.to_dict(),
    }
    onnx_graph.set_metadata(path, props)
    onnx_graph.check_model(path)
    art = Artifact(
        "onnx",
        "fp32",
        ONNX_FP32,
        input=manifest.input,
        output=manifest.output,
        details={
            "opset": onnx_export.OPSET,
            "exporter": "torch.onnx dynamo",
            "export_seconds": round(seconds, 2),
            "checker": "passed",
        },
    )
    manifest = manifest.with_artifact(art.with_files(tmp, [path]))
    if opts.bake_preprocess:
        manifest = manifest.with_artifact(_baked_onnx(tmp, manifest, path, opts.bake_preprocess))
    return manifest, EvalData(crops, y, ref, "dataset")


def _provenance_record(run: Path, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "ftedge_version": __version__,
        "created": _now(),
        "run_dir": str(run.resolve()),
        "backbone": meta.get("backbone"),
        "head": meta.get("head"),
        "config_sha256": meta.get("config_sha256"),
        "val_accuracy": meta.get("val_accuracy"),
        "test_accuracy": meta.get("test_accuracy"),
    }


def _baked_onnx(tmp: Path, manifest: Manifest, path: Path, color: str) -> Artifact:
    """The FP32 ONNX with the normalisation baked in: uint8 NHWC crops in ``color`` order."""
    from ftedge.export import onnx_graph

    spec = manifest.spec
    baked_rel = f"onnx/model.fp32.uint8-{color}.onnx"
    baked = onnx_graph.bake_preprocess(path, tmp / baked_rel, spec, color)
    baked_input = InputSpec(
        "input",
        "uint8",
        "NHWC",
        (-1, spec.height, spec.width, 3),
        "bgr" if color == "bgr" else "rgb",
    )
    onnx_graph.set_metadata(baked, {"ftedge.input": baked_input.to_dict()})
    onnx_graph.check_model(baked)
    b = Artifact(
        "onnx",
        "fp32",
        baked_rel,
        input=baked_input,
        output=manifest.output,
        details={
            "baked_preprocess": color,
            "checker": "passed",
            "note": "feed uint8 crops at network resolution (resize + centre "
            "crop still happen outside)",
        },
    )
    return b.with_files(tmp, [baked])


def _verify_base(tmp: Path, manifest: Manifest, data: EvalData, opts: ExportOptions) -> Manifest:
    for a in manifest.artifacts:
        if a.format == "onnx" and a.precision == "fp32":
            a = verify_artifact(tmp, manifest, a, data)
            a.details["verified_on"] = data.source
            if a.status == "failed":
                raise FtedgeError(f"FP32 ONNX does not match PyTorch: {a.message}")
            manifest = manifest.with_artifact(a)
    return manifest


def _onnx_int8(
    tmp: Path, manifest: Manifest, fp32: Artifact, calib: Any, data: EvalData, opts: ExportOptions
) -> Artifact:
    """u8s8 Q/DQ INT8; over budget -> keep the most sensitive nodes float (fewest that fit)."""
    from ftedge.export.onnx_int8 import TARGET_TYPES

    act, sym = TARGET_TYPES["cpu"]
    art = Artifact("onnx", "int8", ONNX_INT8, input=fp32.input, output=fp32.output)
    art.details.update(
        target="cpu (onnxruntime)",
        format="QDQ",
        activation_type=act,
        activation_symmetric=sym,
        weight_type="int8",
        weight_symmetric=True,
        per_channel=True,
        calib_method=opts.calib_method,
        calibration_images=len(calib),
        why_types="uint8 activations + int8 weights (u8s8): the fast integer kernels on x86 "
        "CPUs; s8s8 measured slower than FP32 here",
    )

    cache_dir = Path(tempfile.mkdtemp(prefix="ftedge-calib-"))
    try:
        return _onnx_int8_search(tmp, manifest, fp32, calib, data, opts, art, cache_dir / "r.json")
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def _onnx_int8_search(
    tmp: Path,
    manifest: Manifest,
    fp32: Artifact,
    calib: Any,
    data: EvalData,
    opts: ExportOptions,
    art: Artifact,
    cache: Path,
) -> Artifact:
    from ftedge.export.onnx_int8 import TARGET_TYPES, quantize_qdq
    from ftedge.export.sensitivity import fallback_order, rank_sensitive_nodes

    act, sym = TARGET_TYPES["cpu"]
    out = tmp / ONNX_INT8
    src = tmp / fp32.path

    def attempt(exclude: list[str]) -> Artifact:
        nonlocal art  # each attempt's verified artifact replaces the previous one
        quantize_qdq(
            src,
            calib,
            out,
            activation_type=act,
            symmetric_activations=sym,
            per_channel=True,
            method=opts.calib_method,  # type: ignore[arg-type]  # checked in plan()
            exclude_nodes=exclude,
            calibration_cache=cache,
        )
        art = art.with_files(tmp, [out])
        art.details["excluded_nodes"] = list(exclude)
        art = verify_artifact(tmp, manifest, art, data, max_accuracy_drop=opts.max_accuracy_drop)
        return art

    attempt([])
    first_drop = art.accuracy_drop
    if art.status == "ok" or art.accuracy_drop is None:
        return art
    # Over budget: rank nodes by the quantization error they add, keep the fewest in float.
    ranked = rank_sensitive_nodes(src, out, list(calib.batches(16))[:4], input_name=fp32.input.name)
    names = fallback_order(src, ranked)
    tried: list[dict[str, Any]] = [{"kept_float": 0, "accuracy_drop": first_drop}]

    def run_k(k: int) -> bool:
        attempt(names[:k])
        tried.append({"kept_float": k, "accuracy_drop": art.accuracy_drop})
        return art.status == "ok"

    lo, hi = 0, None
    # Every candidate in float first: if even that misses the budget, no subset can make it.
    if names and run_k(len(names)):
        hi, k = len(names), 1
        while k < hi:  # doubling: 1, 2, 4, ... kept in float
            if run_k(k):
                hi = k
                break
            lo, k = k, k * 2
    if hi is not None:
        # Bisect between the last failing and the first passing count: the fewest that fit.
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if run_k(mid):
                hi = mid
            else:
                lo = mid
        if art.details["excluded_nodes"] != names[:hi]:
            run_k(hi)
    art.details["sensitivity"] = {
        "method": "stem + classifier first, then per-node added noise-to-signal ratio "
        "(FP32 vs Q/DQ on 64 calibration images)",
        "order": names[:20],
        "added_nsr": {n: round(v, 6) for n, v in ranked[:20]},
        "attempts": tried,
    }
    if art.status != "ok":
        art = replace(
            art,
            message=f"onnx-int8: accuracy drop {art.accuracy_drop:.2f} pt stays over the "
            f"{opts.max_accuracy_drop:.2f} pt budget even with {len(names)} "
            f"sensitive nodes kept in float",
        )
    return art


def _openvino(
    tmp: Path,
    manifest: Manifest,
    fp32: Artifact,
    precision: str,
    calib: Any,
    data: EvalData,
    opts: ExportOptions,
) -> Artifact:
    from ftedge.export import openvino_ir

    model = openvino_ir.convert_onnx(tmp / fp32.path, manifest)
    rel = f"{openvino_ir.SUBDIR}/{precision}/model.xml"
    prec = cast(Precision, precision)  # checked by plan()
    art = Artifact("openvino", prec, rel, input=fp32.input, output=fp32.output)
    xml = tmp / rel
    if precision == "int8":
        q, details = openvino_ir.quantize_int8(model, calib)
        art.details.update(details)
        openvino_ir.save(q, xml, fp16=False)
        art = art.with_files(tmp, [xml, xml.with_suffix(".bin")])
        art = verify_artifact(tmp, manifest, art, data, max_accuracy_drop=opts.max_accuracy_drop)
        attempts: list[dict[str, Any]] = [{"kept_float": [], "accuracy_drop": art.accuracy_drop}]
        if art.status == "failed":
            # 1) keep float what the ONNX INT8 gate needed (same graph, same node names), or the
            #    stem + classifier; 2) NNCF accuracy control (slow: ranks every quantizer).
            onnx_int8 = manifest.find("onnx", "int8")
            keep = list((onnx_int8.details.get("excluded_nodes") or []) if onnx_int8 else [])
            if not keep:
                from ftedge.export.sensitivity import fallback_order

                keep = fallback_order(tmp / fp32.path, [])[:2] or []
            if keep:
                q, details = openvino_ir.quantize_int8(model, calib, keep_float=keep)
                art.details.update(details)
                openvino_ir.save(q, xml, fp16=False)
                art = art.with_files(tmp, [xml, xml.with_suffix(".bin")])
                art = verify_artifact(
                    tmp, manifest, art, data, max_accuracy_drop=opts.max_accuracy_drop
                )
                attempts.append({"kept_float": keep, "accuracy_drop": art.accuracy_drop})
        if art.status == "failed" and data.source == "dataset":
            q, details = openvino_ir.quantize_int8_accuracy_control(
                model, calib, data.images(manifest), data.labels, opts.max_accuracy_drop
            )
            art.details.update(details)
            openvino_ir.save(q, xml, fp16=False)
            art = art.with_files(tmp, [xml, xml.with_suffix(".bin")])
            art = verify_artifact(
                tmp, manifest, art, data, max_accuracy_drop=opts.max_accuracy_drop
            )
            attempts.append(
                {"kept_float": "nncf accuracy control", "accuracy_drop": art.accuracy_drop}
            )
        art.details["attempts"] = attempts
        art.details["float_compute_ops"] = openvino_ir.float_ops(xml)
    else:
        openvino_ir.save(model, xml, fp16=precision == "fp16")
        art.details["weights"] = precision
        art = art.with_files(tmp, [xml, xml.with_suffix(".bin")])
        art = verify_artifact(tmp, manifest, art, data, max_accuracy_drop=opts.max_accuracy_drop)
    art.details["verified_on"] = data.source
    return art


def _tensorrt(
    tmp: Path,
    manifest: Manifest,
    precisions: list[str],
    data: EvalData,
    opts: ExportOptions,
    notes: list[str],
) -> Manifest:
    from ftedge.export.tensorrt import export_tensorrt

    arts = export_tensorrt(tmp, manifest, precisions, opts.batch_range)
    for a in arts:
        if a.status == "ok":
            try:
                a = verify_artifact(
                    tmp, manifest, a, data, max_accuracy_drop=opts.max_accuracy_drop
                )
            except FtedgeError as e:
                a = replace(a, status="failed", message=str(e))
        elif a.status == "skipped" and a.message and a.message not in notes:
            notes.append(a.message)
        manifest = manifest.with_artifact(a)
    return manifest


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Atomically replace ``dest`` with ``tmp`` (the old bundle is removed after the swap)."""
    if dest.exists() or dest.is_symlink():
        if dest.is_symlink() or dest.is_file():
            raise FtedgeError(f"--out {dest} exists and is not a bundle directory")
        if not is_bundle(dest) and any(dest.iterdir()):
            raise FtedgeError(
                f"--out {dest} exists and is not an ftedge bundle: refusing to replace it"
            )
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
        os.replace(dest, old / "b")
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def artifact_size(bundle_dir: Path, artifact: Artifact) -> int | None:
    """Bytes of every file of the artifact present in the bundle (None when none is)."""
    sizes = [(bundle_dir / f).stat().st_size for f in artifact.files if (bundle_dir / f).is_file()]
    return sum(sizes) if sizes else None


def summary_rows(manifest: Manifest, bundle_dir: Path | None = None) -> list[dict[str, Any]]:
    """One row per artifact for the table / --json."""
    rows = []
    for a in manifest.artifacts:
        rows.append(
            {
                "artifact": a.name,
                "format": a.format,
                "precision": a.precision,
                "status": a.status,
                "path": a.path,
                "accuracy": a.accuracy,
                "accuracy_drop": a.accuracy_drop,
                "max_abs_diff": a.parity.max_abs_diff if a.parity else None,
                "top1_agreement": a.parity.top1_agreement if a.parity else None,
                "execution_precision": a.parity.execution_precision if a.parity else None,
                "size_bytes": artifact_size(bundle_dir, a) if bundle_dir else None,
                "export_seconds": a.details.get("export_seconds"),
                "message": a.message,
            }
        )
    return rows


def format_table(manifest: Manifest, bundle_dir: Path | None = None) -> str:
    """The printed summary table."""
    head = f"{'artifact':<22}{'status':<9}{'acc':>7}{'drop pt':>9}{'max|diff|':>11}{'top1 agr':>10}{'size MB':>9}{'sec':>7}"
    lines = [head, "-" * len(head)]
    ref = manifest.reference.accuracy
    if ref is not None:
        lines.append(
            f"{'pytorch (reference)':<22}{'ok':<9}{ref * 100:>6.2f}%{'':>9}{'':>11}{'':>10}{'':>9}{'':>7}"
        )
    for a in manifest.artifacts:
        nbytes = artifact_size(bundle_dir, a) if bundle_dir is not None else None
        size = f"{nbytes / 1e6:.2f}" if nbytes is not None else ""
        acc = f"{a.accuracy * 100:.2f}%" if a.accuracy is not None else "-"
        drop = f"{a.accuracy_drop:+.2f}" if a.accuracy_drop is not None else "-"
        diff = a.parity.max_abs_diff if a.parity else None
        agr = a.parity.top1_agreement if a.parity else None
        sec = a.details.get("export_seconds")
        lines.append(
            f"{a.name:<22}{a.status:<9}{acc:>7}{drop:>9}"
            f"{(f'{diff:.1e}' if diff is not None else '-'):>11}"
            f"{(f'{agr * 100:.1f}%' if agr is not None else '-'):>10}{size:>9}"
            f"{(f'{sec:.1f}' if sec is not None else '-'):>7}"
        )
    return "\n".join(lines)
