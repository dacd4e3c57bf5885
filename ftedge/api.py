"""The Python API: the same functions the CLI calls, for notebooks and scripts.

    import ftedge

    run = ftedge.train(epochs=10)                      # built-in data; or ftedge.train("photos/")
    bundle = ftedge.export(run.run_dir)                # every artifact verified
    report = ftedge.benchmark(bundle.bundle_dir, batch=(1, 8))
    clf = ftedge.runtime.load(bundle.bundle_dir)       # torch-free

Each function raises ``ftedge.FtedgeError`` with a one-line message on bad input, exactly as
the CLI would print it, and returns a typed result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftedge.errors import FtedgeError

if TYPE_CHECKING:
    from ftedge.detection.train import DetectResult
    from ftedge.runtime.bench_spec import BenchmarkOptions
    from ftedge.training.loop import TrainResult


def _check_names(options: dict[str, Any], cls: type, what: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise FtedgeError(
            f"unknown {what} option {unknown[0]!r}: choose from {', '.join(sorted(names))}"
        )


def train(
    data: str | Path | None = None,
    *,
    config: str | Path | None = None,
    resume: str | Path | None = None,
    exist_ok: bool = False,
    **options: Any,
) -> TrainResult | DetectResult:
    """Fine-tune a pretrained backbone with a new head; returns the run directory and metrics.

    ``data``: an image folder (``DIR/<class>/*`` or ``DIR/{train,val,test}/<class>/*``);
    None trains on the built-in sample. ``config``: a YAML file of options. ``options``: any
    ``TrainConfig`` field (``epochs=10``, ``model="tv:mobilenet_v3_large"``, ``lr=0.01``...),
    overriding the YAML file, as flags do on the command line. ``resume``: a killed run's
    directory, continued with its saved config (give no other option then). ``exist_ok``:
    replace a finished run of the same ``name`` (otherwise refused).
    ``task="detect"`` trains an object detector on a YOLO / COCO / VOC folder (or the built-in
    tree crowns) and returns a ``DetectResult`` (test mAP instead of accuracy).
    """
    from ftedge.config import TrainConfig, build_config, load_yaml, with_task_defaults
    from ftedge.training.loop import train as run_training

    if resume is not None:
        if data is not None or config is not None or options or exist_ok:
            raise FtedgeError("resume continues a run with its saved config: give no other option")
        from ftedge.training.run_dir import run_task

        if run_task(Path(resume)) == "detect":
            from ftedge.detection.train import train_detector

            return train_detector(resume=Path(resume))
        return run_training(resume=resume)
    _check_names(options, TrainConfig, "train")
    flags = dict(options)
    if data is not None:
        flags["data"] = str(data)
    yaml_values = load_yaml(config) if config else {}
    cfg = build_config(TrainConfig, with_task_defaults(yaml_values, flags), flags)
    if cfg.task == "detect":
        from ftedge.detection.train import train_detector

        return train_detector(cfg, exist_ok=exist_ok)
    return run_training(cfg, exist_ok=exist_ok)


MODEL_SUFFIXES = (".onnx", ".xml", ".plan", ".engine")


@dataclass(frozen=True)
class BenchmarkRow:
    """One measured configuration: artifact x backend x batch x mode."""

    artifact: str
    format: str
    precision: str
    backend: str
    device: str
    batch: int
    mode: str  # compute | end_to_end
    p50_ms: float
    p99_ms: float
    throughput_ips: float
    accuracy: float | None
    unstable: bool

    @classmethod
    def from_result(cls, r: dict[str, Any]) -> BenchmarkRow:
        lat = r["latency_ms"]
        return cls(
            artifact=str(r["artifact"]),
            format=str(r["format"]),
            precision=str(r["precision"]),
            backend=str(r["backend"]),
            device=str(r["device"]),
            batch=int(r["batch"]),
            mode=str(r["mode"]),
            p50_ms=float(lat["p50"]),
            p99_ms=float(lat["p99"]),
            throughput_ips=float(r["throughput_ips"]),
            accuracy=None if r.get("accuracy") is None else float(r["accuracy"]),
            unstable=bool(r.get("unstable", False)),
        )


@dataclass(frozen=True)
class BenchmarkReport:
    """A benchmark's rows, what could not run, and the full JSON document (``document``)."""

    rows: tuple[BenchmarkRow, ...]
    skipped: tuple[dict[str, Any], ...]
    document: dict[str, Any] = field(repr=False)

    def fastest(self, *, batch: int = 1, mode: str = "compute") -> BenchmarkRow:
        """The row with the lowest p50 latency at ``batch`` in ``mode``."""
        rows = [r for r in self.rows if r.batch == batch and r.mode == mode]
        if not rows:
            raise FtedgeError(f"no result at batch {batch} in mode {mode}")
        return min(rows, key=lambda r: r.p50_ms)


def benchmark(
    target: str | Path = "bundles/latest",
    *,
    images: list[str] | None = None,
    torch_checkpoint: str | None = None,
    json_path: str | Path | None = None,
    progress: bool = False,
    **options: Any,
) -> BenchmarkReport:
    """Measure latency and throughput of a bundle's artifacts (or one model file) on this machine.

    ``target``: a bundle directory, or a bare ``.onnx`` / ``.xml`` / ``.plan`` model.
    ``options``: any ``BenchmarkOptions`` field, e.g. ``batches=(1, 8)``,
    ``modes=("compute", "end_to_end")``, ``backends=("openvino",)``, ``threads=2``,
    ``min_seconds=2.0``. ``images``: end-to-end inputs (default: the bundle's test split, else
    synthetic frames). ``json_path``: also write the JSON report there. Each job runs in its own
    process, as ``ftedge benchmark`` does.
    """
    from ftedge.runtime.bench_select import jobs_for_bundle, jobs_for_model
    from ftedge.runtime.bench_spec import BenchmarkOptions
    from ftedge.runtime.benchmark import run_benchmark

    _check_names(options, BenchmarkOptions, "benchmark")
    opts: BenchmarkOptions = BenchmarkOptions(**options)
    path = Path(target)
    if path.suffix in MODEL_SUFFIXES:
        jobs = jobs_for_model(path, opts, images=images)
    else:
        jobs = jobs_for_bundle(path, opts, torch_checkpoint=torch_checkpoint, images=images)
    doc = run_benchmark(jobs, progress=print if progress else None)
    if json_path is not None:
        import json

        from ftedge.files import atomic_write_text

        atomic_write_text(json_path, json.dumps(doc, indent=2) + "\n")
    rows = tuple(BenchmarkRow.from_result(r) for r in doc["results"])
    return BenchmarkReport(rows, tuple(doc.get("skipped", [])), doc)
