"""Frame sources for ``ftedge predict``: images, folders, video files, cameras and streams.

``open_source`` picks one from the ``--source`` string:
- an image file, or a folder of images (recursively, sorted): decoded with Pillow exactly like
  the training data (``convert("RGB")``), so predictions match ``ftedge train``'s evaluation;
- a video file, a camera index (``0``), a stream URL (``rtsp://``, ``http://``...) or a
  GStreamer pipeline ending in ``appsink`` (Jetson CSI cameras): decoded with OpenCV
  (``ftedge[video]``), frames in BGR.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.errors import FtedgeError, MissingExtraError
from ftedge.runtime.preprocess import ColorOrder

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


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


def import_cv2() -> Any:
    """OpenCV, or a one-line error naming the ``video`` extra."""
    try:
        import cv2
    except ImportError:
        raise MissingExtraError(
            "OpenCV (needed for video, camera and stream sources)", "video"
        ) from None
    return cv2


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
    from ftedge.runtime.images import read_rgb

    return read_rgb(path)  # as training reads it: EXIF orientation, 16-bit scaled


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
        cv2 = import_cv2()
        cap = _open_quietly(cv2, source, kind, timeout_s)
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


def _open_quietly(cv2: Any, source: str, kind: str, timeout_s: float) -> Any:
    """``cv2.VideoCapture`` without OpenCV's and FFmpeg's own log lines."""
    # OpenCV logs a few WARN lines per backend it tries before giving up; the failure is
    # reported by the caller as one line, so silence them while opening.
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    old = log.getLogLevel() if log is not None else None
    if log is not None:
        log.setLogLevel(log.LOG_LEVEL_ERROR)
    try:
        with _quiet_ffmpeg():
            return _open_capture(cv2, source, kind, timeout_s)
    finally:
        if log is not None:
            log.setLogLevel(old)


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


def _folder_source(s: str, p: Path) -> ImageSource:
    files = sorted(
        f
        for f in p.rglob("*")
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
    )
    if not files:
        raise FtedgeError(f"no images in folder {p}")
    return ImageSource(s, files, p)


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
        return _folder_source(s, p)
    if not p.exists():
        raise FtedgeError(
            f"source {s!r} does not exist (expected an image, a folder, a video file, "
            "a camera index such as 0, or an rtsp:// URL)"
        )
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSource(s, [p], None)
    return VideoSource(s, "video")
