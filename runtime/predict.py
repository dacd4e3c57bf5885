"""The predict loop: images, folders, video files, cameras and streams -> top-k (classification
bundles) or objects (detection bundles) per frame.

    from ftedge.runtime.predict import predict
    summary = predict("bundles/latest", "clip.mp4", topk=3, save="out/", json_path="preds.jsonl")
    print(summary.fps, summary.results[0].prediction)

Frames come from ``ftedge.runtime.frame_sources`` (``open_source``), annotated images/videos and
JSON lines go out through ``ftedge.runtime.predict_writers``; what one frame's result is and how
it is drawn is the task's part (``ftedge.runtime.predict_tasks``). Frames are processed one by
one (batch 1: the camera-app latency path); the summary reports FPS end to end and the per-frame
latency percentiles. Ctrl-C ends a camera run cleanly: the video is finalised and the summary
still reported (and written as the last JSON line).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.runtime.classifier import Classifier, load
from ftedge.runtime.detect import check_detect_options
from ftedge.runtime.frame_sources import Frame, FrameSource, open_source
from ftedge.runtime.loaded import LoadedModel
from ftedge.runtime.predict_tasks import ClassifyFrames, FrameOutput, FrameTask, frame_task
from ftedge.runtime.predict_writers import PredictWriters

JSON_SCHEMA_VERSION = 1


@dataclass
class FrameResult:
    """The result for one image or frame: a ``Prediction`` (top-k) or ``FrameDetections``."""

    index: int  # running number over the whole source
    name: str  # image path, or the video/camera/stream source
    frame: int | None  # frame number within a video/stream
    time_s: float | None  # video timestamp
    prediction: FrameOutput
    latency_ms: float  # the model step: preprocess + inference + top-k / NMS
    width: int = 0
    height: int = 0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": "frame", "index": self.index, "source": self.name}
        if self.frame is not None:
            d["frame"] = self.frame
        if self.time_s is not None:
            d["time_s"] = round(self.time_s, 4)
        d |= {"width": self.width, "height": self.height}
        d |= self.prediction.to_dict()
        d["latency_ms"] = round(self.latency_ms, 3)
        return d

    def line(self) -> str:
        where = self.name if self.frame is None else f"frame {self.frame:5d}"
        if self.time_s is not None:
            where += f" ({self.time_s:7.2f} s)"
        return f"{where}  {self.prediction}"


@dataclass
class PredictSummary:
    """What a predict run did and how fast (FPS end to end, per-frame latency percentiles)."""

    source: str
    kind: str
    frames: int
    seconds: float  # wall time of the loop: decode + classify + annotate + write
    artifact: str
    backend: str
    device: str
    latency_ms: dict[str, float] = field(default_factory=dict)  # model step: p50, mean, p90, max
    preprocess_ms_p50: float | None = None
    infer_ms_p50: float | None = None
    postprocess_ms_p50: float | None = None  # detection: NMS + boxes back to frame pixels
    task: str = "classification"
    saved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False
    results: list[FrameResult] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "summary",
            "schema_version": JSON_SCHEMA_VERSION,
            "source": self.source,
            "source_kind": self.kind,
            "task": self.task,
            "frames": self.frames,
            "seconds": round(self.seconds, 4),
            "fps": round(self.fps, 3),
            "artifact": self.artifact,
            "backend": self.backend,
            "device": self.device,
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "preprocess_ms_p50": self.preprocess_ms_p50,
            "infer_ms_p50": self.infer_ms_p50,
            **(
                {}
                if self.postprocess_ms_p50 is None
                else {"postprocess_ms_p50": self.postprocess_ms_p50}
            ),
            "saved": self.saved,
            "skipped": self.skipped,
            "interrupted": self.interrupted,
        }

    def line(self) -> str:
        lat = self.latency_ms
        parts = [
            f"{self.frames} frame(s) in {self.seconds:.2f} s: {self.fps:.1f} FPS end to end",
        ]
        if lat and self.task == "detection":
            parts.append(
                f"detect p50 {lat['p50']:.2f} ms (letterbox {self.preprocess_ms_p50:.2f} + "
                f"inference {self.infer_ms_p50:.2f} + NMS {self.postprocess_ms_p50:.2f}), "
                f"p90 {lat['p90']:.2f} ms"
            )
        elif lat:
            parts.append(
                f"classify p50 {lat['p50']:.2f} ms (preprocess {self.preprocess_ms_p50:.2f} + "
                f"inference {self.infer_ms_p50:.2f}), p90 {lat['p90']:.2f} ms"
            )
        parts.append(f"{self.artifact} on {self.backend}:{self.device}")
        if self.skipped:
            parts.append(f"{len(self.skipped)} unreadable file(s) skipped")
        if self.interrupted:
            parts.append("interrupted")
        return "; ".join(parts)


def iter_predictions(
    model: Classifier | FrameTask, source: FrameSource, *, topk: int = 5
) -> Iterator[tuple[Frame, FrameResult]]:
    """Run every frame of ``source`` through ``model`` (a ``Classifier``, with ``topk``, or any
    task's ``FrameTask``) one by one (batch 1: the camera-app latency path)."""
    task = ClassifyFrames(model, topk) if isinstance(model, Classifier) else model
    for i, frame in enumerate(source):
        t0 = time.perf_counter()
        pred = task.run(frame.image, frame.color)
        dt = (time.perf_counter() - t0) * 1e3
        h, w = frame.image.shape[:2]
        yield frame, FrameResult(i, frame.name, frame.index, frame.time_s, pred, dt, w, h)


@dataclass
class _LoopTotals:
    """What the loop gathered, frame by frame."""

    frames: int = 0
    latency_ms: list[float] = field(default_factory=list)  # the model step, per frame
    preprocess_ms: list[float] = field(default_factory=list)
    infer_ms: list[float] = field(default_factory=list)
    postprocess_ms: list[float] = field(default_factory=list)
    results: list[FrameResult] = field(default_factory=list)  # when keep_results
    interrupted: bool = False

    def add(self, res: FrameResult, timing: dict[str, float], keep: bool) -> None:
        self.frames += 1
        self.latency_ms.append(res.latency_ms)
        self.preprocess_ms.append(timing.get("preprocess_ms", math.nan))
        self.infer_ms.append(timing.get("infer_ms", math.nan))
        self.postprocess_ms.append(timing.get("postprocess_ms", math.nan))
        if keep:
            self.results.append(res)


@dataclass(frozen=True)
class _LoopOptions:
    max_frames: int | None
    on_result: Callable[[FrameResult], None] | None
    keep_results: bool


def _check_limits(
    topk: int,
    max_frames: int | None,
    timeout_s: float,
    detect: tuple[float | None, float, int],
) -> None:
    if not isinstance(topk, int) or topk < 1:
        raise FtedgeError(f"topk must be a positive integer, got {topk!r}")
    if max_frames is not None and max_frames < 1:
        raise FtedgeError(f"max_frames must be >= 1, got {max_frames}")
    if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
        raise FtedgeError(f"timeout must be a positive number of seconds, got {timeout_s!r}")
    check_detect_options(*detect)


def _inputs(src: FrameSource, clf: LoadedModel) -> list[Path]:
    """The files a run reads: the source images or video, and the bundle's own files."""
    files = [Path(f) for f in getattr(src, "files", [])]
    if src.kind == "video":
        files.append(Path(src.source))
    bundle = getattr(clf, "bundle_dir", None)
    if bundle is not None:
        files += [p for p in Path(bundle).rglob("*") if p.is_file()]
    return files


def _loop(
    task: FrameTask, src: FrameSource, out: PredictWriters, opts: _LoopOptions
) -> _LoopTotals:
    """Run, record, write and report every frame until the source ends, ``max_frames`` or
    Ctrl-C."""
    totals = _LoopTotals()
    try:
        for frame, res in iter_predictions(task, src):
            totals.add(res, task.timing(), opts.keep_results)
            out.write_json(res.to_dict())
            if out.save_dir is not None:
                drawn = task.annotate(frame.image, res.prediction, frame.color)
                out.save_annotated(src, frame, drawn)
            if opts.on_result is not None:
                opts.on_result(res)
            if opts.max_frames is not None and totals.frames >= opts.max_frames:
                break
    except KeyboardInterrupt:  # Ctrl-C on a camera: finish the video and report
        totals.interrupted = True
    return totals


def _p50(ms: list[float]) -> float | None:
    a = np.asarray(ms, dtype=np.float64)
    return None if np.isnan(a).all() else round(float(np.nanmedian(a)), 3)


def _summary(
    task: FrameTask, src: FrameSource, totals: _LoopTotals, saved: list[str], seconds: float
) -> PredictSummary:
    if totals.frames == 0:
        raise FtedgeError(f"no frames could be read from {src.source!r}")
    clf = task.model
    return PredictSummary(
        source=src.source,
        kind=src.kind,
        frames=totals.frames,
        seconds=seconds,
        artifact=clf.artifact.name,
        backend=clf.backend,
        device=clf.device,
        latency_ms=_stats(totals.latency_ms),
        preprocess_ms_p50=round(float(np.nanmedian(totals.preprocess_ms)), 3),
        infer_ms_p50=round(float(np.nanmedian(totals.infer_ms)), 3),
        postprocess_ms_p50=_p50(totals.postprocess_ms),
        task=clf.manifest.task,
        saved=saved,
        skipped=list(src.skipped),
        interrupted=totals.interrupted,
        results=totals.results,
    )


def _open_model(
    bundle: str | Path | LoadedModel,
    backend: str,
    device: str | None,
    precision: str | None,
    verify: bool,
    preprocessing: str = "auto",
) -> LoadedModel:
    """``bundle`` itself when already loaded, else its best artifact here (any task)."""
    if isinstance(bundle, LoadedModel):
        return bundle
    model = load(
        bundle,
        backend=backend,
        device=device,
        precision=precision,
        verify=verify,
        preprocessing=preprocessing,
    )
    assert isinstance(model, LoadedModel)
    return model


def predict(
    bundle: str | Path | LoadedModel,
    source: str | int | Path,
    *,
    topk: int = 5,
    conf: float | None = None,
    iou: float = 0.5,
    max_det: int = 100,
    backend: str = "auto",
    device: str | None = None,
    precision: str | None = None,
    save: str | Path | None = None,
    json_path: str | Path | None = None,
    max_frames: int | None = None,
    on_result: Callable[[FrameResult], None] | None = None,
    keep_results: bool = True,
    timeout_s: float = 10.0,
    verify: bool = True,
    preprocessing: str = "auto",
) -> PredictSummary:
    """Run every image/frame of ``source`` through a bundle and return a summary (with per-frame
    results): the top-k for a classification bundle, the objects for a detection bundle.

    ``bundle``: a bundle directory or an already loaded ``Classifier`` / ``Detector``.
    ``topk``: classes per frame (classification). ``conf``, ``iou``, ``max_det``: score
    threshold (None: the bundle's, chosen on val at training time), NMS IoU and the most objects
    per frame (detection). ``save``: a folder for
    annotated images / an annotated ``.mp4``. ``json_path``: write JSON lines (one per frame,
    then a summary line); ``"-"`` is stdout. ``max_frames``: stop after that many (cameras run
    until the stream ends or Ctrl-C). ``on_result`` is called for every frame as it is done;
    ``keep_results=False`` keeps memory flat on endless camera runs. ``preprocessing``
    (classification, a bundle path): "auto", "fast" or "exact", as ``load`` takes it.
    """
    _check_limits(topk, max_frames, timeout_s, (conf, iou, max_det))
    src = open_source(source, timeout_s=timeout_s)  # before loading: a bad source fails fast
    own = not isinstance(bundle, LoadedModel)
    try:
        model = _open_model(bundle, backend, device, precision, verify, preprocessing)
    except BaseException:
        src.close()
        raise
    out = PredictWriters(save, json_path)
    start = time.perf_counter()
    try:
        task = frame_task(model, topk=topk, conf=conf, iou=iou, max_det=max_det)
        out.open(src, _inputs(src, model))
        totals = _loop(task, src, out, _LoopOptions(max_frames, on_result, keep_results))
        seconds = time.perf_counter() - start
        summary = _summary(task, src, totals, out.saved, seconds)
        out.write_json(summary.to_dict())
        return summary
    finally:
        out.close()
        src.close()
        if own:
            model.close()


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "mean": float(a.mean()),
        "p90": float(np.percentile(a, 90)),
        "max": float(a.max()),
    }
