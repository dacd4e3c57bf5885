"""The fast preprocessing path: one resize from the frame straight to the network crop, uint8.

The exact path (``preprocess.py``) resizes the whole frame with Pillow, then crops: at 640x480 it
costs more than the network. Here the centre-crop window is mapped back into the frame first and
only that window is resized, once, to the network size:

- shrinking with OpenCV (``ftedge[video]``): ``cv2.resize(..., INTER_AREA)`` of the window
  rounded to whole pixels (area averaging, no aliasing; the rounding moves the window by less
  than one frame pixel);
- otherwise (enlarging, or no OpenCV): Pillow's ``resize(box=window)`` with the exact sub-pixel
  window and the spec's filter (on enlarged images it matches the exact path's answers).

The channels stay uint8 until the last step (scale and offset in one float pass), a BGR frame is
swapped on the small crop, not the frame. The result is not bit-identical to the exact path:
``ftedge export`` measures its accuracy and top-1 agreement with the exact path on the test split
and records them in the manifest (``preprocessing.fast``); ``load()`` uses it only when that
agreement is at least ``MIN_AGREEMENT``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ftedge.runtime.preprocess import ColorOrder, PreprocessSpec, check_frame

FastEngine = Literal["opencv", "pillow"]
MIN_AGREEMENT = 0.995  # top-1 agreement with the exact path, on the test split


def available_engine() -> FastEngine:
    """``opencv`` when cv2 is importable, else ``pillow``."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return "pillow"
    return "opencv"


@dataclass(frozen=True)
class CropWindow:
    """The centre-crop window of a frame, in frame pixels (floats), and the resize scale."""

    left: float
    top: float
    width: float
    height: float
    scale: float  # frame pixels per resized pixel (> 1: shrinking)


def crop_window(frame_w: int, frame_h: int, spec: PreprocessSpec) -> CropWindow:
    """Where the exact path's crop comes from in the frame (same integer arithmetic)."""
    size = spec.resize_size
    if frame_w <= frame_h:
        new_w, new_h = size, int(size * frame_h / frame_w)
    else:
        new_w, new_h = int(size * frame_w / frame_h), size
    sx, sy = frame_w / new_w, frame_h / new_h
    top = int(round((new_h - spec.height) / 2.0))
    left = int(round((new_w - spec.width) / 2.0))
    return CropWindow(left * sx, top * sy, spec.width * sx, spec.height * sy, max(sx, sy))


class FastPreprocessor:
    """Frames -> uint8 HWC RGB crops (``crop``) -> float NCHW network input (``normalize``)."""

    def __init__(self, spec: PreprocessSpec, engine: FastEngine | None = None) -> None:
        self.spec = spec
        self.engine: FastEngine = engine or available_engine()
        self._cv2: Any = None
        if self.engine == "opencv":
            import cv2

            self._cv2 = cv2
        std = np.asarray(spec.std, np.float32)
        # (x / 255 - mean) / std == x * a + b: one multiply-add per value
        self._a = (1.0 / (255.0 * std)).astype(np.float32)
        self._b = (-np.asarray(spec.mean, np.float32) / std).astype(np.float32)

    def crop(self, frame: np.ndarray, color: ColorOrder = "rgb") -> np.ndarray:
        """One HWC (or HW) uint8 frame -> HWC uint8 RGB crop at network resolution."""
        check_frame(frame)
        if frame.ndim == 2:
            frame = frame[:, :, None]
        if frame.shape[2] == 4:
            frame = frame[:, :, :3]
        win = crop_window(frame.shape[1], frame.shape[0], self.spec)
        out = self._opencv(frame, win) if self._cv2 is not None else self._pillow(frame, win)
        if out.ndim == 2:
            out = out[:, :, None]
        if out.shape[2] == 1:
            return np.repeat(out, 3, axis=2)
        return out[:, :, ::-1] if color == "bgr" else out

    def _opencv(self, frame: np.ndarray, win: CropWindow) -> np.ndarray:
        cv2 = self._cv2
        size = (self.spec.width, self.spec.height)
        if win.scale > 1.0:
            x0, y0 = int(round(win.left)), int(round(win.top))
            x1 = min(frame.shape[1], int(round(win.left + win.width)))
            y1 = min(frame.shape[0], int(round(win.top + win.height)))
            return np.asarray(cv2.resize(frame[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA))
        # Enlarging costs in proportion to the (small) output: Pillow's exact sub-pixel box is as
        # fast, and OpenCV's bicubic (a = -0.75) moved 3.4 % of top-1 answers on 28 px images.
        return self._pillow(frame, win)

    def _pillow(self, frame: np.ndarray, win: CropWindow) -> np.ndarray:
        from PIL import Image

        from ftedge.runtime.preprocess import _PIL_INTERP

        mode = "L" if frame.shape[2] == 1 else "RGB"
        img = Image.fromarray(np.ascontiguousarray(frame[:, :, 0] if mode == "L" else frame), mode)
        box = (win.left, win.top, win.left + win.width, win.top + win.height)
        size = (self.spec.width, self.spec.height)
        return np.asarray(img.resize(size, _PIL_INTERP[self.spec.interpolation], box=box))

    def normalize(self, crops: np.ndarray) -> np.ndarray:
        """NHWC uint8 RGB crops -> NCHW float32 network input (the last, only float step)."""
        x = crops.transpose(0, 3, 1, 2).astype(np.float32)
        x *= self._a[:, None, None]
        x += self._b[:, None, None]
        return x
