"""``ftedge.runtime.load(bundle).classify(frame)`` on a real bundle, against the PyTorch model.

The bundle (ONNX float + ONNX baked uint8 BGR + OpenVINO IR, from the trained ``tiny_run``) is
real; so are the images (the run's Fashion-MNIST test split and scikit-image photos).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ftedge.errors import FtedgeError
from ftedge.runtime import Classifier, Prediction, load
from ftedge.runtime.manifest import Artifact, InputSpec, Manifest
from ftedge.runtime.preprocess import PreprocessSpec, preprocess
from ftedge.runtime.select import candidates
from tests.runtime_helpers import build_test_bundle


@pytest.fixture(scope="module")
def bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_bundle(tiny_run, tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="module")
def test_images(bundle: Path) -> tuple[list[np.ndarray], list[int]]:
    """The bundle's test split (grayscale PNGs, decoded like training: RGB) and their labels."""
    m = Manifest.load(bundle)
    frames, labels = [], []
    for rel, y in m.data.test:
        with Image.open(Path(m.data.root) / rel) as im:
            frames.append(np.asarray(im.convert("RGB")))
        labels.append(int(y))
    return frames, labels


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    from skimage import data

    return [data.chelsea(), data.coffee(), data.astronaut()[40:300, 10:500]]


@pytest.fixture(scope="module")
def torch_ref(bundle: Path):
    clf = load(bundle, backend="torch")
    yield clf
    clf.close()


def test_auto_picks_the_documented_artifact_and_skips_failed(bundle: Path) -> None:
    with load(bundle) as clf:
        # No INT8 artifact is ok (the int8 entry is status=failed): OpenVINO FP32 comes next.
        assert isinstance(clf, Classifier)
        assert (clf.artifact.name, clf.backend, clf.device) == ("openvino-fp32", "openvino", "cpu")
        assert clf.labels == ["bag", "sneaker", "trouser"]
        assert clf.describe()["execution_precision"] in ("f32", "bf16")
    with load(bundle, backend="onnxruntime") as clf:
        assert clf.artifact.name == "onnx-fp32" and not clf.baked
    with load(bundle, backend="ort", baked=True) as clf:
        assert clf.artifact.name == "onnx-fp32-baked" and clf.baked and clf.model_color == "bgr"
    with pytest.raises(FtedgeError, match="no runnable artifact.*int8: status failed"):
        load(bundle, precision="int8")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backend": "onnxruntime"},
        {"backend": "onnxruntime", "baked": True},
        {"backend": "openvino", "openvino_precision": "f32"},
        {"backend": "openvino"},  # OpenVINO's default: bf16 execution on this CPU
    ],
    ids=["ort", "ort-baked-bgr", "openvino-f32", "openvino-default"],
)
def test_classify_agrees_with_pytorch(
    bundle: Path, torch_ref: Classifier, test_images, photos, kwargs: dict
) -> None:
    frames, labels = test_images
    clf = load(bundle, **kwargs)
    preds = clf.classify(frames + photos, topk=3)
    executed = clf.describe().get("execution_precision")
    clf.close()
    refs = torch_ref.classify(frames + photos, topk=3)
    assert isinstance(preds, list) and isinstance(refs, list)
    assert len(preds) == len(frames) + len(photos)
    # bf16 keeps ~3 significant digits: probabilities move by up to ~0.1 (measured 0.076), so
    # top-1 must agree wherever PyTorch's top-1 leads by a clear margin; float runs: everywhere.
    bf16 = kwargs == {"backend": "openvino"} and executed == "bf16"
    tol = 0.15 if bf16 else 1e-4
    clear = [r.scores[0] - r.scores[1] > (2 * tol if bf16 else 0) for r in refs]
    assert sum(clear) >= len(refs) - 4
    assert [p.label for p, c in zip(preds, clear, strict=True) if c] == [
        r.label for r, c in zip(refs, clear, strict=True) if c
    ]
    got = np.stack([p.probabilities for p in preds])
    want = np.stack([r.probabilities for r in refs])
    np.testing.assert_allclose(got, want, atol=tol)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    # The trained model is good on its own test split (the bundle's reference accuracy).
    acc = np.mean([p.index == y for p, y in zip(preds, labels, strict=False)])
    assert acc >= Manifest.load(bundle).reference.accuracy - 0.05


def test_float_artifact_reproduces_the_stored_reference_logits(bundle: Path) -> None:
    """The torch-free check: stored PyTorch logits (test split, training preprocessing)."""
    m = Manifest.load(bundle)
    ref = np.load(bundle / m.reference.logits)
    files = [str(Path(m.data.root) / rel) for rel, _ in m.data.test]
    with load(bundle, backend="onnxruntime") as clf:
        frames = [np.asarray(Image.open(f).convert("RGB")) for f in files]
        logits = clf.infer(clf.prepare(frames))
        probs = np.stack([p.probabilities for p in clf.classify(frames)])
    np.testing.assert_allclose(logits, ref, atol=1e-4)
    e = np.exp(ref - ref.max(1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(1, keepdims=True), atol=1e-5)


def test_single_frame_list_and_nhwc_batch_agree(bundle: Path, test_images, photos) -> None:
    frames, _ = test_images
    with load(bundle, backend="onnxruntime") as clf:
        one = clf.classify(photos[0], topk=2)
        assert isinstance(one, Prediction)
        assert len(one.labels) == 2 and one.scores[0] >= one.scores[1]
        assert one.topk() == list(zip(one.labels, one.scores, strict=True))
        singles = [clf.classify(f) for f in frames[:6]]
        batch = clf.classify(np.stack(frames[:6]))  # NHWC uint8 array
        assert isinstance(batch, list)
        for s, b in zip(singles, batch, strict=True):
            assert isinstance(s, Prediction)
            assert s.labels == b.labels
            np.testing.assert_allclose(s.probabilities, b.probabilities, atol=1e-6)
        # A fixed-batch model is fed in chunks (the last one padded): same answers.
        clf.fixed_batch = 4
        chunked = clf.classify(frames[:6])
        assert [c.labels for c in chunked] == [b.labels for b in batch]
        # topk larger than the number of classes is clamped; grayscale HW frames work.
        assert len(clf.classify(frames[0], topk=10).labels) == 3
        gray = clf.classify(frames[0][:, :, 0])
        assert gray.labels == singles[0].labels
        assert "probabilities" not in repr(gray)


@pytest.mark.parametrize("kwargs", [{"backend": "onnxruntime"}, {"baked": True}], ids=str)
def test_bgr_and_rgb_frames(bundle: Path, photos, kwargs: dict) -> None:
    with load(bundle, **kwargs) as clf:
        for rgb in photos:
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])
            a = clf.classify(rgb, color="rgb")
            b = clf.classify(bgr, color="bgr")
            np.testing.assert_array_equal(a.probabilities, b.probabilities)
            if not clf.baked:  # the network input itself equals the training preprocessing
                np.testing.assert_array_equal(clf.prepare(bgr, "bgr")[0], preprocess(rgb, clf.spec))
            # Stating the wrong order changes the input (these photos are colourful).
            c = clf.classify(bgr, color="rgb")
            assert not np.allclose(a.probabilities, c.probabilities, atol=1e-6)


@pytest.mark.parametrize(
    "frame, match",
    [
        (np.zeros((32, 32, 3), np.float32), "uint8"),
        (np.zeros((32, 32, 2), np.uint8), "channels"),
        (np.zeros((2, 3, 32, 32, 3), np.uint8), "HWC"),
        (np.zeros((0, 32, 32, 3), np.uint8), "empty batch"),
        ([], "empty batch"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.int16)], "frame 1: .*uint8"),
        ("cat.jpg", "numpy"),
    ],
)
def test_bad_input_is_a_clear_error(bundle: Path, frame: object, match: str) -> None:
    with load(bundle, backend="onnxruntime") as clf, pytest.raises(FtedgeError, match=match):
        clf.classify(frame)


def test_bad_arguments_are_clear_errors(bundle: Path, tmp_path: Path, photos) -> None:
    with load(bundle, backend="onnxruntime") as clf:
        with pytest.raises(FtedgeError, match="topk"):
            clf.classify(photos[0], topk=0)
        with pytest.raises(FtedgeError, match="color"):
            clf.classify(photos[0], color="hsv")
    with pytest.raises(FtedgeError, match="unknown backend"):
        load(bundle, backend="tflite")
    with pytest.raises(FtedgeError, match="precision"):
        load(bundle, precision="int4")
    with pytest.raises(FtedgeError, match="not a bundle"):
        load(tmp_path)
    with pytest.raises(FtedgeError, match="cannot run on device"):
        load(bundle, backend="openvino", device="cuda")


def test_tampered_bundle_is_refused(bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundle, tmp_path / "b"))
    blob = copy / "openvino" / "model.bin"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(FtedgeError, match=r"sha256 check: openvino/model.bin"):
        load(copy)
    with pytest.raises(FtedgeError, match="sha256"):  # whatever artifact was asked for
        load(copy, backend="onnxruntime")
    with load(copy, backend="onnxruntime", verify=False) as clf:  # opt-out for speed
        assert clf.artifact.name == "onnx-fp32"
    (copy / "onnx" / "model.onnx").unlink()
    with pytest.raises(FtedgeError, match="onnx/model.onnx"):
        load(copy)


def test_a_candidate_that_fails_to_start_falls_back(bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundle, tmp_path / "b"))
    (copy / "openvino" / "model.xml").write_text("<not a model/>")
    with load(copy, verify=False) as clf:
        assert clf.artifact.name == "onnx-fp32"
        assert len(clf.fallbacks) == 1 and "openvino-fp32" in clf.fallbacks[0]


def test_probability_outputs_are_not_softmaxed_twice(bundle: Path, photos) -> None:
    with load(bundle, backend="onnxruntime") as clf:
        raw = clf.infer(clf.prepare(photos[0]))
        clf.output_kind = "probabilities"  # as an artifact with a Softmax at the end says
        np.testing.assert_array_equal(clf.probabilities(photos[0]), raw)


def test_missing_backend_names_the_pip_extra(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(FtedgeError, match=r"pip install 'ftedge\[onnx\]'"):
        load(bundle, backend="onnxruntime")
    with load(bundle) as clf:  # auto: OpenVINO is still there
        assert clf.backend == "openvino"
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(FtedgeError, match=r"ftedge\[onnx\]'.*ftedge\[openvino\]'"):
        load(bundle)


def _art(fmt: str, prec: str, status: str = "ok", baked: bool = False) -> Artifact:
    inp = {"dtype": "uint8", "layout": "NHWC"} if baked else {"dtype": "float32"}
    d = {"format": fmt, "precision": prec, "path": f"{fmt}-{prec}", "status": status, "input": inp}
    return Artifact.from_dict(d)


def test_selection_order(monkeypatch: pytest.MonkeyPatch) -> None:
    import ftedge.runtime.backends as backends

    m = Manifest(
        labels=("a", "b"),
        preprocessing=PreprocessSpec(),
        input=InputSpec(),
        artifacts=(
            _art("onnx", "fp32"),
            _art("onnx", "int8", baked=True),
            _art("onnx", "int8"),
            _art("openvino", "fp32"),
            _art("openvino", "fp32", baked=True),
            _art("openvino", "int8", status="failed"),
            _art("openvino", "fp16"),
            _art("tensorrt", "fp16"),
            _art("tensorrt", "int8", status="skipped"),
        ),
    )
    monkeypatch.setattr(backends, "tensorrt_usable", lambda: True)  # as on a Jetson
    names = lambda cs: [f"{c.artifact.name}@{c.backend}:{c.device}" for c in cs]  # noqa: E731
    cands, reasons = candidates(m)
    assert names(cands) == [
        "tensorrt-fp16@tensorrt:cuda:0",
        "onnx-int8@onnxruntime:cpu",
        "onnx-int8-baked@onnxruntime:cpu",
        "openvino-fp32-baked@openvino:cpu",  # an IR normalising inside: before its original
        "openvino-fp32@openvino:cpu",
        "openvino-fp16@openvino:cpu",
        "onnx-fp32@onnxruntime:cpu",
    ]
    assert any(r.startswith("openvino-int8: status failed") for r in reasons)
    assert names(candidates(m, baked=True)[0]) == [
        "onnx-int8-baked@onnxruntime:cpu",
        "openvino-fp32-baked@openvino:cpu",
    ]
    assert names(candidates(m, precision="fp32")[0]) == [
        "openvino-fp32-baked@openvino:cpu",
        "openvino-fp32@openvino:cpu",
        "onnx-fp32@onnxruntime:cpu",
    ]
    assert names(candidates(m, backend="openvino", baked=False)[0]) == [
        "openvino-fp32@openvino:cpu",
        "openvino-fp16@openvino:cpu",
        "onnx-int8@openvino:cpu",  # OpenVINO reads ONNX too, after its own IRs
        "onnx-fp32@openvino:cpu",
    ]
    assert names(candidates(m, device="cuda")[0]) == [
        "tensorrt-fp16@tensorrt:cuda:0",
        "onnx-int8@onnxruntime:cuda",
        "onnx-int8-baked@onnxruntime:cuda",
        "onnx-fp32@onnxruntime:cuda",
    ]
    assert names(candidates(m, device="gpu")[0])[0] == "openvino-fp32-baked@openvino:gpu"
    monkeypatch.setattr(backends, "tensorrt_usable", lambda: False)  # this machine
    cands, reasons = candidates(m)
    assert names(cands)[0] == "onnx-int8@onnxruntime:cpu"
    assert any("tensorrt-fp16: tensorrt is not installed" in r for r in reasons)


def test_tensorrt_stub_package_is_not_mistaken_for_tensorrt() -> None:
    from ftedge.runtime.backends import tensorrt_usable

    try:
        import tensorrt
    except ImportError:
        tensorrt = None
    real = (
        tensorrt is not None and hasattr(tensorrt, "Runtime") and hasattr(tensorrt, "__version__")
    )
    assert tensorrt_usable() is real


def _run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )


def test_import_does_not_import_torch(tmp_path: Path) -> None:
    r = _run_python(
        """
        import sys
        import ftedge.runtime
        from ftedge.runtime import load, Classifier, Prediction
        import ftedge.runtime.predict, ftedge.runtime.select, ftedge.runtime.cli_predict
        import ftedge.runtime.runners.torch_ref
        heavy = sorted(m for m in ("torch", "torchvision", "timm", "onnxruntime", "openvino",
                                   "cv2") if m in sys.modules)
        print("HEAVY", heavy)
        """,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout


def test_runtime_and_predict_work_with_torch_unimportable(
    bundle: Path, tmp_path: Path, test_images
) -> None:
    # A test-split image the model is sure about: every backend (bf16 included) agrees on it.
    with load(bundle, backend="onnxruntime") as clf:
        frame, expected = max(
            ((f, clf.classify_one(f, topk=3)) for f in test_images[0][:20]),
            key=lambda fp: fp[1].score,
        )
    assert expected.score > 0.9
    img = tmp_path / "item.png"
    Image.fromarray(frame).save(img)
    r = _run_python(
        f"""
        import json, sys
        sys.modules["torch"] = None  # any 'import torch' now raises ImportError
        import numpy as np
        from PIL import Image
        import ftedge.runtime
        from ftedge.runtime import load
        frame = np.asarray(Image.open({str(img)!r}).convert("RGB"))
        for backend in ("auto", "onnxruntime", "openvino"):
            with load({str(bundle)!r}, backend=backend) as clf:
                p = clf.classify(frame, topk=3)
                print("PRED", backend, json.dumps(p.to_dict()))
        try:
            load({str(bundle)!r}, backend="torch")
        except Exception as e:
            print("TORCH", type(e).__name__, e)
        from ftedge.cli import main
        rc = main(["predict", {str(bundle)!r}, "--source", {str(img)!r}, "--topk", "3",
                   "--json", {str(tmp_path / "p.jsonl")!r}])
        print("RC", rc)
        """,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    preds = {
        ln.split()[1]: json.loads(ln.split(" ", 2)[2]) for ln in lines if ln.startswith("PRED")
    }
    assert set(preds) == {"auto", "onnxruntime", "openvino"}
    assert preds["onnxruntime"]["topk"][0]["label"] == expected.label
    assert all(p["topk"][0]["label"] == expected.label for p in preds.values())
    assert any("TORCH MissingExtraError" in ln and "ftedge[train]" in ln for ln in lines)
    assert "RC 0" in lines
    frame_line = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert frame_line["topk"][0]["label"] == expected.label


# -- a bundle made by the real export pipeline (ftedge.export) --------------------------------
@pytest.fixture(scope="module")
def exported_bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ftedge.export.bundle import ExportOptions, export_bundle

    opts = ExportOptions(
        formats=("onnx", "openvino"),
        precisions=("fp32", "int8"),
        bake_preprocess="bgr",
        out=str(tmp_path_factory.mktemp("exported") / "tiny"),
        progress=False,
    )
    return export_bundle(tiny_run, opts).bundle_dir


@pytest.mark.slow  # the export pipeline (dynamo ONNX export, NNCF INT8) takes ~30 s here
def test_runtime_reads_the_export_pipeline_bundle(
    exported_bundle: Path, torch_ref: Classifier, test_images, photos
) -> None:
    frames, _ = test_images
    m = Manifest.load(exported_bundle)
    ok = {a.name for a in m.artifacts if a.status == "ok"}
    refs = torch_ref.classify(frames + photos, topk=3)
    with load(exported_bundle) as clf:  # auto: the best verified artifact here
        order = ("openvino-int8-baked", "openvino-int8", "onnx-int8", "openvino-fp32", "onnx-fp32")
        best = [n for n in order if n in ok]
        assert clf.artifact.name == best[0]
        preds = clf.classify(frames + photos, topk=3)
        agree = np.mean([p.label == r.label for p, r in zip(preds, refs, strict=True)])
        assert agree >= 0.85
    for kwargs in (
        {"backend": "onnxruntime", "precision": "fp32"},
        {"backend": "openvino", "precision": "fp32", "openvino_precision": "f32"},
    ):
        # Artifact parity: the same (exact) preprocessing as the reference, whose bundle records
        # no fast-path verification.
        with load(exported_bundle, preprocessing="exact", **kwargs) as clf:
            preds = clf.classify(frames + photos, topk=3)
        assert [p.label for p in preds] == [r.label for r in refs]
        np.testing.assert_allclose(
            np.stack([p.probabilities for p in preds]),
            np.stack([r.probabilities for r in refs]),
            atol=1e-4,
        )
    with load(exported_bundle, backend="onnxruntime", baked=True, precision="fp32") as clf:
        assert clf.baked and clf.model_color == "bgr" and clf.layout == "NHWC"
        for rgb in photos:
            a = clf.classify_one(rgb, color="rgb")
            b = clf.classify_one(np.ascontiguousarray(rgb[:, :, ::-1]), color="bgr")
            np.testing.assert_array_equal(a.probabilities, b.probabilities)
        baked = clf.classify(frames + photos)
    assert [p.label for p in baked] == [r.label for r in refs]
    # The torch reference finds the run checkpoint through the manifest's provenance.
    with load(exported_bundle, backend="torch") as ref:
        assert ref.classify_one(photos[0]).labels == refs[len(frames)].labels
