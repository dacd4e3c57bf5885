"""What an export is asked to make: the typed options, checked, and the artifacts they request.

``requested_artifacts(options)`` turns the options into the formats to build, each with its
precisions, plus notes on what was asked for but is left out and why. Anything a user must fix is
a one-line FtedgeError, raised before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ftedge.errors import FtedgeError
from ftedge.runtime.backends import format_available, native_backend
from ftedge.runtime.manifest import FORMATS, PRECISIONS

# What each format can produce. ONNX FP16 is not made: on CPU onnxruntime runs FP16 slower than
# FP32, and the GPU paths get FP16 from OpenVINO (FP16 IR) or TensorRT (FP16 engines).
SUPPORTED: dict[str, tuple[str, ...]] = {
    "onnx": ("fp32", "int8"),
    "openvino": ("fp32", "fp16", "int8"),
    "tensorrt": ("fp32", "fp16", "int8"),
}
CalibMethod = Literal["minmax", "entropy", "percentile"]
BakeColor = Literal["rgb", "bgr"]
CALIB_METHODS: tuple[CalibMethod, ...] = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class ExportOptions:
    """What ``ftedge export`` makes (CLI flags map one to one)."""

    formats: tuple[str, ...] | None = None  # None: every format available on this machine
    precisions: tuple[str, ...] = ("fp32", "int8")
    calib_images: int | None = None  # None: DEFAULT_CALIB_IMAGES or all training images if fewer
    calib_method: CalibMethod = "minmax"
    batch_range: tuple[int, int, int] = (1, 8, 32)
    bake_preprocess: BakeColor | None = None
    softmax: bool = False
    max_accuracy_drop: float = 1.0  # points
    min_agreement: float = 0.95  # top-1 agreement of INT8/FP16 with the FP32 reference
    out: str | None = None
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "formats": list(self.formats) if self.formats else None,
            "precisions": list(self.precisions),
            "calib_images": self.calib_images,
            "calib_method": self.calib_method,
            "batch_range": list(self.batch_range),
            "bake_preprocess": self.bake_preprocess,
            "softmax": self.softmax,
            "max_accuracy_drop": self.max_accuracy_drop,
            "min_agreement": self.min_agreement,
        }


@dataclass(frozen=True)
class RequestedArtifacts:
    """The formats to build (in order), the precisions of each, and notes on what is left out."""

    formats: tuple[str, ...]
    precisions: Mapping[str, tuple[str, ...]]
    notes: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        """How many (format, precision) artifacts are requested."""
        return sum(len(self.precisions[f]) for f in self.formats)

    @property
    def needs_calibration(self) -> bool:
        """INT8 outside TensorRT (which quantizes from the bundle's calibration list itself)."""
        return any("int8" in self.precisions[f] for f in self.formats if f != "tensorrt")


def available_formats() -> list[str]:
    """Formats this machine can build: onnx (onnx + onnxruntime), openvino, tensorrt."""
    return [f for f in FORMATS if format_available(f)]


def requested_artifacts(opts: ExportOptions) -> RequestedArtifacts:
    """Check the options and choose what to make. Raises FtedgeError."""
    check_options(opts)
    notes: list[str] = []
    formats, explicit = _choose_formats(opts, notes)
    per = {f: _precisions_for(f, formats, explicit, opts, notes) for f in formats}
    for p in opts.precisions:
        if not any(p in per[f] for f in formats):
            raise FtedgeError(
                f"precision {p} is not supported by {', '.join(formats)} "
                f"(fp16: openvino or tensorrt)"
            )
    if explicit:
        _check_installed(formats)
    return RequestedArtifacts(tuple(formats), per, tuple(notes))


def check_options(opts: ExportOptions) -> None:
    """One-line FtedgeError for the first option that is out of range."""
    for p in opts.precisions:
        if p not in PRECISIONS:
            raise FtedgeError(f"unknown precision {p!r} (choose from {', '.join(PRECISIONS)})")
    if not opts.precisions:
        raise FtedgeError("--precision is empty")
    if opts.calib_method not in CALIB_METHODS:
        raise FtedgeError(
            f"unknown --calib-method {opts.calib_method!r} (choose from {', '.join(CALIB_METHODS)})"
        )
    if opts.bake_preprocess not in (None, "rgb", "bgr"):
        raise FtedgeError(f"--bake-preprocess must be rgb or bgr, got {opts.bake_preprocess!r}")
    if opts.calib_images is not None and opts.calib_images < 1:
        raise FtedgeError(f"--calib-images must be >= 1, got {opts.calib_images}")
    if opts.max_accuracy_drop != opts.max_accuracy_drop:  # NaN
        raise FtedgeError("--max-accuracy-drop must be a number")
    if not 0.0 <= opts.min_agreement <= 1.0:  # also refuses NaN
        raise FtedgeError(f"--min-agreement must be in [0, 1], got {opts.min_agreement}")
    lo, opt, hi = opts.batch_range
    if not 1 <= lo <= opt <= hi:
        raise FtedgeError(
            f"--batch-range must be min:opt:max with 1 <= min <= opt <= max, got {lo}:{opt}:{hi}"
        )


def _choose_formats(opts: ExportOptions, notes: list[str]) -> tuple[list[str], bool]:
    """(formats, whether the user named them); by default every format available here."""
    if opts.formats:
        for f in opts.formats:
            if f not in FORMATS:
                raise FtedgeError(f"unknown format {f!r} (choose from {', '.join(FORMATS)})")
        return list(dict.fromkeys(opts.formats)), True
    formats = available_formats()
    missing = [f for f in FORMATS if f not in formats]
    if missing:
        notes.append(f"not available here, not built: {', '.join(missing)}")
    return formats, False


def _precisions_for(
    f: str, formats: list[str], explicit: bool, opts: ExportOptions, notes: list[str]
) -> tuple[str, ...]:
    """The requested precisions ``f`` supports; the others are a note (an error if asked alone)."""
    unsupported = [p for p in opts.precisions if p not in SUPPORTED[f]]
    if unsupported and explicit and len(formats) == 1:
        raise FtedgeError(
            f"{f} does not support {', '.join(unsupported)} (supported: {', '.join(SUPPORTED[f])})"
        )
    if unsupported:
        notes.append(
            f"{f}: no {', '.join(unsupported)} artifact (supported: {', '.join(SUPPORTED[f])})"
        )
    return tuple(p for p in opts.precisions if p in SUPPORTED[f])


def _check_installed(formats: list[str]) -> None:
    """Formats named explicitly must be installed (TensorRT may be skipped: built on device)."""
    for f in formats:
        if f != "tensorrt" and not format_available(f):
            extra = native_backend(f).extra
            raise FtedgeError(f"{f} is not installed here: pip install 'ftedge[{extra}]'")
