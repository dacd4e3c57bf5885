"""The ONNX INT8 step: u8s8 Q/DQ, bias-corrected, verified, gated with a sensitivity search.

The model is quantized (``onnx_int8.quantize_qdq``) with the stem convolution and the classifier
kept in float (measured: the stem alone accounts for most top-1 changes on Lite0, and both are a
few percent of the compute), its biases are corrected for the mean shift quantization adds
(``qdq_bias``), and it is verified. When the accuracy drop is over the budget or the top-1
agreement with FP32 under the minimum, the nodes are ranked by the quantization error they add
(``sensitivity``) and the fewest further nodes are kept in float that pass the gate: every
candidate first (if even that misses, no subset can make it), then 1, 2, 4, ... and a bisection
between the last failing and the first passing count. Every attempt is recorded in
``details.sensitivity.attempts``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ftedge.export.options import CalibMethod, ExportOptions
from ftedge.export.verify import EvalData, verify_artifact
from ftedge.files import temp_prefix
from ftedge.runtime.manifest import Artifact, Manifest

ONNX_INT8 = "onnx/model.int8.onnx"
SENSITIVITY_BATCHES = 4  # calibration batches of 16 the node ranking is measured on
FLOAT_FIRST = 2  # stem convolution + classifier: kept in float from the first attempt


def onnx_int8(
    bundle_dir: Path,
    manifest: Manifest,
    fp32: Artifact,
    calib: Any,
    data: EvalData,
    opts: ExportOptions,
) -> Artifact:
    """u8s8 Q/DQ INT8; over budget -> keep the most sensitive nodes float (fewest that fit)."""

    def check(art: Artifact) -> Artifact:
        return verify_artifact(
            bundle_dir,
            manifest,
            art,
            data,
            max_accuracy_drop=opts.max_accuracy_drop,
            min_agreement=opts.min_agreement,
        )

    art = _int8_artifact(fp32, calib, opts)
    return search_int8(bundle_dir, fp32, calib, art, check, opts.calib_method)


@dataclass(frozen=True)
class FloatPolicy:
    """Which nodes of a model stay in float, whatever the gate says.

    ``always``: never quantized and not part of the search (detection's box/score decode).
    ``last``: the output layers kept in float with the stem from the first attempt (None: the
    classifier, the last Gemm/MatMul). ``describe``: how the order was made, for the manifest.
    """

    always: tuple[str, ...] = ()
    last: tuple[str, ...] | None = None
    describe: str = "stem + classifier first, then per-node added noise-to-signal ratio"


def search_int8(
    bundle_dir: Path,
    fp32: Artifact,
    calib: Any,
    art: Artifact,
    check: Callable[[Artifact], Artifact],
    calib_method: CalibMethod,
    policy: FloatPolicy | None = None,
) -> Artifact:
    """Quantize ``fp32`` to ``art.path`` and verify it with ``check`` (which sets the gate's
    status); over the gate, keep the fewest most sensitive nodes in float that pass."""
    cache_dir = Path(tempfile.mkdtemp(prefix=temp_prefix("ftedge-calib")))
    try:
        search = _Search(
            bundle_dir,
            fp32,
            calib,
            art,
            cache_dir / "r.json",
            check,
            calib_method,
            policy or FloatPolicy(),
        )
        return search.run()
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def _int8_artifact(fp32: Artifact, calib: Any, opts: ExportOptions) -> Artifact:
    """The ONNX INT8 artifact before quantization, with the quantization settings recorded."""
    return int8_artifact(fp32, len(calib), opts.calib_method)


def int8_artifact(fp32: Artifact, calibration_images: int, calib_method: Any) -> Artifact:
    """A u8s8 Q/DQ ONNX INT8 artifact (any task) before quantization, its settings recorded."""
    from ftedge.export.onnx_int8 import TARGET_TYPES

    act, sym = TARGET_TYPES["cpu"]
    art = Artifact("onnx", "int8", ONNX_INT8, input=fp32.input, output=fp32.output)
    art.details.update(
        target="cpu (onnxruntime)",
        format="QDQ",
        activation_type=act,
        activation_symmetric=sym,
        weight_type="int8",
        weight_symmetric=True,
        per_channel=True,
        calib_method=calib_method,
        calibration_images=calibration_images,
        bias_correction="per-channel mean shift of each Conv/Gemm (weights + input quantizer), "
        "measured on the calibration images",
        why_types="uint8 activations + int8 weights (u8s8): the fast integer kernels on x86 "
        "CPUs; s8s8 measured slower than FP32 here",
    )
    return art


def fewest_passing(n: int, passes: Callable[[int], bool]) -> int | None:
    """The smallest k in 1..n with ``passes(k)`` (assumed monotone), or None if ``passes(n)`` fails.

    Tries n first, then 1, 2, 4, ... until one passes, then bisects between the last failing and
    the first passing count.
    """
    lo, hi = 0, None
    if n and passes(n):
        hi, k = n, 1
        while k < hi:  # doubling: 1, 2, 4, ... kept in float
            if passes(k):
                hi = k
                break
            lo, k = k, k * 2
    if hi is None:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi


@dataclass
class _Search:
    """Quantize-and-verify attempts; ``art`` is always the latest attempt's verified artifact."""

    bundle_dir: Path
    fp32: Artifact
    calib: Any
    art: Artifact
    cache: Path
    check: Callable[[Artifact], Artifact]
    calib_method: CalibMethod
    policy: FloatPolicy
    names: list[str] = field(default_factory=list)
    means: dict[Any, Any] = field(default_factory=dict)  # bias correction's input means
    tried: list[dict[str, Any]] = field(default_factory=list)

    def run(self) -> Artifact:
        self.names = self.order([])
        first = self.names[: self.float_first]
        self.attempt(first)
        if self.art.status == "ok" or self.art.accuracy_drop is None:
            return self.art
        # Over the gate: rank nodes by the quantization error they add, keep the fewest in float.
        self.tried.append(self.record(len(first)))
        ranked = self.rank()
        extra = len(self.names) - len(first)
        hi = fewest_passing(extra, lambda k: self.keep_float(len(first) + k))
        if hi is not None and self.art.details["excluded_nodes"] != self.excluded(
            self.names[: len(first) + hi]
        ):
            self.keep_float(len(first) + hi)
        self.art.details["sensitivity"] = {
            "method": f"{self.policy.describe} (FP32 vs Q/DQ on 64 calibration images)",
            "order": self.names[:20],
            "added_nsr": {n: round(v, 6) for n, v in ranked[:20]},
            "attempts": self.tried,
        }
        return self.art if self.art.status == "ok" else self.over_budget()

    @property
    def float_first(self) -> int:
        """Stem + output layers: kept in float from the first attempt."""
        last = self.policy.last
        return FLOAT_FIRST if last is None else 1 + len(last)

    def excluded(self, kept: list[str]) -> list[str]:
        """Every node left in float when ``kept`` (of the search's order) are."""
        return [*self.policy.always, *kept]

    def record(self, kept: int) -> dict[str, Any]:
        parity = self.art.parity
        return {
            "kept_float": kept,
            "accuracy_drop": self.art.accuracy_drop,
            "top1_agreement": parity.top1_agreement if parity else None,
        }

    def order(self, ranked: list[tuple[str, float]]) -> list[str]:
        from ftedge.export.sensitivity import fallback_order

        last = list(self.policy.last) if self.policy.last is not None else None
        always = set(self.policy.always)
        order = fallback_order(self.bundle_dir / self.fp32.path, ranked, last=last)
        return [n for n in order if n not in always]

    def attempt(self, exclude: list[str]) -> None:
        """Quantize with ``exclude`` kept in float, verify, and make that the current artifact."""
        from ftedge.export.onnx_int8 import TARGET_TYPES, quantize_qdq
        from ftedge.export.qdq_bias import correct_biases

        act, sym = TARGET_TYPES["cpu"]
        out = self.bundle_dir / self.art.path
        quantize_qdq(
            self.bundle_dir / self.fp32.path,
            self.calib,
            out,
            activation_type=act,
            symmetric_activations=sym,
            per_channel=True,
            method=self.calib_method,
            exclude_nodes=self.excluded(exclude),
            calibration_cache=self.cache,
        )
        correct_biases(self.bundle_dir / self.fp32.path, out, self.calib, cache=self.means)
        art = self.art.with_files(self.bundle_dir, [out])
        art.details["excluded_nodes"] = self.excluded(exclude)
        self.art = self.check(art)

    def rank(self) -> list[tuple[str, float]]:
        """Nodes by the error they add (``names``: the order they are kept in float)."""
        from ftedge.export.sensitivity import rank_sensitive_nodes

        src = self.bundle_dir / self.fp32.path
        batches = list(self.calib.batches(16))[:SENSITIVITY_BATCHES]
        ranked = rank_sensitive_nodes(
            src, self.bundle_dir / self.art.path, batches, input_name=self.fp32.input.name
        )
        self.names = self.order(ranked)
        return ranked

    def keep_float(self, k: int) -> bool:
        """One attempt with the first ``k`` ranked nodes in float; whether it fits the budget."""
        self.attempt(self.names[:k])
        self.tried.append(self.record(k))
        return self.art.status == "ok"

    def over_budget(self) -> Artifact:
        return replace(
            self.art,
            message=f"{self.art.message or 'onnx-int8: over the gate'} even with "
            f"{len(self.names)} sensitive nodes kept in float",
        )
