"""``load(bundle).classify(frame)``: the camera-app API (numpy + one backend, never torch).

    from ftedge.runtime import load

    clf = load("bundles/latest")                      # best artifact for this machine
    pred = clf.classify(frame_bgr, topk=3, color="bgr")  # any-size HWC uint8 frame (OpenCV: BGR)
    print(pred.label, pred.score)                     # top-1; pred.labels / pred.scores: top-k

Frames go through the fast preprocessing path (``fast_preprocess.py``: one resize of the crop
window, buffers reused per call) when the bundle's export verified it against the exact path
(``fast_preprocess.verified``), otherwise exactly like the training evaluation transform
(``preprocess.py``); ``load(..., preprocessing="exact")`` keeps the exact path regardless.
Artifacts with baked-in preprocessing (uint8 input) get the resized, centre-cropped uint8 crop
instead (NCHW planes straight from the fast path) and normalise inside the graph. Scores are
softmax probabilities (an artifact that already outputs probabilities is not softmaxed twice).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast, overload

import numpy as np
from PIL import Image

from ftedge.errors import FtedgeError, MissingExtraError
from ftedge.files import sha256_file
from ftedge.runtime.backends import get_backend, normalize_backend
from ftedge.runtime.fast_preprocess import FastPreprocessor
from ftedge.runtime.loaded import LoadedModel
from ftedge.runtime.manifest import Artifact, Manifest
from ftedge.runtime.prediction import Prediction, softmax, top_k
from ftedge.runtime.preprocess import (
    ColorOrder,
    PreprocessSpec,
    check_frame,
    normalize,
    resize_crop,
    to_pil,
    uint8_batch,
)
from ftedge.runtime.runners.base import Runner
from ftedge.runtime.select import Candidate, candidates, no_candidate_error
from ftedge.runtime.tasks import ClassificationOutput

Frames = np.ndarray | Sequence[np.ndarray]
PREPROCESSING = ("auto", "fast", "exact")


class Classifier(LoadedModel):
    """A loaded bundle artifact plus its preprocessing and labels. Create it with ``load``.

    Holds an active runner (session, compiled model or engine); ``close()`` frees it, and the
    classifier is also a context manager.
    """

    def __init__(
        self,
        runner: Runner,
        artifact: Artifact,
        manifest: Manifest,
        bundle_dir: Path,
        *,
        backend: str,
        fallbacks: Sequence[str] = (),
    ) -> None:
        super().__init__(
            runner, artifact, manifest, bundle_dir, backend=backend, fallbacks=fallbacks
        )
        self.spec: PreprocessSpec = manifest.spec
        self.last_timing: dict[str, float] = {}
        self.fast: FastPreprocessor | None = None  # None: the exact (training-identical) path
        self.preprocessing: str = "exact"  # fast:ENGINE | exact: the path in use

        meta = runner.input_metadata()
        name = artifact.input.name if artifact.input.name in meta else next(iter(meta))
        self.input_name: str = name
        self._input_meta = meta[name]
        self.baked = self._input_meta.dtype == np.uint8
        self.layout: str = artifact.input.layout if self.baked else "NCHW"
        self.model_color: str = (artifact.input.color or "rgb") if self.baked else "rgb"
        self.output_name: str | None = artifact.output.name
        out = artifact.output
        self.output_kind: str = out.kind if isinstance(out, ClassificationOutput) else "logits"
        b = self._input_meta.shape[0] if self._input_meta.shape else -1
        # A model exported with a fixed batch (e.g. 1) is fed in chunks of that size.
        self.fixed_batch: int | None = b if isinstance(b, int) and b > 0 else None
        self._checked: tuple[tuple[int, ...], np.dtype[Any]] | None = None  # last fed shape

    def __repr__(self) -> str:
        return (
            f"Classifier({self.artifact.name}, backend={self.backend}, "
            f"device={self.runner.device}, classes={len(self.labels)})"
        )

    def describe(self) -> dict[str, Any]:
        """Artifact, backend facts (versions, providers, execution precision) and fallbacks."""
        return {
            "bundle": str(self.bundle_dir),
            "artifact": self.artifact.name,
            "path": self.artifact.path,
            "format": self.artifact.format,
            "precision": self.artifact.precision,
            "baked_preprocessing": self.baked,
            "preprocessing": self.preprocessing,
            "fallbacks": self.fallbacks,
            **self.runner.describe(),
        }

    # -- preprocessing ------------------------------------------------------------------------
    def _frames(self, frames: Frames) -> tuple[list[np.ndarray], bool]:
        """A single frame or a batch (list or NHWC array) -> list of frames, single?"""
        if isinstance(frames, np.ndarray):
            if frames.ndim == 4:
                if frames.shape[0] == 0:
                    raise FtedgeError("empty batch: got an NHWC array with N = 0")
                return list(frames), False
            return [frames], True
        if isinstance(frames, (list, tuple)):
            if not frames:
                raise FtedgeError("empty batch: got an empty list of frames")
            return list(frames), False
        raise FtedgeError(
            f"expected a HWC uint8 numpy frame, an NHWC batch or a list of frames, "
            f"got {type(frames).__name__}"
        )

    def _crop(self, frame: np.ndarray, color: ColorOrder) -> np.ndarray:
        """Resize + centre crop one frame to HWC uint8 RGB (the training eval geometry)."""
        if self.fast is not None:
            return self.fast.crop(frame, color)
        if color == "bgr" and frame.ndim == 3 and frame.shape[2] == 3 and frame.flags.c_contiguous:
            # Pillow resamples each channel on its own, so resizing the BGR frame as if it were
            # RGB and swapping the channels of the small crop is bit-identical, and skips a
            # full-frame copy (1.8 ms of 8 at 640x480).
            return resize_crop(Image.fromarray(frame, "RGB"), self.spec)[:, :, ::-1]
        return resize_crop(to_pil(frame, color), self.spec)

    def prepare(self, frames: Frames, color: ColorOrder = "rgb") -> np.ndarray:
        """Frames -> the artifact's input batch (float32 NCHW, or uint8 crops if baked); a new
        array the caller may keep."""
        batch = self._prepare(self._frames(frames)[0], color)
        return batch.copy() if self._fast_buffer else batch

    @property
    def _fast_buffer(self) -> bool:
        """Whether ``_prepare`` hands out the fast path's reused buffer: float input, or uint8
        NCHW planes for a model that normalises inside its graph."""
        return self.fast is not None and (not self.baked or self.layout == "NCHW")

    def _prepare(self, items: list[np.ndarray], color: ColorOrder) -> np.ndarray:
        """``prepare`` of a list of frames, but the fast path returns its reused buffer (valid
        until the next call)."""
        if color not in ("rgb", "bgr"):
            raise FtedgeError(f"color must be 'rgb' or 'bgr', got {color!r}")
        for i, f in enumerate(items):
            try:
                check_frame(f)
            except FtedgeError as e:
                raise FtedgeError(f"frame {i}: {e}" if len(items) > 1 else str(e)) from None
        if self.fast is not None and not self.baked:
            return self.fast.prepare(items, color)
        if self.fast is not None and self.layout == "NCHW":
            return self.fast.prepare_planes(items, color, cast(ColorOrder, self.model_color))
        batch = np.stack([self._crop(f, color) for f in items])  # NHWC uint8 RGB
        if not self.baked:
            return normalize(batch, self.spec)
        return uint8_batch(batch, self.model_color, self.layout)

    def set_preprocessing(self, mode: str = "auto") -> str:
        """Pick the preprocessing path; returns the one now used: "fast:opencv", "fast:pillow"
        or "exact".

        "auto" (what ``load`` does): the fast path (one resize of the crop window, buffers
        reused) with the fastest engine the bundle's export verified
        (``fast_preprocess.verified``: accuracy within 0.1 point of the exact path and top-1
        agreement >= 99.5 %, on the test images and in 640x480 frames, where agreeing as often
        as a one-pixel move of the frame does is enough), else the exact path.
        "exact": the training-identical path. "fast": the fastest engine here (OpenCV if
        installed) even if the export did not verify it.
        """
        if mode not in PREPROCESSING:
            raise FtedgeError(
                f"preprocessing must be one of {', '.join(PREPROCESSING)}, got {mode!r}"
            )
        from ftedge.runtime.fast_preprocess import verified_preprocessor

        self.fast = None
        if mode == "auto":
            self.fast = verified_preprocessor(self.manifest.reference, self.spec)
        elif mode == "fast":
            self.fast = FastPreprocessor(self.spec)
        self.preprocessing = f"fast:{self.fast.engine}" if self.fast is not None else "exact"
        return self.preprocessing

    def use_fast_preprocessing(self, enabled: bool = True) -> bool:
        """``set_preprocessing("auto")`` (the fast path where the export verified it) or, with
        ``enabled=False``, ``set_preprocessing("exact")``; returns whether the fast path is now
        used."""
        return self.set_preprocessing("auto" if enabled else "exact") != "exact"

    # -- inference ----------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run a prepared batch; returns the raw (N, classes) output (logits or probabilities)."""
        n = batch.shape[0]
        step = self.fixed_batch or n
        if step == n:  # the common case: one call, no chunking or concatenation
            # Feeds are checked once per shape and dtype: a camera loop repeats both.
            checked = (batch.shape, batch.dtype) == self._checked
            res = self.runner.infer({self.input_name: batch}, check=not checked)
            self._checked = (batch.shape, batch.dtype)
            out = res[self.output_name] if self.output_name in res else next(iter(res.values()))
            return np.asarray(out, dtype=np.float32).reshape(n, -1)
        outs = []
        for start in range(0, n, step):
            chunk = batch[start : start + step]
            if len(chunk) < step:  # pad the last chunk of a fixed-batch model
                pad = np.repeat(chunk[-1:], step - len(chunk), axis=0)
                chunk = np.concatenate([chunk, pad])
            res = self.runner.infer({self.input_name: chunk})
            out = res[self.output_name] if self.output_name in res else next(iter(res.values()))
            outs.append(np.asarray(out, dtype=np.float32).reshape(len(chunk), -1))
        return np.concatenate(outs)[:n]

    def probabilities(self, frames: Frames, color: ColorOrder = "rgb") -> np.ndarray:
        """Softmax probabilities (N, classes) for one frame or a batch."""
        return self._probabilities(self._frames(frames)[0], color)

    def _probabilities(self, items: list[np.ndarray], color: ColorOrder) -> np.ndarray:
        t0 = time.perf_counter()
        batch = self._prepare(items, color)
        t1 = time.perf_counter()
        out = self.infer(batch)
        t2 = time.perf_counter()
        probs = out if self.output_kind == "probabilities" else softmax(out)
        if probs.shape[1] != len(self.labels):
            raise FtedgeError(
                f"{self.artifact.name} outputs {probs.shape[1]} classes but the bundle has "
                f"{len(self.labels)} labels"
            )
        self.last_timing = {
            "preprocess_ms": (t1 - t0) * 1e3,
            "infer_ms": (t2 - t1) * 1e3,
            "batch": float(batch.shape[0]),
        }
        return probs

    @overload
    def classify(
        self, frame_or_batch: Sequence[np.ndarray], topk: int = 5, color: ColorOrder = "rgb"
    ) -> list[Prediction]: ...

    @overload
    def classify(
        self, frame_or_batch: np.ndarray, topk: int = 5, color: ColorOrder = "rgb"
    ) -> Prediction | list[Prediction]: ...

    def classify(
        self, frame_or_batch: Frames, topk: int = 5, color: ColorOrder = "rgb"
    ) -> Prediction | list[Prediction]:
        """Top-k labels and probabilities.

        ``frame_or_batch``: one HWC (or HW) uint8 frame of any size -> one ``Prediction``;
        a list of frames or an NHWC uint8 array -> a list. ``color`` is the channel order of
        the frames: "rgb" (Pillow, default) or "bgr" (OpenCV).
        """
        if not isinstance(topk, int) or topk < 1:
            raise FtedgeError(f"topk must be a positive integer, got {topk!r}")
        items, single = self._frames(frame_or_batch)
        t0 = time.perf_counter()
        probs = self._probabilities(items, color)
        preds = [top_k(p, self.labels, topk) for p in probs]
        self.last_timing["total_ms"] = (time.perf_counter() - t0) * 1e3
        return preds[0] if single else preds

    def classify_one(
        self, frame: np.ndarray, topk: int = 5, color: ColorOrder = "rgb"
    ) -> Prediction:
        """``classify`` for exactly one HWC frame, typed as a single ``Prediction``."""
        if isinstance(frame, np.ndarray) and frame.ndim == 4:
            raise FtedgeError(f"expected one HWC frame, got a batch of shape {frame.shape}")
        pred = self.classify(frame, topk, color)
        assert isinstance(pred, Prediction)
        return pred


# -- loading ----------------------------------------------------------------------------------
def make_runner(
    cand: Candidate,
    model_path: str,
    threads: int | None = None,
    openvino_precision: str | None = None,
) -> Runner:
    """The (inactive) runner for a candidate, made through the backend registry.

    A TensorRT runner finds the details its plan was built with in the bundle manifest next to
    it and refuses a plan built for another TensorRT version or GPU (with the rebuild command);
    load() then moves on to the next candidate.
    """
    options: dict[str, Any] = {}
    if cand.backend == "openvino":
        from ftedge.runtime.runners.openvino import default_precision

        options["precision"] = openvino_precision or default_precision(
            cand.artifact.precision, cand.device
        )
    return get_backend(cand.backend).create_runner(
        model_path, device=cand.device, threads=threads, **options
    )


def verify_bundle(manifest: Manifest, bundle_dir: Path) -> None:
    """Refuse a bundle whose files are missing or changed (sha256 against the manifest)."""
    bad = manifest.verify_files(bundle_dir)
    for a in manifest.artifacts:  # artifacts that list only their main file's digest
        if a.status != "skipped" and a.sha256 and a.path not in a.files:
            f = bundle_dir / a.path
            if not f.is_file() or sha256_file(f) != a.sha256:
                bad.append(a.path)
    if bad:
        shown = ", ".join(bad[:3]) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else "")
        raise FtedgeError(
            f"bundle {bundle_dir} failed its sha256 check: {shown} missing or modified; "
            "re-export it (or load with verify=False at your own risk)"
        )


def checkpoint_of(manifest: Manifest, bundle_dir: Path) -> str | None:
    """The run checkpoint a bundle was exported from (``provenance.checkpoint``), if on disk."""
    ck = manifest.provenance.checkpoint
    if ck is None or not ck.path:
        return None
    p = Path(ck.path) if Path(ck.path).is_absolute() else bundle_dir / ck.path
    return str(p.resolve()) if p.exists() else None


def _checkpoint_of(manifest: Manifest, bundle_dir: Path) -> str:
    ckpt = checkpoint_of(manifest, bundle_dir)
    if ckpt is not None:
        return ckpt
    raise FtedgeError(
        f"bundle {bundle_dir} does not record an existing run checkpoint "
        "(provenance.checkpoint): pass checkpoint=PATH to load(..., backend='torch')"
    )


def load(
    bundle: str | Path,
    backend: str = "auto",
    device: str | None = None,
    precision: str | None = None,
    *,
    baked: bool | None = None,
    threads: int | None = None,
    verify: bool = True,
    checkpoint: str | Path | None = None,
    openvino_precision: str | None = None,
    preprocessing: str = "auto",
) -> Any:
    """Load the best artifact of ``bundle`` for this machine: a ready ``Classifier``, or a
    ``Detector`` (``ftedge.runtime.detect``) for a detection bundle.

    ``bundle``: a bundle directory (or its manifest.json, or a ``bundles/latest`` link).
    ``backend``: "auto" (see ``ftedge.runtime.select`` for the order), "onnxruntime",
    "openvino", "tensorrt", or "torch" (the PyTorch reference; needs ``ftedge[train]`` and the
    run checkpoint, ``checkpoint=`` or the one recorded in the manifest). ``device``: None (CPU,
    or the GPU for TensorRT engines), "cpu", "cuda", "gpu"/"npu" (OpenVINO). ``precision``:
    "fp32", "fp16" or "int8" to pin the artifact precision. ``baked``: True/False to require
    an artifact with/without baked-in preprocessing. ``verify``: check every bundle file's
    sha256 first (a modified bundle is refused). A candidate whose runner fails to start
    (e.g. a TensorRT engine built for another GPU) is skipped and the next one is tried;
    ``Classifier.fallbacks`` says why. ``threads``: inference threads (backend default if None).
    ``openvino_precision``: OpenVINO's execution precision ("f32", "bf16", "f16"); by default
    OpenVINO picks (bf16 on CPUs with AMX/AVX-512-BF16); "f32" gives PyTorch parity.
    ``preprocessing`` (classification): "auto" uses the fast path where the export verified
    it, "exact" the training-identical path, "fast" the fast path regardless
    (``Classifier.set_preprocessing``).
    """
    if preprocessing not in PREPROCESSING:
        raise FtedgeError(
            f"preprocessing must be one of {', '.join(PREPROCESSING)}, got {preprocessing!r}"
        )
    model = _load(
        bundle, backend, device, precision, baked, threads, verify, checkpoint, openvino_precision
    )
    if isinstance(model, Classifier):
        model.set_preprocessing(preprocessing)
    return model


def _load(
    bundle: str | Path,
    backend: str,
    device: str | None,
    precision: str | None,
    baked: bool | None,
    threads: int | None,
    verify: bool,
    checkpoint: str | Path | None,
    openvino_precision: str | None,
) -> Any:
    """``load`` before the preprocessing path is chosen."""
    bundle_dir = Path(bundle).expanduser()
    if bundle_dir.is_file():
        bundle_dir = bundle_dir.parent
    manifest = Manifest.load(bundle_dir)
    if verify:
        verify_bundle(manifest, bundle_dir)
    be = normalize_backend(backend)
    if be == "torch":
        return _load_torch_reference(manifest, bundle_dir, device, threads, checkpoint)
    if be != "auto" and not get_backend(be).available():
        raise get_backend(be).missing_error()
    cands, reasons = candidates(
        manifest, backend=be, device=device, precision=precision, baked=baked
    )
    if not cands:
        raise no_candidate_error(
            manifest, bundle_dir, reasons, backend=be, device=device, precision=precision
        )
    return _first_that_starts(cands, manifest, bundle_dir, threads, openvino_precision)


def _load_torch_reference(
    manifest: Manifest,
    bundle_dir: Path,
    device: str | None,
    threads: int | None,
    checkpoint: str | Path | None,
) -> Classifier:
    """The PyTorch reference as a Classifier: the run checkpoint, same preprocessing/labels."""
    entry = get_backend("torch")
    dev = entry.device_for(device)
    if dev is None:
        raise FtedgeError(f"torch cannot run on device {device!r}")
    if not entry.available():
        raise MissingExtraError("PyTorch (for the torch reference runner)", entry.extra)
    ckpt = str(checkpoint) if checkpoint is not None else _checkpoint_of(manifest, bundle_dir)
    art = Artifact(format="torch", precision="fp32", path=ckpt, output=ClassificationOutput())
    runner = entry.create_runner(ckpt, device=dev, threads=threads)
    runner.activate()
    return Classifier(runner, art, manifest, bundle_dir, backend="torch")


def _consumer(manifest: Manifest) -> Any:
    """What turns a runner's outputs into results for the bundle's task."""
    if manifest.task == "detection":
        from ftedge.runtime.detect import Detector

        return Detector
    return Classifier


def _first_that_starts(
    cands: list[Candidate],
    manifest: Manifest,
    bundle_dir: Path,
    threads: int | None,
    openvino_precision: str | None,
) -> Any:
    """The task's consumer (Classifier, Detector) on the first candidate whose runner starts;
    the others' errors recorded."""
    fallbacks: list[str] = []
    for i, cand in enumerate(cands):
        runner = make_runner(
            cand, str(bundle_dir / cand.artifact.path), threads, openvino_precision
        )
        try:
            runner.activate()
            return _consumer(manifest)(
                runner,
                cand.artifact,
                manifest,
                bundle_dir,
                backend=cand.backend,
                fallbacks=fallbacks,
            )
        except FtedgeError as e:
            runner.deactivate()
            # Move on to the next candidate (the choices only narrowed the list); the last
            # failure is raised together with the earlier ones.
            if i == len(cands) - 1:
                if fallbacks:
                    raise FtedgeError(f"{e} (also tried: {'; '.join(fallbacks)})") from None
                raise
            fallbacks.append(f"{cand.name}: {e}")
    raise AssertionError("unreachable")
