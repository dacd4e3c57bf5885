"""Verification of bundle artifacts against the stored PyTorch reference (torch-free).

Every artifact is run on the run's test split and compared with ``reference_logits.npy`` (the
PyTorch logits of the same images, stored at ONNX-export time):

- parity: maximum absolute output difference and top-1 agreement with PyTorch (OpenVINO FP32
  forced to f32 execution for this, and the execution precision actually used recorded);
- accuracy on the test split and its drop, in points, versus PyTorch.

``check_bundle`` (``ftedge export --check``) re-verifies file hashes, then parity, anywhere:
with the dataset when it is on this machine, else with the test crops stored in the bundle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.files import sha256_file
from ftedge.runtime.backends import format_available, native_backend
from ftedge.runtime.classifier import softmax
from ftedge.runtime.manifest import Artifact, Manifest, Parity
from ftedge.runtime.preprocess import uint8_batch
from ftedge.runtime.runners.base import Runner
from ftedge.runtime.schema_fields import inside
from ftedge.runtime.tasks import ClassificationOutput, OutputKind

# An FP32 artifact must match PyTorch this closely (logits), else it is marked failed.
FP32_MAX_ABS_DIFF = 1e-3
FP32_MIN_AGREEMENT = 0.999
PARITY_INPUTS = "parity_inputs.npz"
REFERENCE_LOGITS = "reference_logits.npy"


@dataclass
class EvalData:
    """Test images as uint8 NHWC RGB crops (network resolution) + labels + reference logits."""

    crops: np.ndarray
    labels: np.ndarray
    reference: np.ndarray  # PyTorch logits, same order
    source: str  # "dataset" or "bundle" (the stored parity subset)
    _float: np.ndarray | None = None
    # The FP32 ONNX's outputs on ``images`` once verified: later measurements on the very same
    # inputs (the fast-path check's exact path) reuse them instead of running the model again.
    fp32_outputs: np.ndarray | None = None

    def images(self, manifest: Manifest) -> np.ndarray:
        """Float NCHW network inputs (eval preprocessing), computed once."""
        if self._float is None:
            from ftedge.runtime.preprocess import normalize

            self._float = normalize(self.crops, manifest.spec)
        return self._float

    @property
    def reference_accuracy(self) -> float:
        return float((self.reference.argmax(1) == self.labels).mean())


def load_eval_data(bundle_dir: Path, manifest: Manifest, *, allow_subset: bool) -> EvalData:
    """The test crops from the dataset (all of them) or, failing that, the bundle's subset."""
    from ftedge.export.calibration import load_crops

    ref_path = inside(bundle_dir, manifest.reference.logits, "reference.logits")
    reference = _load_array(ref_path, "reference.logits")
    if reference.ndim != 2 or reference.shape[1] != len(manifest.labels):
        raise FtedgeError(
            f"reference.logits has shape {reference.shape}, expected (images, "
            f"{len(manifest.labels)}) for the bundle's {len(manifest.labels)} labels"
        )
    test = manifest.data.test_files()
    if test is not None:
        root = str(manifest.data.root)  # checked paths below are absolute: root / p == p
        crops = load_crops(root, [(str(p), y) for p, y in test], manifest.spec)
        labels = np.array([y for _, y in test])
        return EvalData(crops, labels, reference[: len(test)], "dataset")
    rel = manifest.reference.parity_inputs or PARITY_INPUTS
    stored = inside(bundle_dir, rel, "reference.parity_inputs")
    if allow_subset and stored.is_file():
        try:
            with np.load(stored) as z:
                crops, labels = z["crops"], z["labels"]
        except (OSError, ValueError, KeyError) as e:
            raise FtedgeError(f"unreadable reference.parity_inputs {rel}: {e}") from None
        return EvalData(crops, labels, reference[: len(labels)], "bundle")
    raise FtedgeError(
        f"test images not found (dataset root {manifest.data.root!r}) and the bundle stores "
        "no parity inputs"
    )


def _load_array(path: Path, field: str) -> np.ndarray:
    if not path.is_file():
        raise FtedgeError(f"bundle has no {field} ({path.name}): re-export it")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise FtedgeError(f"unreadable {field} {path.name}: {e}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
        raise FtedgeError(f"{field} {path.name} is not a float array")
    return arr


def make_runner(bundle_dir: Path, artifact: Artifact, *, strict_fp32: bool = True) -> Runner:
    """The runner that verifies an artifact: its format's own backend, on that backend's
    default device; OpenVINO FP32 pinned to f32 execution when ``strict_fp32``, INT8 in the
    precision ``load()`` runs it in."""
    backend = native_backend(artifact.format)
    device = backend.device_for(None)
    assert device is not None  # every backend has a default device
    options: dict[str, Any] = {}
    if backend.name == "openvino":
        from ftedge.runtime.runners.openvino import default_precision

        pinned = "f32" if strict_fp32 and artifact.precision == "fp32" else None
        options["precision"] = pinned or default_precision(artifact.precision, device)
    return backend.create_runner(str(bundle_dir / artifact.path), device=device, **options)


def output_kind(artifact: Artifact) -> OutputKind:
    """logits or probabilities: what a classification artifact outputs."""
    out = artifact.output
    return out.kind if isinstance(out, ClassificationOutput) else "logits"


def run_artifact(
    bundle_dir: Path,
    manifest: Manifest,
    artifact: Artifact,
    data: EvalData,
    *,
    batch_size: int = 50,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Outputs of ``artifact`` on every test image, and the runner's ``describe()``."""
    if artifact.baked:
        x_all = uint8_batch(data.crops, artifact.input.color or "rgb", artifact.input.layout)
    else:
        x_all = data.images(manifest)
    runner = make_runner(bundle_dir, artifact)
    with runner:
        name = next(iter(runner.input_metadata()))
        out_name = artifact.output.name
        batch = batch_size
        hi = artifact.details.get("batch_range")
        if artifact.format == "tensorrt" and hi:
            batch = min(batch, int(hi[2]))
        outs = []
        for i in range(0, len(x_all), batch):
            res = runner.infer({name: x_all[i : i + batch]})
            outs.append(res[out_name] if out_name in res else next(iter(res.values())))
        info = runner.describe()
    out = np.concatenate(outs).astype(np.float32).reshape(len(x_all), -1)
    if out.shape[1] != len(manifest.labels):
        raise FtedgeError(
            f"{artifact.name} outputs {out.shape[1]} classes but the manifest has "
            f"{len(manifest.labels)} labels"
        )
    return out, info


def compare(
    out: np.ndarray, data: EvalData, kind: str, reference_accuracy: float
) -> tuple[Parity, float, float]:
    """(parity, accuracy, drop in points) of outputs against the PyTorch reference."""
    ref = softmax(data.reference) if kind == "probabilities" else data.reference
    if out.shape != ref.shape:
        raise FtedgeError(f"artifact output shape {out.shape} != reference {ref.shape}")
    top = out.argmax(1)
    parity = Parity(
        max_abs_diff=float(np.abs(out - ref).max()),
        mean_abs_diff=float(np.abs(out - ref).mean()),
        top1_agreement=float((top == ref.argmax(1)).mean()),
        compared="probabilities" if kind == "probabilities" else "logits",
        images=int(len(out)),
    )
    accuracy = float((top == data.labels).mean())
    return parity, accuracy, round((reference_accuracy - accuracy) * 100.0, 4)


def verify_artifact(
    bundle_dir: Path,
    manifest: Manifest,
    artifact: Artifact,
    data: EvalData,
    *,
    max_accuracy_drop: float | None = None,
    min_agreement: float | None = None,
    outputs: tuple[np.ndarray, dict[str, Any]] | None = None,
) -> Artifact:
    """``artifact`` with its parity/accuracy/drop filled in and its status (ok or failed).

    The gate of a reduced-precision artifact: accuracy drop at most ``max_accuracy_drop`` points
    and top-1 agreement with the PyTorch FP32 reference at least ``min_agreement`` (a fraction);
    FP32 artifacts must match the reference (``FP32_MAX_ABS_DIFF``, ``FP32_MIN_AGREEMENT``).
    ``outputs``: the ``run_artifact`` result when the caller has run it already.
    """
    t = time.perf_counter()
    out, info = outputs or run_artifact(bundle_dir, manifest, artifact, data)
    parity, acc, drop = compare(out, data, output_kind(artifact), data.reference_accuracy)
    parity = replace(parity, execution_precision=info.get("execution_precision") or None)
    details = dict(artifact.details)
    details["runner"] = {
        k: v
        for k, v in info.items()
        if k in ("backend", "providers", "execution_precision", "runtime_precisions", "version")
    }
    if outputs is None:  # the seconds of the last verification (the INT8 search runs several)
        details["verify_seconds"] = round(time.perf_counter() - t, 2)
    problems = []
    if artifact.precision == "fp32":
        if parity.max_abs_diff > FP32_MAX_ABS_DIFF:
            problems.append(f"max abs diff {parity.max_abs_diff:.2e} > {FP32_MAX_ABS_DIFF}")
        if parity.top1_agreement < FP32_MIN_AGREEMENT:
            problems.append(f"top-1 agreement {parity.top1_agreement:.4f}")
    else:
        if max_accuracy_drop is not None and drop > max_accuracy_drop:
            problems.append(f"accuracy drop {drop:.2f} pt > budget {max_accuracy_drop:.2f} pt")
        if min_agreement is not None and parity.top1_agreement < min_agreement:
            problems.append(
                f"top-1 agreement with FP32 {parity.top1_agreement:.4f} < {min_agreement:.4f}"
            )
    return verdict(
        artifact, problems, parity=parity, accuracy=acc, accuracy_drop=drop, details=details
    )


def verdict(artifact: Artifact, problems: list[str], **measured: Any) -> Artifact:
    """``artifact`` with what its verification ``measured`` and its status: ``ok``, or
    ``failed`` with a one-line message listing ``problems`` (every task's verifier ends here)."""
    return replace(
        artifact,
        **measured,
        status="failed" if problems else "ok",
        message=f"{artifact.name}: " + "; ".join(problems) if problems else None,
    )


# -- ftedge export --check ---------------------------------------------------------------------
@dataclass
class CheckResult:
    artifact: str
    status: str  # ok | failed | skipped
    message: str = ""
    parity: dict[str, Any] | None = None
    accuracy: float | None = None
    data: str = ""  # what parity ran on: "dataset" (full test split) or "bundle" (stored crops)


def _changed_files(bundle_dir: Path, manifest: Manifest) -> list[str]:
    """Every file of the bundle (artifacts, reference) missing or changed since export."""
    bad = manifest.verify_files(bundle_dir)
    ref = manifest.reference
    for rel, digest in (
        (ref.logits, ref.logits_sha256),
        (ref.parity_inputs, ref.parity_inputs_sha256),
    ):
        if rel and digest:
            path = inside(bundle_dir, rel, "reference")
            if not path.is_file() or sha256_file(path) != digest:
                bad.append(rel)
    return bad


def _check_one(bundle_dir: Path, manifest: Manifest, a: Artifact, data: EvalData) -> CheckResult:
    if a.status != "ok":
        return CheckResult(a.name, "skipped", f"status at export: {a.status}")
    if not format_available(a.format):
        return CheckResult(a.name, "skipped", f"no {a.format} runtime here")
    try:
        probe = verify_artifact(bundle_dir, manifest, a, data)
    except FtedgeError as e:
        return CheckResult(a.name, "failed", str(e))
    assert probe.parity is not None
    status, msg = probe.status, probe.message or ""
    recorded = a.parity.top1_agreement if a.parity else None
    if status == "ok" and data.source == "dataset" and recorded is not None:
        # Same images as at export time: the agreement must not move (beyond one image).
        agreement = probe.parity.top1_agreement
        if abs(agreement - recorded) > 1.0 / max(1, len(data.labels)) + 1e-9:
            status = "failed"
            msg = f"top-1 agreement {agreement:.4f} != {recorded:.4f} at export"
    return CheckResult(a.name, status, msg, probe.parity.to_dict(), probe.accuracy, data.source)


def check_bundle(bundle_dir: Path) -> tuple[Manifest, list[CheckResult]]:
    """Re-verify file hashes (raises naming the file) and parity of every checkable artifact.

    Raises when no artifact could be verified at all (every one skipped here)."""
    bundle_dir = Path(bundle_dir)
    manifest = Manifest.load(bundle_dir)
    bad = _changed_files(bundle_dir, manifest)
    if bad:
        raise FtedgeError(
            f"bundle {bundle_dir}: file(s) changed or missing since export: {', '.join(bad)}"
        )
    data = load_eval_data(bundle_dir, manifest, allow_subset=True)
    results = [_check_one(bundle_dir, manifest, a, data) for a in manifest.artifacts]
    if not any(r.status in ("ok", "failed") for r in results):
        why = "; ".join(f"{r.artifact}: {r.message}" for r in results) or "it lists none"
        raise FtedgeError(f"bundle {bundle_dir}: no artifact could be verified here ({why})")
    return manifest, results
