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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.files import sha256_file
from ftedge.runtime.backends import format_available, native_backend
from ftedge.runtime.classifier import softmax
from ftedge.runtime.manifest import Artifact, Manifest
from ftedge.runtime.runners.base import Runner

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

    ref_rel = manifest.reference.get("logits", REFERENCE_LOGITS)
    ref_path = bundle_dir / ref_rel
    if not ref_path.is_file():
        raise FtedgeError(f"bundle has no PyTorch reference logits ({ref_rel}): re-export it")
    reference = np.load(ref_path)
    test = manifest.data.get("test") or []
    root = manifest.data.get("root")
    if root and test and (Path(root) / test[0][0]).is_file():
        crops = load_crops(root, test, manifest.spec)
        labels = np.array([int(t[1]) for t in test])
        return EvalData(crops, labels, reference[: len(test)], "dataset")
    stored = bundle_dir / manifest.reference.get("parity_inputs", PARITY_INPUTS)
    if allow_subset and stored.is_file():
        with np.load(stored) as z:
            crops, labels = z["crops"], z["labels"]
        return EvalData(crops, labels, reference[: len(labels)], "bundle")
    raise FtedgeError(
        f"test images not found (dataset root {root!r}) and the bundle stores no parity inputs"
    )


def make_runner(bundle_dir: Path, artifact: Artifact, *, strict_fp32: bool = True) -> Runner:
    """The runner that verifies an artifact: its format's own backend, on that backend's
    default device; OpenVINO FP32 pinned to f32 execution when ``strict_fp32``."""
    backend = native_backend(artifact.format)
    device = backend.device_for(None)
    assert device is not None  # every backend has a default device
    options: dict[str, Any] = {}
    if backend.name == "openvino" and strict_fp32 and artifact.precision == "fp32":
        options["precision"] = "f32"
    return backend.create_runner(str(bundle_dir / artifact.path), device=device, **options)


def run_artifact(
    bundle_dir: Path,
    manifest: Manifest,
    artifact: Artifact,
    data: EvalData,
    *,
    batch_size: int = 50,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Outputs of ``artifact`` on every test image, and the runner's ``describe()``."""
    baked = artifact.input.get("dtype") == "uint8"
    if baked:
        x_all = data.crops[..., ::-1] if artifact.input.get("color") == "bgr" else data.crops
        x_all = np.ascontiguousarray(x_all)
    else:
        x_all = data.images(manifest)
    runner = make_runner(bundle_dir, artifact)
    with runner:
        name = next(iter(runner.input_metadata()))
        out_name = artifact.output.get("name")
        batch = batch_size
        hi = artifact.details.get("batch_range")
        if artifact.format == "tensorrt" and hi:
            batch = min(batch, int(hi[2]))
        outs = []
        for i in range(0, len(x_all), batch):
            res = runner.infer({name: x_all[i : i + batch]})
            outs.append(res[out_name] if out_name in res else next(iter(res.values())))
        info = runner.describe()
    return np.concatenate(outs).astype(np.float32), info


def compare(
    out: np.ndarray, data: EvalData, kind: str, reference_accuracy: float
) -> tuple[dict[str, Any], float, float]:
    """(parity dict, accuracy, drop in points) of outputs against the PyTorch reference."""
    ref = softmax(data.reference) if kind == "probabilities" else data.reference
    if out.shape != ref.shape:
        raise FtedgeError(f"artifact output shape {out.shape} != reference {ref.shape}")
    top = out.argmax(1)
    parity = {
        "max_abs_diff": float(np.abs(out - ref).max()),
        "mean_abs_diff": float(np.abs(out - ref).mean()),
        "top1_agreement": float((top == ref.argmax(1)).mean()),
        "compared": kind,
        "images": int(len(out)),
    }
    accuracy = float((top == data.labels).mean())
    return parity, accuracy, round((reference_accuracy - accuracy) * 100.0, 4)


def verify_artifact(
    bundle_dir: Path,
    manifest: Manifest,
    artifact: Artifact,
    data: EvalData,
    *,
    max_accuracy_drop: float | None = None,
) -> Artifact:
    """Fill ``artifact``'s parity/accuracy/drop and set its status (ok or failed)."""
    out, info = run_artifact(bundle_dir, manifest, artifact, data)
    ref_acc = data.reference_accuracy
    parity, acc, drop = compare(out, data, artifact.output.get("kind", "logits"), ref_acc)
    if info.get("execution_precision"):
        parity["execution_precision"] = info["execution_precision"]
    artifact.parity = parity
    artifact.accuracy = acc
    artifact.accuracy_drop = drop
    artifact.details["runner"] = {
        k: v
        for k, v in info.items()
        if k in ("backend", "providers", "execution_precision", "runtime_precisions", "version")
    }
    problems = []
    if artifact.precision == "fp32":
        if parity["max_abs_diff"] > FP32_MAX_ABS_DIFF:
            problems.append(f"max abs diff {parity['max_abs_diff']:.2e} > {FP32_MAX_ABS_DIFF}")
        if parity["top1_agreement"] < FP32_MIN_AGREEMENT:
            problems.append(f"top-1 agreement {parity['top1_agreement']:.4f}")
    elif max_accuracy_drop is not None and drop > max_accuracy_drop:
        problems.append(f"accuracy drop {drop:.2f} pt > budget {max_accuracy_drop:.2f} pt")
    if problems:
        artifact.status = "failed"
        artifact.message = f"{artifact.name}: " + "; ".join(problems)
    else:
        artifact.status = "ok"
        artifact.message = None
    return artifact


# -- ftedge export --check ---------------------------------------------------------------------
@dataclass
class CheckResult:
    artifact: str
    status: str  # ok | failed | skipped
    message: str = ""
    parity: dict[str, Any] | None = None
    accuracy: float | None = None
    data: str = ""  # what parity ran on: "dataset" (full test split) or "bundle" (stored crops)


def check_bundle(bundle_dir: Path) -> tuple[Manifest, list[CheckResult]]:
    """Re-verify file hashes (raises naming the file) and parity of every checkable artifact."""
    bundle_dir = Path(bundle_dir)
    manifest = Manifest.load(bundle_dir)
    bad = manifest.verify_files(bundle_dir)
    ref_rel = manifest.reference.get("logits", REFERENCE_LOGITS)
    ref_sha = manifest.reference.get("logits_sha256")
    ref_path = bundle_dir / ref_rel
    if ref_sha and (not ref_path.is_file() or sha256_file(ref_path) != ref_sha):
        bad.append(ref_rel)
    pin = manifest.reference.get("parity_inputs")
    pin_sha = manifest.reference.get("parity_inputs_sha256")
    if (
        pin
        and pin_sha
        and (not (bundle_dir / pin).is_file() or sha256_file(bundle_dir / pin) != pin_sha)
    ):
        bad.append(pin)
    if bad:
        raise FtedgeError(
            f"bundle {bundle_dir}: file(s) changed or missing since export: {', '.join(bad)}"
        )
    data = load_eval_data(bundle_dir, manifest, allow_subset=True)
    results = []
    for a in manifest.artifacts:
        if a.status != "ok":
            results.append(CheckResult(a.name, "skipped", f"status at export: {a.status}"))
            continue
        if not format_available(a.format):
            results.append(CheckResult(a.name, "skipped", f"no {a.format} runtime here"))
            continue
        recorded_agreement = (a.parity or {}).get("top1_agreement")
        probe = Artifact.from_dict(a.to_dict())
        try:
            verify_artifact(bundle_dir, manifest, probe, data)
        except FtedgeError as e:
            results.append(CheckResult(a.name, "failed", str(e)))
            continue
        msg = ""
        status = probe.status
        if status == "ok" and data.source == "dataset" and recorded_agreement is not None:
            # Same images as at export time: the agreement must not move (beyond one image).
            agreement = probe.parity["top1_agreement"]
            if abs(agreement - recorded_agreement) > 1.0 / max(1, len(data.labels)) + 1e-9:
                status = "failed"
                msg = f"top-1 agreement {agreement:.4f} != {recorded_agreement:.4f} at export"
        results.append(
            CheckResult(
                a.name,
                status,
                msg or (probe.message or ""),
                probe.parity,
                probe.accuracy,
                data.source,
            )
        )
    return manifest, results
