"""``ftedge export`` end to end on a real (tiny) trained run: artifacts, verification, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ftedge.cli import main
from ftedge.runtime.manifest import Manifest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    code = main(
        [
            "export",
            str(tiny_run),
            "--formats",
            "onnx,openvino",
            "--precision",
            "fp32,int8",
            "--bake-preprocess",
            "rgb",
            "--out",
            str(out),
            "--no-progress",
            "--max-accuracy-drop",
            "100",
        ]
    )
    assert code == 0
    return out


def _parity_inputs(bundle: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(bundle / "parity_inputs.npz") as z:
        return z["crops"], z["labels"]


def test_manifest_contract_and_fp32_parity(bundle: Path, tiny_run: Path) -> None:
    raw = json.loads((bundle / "manifest.json").read_text())
    for key in ("schema_version", "labels", "preprocessing", "input", "artifacts"):
        assert key in raw
    m = Manifest.load(bundle)
    meta = json.loads((tiny_run / "best.json").read_text())
    assert list(m.labels) == meta["classes"]
    assert list(m.preprocessing.input_size) == meta["preprocessing"]["input_size"]
    names = {a.name for a in m.artifacts}
    assert {"onnx-fp32", "onnx-fp32-baked", "onnx-int8", "openvino-fp32", "openvino-int8"} <= names
    for a in m.artifacts:
        assert a.status == "ok", a.message
        assert a.parity is not None
        for key in ("max_abs_diff", "top1_agreement"):
            assert key in a.parity.to_dict()
        assert a.accuracy is not None and a.accuracy_drop is not None
        assert a.path in a.files and a.sha256 == a.files[a.path]
    fp32 = m.find("onnx", "fp32")
    assert fp32 is not None
    assert fp32.parity is not None
    assert fp32.parity.max_abs_diff < 1e-4
    assert fp32.parity.top1_agreement == 1.0
    ov32 = m.find("openvino", "fp32")
    assert ov32 is not None and ov32.parity is not None and ov32.parity.execution_precision == "f32"
    assert set(ov32.files) == {"openvino/fp32/model.xml", "openvino/fp32/model.bin"}
    int8 = m.find("onnx", "int8")
    assert int8 is not None and int8.details["activation_type"] == "uint8"
    assert int8.details["weight_type"] == "int8" and int8.details["per_channel"]
    # The OpenVINO INT8 IR is the passing ONNX Q/DQ model converted, verified in f32 outside
    # its int8 layers (as load() runs it).
    ov8 = m.find("openvino", "int8")
    assert ov8 is not None and int8.path in ov8.details["method"]
    assert ov8.parity is not None and ov8.parity.execution_precision == "f32"
    ref = np.load(bundle / m.reference.logits)
    assert ref.shape == (len(m.data.test), len(m.labels))
    y = np.array([t[1] for t in m.data.test])
    assert m.reference.accuracy == pytest.approx(float((ref.argmax(1) == y).mean()))
    assert len(m.data.calibration) == len(m.data.train)  # default: all when < 300


def test_onnx_is_self_describing(bundle: Path) -> None:
    import onnx

    model = onnx.load(str(bundle / "onnx/model.fp32.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    props = {p.key: p.value for p in model.metadata_props}
    m = Manifest.load(bundle)
    assert json.loads(props["ftedge.labels"]) == list(m.labels)
    assert json.loads(props["ftedge.preprocessing"])["mean"] == list(m.preprocessing.mean)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert not (bundle / "onnx/model.fp32.onnx.data").exists()  # one self-contained file


def test_baked_model_on_raw_crops_matches_plain_model(bundle: Path) -> None:
    from ftedge.runtime.preprocess import normalize
    from ftedge.runtime.runners.onnxruntime import OnnxRuntimeRunner

    m = Manifest.load(bundle)
    crops, _ = _parity_inputs(bundle)
    with OnnxRuntimeRunner(str(bundle / "onnx/model.fp32.onnx")) as r:
        plain = r.infer({"input": normalize(crops, m.spec)})["logits"]
    baked = m.find("onnx", "fp32", baked=True)
    assert baked is not None and baked.input.dtype == "uint8"
    with OnnxRuntimeRunner(str(bundle / baked.path)) as r:
        got = r.infer({"input": crops})["logits"]
    assert (got.argmax(1) == plain.argmax(1)).all()
    np.testing.assert_allclose(got, plain, atol=1e-4)


def test_fp32_onnx_same_top1_in_openvino(bundle: Path) -> None:
    """An independent ONNX consumer (OpenVINO's ONNX frontend) gives the same top-1."""
    from ftedge.runtime.preprocess import normalize
    from ftedge.runtime.runners.openvino import OpenVinoRunner

    m = Manifest.load(bundle)
    crops, _ = _parity_inputs(bundle)
    ref = np.load(bundle / "reference_logits.npy")[: len(crops)]
    with OpenVinoRunner(str(bundle / "onnx/model.fp32.onnx"), precision="f32") as r:
        out = r.infer({"input": normalize(crops, m.spec)})["logits"]
    assert (out.argmax(1) == ref.argmax(1)).all()
    assert np.abs(out - ref).max() < 1e-3


def test_check_passes_then_fails_naming_altered_file(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--check", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "onnx-int8" in out and "files match" in out
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    bin_path = copy / "openvino/fp32/model.bin"
    data = bytearray(bin_path.read_bytes())
    data[100] ^= 0xFF
    bin_path.write_bytes(bytes(data))
    assert main(["export", "--check", str(copy)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "openvino/fp32/model.bin" in err[0]


def test_openvino_from_bundle_without_torch(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "ov"
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from ftedge.cli import main\n"
        f"rc = main(['export', {str(bundle)!r}, '--formats', 'openvino', '--precision', "
        f"'fp32,fp16,int8', '--out', {str(out)!r}, '--no-progress', '--max-accuracy-drop', '100'])\n"
        "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = Manifest.load(out)
    fp16 = m.find("openvino", "fp16")
    assert fp16 is not None and fp16.status == "ok"
    assert m.find("onnx", "int8") is not None  # earlier artifacts kept
    assert (bundle / "manifest.json").is_file()  # the source bundle is untouched


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_bad_inputs_are_one_line_errors(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "b"
    base = ["--out", str(out), "--no-progress"]
    assert main(["export", str(tmp_path / "nothing"), *base]) == 1
    assert "does not exist" in _one_line_error(capsys)
    assert main(["export", str(tiny_run), "--formats", "onnx,tflite", *base]) == 1
    assert "unknown format 'tflite'" in _one_line_error(capsys)
    assert main(["export", str(tiny_run), "--formats", "onnx", "--precision", "fp16", *base]) == 1
    assert "onnx does not support fp16" in _one_line_error(capsys)
    assert main(["export", str(tiny_run), "--calib-images", "100000", *base]) == 1
    assert "--calib-images 100000" in _one_line_error(capsys)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_run, corrupt)
    w = corrupt / "best.safetensors"
    w.write_bytes(w.read_bytes()[:-64])
    assert main(["export", str(corrupt), *base]) == 1
    assert "corrupt" in _one_line_error(capsys)
    # Nothing half-written left behind, and nothing that looks like a bundle.
    assert not out.exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_impossible_budget_fails_naming_artifact(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b"
    code = main(
        [
            "export",
            str(tiny_run),
            "--formats",
            "onnx",
            "--out",
            str(out),
            "--no-progress",
            "--max-accuracy-drop",
            "-1000",
        ]
    )
    assert code == 1
    assert "onnx-int8" in capsys.readouterr().err
    m = Manifest.load(out)
    art = m.find("onnx", "int8")
    assert art is not None and art.status == "failed"
    assert art.details["sensitivity"]["attempts"][-1]["kept_float"] > 0
    assert m.find("onnx", "fp32").status == "ok"  # type: ignore[union-attr]


def test_bundle_directory_permissions_follow_umask(bundle: Path) -> None:
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert bundle.stat().st_mode & 0o777 == 0o777 & ~umask


def test_softmax_output(tiny_run: Path, tmp_path: Path) -> None:
    from ftedge.runtime.preprocess import normalize
    from ftedge.runtime.runners.onnxruntime import OnnxRuntimeRunner

    out = tmp_path / "sm"
    args = ["export", str(tiny_run), "--formats", "onnx", "--precision", "fp32", "--softmax"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    m = Manifest.load(out)
    art = m.find("onnx", "fp32")
    assert art is not None
    assert art.output.to_dict() == {"name": "probabilities", "kind": "probabilities"}
    assert art.parity is not None
    assert art.parity.compared == "probabilities" and art.parity.top1_agreement == 1.0
    crops, _ = _parity_inputs(out)
    with OnnxRuntimeRunner(str(out / art.path)) as r:
        p = r.infer({"input": normalize(crops, m.spec)})["probabilities"]
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


def test_tensorrt_step_records_skip_with_trtexec(bundle: Path, tmp_path: Path) -> None:
    from ftedge.runtime.backends import format_available

    if format_available("tensorrt"):
        pytest.skip("TensorRT is installed: the engine is built instead")
    out = tmp_path / "trt"
    args = ["export", str(bundle), "--formats", "tensorrt", "--precision", "fp32,int8"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    m = Manifest.load(out)
    for precision in ("fp32", "int8"):
        art = m.find("tensorrt", precision)
        assert art is not None and art.status == "skipped"
        assert "trtexec" in json.dumps(art.details["trtexec"])
    assert m.find("onnx", "int8") is not None  # the bundle's artifacts are kept


def test_check_without_dataset_uses_stored_crops(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "moved"
    shutil.copytree(bundle, copy)
    raw = json.loads((copy / "manifest.json").read_text())
    raw["data"]["root"] = str(tmp_path / "dataset-not-on-this-machine")
    (copy / "manifest.json").write_text(json.dumps(raw))
    assert main(["export", "--check", str(copy)]) == 0
    assert "stored in the bundle" in capsys.readouterr().out


def test_int8_ir_runs_its_float_layers_in_f32_by_default(bundle: Path) -> None:
    from ftedge.runtime import load

    with load(bundle, backend="openvino", precision="int8") as clf:
        d = clf.describe()
        assert d["requested_precision"] == "f32" and d["execution_precision"] == "f32"
    with load(bundle, backend="openvino", precision="int8", openvino_precision="bf16") as clf:
        assert clf.describe()["requested_precision"] == "bf16"  # the caller's choice wins


def test_int8_ir_has_a_uint8_twin_that_the_runtime_runs(bundle: Path) -> None:
    from ftedge.runtime import load
    from ftedge.runtime.prediction import softmax
    from ftedge.runtime.preprocess import normalize
    from ftedge.runtime.runners.openvino import OpenVinoRunner

    m = Manifest.load(bundle)
    ov8, twin = m.find("openvino", "int8"), m.find("openvino", "int8", baked=True)
    assert ov8 is not None and twin is not None and twin.status == "ok"
    assert (twin.input.dtype, twin.input.layout, twin.input.color) == ("uint8", "NCHW", "rgb")
    assert twin.details["from"] == ov8.path and twin.details["agreement_with_original"] >= 0.995
    assert set(twin.files) == {
        "openvino/int8-uint8-rgb/model.xml",
        "openvino/int8-uint8-rgb/model.bin",
    }
    crops, _ = _parity_inputs(bundle)
    with OpenVinoRunner(str(bundle / ov8.path), precision="f32") as r:
        plain = r.infer({"input": normalize(crops, m.spec)})["logits"]
    with OpenVinoRunner(str(bundle / twin.path), precision="f32") as r:
        assert r.input_metadata()["input"].dtype == np.uint8
        got = r.infer({"input": np.ascontiguousarray(crops.transpose(0, 3, 1, 2))})["logits"]
    assert (got.argmax(1) == plain.argmax(1)).mean() >= 0.95  # rounding moves a rare answer
    np.testing.assert_allclose(got, plain, atol=0.5)
    frame = np.ascontiguousarray(np.kron(crops[0], np.ones((4, 4, 1), np.uint8))[:, :, ::-1])
    with load(bundle, preprocessing="fast") as clf:  # the default artifact: uint8 planes in
        assert clf.artifact.name == "openvino-int8-baked" and clf.fast is not None
        x = clf.prepare(frame, "bgr")
        assert x.dtype == np.uint8 and x.shape == (1, 3, *crops.shape[1:3])
        np.testing.assert_array_equal(x[0], clf.fast.crop(frame, "bgr").transpose(2, 0, 1))
        probs = clf.probabilities(frame, "bgr")
    with OpenVinoRunner(str(bundle / twin.path), precision="f32") as r:
        want = softmax(r.infer({"input": x})["logits"])
    np.testing.assert_allclose(probs, want, atol=1e-6)  # the planes are what the twin ran on


def test_a_twin_that_misses_its_gate_is_not_kept(bundle: Path, tmp_path: Path) -> None:
    from ftedge.export.bundle import _with_baked_twin
    from ftedge.export.options import ExportOptions
    from ftedge.export.verify import load_eval_data

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    shutil.rmtree(copy / "openvino" / "int8-uint8-rgb")  # the export's own twin goes first
    m = Manifest.load(copy)
    m = replace(m, artifacts=tuple(a for a in m.artifacts if a.name != "openvino-int8-baked"))
    ov8 = m.find("openvino", "int8")
    assert ov8 is not None
    data = load_eval_data(copy, m, allow_subset=True)
    notes: list[str] = []
    opts = ExportOptions(min_agreement=1.01)  # no twin can agree with FP32 that well
    kept = _with_baked_twin(copy, m, ov8, data, opts, notes)
    assert kept.find("openvino", "int8", baked=True) is None
    assert len(notes) == 1 and "openvino-int8-baked" in notes[0] and "agreement" in notes[0]
    assert not (copy / "openvino" / "int8-uint8-rgb").exists()


def test_a_run_named_relative_to_the_cwd_is_found_from_the_bundle(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `ftedge export runs/latest` records the checkpoint so that the torch reference of
    # `ftedge benchmark` and load(backend="torch") find it from anywhere.
    from ftedge.runtime.classifier import checkpoint_of

    monkeypatch.chdir(tiny_run.parent)
    out = tmp_path / "b"
    args = ["export", tiny_run.name, "--formats", "onnx", "--precision", "fp32"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    monkeypatch.chdir(tmp_path)
    m = Manifest.load(out)
    assert m.provenance.checkpoint is not None
    assert checkpoint_of(m, out) == str((tiny_run / "best.safetensors").resolve())
