"""The fast preprocessing path: one resize from the frame straight to the network crop, uint8.

The exact path (``preprocess.py``) resizes the whole frame with Pillow, then crops: at 640x480 it
costs more than the network. Here the centre-crop window is mapped back into the frame first and
only that window is resized to the network size:

- shrinking with OpenCV (``ftedge[video]``) by a factor ``s`` in [3, 4) (640x480 frames to
  128-160 px): an exact 2x2 area halving of an even-sized window, then one bilinear warp to the
  exact sub-pixel crop window; by other factors: a bilinear resize of the window (rounded to
  whole pixels) to ``k`` times the network size, ``k = ceil(s / 2)``, then an integer ``k`` x
  ``k`` area average. Each step stays within what it does well (bilinear does not alias up to
  a 2x shrink; OpenCV's area filter is fast only for integer factors), together 4-6x faster
  than one ``INTER_AREA`` and as close to Pillow's antialiased bicubic (``ShrinkPlan``);
- shrinking without OpenCV (the ``pillow`` engine): Pillow's ``resize(box=window)`` with the
  exact sub-pixel window and the spec's filter (the exact path's resample, on the window alone);
- enlarging: the exact path itself (it costs in proportion to the small output).

The crop stays uint8 in the frame's channel order; normalisation is the last step, one
multiply-add per value written into a preallocated float32 NCHW buffer, read through a strided
view that does the HWC->CHW change and the BGR->RGB swap for free. A model that normalises
inside its graph gets the uint8 crop as NCHW planes instead (``prepare_planes``: one
``cv2.split``, channel order chosen by the order of the planes). Both reuse their buffers from
call to call (a camera loop allocates nothing per frame), so a result is only valid until the
next call.

The result is not bit-identical to the exact path: ``ftedge export`` measures its accuracy and
top-1 agreement with the exact path on the test split, as stored and centred in 640x480 frames
(which exercises the shrinking branch), and records them in the manifest
(``reference.fast_preprocessing``). ``verified`` is the rule ``load()`` follows to make it the
default: in every measurement, accuracy within ``MAX_ACCURACY_DROP`` of the exact path's and
agreement of at least ``MIN_AGREEMENT``, or, on the camera-size frames, at least the exact
path's agreement with itself when the frame moves by one pixel (``shift_agreement``).

Why that second yardstick: shrinking a frame has no single right answer. Pillow's resample
rounds to uint8 in its own way, and a model can be so sensitive that rounding-level differences
move a few answers that sit on a class boundary (on the built-in data 0.8 % of frames, all
among the 4 % with the smallest margin between the top two classes). Moving the camera by one
pixel moves more of them (1.0 %). A fast path that changes fewer answers than that, at the
same accuracy, changes nothing a camera app could rely on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ftedge.runtime.preprocess import ColorOrder, PreprocessSpec, check_frame

if TYPE_CHECKING:
    from ftedge.runtime.manifest import FastPreprocessing, Reference

FastEngine = Literal["opencv", "pillow"]
MIN_AGREEMENT = 0.995  # top-1 agreement with the exact path, on the test split
MAX_ACCURACY_DROP = 0.001  # fast-path accuracy at most 0.1 point below the exact path's
VERIFY_FRAME = (640, 480)  # the camera frame size export measures the shrinking branch at
# Shrink factors the OpenCV engine resizes by one exact 2x area halving and a bilinear warp
# (at 640x480 -> 128 px: 0.06 ms against 0.10 ms, as close to Pillow); outside this range the
# supersampled resize is closer to Pillow (see docs/runtime.md).
HALVING_SHRINK = (3.0, 4.0)
# The algorithm an export measured (``FastPreprocessing.version``): 1 resized every shrink the
# supersampled way, 2 halves in ``HALVING_SHRINK``. A bundle runs the version it was verified with.
FAST_PATH_VERSION = 2


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


@dataclass(frozen=True)
class ShrinkPlan:
    """How the OpenCV engine shrinks frames of one size (computed once per frame size).

    It reads the integer window ``[y0:y1, x0:x1]`` of the frame and either halves it with an
    exact 2x2 area average, then warps it bilinearly to the exact sub-pixel crop window
    (``matrix``: output pixel -> halved pixel), or resizes it bilinearly to ``k`` times the
    network size and averages ``k`` x ``k`` areas (``matrix`` None)."""

    frame: tuple[int, int]  # (width, height)
    scale: float  # frame pixels per network pixel (> 1: shrinking)
    x0: int
    y0: int
    x1: int
    y1: int
    k: int = 1
    matrix: np.ndarray | None = None


def shrink_plan(
    frame_w: int, frame_h: int, spec: PreprocessSpec, version: int = FAST_PATH_VERSION
) -> ShrinkPlan:
    """The OpenCV engine's geometry for ``frame_w`` x ``frame_h`` frames (as ``version`` of the
    fast path computes it)."""
    win = crop_window(frame_w, frame_h, spec)
    if version >= 2 and HALVING_SHRINK[0] <= win.scale < HALVING_SHRINK[1]:
        x0, x1 = _even_span(win.left, win.width, frame_w)
        y0, y1 = _even_span(win.top, win.height, frame_h)
        ax, ay = win.width / (2 * spec.width), win.height / (2 * spec.height)
        # Output pixel centre u + 0.5 sits at frame x = left + (u + 0.5) * 2 * ax, which is
        # halved pixel (x - x0) / 2 - 0.5 (halved pixel i covers frame [x0 + 2i, x0 + 2i + 2)).
        matrix = np.array(
            [
                [ax, 0.0, (win.left - x0) / 2 + ax / 2 - 0.5],
                [0.0, ay, (win.top - y0) / 2 + ay / 2 - 0.5],
            ]
        )
        return ShrinkPlan((frame_w, frame_h), win.scale, x0, y0, x1, y1, matrix=matrix)
    x0, y0 = int(round(win.left)), int(round(win.top))
    x1 = min(frame_w, int(round(win.left + win.width)))
    y1 = min(frame_h, int(round(win.top + win.height)))
    # Rounded to whole pixels (moves the window by less than one frame pixel).
    k = max(1, math.ceil(win.scale / 2.0))
    return ShrinkPlan((frame_w, frame_h), win.scale, x0, y0, x1, y1, k=k)


def _even_span(start: float, length: float, limit: int) -> tuple[int, int]:
    """An even-length integer span covering ``[start, start + length)`` inside ``[0, limit)``
    (a window filling the frame loses at most its last odd pixel: the warp replicates it)."""
    lo = math.floor(start)
    n = min(limit // 2 * 2, -(-(math.ceil(start + length) - lo) // 2) * 2)
    lo = max(0, min(lo, limit - n))
    return lo, lo + n


def verified(reference: Reference, engine: str) -> bool:
    """Whether the export verified the fast path with ``engine`` well enough to be the default:
    measured both on the stored test images and in camera-size frames, and every measurement
    within ``MAX_ACCURACY_DROP`` of the exact path's accuracy, agreeing with it on at least
    ``MIN_AGREEMENT`` of the images or, in frames, as often as a one-pixel move does."""
    measured = reference.fast_paths(engine)
    frame = "x".join(str(v) for v in VERIFY_FRAME)
    if not {"test", frame} <= {m.frames for m in measured}:
        return False  # an older export measured less: the exact path stays the default
    return all(
        m.exact_accuracy is not None
        and m.version <= FAST_PATH_VERSION  # a newer algorithm than this runtime has: unverified
        and m.accuracy >= m.exact_accuracy - MAX_ACCURACY_DROP
        and m.agreement >= _needed_agreement(m)
        for m in measured
    )


def _needed_agreement(m: FastPreprocessing) -> float:
    if m.shift_agreement is None:
        return MIN_AGREEMENT
    return min(MIN_AGREEMENT, m.shift_agreement)


def verified_engine(reference: Reference) -> FastEngine | None:
    """The fastest engine available here that the export verified (OpenCV before Pillow), or
    None: the exact path."""
    engines: tuple[FastEngine, ...] = (
        ("opencv", "pillow") if available_engine() == "opencv" else ("pillow",)
    )
    return next((e for e in engines if verified(reference, e)), None)


def verified_preprocessor(reference: Reference, spec: PreprocessSpec) -> FastPreprocessor | None:
    """The fast path ``load()`` makes the default: the ``verified_engine`` running the algorithm
    version the export measured, or None (the exact path)."""
    engine = verified_engine(reference)
    if engine is None:
        return None
    return FastPreprocessor(spec, engine, min(m.version for m in reference.fast_paths(engine)))


class FastPreprocessor:
    """Frames -> uint8 HWC crops (``crop``) -> float NCHW network input (``normalize``), or
    both at once into reused buffers (``prepare``)."""

    def __init__(
        self,
        spec: PreprocessSpec,
        engine: FastEngine | None = None,
        version: int = FAST_PATH_VERSION,
    ) -> None:
        self.spec = spec
        self.engine: FastEngine = engine or available_engine()
        self.version = version
        self._cv2: Any = None
        if self.engine == "opencv":
            import cv2

            self._cv2 = cv2
        std = np.asarray(spec.std, np.float32)
        # (x / 255 - mean) / std == x * a + b: one multiply-add per value
        self._a = (1.0 / (255.0 * std)).astype(np.float32)
        self._b = (-np.asarray(spec.mean, np.float32) / std).astype(np.float32)
        self._a3, self._b3 = self._a[:, None, None], self._b[:, None, None]
        # Reused from call to call; replaced (not added to) when the batch or frame size changes.
        self._input = np.empty((0, 3, spec.height, spec.width), np.float32)
        self._planes = np.empty((0, 3, spec.height, spec.width), np.uint8)
        self._alpha = np.empty((spec.height, spec.width), np.uint8)  # a warped 4th channel
        self._plan: ShrinkPlan | None = None  # the OpenCV geometry of the last frame size
        self._bufs: tuple[np.ndarray, ...] = ()  # that geometry's intermediate images

    def crop(self, frame: np.ndarray, color: ColorOrder = "rgb") -> np.ndarray:
        """One HWC (or HW) uint8 frame -> a new HWC uint8 RGB crop at network resolution."""
        img = self._crop_image(frame)
        if img.shape[2] == 1:
            return np.repeat(img, 3, axis=2)
        return (img[:, :, 2::-1] if color == "bgr" else img[:, :, :3]).copy()  # img is reused

    def _crop_image(self, frame: np.ndarray) -> np.ndarray:
        """The crop in the frame's own channels: H x W x 1 (grey) or 3, or 4 where OpenCV warped
        it with an unused 4th channel. OpenCV's crops live in reused buffers, valid until the
        next call: ``prepare`` and ``prepare_planes`` read them in place."""
        check_frame(frame)
        if frame.ndim == 2:
            frame = frame[:, :, None]
        if frame.shape[2] == 4:
            frame = frame[:, :, :3]
        if self._cv2 is not None and frame.shape[2] == 3:
            plan = self._plan
            if plan is None or plan.frame != (frame.shape[1], frame.shape[0]):
                plan = self._set_plan(frame.shape[1], frame.shape[0])
            if plan.scale > 1.0:
                return self._opencv(frame, plan)
        win = crop_window(frame.shape[1], frame.shape[0], self.spec)
        crop = self._pillow(frame, win) if win.scale > 1.0 else self._enlarge(frame)
        return crop[:, :, None] if crop.ndim == 2 else crop

    def _set_plan(self, frame_w: int, frame_h: int) -> ShrinkPlan:
        """The OpenCV geometry for a new frame size, and its intermediate images (replacing the
        previous size's: a camera loop allocates nothing per frame)."""
        plan = shrink_plan(frame_w, frame_h, self.spec, self.version)
        h, w = self.spec.height, self.spec.width
        if plan.matrix is not None:  # halved window (3 and 4 channels), 4-channel crop
            half = ((plan.y1 - plan.y0) // 2, (plan.x1 - plan.x0) // 2)
            shapes = [(*half, 3), (*half, 4), (h, w, 4)]
        else:  # the supersampled resize (k > 1), the crop
            shapes = [(plan.k * h, plan.k * w, 3)] if plan.k > 1 else []
            shapes.append((h, w, 3))
        self._plan, self._bufs = plan, tuple(np.empty(s, np.uint8) for s in shapes)
        return plan

    def _opencv(self, frame: np.ndarray, plan: ShrinkPlan) -> np.ndarray:
        cv2 = self._cv2
        w, h = self.spec.width, self.spec.height
        window = frame[plan.y0 : plan.y1, plan.x0 : plan.x1]
        if plan.matrix is not None:
            half, half4, crop4 = self._bufs
            cv2.resize(window, half.shape[1::-1], dst=half, interpolation=cv2.INTER_AREA)
            # OpenCV's warp is much faster on 4-channel images than on 3-channel ones: adding
            # an alpha channel and warping gives the same bytes in less time (at 640x480 ->
            # 128 px: 29-37 us -> 16 us, plus 5 us for the conversion). The crop is the first
            # three channels, read in place.
            cv2.cvtColor(half, cv2.COLOR_BGR2BGRA, dst=half4)
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            cv2.warpAffine(half4, plan.matrix, (w, h), crop4, flags, cv2.BORDER_REPLICATE)
            return crop4
        out = self._bufs[-1]
        if plan.k == 1:
            # Shrinking by at most 2x: bilinear still sees every pixel.
            cv2.resize(window, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)
            return out
        big = self._bufs[0]
        cv2.resize(window, big.shape[1::-1], dst=big, interpolation=cv2.INTER_LINEAR)
        cv2.resize(big, (w, h), dst=out, interpolation=cv2.INTER_AREA)
        return out

    def _enlarge(self, frame: np.ndarray) -> np.ndarray:
        # Enlarging costs in proportion to the (small) output, so the exact path's own
        # arithmetic (resize the whole image, then crop) is as fast as anything here and gives
        # identical answers; OpenCV's bicubic (a = -0.75) moved 3.4 % of top-1 answers on 28 px
        # images, and even Pillow's box resize of the window moved 0.2 %.
        from ftedge.runtime.preprocess import resize_crop, to_pil

        return resize_crop(to_pil(frame[:, :, 0] if frame.shape[2] == 1 else frame), self.spec)

    def _pillow(self, frame: np.ndarray, win: CropWindow) -> np.ndarray:
        # Shrinking without OpenCV: Pillow's antialiased resample of the window alone (the exact
        # path resamples the whole frame with the same filter).
        from PIL import Image

        from ftedge.runtime.preprocess import _PIL_INTERP

        mode = "L" if frame.shape[2] == 1 else "RGB"
        img = Image.fromarray(np.ascontiguousarray(frame[:, :, 0] if mode == "L" else frame), mode)
        box = (win.left, win.top, win.left + win.width, win.top + win.height)
        size = (self.spec.width, self.spec.height)
        return np.asarray(img.resize(size, _PIL_INTERP[self.spec.interpolation], box=box))

    def normalize(self, crops: np.ndarray) -> np.ndarray:
        """NHWC uint8 RGB crops -> a new NCHW float32 network input (``normalize_into``'s
        arithmetic, into a fresh array)."""
        x = np.empty((crops.shape[0], 3, *crops.shape[1:3]), np.float32)
        return self._normalize(crops, "rgb", x)

    def normalize_into(self, crops: np.ndarray, color: ColorOrder = "rgb") -> np.ndarray:
        """NHWC uint8 crops in ``color`` order -> the reused NCHW float32 RGB input buffer."""
        self._input = _for_batch(self._input, crops.shape[0])
        return self._normalize(crops, color, self._input)

    def _normalize(self, crops: np.ndarray, color: ColorOrder, x: np.ndarray) -> np.ndarray:
        # One strided multiply-add over the NCHW view of the crops (channels reversed for BGR
        # by a negative stride; a grey crop broadcast over the three): the swap and the layout
        # change cost nothing.
        src = crops.transpose(0, 3, 1, 2)
        np.multiply(src[:, ::-1] if color == "bgr" else src, self._a3, out=x)
        np.add(x, self._b3, out=x)
        return x

    def prepare(self, frames: list[np.ndarray], color: ColorOrder = "rgb") -> np.ndarray:
        """Frames -> the NCHW float32 network input, in buffers reused by the next call."""
        x = self._input = _for_batch(self._input, len(frames))
        for i, frame in enumerate(frames):
            self._normalize(self._crop_image(frame)[None, :, :, :3], color, x[i : i + 1])
        return x

    def prepare_planes(
        self, frames: list[np.ndarray], color: ColorOrder = "rgb", planes: ColorOrder = "rgb"
    ) -> np.ndarray:
        """Frames -> uint8 NCHW crops with channels in ``planes`` order (the input of a model
        that normalises inside its graph), in a buffer reused by the next call."""
        self._planes = _for_batch(self._planes, len(frames))
        for i, frame in enumerate(frames):
            img, out = self._crop_image(frame), self._planes[i]
            order = [out[0], out[1], out[2]] if color == planes else [out[2], out[1], out[0]]
            if self._cv2 is not None and img.shape[2] > 1:
                # One deinterleaving pass (a 4th channel lands in a scratch plane).
                self._cv2.split(img, order + [self._alpha][: img.shape[2] - 3])
            else:
                np.copyto(out, img.transpose(2, 0, 1)[:: 1 if color == planes else -1])
        return self._planes

    def buffers(self) -> tuple[np.ndarray, ...]:
        """The reused arrays, the network input first (for checking that a long run allocates
        nothing new)."""
        return (self._input, self._planes, *self._bufs)


def _for_batch(buf: np.ndarray, n: int) -> np.ndarray:
    """``buf``, or a buffer like it for a batch of ``n`` when the batch size changed (replaced,
    never added to)."""
    return buf if buf.shape[0] == n else np.empty((n, *buf.shape[1:]), buf.dtype)
