"""Export building blocks on small synthetic inputs: calibration selection, baking, Q/DQ."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ftedge.errors import FtedgeError
from ftedge.export.bundle import ExportOptions, requested_artifacts
from ftedge.export.calibration import CalibrationSet, select_calibration
from ftedge.runtime.preprocess import PreprocessSpec
from tests.test_runners_ort_ov import _tiny_classifier


def test_calibration_is_stratified_and_strict() -> None:
    train = [(f"c{c}/{i}.png", c) for c in range(4) for i in range(30 + 10 * c)]
    picked = select_calibration(train, 40)
    assert len(picked) == 40 and len(set(picked)) == 40
    assert set(Counter(y for _, y in picked).values()) == {10}
    assert select_calibration(train, 40) == picked  # deterministic
    # A class with fewer images than its share gives them all; the others fill up.
    small = [("a/0.png", 0), ("a/1.png", 0)] + [(f"b/{i}.png", 1) for i in range(10)]
    counts = Counter(y for _, y in select_calibration(small, 8))
    assert counts == {0: 2, 1: 6}
    with pytest.raises(FtedgeError, match="more than the 12 training images"):
        select_calibration(small, 13)
    with pytest.raises(FtedgeError, match="no training images"):
        select_calibration([], 5)


def test_calibration_set_uses_eval_preprocessing(tmp_path: Path) -> None:
    from PIL import Image

    from ftedge.runtime.preprocess import preprocess_file

    spec = PreprocessSpec(input_size=(3, 32, 32))
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    calib = CalibrationSet.from_samples(tmp_path, [(f"{i}.png", i) for i in range(3)], spec)
    assert calib.images.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(calib.images[1], preprocess_file(str(tmp_path / "1.png"), spec))
    with pytest.raises(FtedgeError, match="not found"):
        CalibrationSet.from_samples(tmp_path, [("missing.png", 0)], spec)


@pytest.mark.parametrize("color", ["rgb", "bgr"])
def test_baked_preprocess_matches_numpy_preprocessing(tmp_path: Path, color: str) -> None:
    from ftedge.export.onnx_graph import bake_preprocess, check_model
    from ftedge.runtime.preprocess import normalize
    from ftedge.runtime.runners.onnxruntime import OnnxRuntimeRunner

    plain = _tiny_classifier(tmp_path / "plain.onnx")
    spec = PreprocessSpec(
        input_size=(3, 16, 16), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    baked = bake_preprocess(plain, tmp_path / "baked.onnx", spec, color)
    check_model(baked)
    crops = np.random.default_rng(2).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    with OnnxRuntimeRunner(str(plain)) as r:
        want = r.infer({"input": normalize(crops, spec)})["logits"]
    frames = crops[..., ::-1].copy() if color == "bgr" else crops
    with OnnxRuntimeRunner(str(baked)) as r:
        assert r.input_metadata()["input"].dtype == np.uint8
        assert r.input_metadata()["input"].shape == (-1, 16, 16, 3)
        got = r.infer({"input": frames})["logits"]
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert (got.argmax(1) == want.argmax(1)).all()


def test_quantize_qdq_types_and_excluded_nodes(tmp_path: Path) -> None:
    import onnx

    from ftedge.export.onnx_int8 import quantize_qdq

    src = _tiny_classifier(tmp_path / "fp32.onnx")
    x = np.random.default_rng(3).normal(size=(16, 3, 16, 16)).astype(np.float32)
    calib = CalibrationSet(samples=[("x", 0)] * 16, images=x)
    out = quantize_qdq(src, calib, tmp_path / "u8.onnx", method="minmax")
    model = onnx.load(str(out))
    q_in = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert q_in, "Q/DQ nodes inserted"
    zp = {i.name: i for i in model.graph.initializer}
    act_zp = [zp[n.input[2]] for n in q_in if n.input[2] in zp]
    assert all(z.data_type == onnx.TensorProto.UINT8 for z in act_zp)
    # s8s8 symmetric (TensorRT flavour), conv kept float.
    out2 = quantize_qdq(
        src,
        calib,
        tmp_path / "s8.onnx",
        activation_type="int8",
        symmetric_activations=True,
        method="entropy",
        exclude_nodes=["conv"],
    )
    m2 = onnx.load(str(out2))
    zps = {i.name: i for i in m2.graph.initializer}
    q2 = [n for n in m2.graph.node if n.op_type == "QuantizeLinear"]
    for n in q2:
        z = zps[n.input[2]]
        assert z.data_type == onnx.TensorProto.INT8
        assert not np.any(onnx.numpy_helper.to_array(z))  # symmetric: zero point 0
    conv = next(n for n in m2.graph.node if n.name == "conv")
    producers = {o: n.op_type for n in m2.graph.node for o in n.output}
    assert all(producers.get(i) != "DequantizeLinear" for i in conv.input)  # float conv
    with pytest.raises(FtedgeError, match="calib-method"):
        quantize_qdq(src, calib, tmp_path / "bad.onnx", method="magic")  # type: ignore[arg-type]


def test_requested_artifacts_validates_options() -> None:
    req = requested_artifacts(
        ExportOptions(formats=("onnx", "openvino"), precisions=("fp32", "fp16"))
    )
    assert req.precisions == {"onnx": ("fp32",), "openvino": ("fp32", "fp16")}
    assert req.formats == ("onnx", "openvino") and req.count == 3 and not req.needs_calibration
    with pytest.raises(FtedgeError, match="onnx does not support fp16"):
        requested_artifacts(ExportOptions(formats=("onnx",), precisions=("fp16",)))
    with pytest.raises(FtedgeError, match="unknown format"):
        requested_artifacts(ExportOptions(formats=("tflite",)))
    with pytest.raises(FtedgeError, match="unknown precision"):
        requested_artifacts(ExportOptions(precisions=("int4",)))
    with pytest.raises(FtedgeError, match="batch-range"):
        requested_artifacts(ExportOptions(batch_range=(8, 1, 32)))
    req = requested_artifacts(ExportOptions())
    assert "onnx" in req.formats and req.precisions["onnx"] == ("fp32", "int8")
    assert req.needs_calibration


def _original_search(n: int, passes: list[bool]) -> tuple[list[int], int | None]:
    """The counts the sensitivity search tries, written out longhand, and the count it settles on."""
    calls: list[int] = []

    def run_k(k: int) -> bool:
        calls.append(k)
        return passes[k]

    lo, hi = 0, None
    if n and run_k(n):
        hi, k = n, 1
        while k < hi:
            if run_k(k):
                hi = k
                break
            lo, k = k, k * 2
    if hi is not None:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if run_k(mid):
                hi = mid
            else:
                lo = mid
    return calls, hi


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 13, 59])
def test_fewest_passing_tries_counts_in_the_documented_order(n: int) -> None:
    from ftedge.export.onnx_int8_search import fewest_passing

    for threshold in range(n + 2):  # passes from ``threshold`` kept in float; n + 1: never
        passes = [k >= threshold for k in range(n + 1)]
        calls: list[int] = []

        def record(k: int, passes: list[bool] = passes, calls: list[int] = calls) -> bool:
            calls.append(k)
            return passes[k]

        got = fewest_passing(n, record)
        want_calls, want = _original_search(n, passes)
        assert (calls, got) == (want_calls, want)
        assert got == (None if threshold > n or n == 0 else max(threshold, 1))


def test_export_bundle_keywords_match_export_options() -> None:
    import dataclasses
    import inspect

    from ftedge.export.bundle import ExportResult, export_bundle, options_from_keywords

    sig = inspect.signature(export_bundle)
    for f in dataclasses.fields(ExportOptions):
        param = sig.parameters[f.name]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY
        assert param.default == f.default, f.name
    assert options_from_keywords() == ExportOptions()
    opts = options_from_keywords(
        formats="onnx, openvino", precisions=["fp32"], batch_range=[1, 2, 4], out=Path("b")
    )
    assert opts == ExportOptions(
        formats=("onnx", "openvino"), precisions=("fp32",), batch_range=(1, 2, 4), out="b"
    )
    with pytest.raises(TypeError, match="not both"):
        export_bundle("nowhere", ExportOptions(), formats="onnx")
    with pytest.raises(FtedgeError, match="batch_range"):
        export_bundle("nowhere", batch_range=(1, 2))
    with pytest.raises(FtedgeError, match="unknown format"):
        export_bundle("nowhere", formats="tflite")
    assert dataclasses.is_dataclass(ExportResult)
    assert ExportResult.__dataclass_params__.frozen  # type: ignore[attr-defined]
    doc = export_bundle.__doc__ or ""
    assert all(f"``{f.name}``" in doc for f in dataclasses.fields(ExportOptions))


def test_a_uint8_twin_must_answer_like_its_original() -> None:
    from ftedge.export.openvino_baked import _against_original
    from ftedge.runtime.manifest import Artifact

    art = Artifact("openvino", "int8", "x.xml", details={"from": "openvino/int8/model.xml"})
    labels = np.arange(1000) % 10
    theirs = labels.copy()
    mine = theirs.copy()
    mine[:6] = (mine[:6] + 1) % 10  # 6 answers moved, all right before
    checked = _against_original(art, mine, theirs, labels)
    assert checked.status == "failed" and checked.message is not None
    assert "agreement" in checked.message and "6 more test images wrong" in checked.message
    assert checked.details["agreement_with_original"] == 0.994
    mine = theirs.copy()
    mine[0] = (mine[0] + 1) % 10  # one answer moved: within both budgets (exactly 0.1 point)
    ok = _against_original(art, mine, theirs, labels)
    assert ok.status == "ok" and ok.details["accuracy_below_original_pt"] == 0.1
