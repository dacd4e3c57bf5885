"""Reading what an export starts from: a training run (checkpoint, splits, PyTorch reference).

A run directory (or its checkpoint file) is read and checked before anything is written; the
PyTorch reference (logits on the whole test split, plus a small parity subset of crops) is stored
in the bundle so that later checks and extensions need neither torch nor the dataset. An existing
bundle is the other kind of source: it already holds all of this (``is_bundle``).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ftedge import __version__
from ftedge.errors import FtedgeError
from ftedge.export.calibration import DEFAULT_CALIB_IMAGES, select_calibration
from ftedge.export.options import ExportOptions
from ftedge.export.verify import PARITY_INPUTS, REFERENCE_LOGITS, EvalData
from ftedge.files import sha256_file
from ftedge.runtime.manifest import (
    MANIFEST_NAME,
    CheckpointRef,
    DataRef,
    InputSpec,
    Manifest,
    Provenance,
    Reference,
)
from ftedge.runtime.preprocess import PreprocessSpec
from ftedge.runtime.tasks import ClassificationOutput, OutputKind

PARITY_SUBSET = 100  # test crops stored in the bundle for --check on machines without the data
# A run's stored test logits are reused when a fresh PyTorch pass over the first PARITY_SUBSET
# images agrees this closely (a tenth of what an FP32 artifact may differ by).
STORED_MAX_ABS_DIFF = 1e-4
Sample = tuple[str, int]  # (image path relative to the data root, label)


def is_bundle(path: Path) -> bool:
    """Whether ``path`` is a bundle directory (it has a manifest)."""
    return (path / MANIFEST_NAME).is_file()


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunSource:
    """A training run, read and checked: its checkpoint metadata and data splits."""

    path: Path
    meta: dict[str, Any]
    splits: Any  # ftedge.data.folders.DatasetSplits


def read_source(source: Path) -> RunSource | None:
    """The run at ``source``, or None when it is a bundle; FtedgeError for anything else."""
    if is_bundle(source):
        return None
    if source.is_dir() and not (source / "best.json").is_file():
        raise FtedgeError(
            f"{source} is neither a run directory (no best.json: train first) nor a bundle "
            "(no manifest.json)"
        )
    return read_run(source)


def read_run(run: Path) -> RunSource:
    """Checkpoint metadata and data splits of a run directory, with one-line errors."""
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
    return RunSource(run, meta, splits)


def default_destination(source: Path, source_is_bundle: bool) -> Path:
    """Where the bundle goes without --out: the bundle itself, or ``bundles/<run name>``."""
    if source_is_bundle:
        return source
    run = source.resolve()
    if run.is_file():
        run = run.parent
    return Path("bundles") / run.name


def calibration_samples(train: list[Any], calib_images: int | None) -> list[Sample]:
    """The calibration images: ``calib_images`` of the training split (default: up to 300)."""
    pool = [(str(p), int(y)) for p, y in train]
    if not pool:
        raise FtedgeError("no training images recorded for calibration (the train split is empty)")
    n = calib_images if calib_images is not None else min(DEFAULT_CALIB_IMAGES, len(pool))
    return select_calibration(pool, n)


# -- what a run gives the bundle -----------------------------------------------------------------
@dataclass(frozen=True)
class RunData:
    """The run's preprocessing, labels and data lists (test: verification, calib: INT8)."""

    spec: PreprocessSpec
    labels: tuple[str, ...]
    test: tuple[Sample, ...]
    train: tuple[Sample, ...]
    calibration: tuple[Sample, ...]


def run_data(run: RunSource, opts: ExportOptions) -> RunData:
    """The data lists of ``run``; FtedgeError when there is nothing to verify or calibrate on."""
    spec = PreprocessSpec.from_dict(run.meta["preprocessing"])
    labels = tuple(str(c) for c in run.meta["classes"])
    test = tuple((s.path, s.label) for s in run.splits.test)
    train = tuple((s.path, s.label) for s in run.splits.train)
    if not test:
        raise FtedgeError("the run's test split is empty: nothing to verify the export on")
    calib = tuple(calibration_samples(list(train), opts.calib_images))
    return RunData(spec, labels, test, train, calib)


@dataclass(frozen=True)
class TorchReference:
    """The PyTorch model and its logits on the whole test split: what every artifact must match."""

    model: Any  # the loaded torch module (eval mode)
    checkpoint: str  # the checkpoint file, an absolute path
    crops: np.ndarray  # uint8 NHWC test crops at network resolution
    labels: np.ndarray
    logits: np.ndarray
    origin: dict[str, Any] = field(default_factory=dict)  # computed here, or the run's

    @property
    def accuracy(self) -> float:
        return float((self.logits.argmax(1) == self.labels).mean())

    def eval_data(self) -> EvalData:
        return EvalData(self.crops, self.labels, self.logits, "dataset")


def torch_reference(run: RunSource, data: RunData) -> TorchReference:
    """Load the checkpoint (torch) and its logits on the test split: the ones training stored
    when they check out (``reuse_stored``), else a full PyTorch pass."""
    from ftedge.checkpoint import load_checkpoint
    from ftedge.export.calibration import load_crops
    from ftedge.runtime.preprocess import normalize

    loaded = load_checkpoint(run.path)
    crops = load_crops(run.splits.root, list(data.test), data.spec)
    y = np.array([lbl for _, lbl in data.test])
    logits, origin = reuse_stored(run, data, loaded.model, normalize(crops, data.spec))
    # Resolved: a run named relative to the working directory (``runs/latest``) must still be
    # found from the bundle, wherever the benchmark or the torch reference is started.
    return TorchReference(loaded.model, str(Path(loaded.path).resolve()), crops, y, logits, origin)


def reuse_stored(
    run: RunSource, data: RunData, model: Any, images: np.ndarray
) -> tuple[np.ndarray, dict[str, Any]]:
    """(test logits, where they came from): the run's stored ones when they belong to this
    checkpoint, test list and preprocessing and a fresh PyTorch pass over the first
    ``PARITY_SUBSET`` images agrees with them within ``STORED_MAX_ABS_DIFF``; else all computed
    here. A stale or disagreeing stored reference is refused with a warning."""
    import warnings

    from ftedge.export import onnx_export
    from ftedge.run_reference import SIDECAR_FILE, read_reference

    run_dir = run.path if run.path.is_dir() else run.path.parent
    stored, why = read_reference(
        run_dir, run.meta.get("weights_sha256"), data.test, run.meta["preprocessing"]
    )
    if stored is not None:
        k = min(PARITY_SUBSET, len(images))
        fresh = onnx_export.reference_logits(model, images[:k])
        diff = float(np.abs(fresh - stored.logits[:k]).max())
        if diff <= STORED_MAX_ABS_DIFF:
            origin = {"from": "run", "checked_images": k, "max_abs_diff": diff}
            return stored.logits, {**origin, "computed_by": stored.record.get("computed_by")}
        why = f"stored test logits differ from PyTorch by {diff:.2e} > {STORED_MAX_ABS_DIFF}"
    if (run_dir / SIDECAR_FILE).is_file():  # stored but refused (absent: nothing to say)
        warnings.warn(f"{why}: computing the PyTorch reference", stacklevel=2)
    logits = onnx_export.reference_logits(model, images)
    return logits, {"from": "pytorch", "note": why}


def save_reference(bundle_dir: Path, ref: TorchReference) -> Reference:
    """Store the reference logits and the parity subset of crops in the bundle."""
    np.save(bundle_dir / REFERENCE_LOGITS, ref.logits)
    k = min(PARITY_SUBSET, len(ref.labels))
    np.savez_compressed(bundle_dir / PARITY_INPUTS, crops=ref.crops[:k], labels=ref.labels[:k])
    return Reference(
        accuracy=ref.accuracy,
        logits=REFERENCE_LOGITS,
        logits_sha256=sha256_file(bundle_dir / REFERENCE_LOGITS),
        parity_inputs=PARITY_INPUTS,
        parity_count=k,
        parity_inputs_sha256=sha256_file(bundle_dir / PARITY_INPUTS),
    )


def run_manifest(
    run: RunSource, data: RunData, ref: TorchReference, reference: Reference, softmax: bool
) -> Manifest:
    """The new bundle's manifest, before any artifact: labels, I/O, provenance, data, reference."""
    from ftedge.export import onnx_export

    spec = data.spec
    out_kind: OutputKind = "probabilities" if softmax else "logits"
    out_name = onnx_export.PROBS_NAME if softmax else onnx_export.LOGITS_NAME
    meta = run.meta
    provenance = Provenance(
        checkpoint=CheckpointRef(ref.checkpoint, meta.get("weights_sha256"), meta.get("epoch")),
        record={**provenance_record(run.path, meta), "reference_logits": ref.origin},
    )
    return Manifest(
        labels=data.labels,
        preprocessing=spec,
        input=InputSpec("input", "float32", "NCHW", (-1, 3, spec.height, spec.width)),
        output=ClassificationOutput(out_name, out_kind),
        provenance=provenance,
        data=DataRef(run.splits.root, data.test, data.calibration, data.train),
        reference=reference,
    )


def provenance_record(run: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Where the bundle came from: ftedge version, run, backbone/head, config hash, accuracies."""
    return {
        "ftedge_version": __version__,
        "created": utc_now(),
        "run_dir": str(run.resolve()),
        "backbone": meta.get("backbone"),
        "head": meta.get("head"),
        "config_sha256": meta.get("config_sha256"),
        "val_accuracy": meta.get("val_accuracy"),
        "test_accuracy": meta.get("test_accuracy"),
    }
