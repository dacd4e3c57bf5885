"""The predict loop: images, folders, video files, cameras and streams -> top-k per frame.

    from ftedge.runtime.predict import predict
    summary = predict("bundles/latest", "clip.mp4", topk=3, save="out/", json_path="preds.jsonl")
    print(summary.fps, summary.results[0].prediction.label)

Sources (``open_source``):
- an image file, or a folder of images (recursively, sorted): decoded with Pillow exactly like
  the training data (``convert("RGB")``), so predictions match ``ftedge train``'s evaluation;
- a video file, a camera index (``0``), a stream URL (``rtsp://``, ``http://``...) or a
  GStreamer pipeline ending in ``appsink`` (Jetson CSI cameras): decoded with OpenCV
  (``ftedge[video]``), frames in BGR.

Annotated output (``save=DIR``) draws the top-k on each image (same file name and format) or
writes ``DIR/<name>.mp4`` (mp4v) for videos, cameras and streams. Per-frame JSON lines
(``json_path``) end with one summary line (``"kind": "summary"``). Ctrl-C ends a camera run
cleanly: the video is finalised and the summary still reported.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ftedge.errors import FtedgeError, MissingExtraError
from ftedge.runtime.classifier import Classifier, Prediction, load
from ftedge.runtime.preprocess import ColorOrder

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
JSON_SCHEMA_VERSION = 1


# FFmpeg prints its own errors ("moov atom not found", "Connection refused") straight to
# stderr; we report an unopenable source as one line, so FFmpeg is kept to fatal messages while
# we open a source, unless the user chose a level. OpenCV reads the variable on its first FFmpeg
# use in the process; the host application's environment is put back right after.
_FFMPEG_LOGLEVEL = ("OPENCV_FFMPEG_LOGLEVEL", "8")


@contextlib.contextmanager
def _quiet_ffmpeg() -> Iterator[None]:
    name, quiet = _FFMPEG_LOGLEVEL
    if name in os.environ:  # the user's (or the app's) own choice wins
        yield
        return
    os.environ[name] = quiet
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise MissingExtraError(
            "OpenCV (needed for video, camera and stream sources)", "video"
        ) from None
    return cv2


# -- sources ----------------------------------------------------------------------------------
@dataclass
class Frame:
    """One decoded image or video frame."""

    image: np.ndarray  # HWC uint8
    color: ColorOrder  # channel order of ``image``
    name: str  # file path, or the source for video frames
    index: int | None = None  # frame number in a video/stream, None for image files
    time_s: float | None = None  # video timestamp


class FrameSource:
    """Iterable of ``Frame``; ``kind`` is image, folder, video, camera, stream or gstreamer."""

    kind: str = "image"

    def __init__(self, source: str) -> None:
        self.source = source
        self.fps: float | None = None  # nominal frame rate of a video/camera
        self.skipped: list[str] = []  # unreadable files of a folder

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise FtedgeError(f"cannot read image {path}: {e}") from None


class ImageSource(FrameSource):
    """One image file or every image under a folder (recursive, sorted)."""

    def __init__(self, source: str, files: list[Path], root: Path | None) -> None:
        super().__init__(source)
        self.files = files
        self.root = root
        self.kind = "folder" if root is not None else "image"

    def relative(self, path: Path) -> Path:
        return path.relative_to(self.root) if self.root is not None else Path(path.name)

    def __iter__(self) -> Iterator[Frame]:
        for f in self.files:
            try:
                img = _read_image(f)
            except FtedgeError as e:
                if self.root is None:
                    raise
                self.skipped.append(str(f))  # one bad file in a folder does not end the run
                import warnings

                warnings.warn(str(e), stacklevel=2)
                continue
            yield Frame(img, "rgb", str(f))


class VideoSource(FrameSource):
    """A video file, camera index or stream URL through ``cv2.VideoCapture`` (BGR frames)."""

    def __init__(self, source: str, kind: str, timeout_s: float = 10.0) -> None:
        super().__init__(source)
        self.kind = kind
        cv2 = _cv2()
        # OpenCV logs a few WARN lines per backend it tries before giving up; the failure is
        # reported below as one line, so silence them while opening.
        log = getattr(getattr(cv2, "utils", None), "logging", None)
        old = log.getLogLevel() if log is not None else None
        if log is not None:
            log.setLogLevel(log.LOG_LEVEL_ERROR)
        try:
            with _quiet_ffmpeg():
                cap = _open_capture(cv2, source, kind, timeout_s)
        finally:
            if log is not None:
                log.setLogLevel(old)
        if not cap.isOpened():
            cap.release()
            what = {"camera": "camera", "stream": "stream", "gstreamer": "GStreamer pipeline"}
            extra = " (is it built with GStreamer?)" if kind == "gstreamer" else ""
            raise FtedgeError(
                f"cannot open {what.get(kind, 'video file')} {source!r} with OpenCV{extra}"
            )
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if math.isfinite(fps) and 0 < fps < 1000 else None
        self._cap = cap
        self._cv2 = cv2

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        while True:
            ok, img = self._cap.read()
            if not ok or img is None:
                return
            pos = self._cap.get(self._cv2.CAP_PROP_POS_MSEC)
            t = pos / 1000.0 if self.kind == "video" and pos and math.isfinite(pos) else None
            if t is None and self.kind == "video" and self.fps:
                t = i / self.fps
            if img.ndim == 2:
                img = img[:, :, None]
            yield Frame(img, "bgr", self.source, i, t)
            i += 1

    def close(self) -> None:
        self._cap.release()


def _open_capture(cv2: Any, source: str, kind: str, timeout_s: float) -> Any:
    if kind == "camera":
        return cv2.VideoCapture(int(source))
    if kind == "gstreamer":  # Jetson CSI cameras: nvarguscamerasrc ! ... ! appsink
        return cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    if kind == "stream":
        ms = int(timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
    return cv2.VideoCapture(source)


def open_source(source: str | int | Path, *, timeout_s: float = 10.0) -> FrameSource:
    """Open an image, folder, video file, camera index or stream URL; one-line error if not."""
    s = str(source).strip()
    if not s:
        raise FtedgeError("empty --source")
    if s.isdigit():
        return VideoSource(s, "camera")
    if s.lower().startswith(STREAM_SCHEMES):
        return VideoSource(s, "stream", timeout_s)
    if "!" in s and "appsink" in s:
        return VideoSource(s, "gstreamer")
    p = Path(s).expanduser()
    if p.is_dir():
        files = sorted(
            f
            for f in p.rglob("*")
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
        )
        if not files:
            raise FtedgeError(f"no images in folder {p}")
        return ImageSource(s, files, p)
    if not p.exists():
        raise FtedgeError(
            f"source {s!r} does not exist (expected an image, a folder, a video file, "
            "a camera index such as 0, or an rtsp:// URL)"
        )
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSource(s, [p], None)
    return VideoSource(s, "video")


# -- annotation -------------------------------------------------------------------------------
def annotate(image: np.ndarray, pred: Prediction, color: ColorOrder = "rgb") -> np.ndarray:
    """A copy of ``image`` (HWC uint8, in ``color`` order) with the top-k drawn top-left."""
    from PIL import Image, ImageDraw, ImageFont

    rgb = image[:, :, ::-1] if color == "bgr" else image
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    canvas = Image.fromarray(np.ascontiguousarray(rgb[:, :, :3]), "RGB")
    size = max(10, min(canvas.size) // 20)
    try:
        font: Any = ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(canvas)
    y: float = 2
    for rank, (label, score) in enumerate(pred.topk()):
        text = f"{label} {score:.2f}"
        box = draw.textbbox((4, y), text, font=font)
        draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
        draw.text((4, y), text, fill=(0, 255, 0) if rank == 0 else (255, 255, 255), font=font)
        y = box[3] + 4
    out = np.asarray(canvas)
    return np.ascontiguousarray(out[:, :, ::-1]) if color == "bgr" else out


class _VideoWriter:
    """mp4v .mp4 writer opened on the first frame (its size is only known then)."""

    def __init__(self, path: Path, fps: float | None) -> None:
        self.path = path
        self.fps = fps or 30.0
        self._writer: Any = None

    def write(self, bgr: np.ndarray) -> None:
        if self._writer is None:
            cv2 = _cv2()
            h, w = bgr.shape[:2]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise FtedgeError(f"cannot write video {self.path} (mp4v)")
        self._writer.write(bgr)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


# -- the loop ---------------------------------------------------------------------------------
@dataclass
class FrameResult:
    """The prediction for one image or frame."""

    index: int  # running number over the whole source
    name: str  # image path, or the video/camera/stream source
    frame: int | None  # frame number within a video/stream
    time_s: float | None  # video timestamp
    prediction: Prediction
    latency_ms: float  # classify: preprocess + inference + top-k
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
    """What a predict run did and how fast (FPS end to end, classify latency percentiles)."""

    source: str
    kind: str
    frames: int
    seconds: float  # wall time of the loop: decode + classify + annotate + write
    artifact: str
    backend: str
    device: str
    latency_ms: dict[str, float] = field(default_factory=dict)  # classify: p50, mean, p90, max
    preprocess_ms_p50: float | None = None
    infer_ms_p50: float | None = None
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
            "frames": self.frames,
            "seconds": round(self.seconds, 4),
            "fps": round(self.fps, 3),
            "artifact": self.artifact,
            "backend": self.backend,
            "device": self.device,
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "preprocess_ms_p50": self.preprocess_ms_p50,
            "infer_ms_p50": self.infer_ms_p50,
            "saved": self.saved,
            "skipped": self.skipped,
            "interrupted": self.interrupted,
        }

    def line(self) -> str:
        lat = self.latency_ms
        parts = [
            f"{self.frames} frame(s) in {self.seconds:.2f} s: {self.fps:.1f} FPS end to end",
        ]
        if lat:
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
    classifier: Classifier, source: FrameSource, *, topk: int = 5
) -> Iterator[tuple[Frame, FrameResult]]:
    """Classify every frame of ``source`` one by one (batch 1: the camera-app latency path)."""
    for i, frame in enumerate(source):
        t0 = time.perf_counter()
        pred = classifier.classify(frame.image, topk=topk, color=frame.color)
        dt = (time.perf_counter() - t0) * 1e3
        assert isinstance(pred, Prediction)
        h, w = frame.image.shape[:2]
        yield frame, FrameResult(i, frame.name, frame.index, frame.time_s, pred, dt, w, h)


def _save_path(save: Path, source: FrameSource, frame: Frame) -> Path:
    if isinstance(source, ImageSource):
        return save / source.relative(Path(frame.name))
    if source.kind == "camera":
        return save / f"camera{source.source}.mp4"
    if source.kind in ("stream", "gstreamer"):
        return save / "stream.mp4"
    return save / f"{Path(source.source).stem}.mp4"


def predict(
    bundle: str | Path | Classifier,
    source: str | int | Path,
    *,
    topk: int = 5,
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
) -> PredictSummary:
    """Classify every image/frame of ``source`` and return a summary (with per-frame results).

    ``bundle``: a bundle directory or an already loaded ``Classifier``. ``save``: a folder for
    annotated images / an annotated ``.mp4``. ``json_path``: write JSON lines (one per frame,
    then a summary line); ``"-"`` is stdout. ``max_frames``: stop after that many (cameras run
    until the stream ends or Ctrl-C). ``on_result`` is called for every frame as it is done;
    ``keep_results=False`` keeps memory flat on endless camera runs.
    """
    if not isinstance(topk, int) or topk < 1:
        raise FtedgeError(f"topk must be a positive integer, got {topk!r}")
    if max_frames is not None and max_frames < 1:
        raise FtedgeError(f"max_frames must be >= 1, got {max_frames}")
    src = open_source(source, timeout_s=timeout_s)  # before loading: a bad source fails fast
    own = not isinstance(bundle, Classifier)
    try:
        clf = (
            load(bundle, backend=backend, device=device, precision=precision, verify=verify)
            if not isinstance(bundle, Classifier)
            else bundle
        )
    except BaseException:
        src.close()
        raise
    save_dir = Path(save).expanduser() if save is not None else None
    jfile: IO[str] | None = None
    writer: _VideoWriter | None = None
    results: list[FrameResult] = []
    lat: list[float] = []
    pre: list[float] = []
    inf: list[float] = []
    saved: list[str] = []
    interrupted = False
    frames = 0
    start = time.perf_counter()
    try:
        if json_path is not None:
            if str(json_path) == "-":
                import sys

                jfile = sys.stdout
            else:
                Path(json_path).expanduser().parent.mkdir(parents=True, exist_ok=True)
                jfile = open(Path(json_path).expanduser(), "w")  # noqa: SIM115 (closed below)
        try:
            for frame, res in iter_predictions(clf, src, topk=topk):
                frames += 1
                lat.append(res.latency_ms)
                pre.append(clf.last_timing.get("preprocess_ms", math.nan))
                inf.append(clf.last_timing.get("infer_ms", math.nan))
                if keep_results:
                    results.append(res)
                if jfile is not None:
                    jfile.write(json.dumps(res.to_dict()) + "\n")
                if save_dir is not None:
                    drawn = annotate(frame.image, res.prediction, frame.color)
                    out = _save_path(save_dir, src, frame)
                    if isinstance(src, ImageSource):
                        saved.append(str(_save_image(drawn, out)))
                    else:
                        if writer is None:
                            writer = _VideoWriter(out, src.fps)
                            saved.append(str(out))
                        bgr = drawn if frame.color == "bgr" else drawn[:, :, ::-1]
                        writer.write(np.ascontiguousarray(bgr))
                if on_result is not None:
                    on_result(res)
                if max_frames is not None and frames >= max_frames:
                    break
        except KeyboardInterrupt:  # Ctrl-C on a camera: finish the video and report
            interrupted = True
        seconds = time.perf_counter() - start
        if frames == 0:
            raise FtedgeError(f"no frames could be read from {src.source!r}")
        summary = PredictSummary(
            source=src.source,
            kind=src.kind,
            frames=frames,
            seconds=seconds,
            artifact=clf.artifact.name,
            backend=clf.backend,
            device=clf.device,
            latency_ms=_stats(lat),
            preprocess_ms_p50=round(float(np.nanmedian(pre)), 3),
            infer_ms_p50=round(float(np.nanmedian(inf)), 3),
            saved=saved,
            skipped=list(src.skipped),
            interrupted=interrupted,
            results=results,
        )
        if jfile is not None:
            jfile.write(json.dumps(summary.to_dict()) + "\n")
        return summary
    finally:
        if writer is not None:
            writer.close()
        if jfile is not None and str(json_path) != "-":
            jfile.close()
        src.close()
        if own:
            clf.close()


def _save_image(rgb: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(rgb, "RGB")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, quality=95)
    elif path.suffix.lower() in (".gif", ".pgm"):  # palette / grayscale formats: keep colour
        path = path.with_suffix(".png")
        im.save(path)
    else:
        im.save(path)
    return path


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "mean": float(a.mean()),
        "p90": float(np.percentile(a, 90)),
        "max": float(a.max()),
    }
