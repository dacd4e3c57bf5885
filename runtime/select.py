"""Which artifact of a bundle to run, on which backend and device.

``load(bundle)`` (backend ``"auto"``) tries the bundle's artifacts in this order and takes the
first one whose status is ``ok``, whose backend is installed and whose runner starts:

1. TensorRT engines, INT8 > FP16 > FP32 (only when a TensorRT with its runtime library is
   importable; the engine's runner checks it was built for this GPU and TensorRT version).
2. OpenVINO IR INT8 (NNCF) on the OpenVINO CPU device.
3. ONNX INT8 (Q/DQ) with onnxruntime on the CPU.
4. OpenVINO IR FP32, then FP16 (weights-compressed IR; runs like FP32 on a CPU).
5. ONNX FP32 with onnxruntime, then ONNX FP16.

This is the measured speed order on x86 CPUs (measured: OpenVINO INT8 < ORT INT8 u8s8 <
OpenVINO FP32/bf16 < ORT FP32). Within one format and precision, an OpenVINO IR that takes
uint8 crops and normalises inside its graph (the "-baked" twin ``ftedge export`` makes of a
passing INT8 IR) comes before its float-input original: OpenVINO folds the normalisation into
the input conversion it runs anyway, so the frame's float normalisation (the largest step of the
preprocessing after the resize) disappears at no measured inference cost. The twin is verified
like its original and against it (``ftedge.export.openvino_baked``). For ONNX the float-input
artifact comes first (its baked copy transposes inside the graph). ``baked=True`` / ``False``
prefers / excludes baked artifacts everywhere.

Failed and skipped artifacts are never chosen. Explicit choices narrow the list instead of
reordering it: ``backend="onnxruntime" | "openvino" | "tensorrt" | "torch"`` (OpenVINO also runs
the ONNX artifacts, after its own IRs), ``precision="fp32" | "fp16" | "int8"``, and ``device``:

- ``None``: CPU for onnxruntime/OpenVINO, ``cuda:0`` for TensorRT;
- ``"cpu"``; ``"cuda"`` / ``"cuda:N"`` (TensorRT engines first, then onnxruntime's CUDA
  provider); ``"tensorrt"`` (onnxruntime's TensorRT provider); ``"gpu"``, ``"npu"``, ``"auto"``
  (OpenVINO's Intel GPU / NPU / AUTO devices).

``backend="torch"`` is the PyTorch reference (needs ``ftedge[train]``): the run checkpoint the
bundle was exported from, rebuilt in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftedge.errors import FtedgeError
from ftedge.runtime.backends import BACKENDS, get_backend, normalize_backend
from ftedge.runtime.manifest import Artifact, Manifest

# (format, precision, backend) in "auto" order; see the module docstring.
AUTO_ORDER: tuple[tuple[str, str, str], ...] = (
    ("tensorrt", "int8", "tensorrt"),
    ("tensorrt", "fp16", "tensorrt"),
    ("tensorrt", "fp32", "tensorrt"),
    ("openvino", "int8", "openvino"),
    ("onnx", "int8", "onnxruntime"),
    ("openvino", "fp32", "openvino"),
    ("openvino", "fp16", "openvino"),
    ("onnx", "fp32", "onnxruntime"),
    ("onnx", "fp16", "onnxruntime"),
)
PRECISION_ORDER = ("int8", "fp16", "fp32")


@dataclass(frozen=True)
class Candidate:
    """One way to run the bundle: an artifact, the backend that runs it and the device string."""

    artifact: Artifact
    backend: str
    device: str

    @property
    def name(self) -> str:
        return f"{self.artifact.name} on {self.backend}:{self.device}"


def candidates(
    manifest: Manifest,
    *,
    backend: str = "auto",
    device: str | None = None,
    precision: str | None = None,
    baked: bool | None = None,
) -> tuple[list[Candidate], list[str]]:
    """Every way to run ``manifest`` that fits the choices, best first, and why others do not.

    Does not import any backend; availability is the registry's cheap check. The
    second list holds one-line reasons for artifacts that were left out.
    """
    backend = normalize_backend(backend)
    if precision is not None and precision not in PRECISION_ORDER:
        raise FtedgeError(f"precision must be one of fp32, fp16, int8, got {precision!r}")
    if backend == "torch":
        raise FtedgeError("the torch reference is not a bundle artifact: use load(backend='torch')")

    if backend == "auto":
        order = list(AUTO_ORDER)
        if device is not None and device.strip().lower() in ("gpu", "npu", "auto"):
            order = [o for o in order if o[2] == "openvino"]
    else:
        formats = BACKENDS[backend].formats
        order = [(fmt, prec, backend) for fmt in formats for prec in PRECISION_ORDER]
        if backend != "tensorrt":  # on CPU-like devices fp32 runs faster than fp16
            order.sort(key=lambda o: (formats.index(o[0]), _cpu_rank(o[1])))

    reasons: list[str] = []
    out: list[Candidate] = []
    installed: dict[str, bool] = {}
    for fmt, prec, be in order:
        if precision is not None and prec != precision:
            continue
        arts = [a for a in manifest.artifacts if a.format == fmt and a.precision == prec]
        # OpenVINO: baked first; ONNX: float input first; baked=True/False overrides both.
        prefer_baked = baked if baked is not None else fmt == "openvino"
        arts.sort(key=lambda a: a.baked != prefer_baked)
        for a in arts:
            if baked is False and a.baked:
                continue
            if baked is True and not a.baked:
                continue
            if a.status != "ok":
                reasons.append(
                    f"{a.name}: status {a.status}" + (f" ({a.message})" if a.message else "")
                )
                continue
            entry = get_backend(be)
            dev = entry.device_for(device)
            if dev is None:
                reasons.append(f"{a.name}: {be} cannot run on device {device!r}")
                continue
            if be not in installed:
                installed[be] = entry.available()
            if not installed[be]:
                reasons.append(
                    f"{a.name}: {entry.module} is not installed "
                    f"(pip install 'ftedge[{entry.extra}]')"
                )
                continue
            out.append(Candidate(a, be, dev))
    return out, reasons


def _cpu_rank(precision: str) -> int:
    return {"int8": 0, "fp32": 1, "fp16": 2}[precision]


def no_candidate_error(
    manifest: Manifest, bundle_dir: str | Path, reasons: list[str], **choices: Any
) -> FtedgeError:
    """A one-line error saying why nothing in the bundle can run here."""
    chosen = ", ".join(f"{k}={v}" for k, v in choices.items() if v not in (None, "auto"))
    what = f" with {chosen}" if chosen else ""
    if not manifest.artifacts:
        return FtedgeError(f"bundle {bundle_dir} has no artifacts (run 'ftedge export')")
    missing = sorted(
        {r.split("(pip install ")[1].rstrip(")") for r in reasons if "pip install" in r}
    )
    hint = f"; install a backend: pip install {' or '.join(missing)}" if missing else ""
    detail = "; ".join(dict.fromkeys(reasons)) or "no artifact matches"
    return FtedgeError(f"no runnable artifact in {bundle_dir}{what}: {detail}{hint}")
