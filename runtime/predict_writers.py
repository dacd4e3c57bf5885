"""What ``ftedge predict`` writes: annotated images and videos, and JSON lines.

Annotated output (``save=DIR``) is each image with its result drawn (the top-k, or the
detected boxes; same file name and format), or ``DIR/<name>.mp4`` (mp4v) for videos, cameras
and streams. Per-frame JSON lines (``json_path``, ``"-"`` for stdout) end with one summary line
(``"kind": "summary"``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np

from ftedge.errors import FtedgeError
from ftedge.runtime.classifier import Prediction
from ftedge.runtime.frame_sources import Frame, FrameSource, ImageSource, import_cv2
from ftedge.runtime.preprocess import ColorOrder


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


class VideoWriter:
    """mp4v .mp4 writer opened on the first frame (its size is only known then)."""

    def __init__(self, path: Path, fps: float | None) -> None:
        self.path = path
        self.fps = fps or 30.0
        self._writer: Any = None

    def write(self, bgr: np.ndarray) -> None:
        if self._writer is None:
            cv2 = import_cv2()
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


def _image_out(path: Path) -> Path:
    """The file an annotated image is written to: palette/grayscale formats become PNG."""
    return path.with_suffix(".png") if path.suffix.lower() in (".gif", ".pgm") else path


def save_image(rgb: np.ndarray, path: Path) -> Path:
    """Write ``rgb`` at ``path`` in its format (palette/grayscale formats become PNG)."""
    from PIL import Image

    path = _image_out(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(rgb, "RGB")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, quality=95)
    else:
        im.save(path)
    return path


def save_path(save: Path, source: FrameSource, frame: Frame) -> Path:
    """Where the annotated copy of ``frame`` goes under ``save``."""
    if isinstance(source, ImageSource):
        return _image_out(save / source.relative(Path(frame.name)))
    if source.kind == "camera":
        return save / f"camera{source.source}.mp4"
    if source.kind in ("stream", "gstreamer"):
        return save / "stream.mp4"
    return save / f"{Path(source.source).stem}.mp4"


class PredictWriters:
    """The outputs of one predict run: JSON lines and/or annotated images / one video."""

    def __init__(self, save: str | Path | None, json_path: str | Path | None) -> None:
        self.save_dir = Path(save).expanduser() if save is not None else None
        self.json_path = json_path
        self.saved: list[str] = []  # annotated files written, in order
        self._json: IO[str] | None = None
        self._video: VideoWriter | None = None

    def planned(self, source: FrameSource) -> list[Path]:
        """Every file this run will write, known before the first frame."""
        out = []
        if self.json_path is not None and str(self.json_path) != "-":
            out.append(Path(self.json_path).expanduser())
        if self.save_dir is not None:
            if isinstance(source, ImageSource):
                names = [Frame(np.zeros((1, 1, 3), np.uint8), "rgb", str(f)) for f in source.files]
            else:
                names = [Frame(np.zeros((1, 1, 3), np.uint8), "bgr", source.source, 0)]
            out += [save_path(self.save_dir, source, f) for f in names]
        return out

    def open(self, source: FrameSource, inputs: list[Path]) -> None:
        """Check the outputs against the inputs and their kinds, then open the JSON lines file
        (its folder made), or take stdout for ``"-"``. Nothing is written before the checks."""
        from ftedge.files import check_output_kinds, check_output_not_input

        check_output_kinds([("--json", self.json_path)], [("--save", self.save_dir)])
        planned = self.planned(source)
        check_output_not_input(planned, inputs, "--save/--json")
        if self.json_path is None:
            return
        if str(self.json_path) == "-":
            self._json = sys.stdout
            return
        path = Path(self.json_path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._json = open(path, "w")  # noqa: SIM115 (closed in close())

    def write_json(self, record: dict[str, Any]) -> None:
        if self._json is not None:
            self._json.write(json.dumps(record) + "\n")

    def save_annotated(self, source: FrameSource, frame: Frame, drawn: np.ndarray) -> None:
        """Save ``drawn`` (``frame`` with its result drawn, in the frame's colour order) as an
        image, or append it to the video."""
        if self.save_dir is None:
            return
        out = save_path(self.save_dir, source, frame)
        if isinstance(source, ImageSource):
            self.saved.append(str(save_image(drawn, out)))
            return
        if self._video is None:
            self._video = VideoWriter(out, source.fps)
            self.saved.append(str(out))
        bgr = drawn if frame.color == "bgr" else drawn[:, :, ::-1]
        self._video.write(np.ascontiguousarray(bgr))

    def close(self) -> None:
        """Finalise the video and close the JSON file (never stdout)."""
        if self._video is not None:
            self._video.close()
        if self._json is not None and str(self.json_path) != "-":
            self._json.close()
