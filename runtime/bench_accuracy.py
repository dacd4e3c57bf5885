"""The accuracy column of a benchmark job: the manifest's number for the artifact, or, with
``--measure-accuracy``, the test split run through the very runner being timed (this backend
and precision hint) and compared as the export verification does (``ftedge.export.verify``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ftedge.runtime.bench_inputs import InputInfo
from ftedge.runtime.bench_spec import BenchmarkOptions, Job
from ftedge.runtime.preprocess import uint8_batch

if TYPE_CHECKING:
    from ftedge.export.verify import EvalData
    from ftedge.runtime.manifest import Manifest


@dataclass(frozen=True)
class JobAccuracy:
    """The accuracy reported for every row of a job."""

    value: float | None  # fraction in [0, 1]
    source: str | None  # manifest | measured | None
    parity: dict[str, Any] | None = None  # vs the reference logits, when measured


def job_accuracy(runner: Any, job: Job, options: BenchmarkOptions, info: InputInfo) -> JobAccuracy:
    """Measured on the test split with ``--measure-accuracy`` (classification bundles), else the
    job's: a detection bundle's mAP is the manifest's (its test images are not recorded in the
    bundle, so there is nothing to re-measure it on)."""
    if options.measure_accuracy and job.bundle_dir and job.task == "classification":
        return measure_accuracy(runner, job, info)
    return JobAccuracy(job.accuracy, job.accuracy_source)


def _model_inputs(data: EvalData, manifest: Manifest, info: InputInfo) -> np.ndarray:
    """Every test image in the model's input layout: uint8 crops for a model with baked
    preprocessing, else the bundle's float pipeline."""
    if info.dtype == np.uint8:
        return uint8_batch(data.crops, info.color, "NHWC" if info.nhwc else "NCHW")
    x_all = data.images(manifest)
    if info.nhwc:
        x_all = x_all.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x_all.astype(info.dtype, copy=False))


def _infer_all(runner: Any, info: InputInfo, x_all: np.ndarray) -> np.ndarray:
    """The runner's outputs for every row of ``x_all``, one row per image."""
    b = 16 if info.batch_dim == -1 else info.batch_dim
    outs = []
    for start in range(0, len(x_all), b):
        x = x_all[start : start + b]
        real = len(x)
        if real < b and info.batch_dim != -1:  # static batch: pad, then drop the padding
            x = np.concatenate([x, np.repeat(x[-1:], b - real, axis=0)])
        y = next(iter(runner.infer({info.name: x}, check=False).values()))
        outs.append(np.asarray(y, np.float32).reshape(len(x), -1)[:real])
    return np.concatenate(outs)


def measure_accuracy(runner: Any, job: Job, info: InputInfo) -> JobAccuracy:
    """Accuracy and parity of this runner on the bundle's test split, with the export
    verification's data and comparison: the dataset's test images when on this machine, else
    the crops stored in the bundle."""
    from ftedge.export.verify import compare, load_eval_data
    from ftedge.runtime.manifest import Manifest

    assert job.bundle_dir is not None
    manifest = Manifest.load(job.bundle_dir)
    data = load_eval_data(Path(job.bundle_dir), manifest, allow_subset=True)
    outputs = _infer_all(runner, info, _model_inputs(data, manifest, info))
    parity, accuracy, _drop = compare(outputs, data, job.output_kind, data.reference_accuracy)
    return JobAccuracy(accuracy, "measured", parity.to_dict())
