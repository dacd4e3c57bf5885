"""TensorRT engine build step: everything that does not need libnvinfer, on real files.

TensorRT cannot be installed here, so the build itself is covered by the
``needs_cuda`` test at the end; cache keys, profiles, trtexec lines, version branching, the
FP16 ONNX conversion, the Q/DQ ONNX and the "skipped with trtexec command" path run for real.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from ftedge.errors import FtedgeError
from ftedge.export import tensorrt as T
from ftedge.files import sha256_file
from ftedge.runtime.manifest import Manifest

H = W = 16


# -- helpers -----------------------------------------------------------------------------------
def tiny_onnx(path: Path, *, seed: int = 0) -> Path:
    """A real little classifier: Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, (8,)).astype(np.float32)
    fc = rng.normal(0, 0.5, (3, 8)).astype(np.float32)
    fcb = rng.normal(0, 0.1, (3,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, H, W])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (fc, "fc"), (fcb, "fcb"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    out: np.ndarray = sess.run(None, {"input": x})[0]
    return out


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, Manifest]:
    """A bundle with the FP32 ONNX and real calibration images on disk."""
    from PIL import Image

    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    items = []
    for cls in range(3):
        (data / "train" / f"c{cls}").mkdir(parents=True)
        for i in range(4):
            rel = f"train/c{cls}/{i}.png"
            img = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(img).save(data / rel)
            items.append([rel, cls])
    bdir = tmp_path / "bundle"
    bdir.mkdir()
    tiny_onnx(bdir / "model.onnx")
    inp = {"name": "input", "dtype": "float32", "layout": "NCHW", "shape": [-1, 3, H, W]}
    art = dict(
        format="onnx",
        precision="fp32",
        path="model.onnx",
        sha256=sha256_file(bdir / "model.onnx"),
        input=inp,
        output={"name": "logits", "kind": "logits"},
        files={"model.onnx": sha256_file(bdir / "model.onnx")},
    )
    spec = {
        "input_size": [3, H, W],
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
    }
    m = Manifest.from_dict(
        dict(
            schema_version=2,
            labels=["a", "b", "c"],
            preprocessing=spec,
            input=inp,
            artifacts=[art],
            data={"root": str(data), "test": [], "calibration": items},
        )
    )
    m.save(bdir)
    return bdir, m


# -- versions and build plans ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("10.3.0.30", (10, 3, 0)),
        ("11.4.0.106", (11, 4, 0)),
        ("10.13", (10, 13, 0)),
        ("11", (11, 0, 0)),
    ],
)
def test_parse_version(text: str, want: tuple[int, int, int]) -> None:
    assert T.parse_version(text) == want


@pytest.mark.parametrize("bad", ["", "abc", "x.1", "0.1"])
def test_parse_version_rejects_garbage(bad: str) -> None:
    with pytest.raises(FtedgeError, match="TensorRT version"):
        T.parse_version(bad)


def test_build_plan_tensorrt10_uses_builder_flags_on_the_fp32_or_qdq_onnx() -> None:
    fp32, fp16, int8 = (T.build_plan(10, p) for p in ("fp32", "fp16", "int8"))
    assert (fp32.onnx, fp32.builder_flags, fp32.network_flags) == ("fp32", (), ())
    assert (fp16.onnx, fp16.builder_flags, fp16.trtexec_flags) == ("fp32", ("FP16",), ("--fp16",))
    assert (int8.onnx, int8.builder_flags, int8.trtexec_flags) == ("int8", ("INT8",), ("--int8",))
    assert all(p.network_flags == () for p in (fp32, fp16, int8))  # EXPLICIT_BATCH is ignored


@pytest.mark.parametrize("major", [11, 12])
def test_build_plan_tensorrt11_is_strongly_typed_without_precision_flags(major: int) -> None:
    for precision, onnx in (("fp32", "fp32"), ("fp16", "fp16"), ("int8", "int8")):
        plan = T.build_plan(major, precision)
        assert plan.onnx == onnx
        assert plan.builder_flags == ()  # BuilderFlag.FP16/INT8 no longer exist
        assert plan.network_flags == ("STRONGLY_TYPED",)
        assert plan.trtexec_flags == ("--stronglyTyped",)


def test_build_plan_rejects_old_tensorrt_and_unknown_precisions() -> None:
    with pytest.raises(FtedgeError, match="TensorRT 8.x is not supported"):
        T.build_plan(8, "fp16")
    for bad in ("bf16", "fp8", "int4", ""):
        with pytest.raises(FtedgeError, match="precision must be one of fp32, fp16, int8"):
            T.build_plan(10, bad)


def test_check_precisions_normalises_and_deduplicates() -> None:
    assert T.check_precisions(["FP16", "int8", "fp16"]) == ["fp16", "int8"]
    with pytest.raises(FtedgeError, match="no TensorRT precision"):
        T.check_precisions([])


# -- batch ranges and profiles -----------------------------------------------------------------
def test_profile_from_batch_range_and_input_spec() -> None:
    inp = {"name": "input", "shape": [-1, 3, 224, 224]}
    p = T.make_profile(inp, (1, 8, 32))
    assert (p.min, p.opt, p.max) == ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    assert p.trtexec_args() == [
        "--minShapes=input:1x3x224x224",
        "--optShapes=input:8x3x224x224",
        "--maxShapes=input:32x3x224x224",
    ]
    nhwc = T.make_profile({"name": "frames", "shape": ["batch", 128, 128, 3]}, (2, 2, 4))
    assert nhwc.max == (4, 128, 128, 3)


@pytest.mark.parametrize(
    ("rng", "msg"),
    [
        ((0, 1, 2), "minimum must be >= 1"),
        ((4, 2, 8), "min <= opt <= max"),
        ((1, 9, 8), "min <= opt <= max"),
        ((1, 2), "three integers"),
        ((1.0, 2, 3), "three integers"),
    ],
)
def test_batch_range_validation(rng: tuple[int, int, int], msg: str) -> None:
    with pytest.raises(FtedgeError, match=msg):
        T.check_batch_range(rng)


def test_parse_batch_range() -> None:
    assert T.parse_batch_range("1:8:32") == (1, 8, 32)
    assert T.parse_batch_range("4") == (4, 4, 4)
    for bad in ("1:2", "a:b:c", "8:4:2", "0:1:1"):
        with pytest.raises(FtedgeError):
            T.parse_batch_range(bad)


def test_profile_rejects_dynamic_spatial_dims_and_fixed_batch_mismatch() -> None:
    with pytest.raises(FtedgeError, match="only the batch dim may be dynamic"):
        T.make_profile({"name": "input", "shape": [-1, 3, -1, 224]}, (1, 1, 1))
    with pytest.raises(FtedgeError, match="fixed batch of 1"):
        T.make_profile({"name": "input", "shape": [1, 3, 8, 8]}, (1, 4, 8))
    assert T.make_profile({"name": "input", "shape": [1, 3, 8, 8]}, (1, 1, 1)).opt == (1, 3, 8, 8)
    with pytest.raises(FtedgeError, match="needs a name"):
        T.make_profile({"shape": [-1, 3, 8, 8]}, (1, 1, 1))


# -- cache keys --------------------------------------------------------------------------------
KEY = T.CacheKey("ab" * 32, "10.3.0.30", "Orin", "8.7", "fp16", (1, 8, 32))


def test_cache_key_is_stable_and_names_the_plan() -> None:
    again = T.CacheKey("ab" * 32, "10.3.0.30", "Orin", "8.7", "fp16", (1, 8, 32))
    assert KEY.digest == again.digest and len(KEY.digest) == 64
    assert KEY.short == KEY.digest[:16]
    assert KEY.plan_name() == f"model.fp16.{KEY.short}.plan"
    # A fixed value pins the hashing scheme: changing it silently would orphan built engines.
    blob = json.dumps(KEY.parts(), sort_keys=True, separators=(",", ":")).encode()
    import hashlib

    assert KEY.digest == hashlib.sha256(blob).hexdigest()


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "cd" * 32},
        {"tensorrt_version": "10.3.0.31"},
        {"device_name": "Xavier"},
        {"compute_capability": "7.2"},
        {"precision": "int8"},
        {"batch_range": (1, 8, 16)},
        {"batch_range": (1, 4, 32)},
    ],
)
def test_cache_key_changes_with_each_part(change: dict[str, object]) -> None:
    other = dataclasses.replace(KEY, **change)  # type: ignore[arg-type]
    assert other.digest != KEY.digest
    assert other.plan_name() != KEY.plan_name()


# -- trtexec command lines ---------------------------------------------------------------------
PROFILE = T.Profile("input", (1, 3, 64, 64), (8, 3, 64, 64), (32, 3, 64, 64))
SHAPES = "--minShapes=input:1x3x64x64 --optShapes=input:8x3x64x64 --maxShapes=input:32x3x64x64"


@pytest.mark.parametrize(
    ("major", "precision", "onnx", "flags"),
    [
        (10, "fp32", "model.onnx", ""),
        (10, "fp16", "model.onnx", " --fp16"),
        (10, "int8", "tensorrt/model.int8-qdq.onnx", " --int8"),
        (11, "fp32", "model.onnx", " --stronglyTyped"),
        (11, "fp16", "tensorrt/model.fp16.onnx", " --stronglyTyped"),
        (11, "int8", "tensorrt/model.int8-qdq.onnx", " --stronglyTyped"),
    ],
)
def test_trtexec_command_per_version_and_precision(
    major: int, precision: str, onnx: str, flags: str
) -> None:
    plan = T.build_plan(major, precision)
    cmd = T.trtexec_command(plan, onnx, "tensorrt/e.plan", PROFILE, "tensorrt/timing.cache")
    assert cmd == (
        f"trtexec --onnx={onnx} --saveEngine=tensorrt/e.plan {SHAPES} "
        f"--timingCacheFile=tensorrt/timing.cache{flags} --skipInference"
    )
    if major >= 11:
        assert "--fp16" not in cmd and "--int8" not in cmd  # removed from trtexec in 11.x


def test_trtexec_command_quotes_paths_with_spaces() -> None:
    plan = T.build_plan(10, "fp32")
    cmd = T.trtexec_command(plan, "my model.onnx", "e.plan", PROFILE, "t.cache")
    assert shlex.split(cmd)[1] == "--onnx=my model.onnx"


# -- FP16 ONNX (TensorRT 11) -------------------------------------------------------------------
def test_fp16_onnx_runs_and_matches_fp32(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto

    src = tiny_onnx(tmp_path / "model.onnx")
    dst = tmp_path / "tensorrt" / "model.fp16.onnx"
    stats = T.convert_fp16_onnx(src, dst)
    m = onnx.load(str(dst))
    assert stats["initializers_fp16"] == 4 and stats["clipped_values"] == 0
    assert all(i.data_type == TensorProto.FLOAT16 for i in m.graph.initializer)
    # I/O stay float32 with the same names: callers (and the engine) are unchanged.
    assert [(i.name, i.type.tensor_type.elem_type) for i in m.graph.input] == [("input", 1)]
    assert [(o.name, o.type.tensor_type.elem_type) for o in m.graph.output] == [("logits", 1)]
    assert m.graph.node[0].op_type == "Cast" and m.graph.node[-1].op_type == "Cast"
    x = np.random.default_rng(1).normal(size=(4, 3, H, W)).astype(np.float32)
    ref, got = ort_run(src, x), ort_run(dst, x)
    assert got.dtype == np.float32 and got.shape == (4, 3)
    np.testing.assert_allclose(got, ref, atol=2e-2, rtol=1e-2)
    assert not np.array_equal(got, ref)  # it really computed in fp16
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_fp16_onnx_clips_weights_beyond_fp16_range(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    src = tiny_onnx(tmp_path / "model.onnx")
    m = onnx.load(str(src))
    big = numpy_helper.to_array(m.graph.initializer[3]).copy()
    big[0] = 1e6
    m.graph.initializer[3].CopyFrom(numpy_helper.from_array(big, "fcb"))
    onnx.save(m, str(src))
    stats = T.convert_fp16_onnx(src, tmp_path / "fp16.onnx")
    assert stats["clipped_values"] == 1
    out = ort_run(tmp_path / "fp16.onnx", np.zeros((1, 3, H, W), np.float32))
    assert np.isfinite(out).all()


def test_fp16_onnx_keeps_a_cast_to_float_runnable(tmp_path: Path) -> None:
    # uint8 input -> Cast(to=float) -> Mul: the Cast's float output must feed float16 ops.
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scale = numpy_helper.from_array(np.full((1, 4), 0.5, np.float32), "s")
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT, name="cast"),
            helper.make_node("Mul", ["xf", "s"], ["input"], name="mul"),
        ],
        "cast",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4])],
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "cast.onnx"))
    stats = T.convert_fp16_onnx(tmp_path / "cast.onnx", tmp_path / "cast16.onnx")
    assert stats == {"initializers_fp16": 1, "clipped_values": 0}
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "cast16.onnx"), providers=["CPUExecutionProvider"])
    x = np.array([[0, 1, 2, 255]], np.uint8)
    out = sess.run(None, {"x": x})[0]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x * np.float32(0.5))


# -- the export step without TensorRT ----------------------------------------------------------
def test_tensorrt_is_reported_missing_here_in_one_line() -> None:
    # tensorrt-stubs makes "import tensorrt" succeed: it must still count as not installed.
    assert T.tensorrt_version() is None
    reason = T.tensorrt_unavailable_reason()
    assert reason is not None and "\n" not in reason and "TensorRT is not installed" in reason


def test_export_without_tensorrt_records_skipped_artifacts_with_trtexec(
    bundle: tuple[Path, Manifest],
) -> None:
    import onnx

    bdir, m = bundle
    arts = T.export_tensorrt(bdir, m, ["fp32", "fp16", "int8"], (1, 4, 8))
    assert [a.precision for a in arts] == ["fp32", "fp16", "int8"]
    for a in arts:
        assert a.format == "tensorrt" and a.status == "skipped", a.message
        assert a.sha256 is None and not (bdir / a.path).exists()  # nothing claimed as built
        assert (
            "not installed" in (a.message or "") and "ftedge export --formats tensorrt" in a.message
        )
        assert a.path == f"tensorrt/model.{a.precision}.b1-4-8.plan"
        assert a.input.name == "input" and a.output.name == "logits"
        assert a.details["profile"]["max"] == [8, 3, H, W]
        cmds = a.details["trtexec"]
        assert set(cmds) == {"tensorrt10", "tensorrt11"}
        for cmd in cmds.values():
            args = shlex.split(cmd)
            assert args[0] == "trtexec" and f"--saveEngine={a.path}" in args
            assert "--maxShapes=input:8x3x16x16" in args
            onnx_rel = next(x for x in args if x.startswith("--onnx=")).split("=", 1)[1]
            assert (bdir / onnx_rel).is_file()  # the device gets every input it needs
        for rel, digest in a.files.items():  # the extra ONNX inputs are listed and hashed
            assert sha256_file(bdir / rel) == digest
    fp32, fp16, int8 = arts
    assert "--fp16" not in fp32.details["trtexec"]["tensorrt10"]
    assert "--onnx=model.onnx" in fp16.details["trtexec"]["tensorrt10"]
    assert "--fp16" in fp16.details["trtexec"]["tensorrt10"]
    assert "--onnx=tensorrt/model.fp16.onnx" in fp16.details["trtexec"]["tensorrt11"]
    assert "--fp16" not in fp16.details["trtexec"]["tensorrt11"]
    assert "--int8" in int8.details["trtexec"]["tensorrt10"]
    assert "--onnx=tensorrt/model.int8-qdq.onnx" in int8.details["trtexec"]["tensorrt11"]
    # The Q/DQ ONNX is what TensorRT accepts: int8 activations with zero point 0 (symmetric).
    q = onnx.load(str(bdir / "tensorrt" / "model.int8-qdq.onnx"))
    qnodes = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    assert qnodes
    inits = {i.name: i for i in q.graph.initializer}
    for n in qnodes:
        zp = onnx.numpy_helper.to_array(inits[n.input[2]])
        assert zp.dtype == np.int8 and not zp.any()
    # It computes the same function as the FP32 model on the calibration images, within INT8 error.
    x = T.calibration_set(m, "input").images
    ref, got = ort_run(bdir / "model.onnx", x), ort_run(bdir / "tensorrt/model.int8-qdq.onnx", x)
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_export_reuses_the_qdq_onnx_when_the_data_is_gone(
    bundle: tuple[Path, Manifest], tmp_path: Path
) -> None:
    """On a Jetson the calibration images are absent: the bundle's Q/DQ ONNX is reused."""
    import shutil

    bdir, m = bundle
    first = T.export_tensorrt(bdir, m, ["int8"], (1, 1, 1))
    m = m.with_artifact(first[0])
    shutil.rmtree(tmp_path / "data")
    again = T.export_tensorrt(bdir, m, ["int8"], (1, 1, 1))
    assert again[0].status == "skipped"
    assert again[0].details["onnx_notes"]["reused"] is True
    assert again[0].files == first[0].files
    # A changed FP32 model invalidates it: re-quantizing needs the (missing) data -> failed.
    tiny_onnx(bdir / "model.onnx", seed=5)
    m.artifacts[0].files["model.onnx"] = sha256_file(bdir / "model.onnx")
    third = T.export_tensorrt(bdir, m, ["int8"], (1, 1, 1))
    assert third[0].status == "failed" and "calibration data root" in (third[0].message or "")


def test_export_with_tensorrt_but_no_gpu_fails_clearly(
    bundle: tuple[Path, Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If TensorRT imports but no GPU is usable, the artifact is failed, never ok."""
    bdir, m = bundle
    import ftedge.export.trt_engine as E

    monkeypatch.setattr(E, "tensorrt_version", lambda: "10.3.0.30")
    import ftedge.runtime.cuda as C

    def no_gpu(*a: object, **k: object) -> C.CudaRuntime:
        raise FtedgeError("no CUDA GPU found here; TensorRT needs an NVIDIA GPU")

    monkeypatch.setattr(C, "load_cuda", no_gpu)
    (art,) = T.export_tensorrt(bdir, m, ["fp16"], (1, 1, 2))
    assert art.status == "failed" and "no CUDA GPU" in (art.message or "")
    assert not list(bdir.rglob("*.plan"))


def test_export_argument_errors(bundle: tuple[Path, Manifest]) -> None:
    bdir, m = bundle
    with pytest.raises(FtedgeError, match="precision must be one of"):
        T.export_tensorrt(bdir, m, ["bf16"], (1, 1, 1))
    with pytest.raises(FtedgeError, match="min <= opt <= max"):
        T.export_tensorrt(bdir, m, ["fp32"], (1, 8, 4))
    m = dataclasses.replace(m, artifacts=())
    with pytest.raises(FtedgeError, match="needs the bundle's FP32 ONNX"):
        T.export_tensorrt(bdir, m, ["fp32"], (1, 1, 1))


def test_int8_without_calibration_data_fails(bundle: tuple[Path, Manifest]) -> None:
    bdir, m = bundle
    m = dataclasses.replace(m, data=dataclasses.replace(m.data, calibration=()))
    (art,) = T.export_tensorrt(bdir, m, ["int8"], (1, 1, 1))
    assert art.status == "failed" and "calibration images" in (art.message or "")


def test_default_timing_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FTEDGE_CACHE_DIR", str(tmp_path))
    p = T.default_timing_cache("orin-sm87", "10.3.0.30")
    assert p == tmp_path / "trt" / "timing-orin-sm87-trt10.3.0.30.cache"


# -- the real thing, where TensorRT and a GPU exist ---------------------------------------------
@pytest.mark.needs_cuda
def test_build_and_run_real_engine(bundle: tuple[Path, Manifest], tmp_path: Path) -> None:
    if T.tensorrt_version() is None:
        pytest.skip("TensorRT is not installed")
    from ftedge.runtime.runners.tensorrt import TensorRTRunner

    bdir, m = bundle
    arts = T.export_tensorrt(
        bdir, m, ["fp32", "fp16"], (1, 2, 4), timing_cache=tmp_path / "t.cache"
    )
    x = np.random.default_rng(3).normal(size=(3, 3, H, W)).astype(np.float32)
    ref = ort_run(bdir / "model.onnx", x)
    for art in arts:
        assert art.status == "ok", art.message
        plan = (bdir / art.path).read_bytes()
        assert not plan.startswith(b"{")  # stock plan: nothing prepended
        assert art.details["cache_key"].startswith(art.path.split(".")[-2])
        for graph in (False, True):
            with TensorRTRunner(str(bdir / art.path), cuda_graph=graph, expected=art.details) as r:
                out = r.infer({"input": x})["logits"]
                out2 = r.infer({"input": x})["logits"]
            tol = 1e-3 if art.precision == "fp32" else 3e-2
            np.testing.assert_allclose(out, ref, atol=tol, rtol=tol)
            np.testing.assert_array_equal(out, out2)
    assert (tmp_path / "t.cache").is_file()


# -- strict typing of the TensorRT export modules against tensorrt-stubs -------------------------
def test_tensorrt_export_modules_are_strictly_typed(tmp_path: Path) -> None:
    """Every ``export/trt_*.py`` module (and ``export/tensorrt.py``) passes mypy --strict."""
    from tests.typecheck import REPO, run_mypy

    modules = ["ftedge.export.tensorrt"] + sorted(
        f"ftedge.export.{p.stem}" for p in (REPO / "export").glob("trt_*.py")
    )
    assert "ftedge.export.trt_engine" in modules
    res = run_mypy(tmp_path, modules, strict=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Success: no issues found in {len(modules)} source files" in res.stdout
