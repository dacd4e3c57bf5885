"""The faster train -> export path: compiled feature extraction, stored test logits reused.

- the backbone compiled by OpenVINO / onnxruntime gives the torch features on real images, and
  falls back to torch (with a warning) when asked features differ or the runtime is missing;
- a run stores its test logits bound to the checkpoint's sha256; the export reuses them after a
  spot check, and refuses stale or wrong ones (computing the reference in PyTorch instead);
- the fast-path check runs the model only on rows whose input can differ from the exact path;
- benchmarks/pipeline.py's phase bookkeeping.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ftedge.training.compiled_backbone import MAX_ABS_DIFF

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lite0_and_images(small_data: Path) -> tuple[torch.nn.Module, torch.Tensor]:
    """The offline Lite0 backbone (eval) and 12 real test images at 64 px, preprocessed."""
    from ftedge.data.folders import scan_image_folder
    from ftedge.data.torch_data import ImageDataset
    from ftedge.data.transforms import eval_transform
    from ftedge.models import HeadSpec, build_classifier, resolve_backbone

    built = build_classifier(resolve_backbone("tf_efficientnet_lite0"), HeadSpec(3))
    spec = built.preprocess
    spec = type(spec).from_dict({**spec.to_dict(), "input_size": [3, 64, 64]})
    splits = scan_image_folder(str(small_data), val_fraction=0.2, test_fraction=0.2, seed=0)
    ds = ImageDataset(splits, splits.test[:12], eval_transform(spec))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    return built.model.backbone.eval(), x


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_compiled_features_match_torch_on_real_images(lite0_and_images, backend: str) -> None:
    from ftedge.training.features import FrozenExtractor

    pytest.importorskip(backend)
    backbone, x = lite0_and_images
    ex = FrozenExtractor(backbone, backend)  # type: ignore[arg-type]
    first = ex(x[:6])  # the check batch: torch's own answer
    assert ex.backend == backend, ex.backend_note
    assert ex.backend_max_abs_diff is not None and ex.backend_max_abs_diff <= MAX_ABS_DIFF
    got = ex(x[6:])  # from now on the compiled backbone
    with torch.inference_mode():
        want = backbone(x[6:])
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert float((got - want).abs().max()) <= MAX_ABS_DIFF
    assert ex.record()["backend"] == backend and first.shape[1] == want.shape[1]


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_compiled_feature_maps_match_torch_on_aerial_tiles(backend: str) -> None:
    """A multi-scale (detection) backbone: every level, within the limit scaled by its values."""
    import io

    from PIL import Image

    from ftedge.detection.default import load_tree_tiles
    from ftedge.detection.features import normalise
    from ftedge.detection.model import MultiScaleBackbone
    from ftedge.models import resolve_backbone
    from ftedge.models.registry import create_backbone
    from ftedge.training.features import FrozenExtractor

    pytest.importorskip(backend)
    model, spec = create_backbone(resolve_backbone("tf_efficientnet_lite0"))
    backbone = MultiScaleBackbone(model).eval()
    tiles = load_tree_tiles()
    test = [j for j, s in zip(tiles.jpeg, tiles.split, strict=True) if s == "test"][:6]
    rgb = np.stack([np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in test])
    x = normalise(rgb, spec)
    ex = FrozenExtractor(backbone, backend)  # type: ignore[arg-type]
    ex.levels(x[:3])  # the check batch
    assert ex.backend == backend, ex.backend_note
    got = ex.levels(x[3:])  # the compiled backbone
    with torch.inference_mode():
        want = backbone(x[3:])
    assert [g.shape for g in got] == [w.shape for w in want] and len(got) == 3
    for g, w in zip(got, want, strict=True):
        limit = MAX_ABS_DIFF * max(1.0, float(w.abs().max()))
        assert float((g - w).abs().max()) <= limit


def test_features_fall_back_to_torch_when_they_differ(lite0_and_images, monkeypatch) -> None:
    from ftedge.training import features

    if not any(_installed(m) for m in ("openvino", "onnxruntime")):
        pytest.skip("neither OpenVINO nor onnxruntime is installed")
    monkeypatch.setattr(features, "MAX_ABS_DIFF", 0.0)  # any difference at all is too much
    backbone, x = lite0_and_images
    ex = features.FrozenExtractor(backbone, "auto")
    with pytest.warns(UserWarning, match="features computed in torch: .* differ from torch"):
        ex(x[:4])
    assert ex.backend == "torch" and "differ" in ex.backend_note
    assert ex.folded > 0  # the torch path keeps its BatchNorm folding
    with torch.inference_mode():
        assert torch.allclose(ex(x[4:8]), backbone(x[4:8]), rtol=1e-3, atol=1e-4)


def test_features_fall_back_when_the_runtime_is_missing(lite0_and_images, monkeypatch) -> None:
    from ftedge.runtime import backends
    from ftedge.training import features

    real = backends.module_importable
    monkeypatch.setattr(backends, "module_importable", lambda m: m != "openvino" and real(m))
    backbone, x = lite0_and_images
    ex = features.FrozenExtractor(backbone, "openvino")
    with pytest.warns(UserWarning, match="features computed in torch: openvino not installed"):
        ex(x[:2])
    assert ex.backend == "torch" and ex.record()["note"] == "openvino not installed"
    quiet = features.FrozenExtractor(backbone, "torch")
    quiet(x[:2])  # torch asked for: no compiled backbone, nothing to warn about
    assert quiet.backend == "torch"


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# -- the run's stored test logits ------------------------------------------------------------
def test_run_stores_test_logits_bound_to_its_checkpoint(tiny_run: Path) -> None:
    from ftedge.checkpoint import load_checkpoint, read_meta
    from ftedge.data.folders import DatasetSplits
    from ftedge.export.calibration import load_crops
    from ftedge.run_reference import read_reference
    from ftedge.runtime.preprocess import PreprocessSpec, normalize

    meta = read_meta(tiny_run)
    splits = DatasetSplits.load(tiny_run / "splits.json")
    test = [(s.path, s.label) for s in splits.test]
    stored, why = read_reference(tiny_run, meta["weights_sha256"], test, meta["preprocessing"])
    assert stored is not None, why
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["stored_test_logits"] is True
    assert {"setup", "data", "model", "features", "test", "plots"} <= set(metrics["phase_seconds"])
    # They are the checkpoint's PyTorch logits on the export's own preprocessing.
    spec = PreprocessSpec.from_dict(meta["preprocessing"])
    x = normalize(load_crops(splits.root, test, spec), spec)
    with torch.inference_mode():
        want = load_checkpoint(tiny_run).model(torch.from_numpy(x)).numpy()
    assert np.abs(stored.logits - want).max() <= 1e-4
    acc = float((stored.logits.argmax(1) == np.array([y for _, y in test])).mean())
    assert acc == pytest.approx(metrics["test"]["accuracy"])


def test_stale_or_altered_stored_logits_are_refused(tiny_run: Path, tmp_path: Path) -> None:
    from ftedge.checkpoint import read_meta
    from ftedge.data.folders import DatasetSplits
    from ftedge.run_reference import SIDECAR_FILE, read_reference

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    meta = read_meta(run)
    test = [(s.path, s.label) for s in DatasetSplits.load(run / "splits.json").test]
    prep = meta["preprocessing"]
    stored, why = read_reference(run, "0" * 64, test, prep)  # another checkpoint's weights
    assert stored is None and "stale (weights_sha256" in why
    stored, why = read_reference(run, meta["weights_sha256"], test[::-1], prep)
    assert stored is None and "test_sha256" in why
    np.save(run / "test_logits.npy", np.zeros((len(test), 3), np.float32))  # altered file
    stored, why = read_reference(run, meta["weights_sha256"], test, prep)
    assert stored is None and "sha256" in why
    (run / SIDECAR_FILE).unlink()
    assert read_reference(run, meta["weights_sha256"], test, prep)[1] == (
        "the run stores no test logits"
    )


def _export_fp32(run: Path, out: Path) -> dict:
    from ftedge.export.bundle import export_bundle

    pytest.importorskip("onnxruntime")
    res = export_bundle(run, formats="onnx", precisions="fp32", out=out, progress=False)
    return res.manifest.provenance.record["reference_logits"]


def test_export_reuses_the_run_logits_and_refuses_stale_ones(
    tiny_run: Path, tmp_path: Path
) -> None:
    from ftedge.run_reference import SIDECAR_FILE

    origin = _export_fp32(tiny_run, tmp_path / "b1")
    assert origin["from"] == "run" and origin["checked_images"] > 0
    assert origin["max_abs_diff"] <= 1e-4
    assert not list(tmp_path.glob("**/*ftedge-tmp*"))  # nothing temporary left behind

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    side = json.loads((run / SIDECAR_FILE).read_text())
    (run / SIDECAR_FILE).write_text(json.dumps({**side, "weights_sha256": "f" * 64}))
    with pytest.warns(UserWarning, match="stale .*computing the PyTorch reference"):
        origin = _export_fp32(run, tmp_path / "b2")
    assert origin["from"] == "pytorch" and "weights_sha256" in origin["note"]


def test_export_refuses_stored_logits_that_disagree_with_pytorch(
    tiny_run: Path, tmp_path: Path
) -> None:
    from ftedge.files import sha256_file
    from ftedge.run_reference import LOGITS_FILE, SIDECAR_FILE

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    logits = np.load(run / LOGITS_FILE)
    np.save(run / LOGITS_FILE, logits + np.float32(0.01))  # consistent files, wrong numbers
    side = json.loads((run / SIDECAR_FILE).read_text())
    side["logits_sha256"] = sha256_file(run / LOGITS_FILE)
    (run / SIDECAR_FILE).write_text(json.dumps(side))
    with pytest.warns(UserWarning, match="differ from PyTorch"):
        origin = _export_fp32(run, tmp_path / "b")
    assert origin["from"] == "pytorch"
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    stored = np.load(tmp_path / "b" / manifest["reference"]["logits"])
    assert np.abs(stored - logits).max() <= 1e-4  # the fresh PyTorch pass, not the altered file


# -- the fast-path check ---------------------------------------------------------------------
def test_fast_path_runs_the_model_only_where_inputs_differ(monkeypatch) -> None:
    from ftedge.export import fast_path

    seen: list[int] = []

    def fake_logits(bundle_dir, manifest, x):
        seen.append(len(x))
        return np.full((len(x), 3), 7.0, np.float32)

    monkeypatch.setattr(fast_path, "_logits", fake_logits)
    exact_logits = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0.9995]], np.float32)
    x = np.zeros((4, 3, 2, 2), np.float32)
    # row 0: the same crop: reused; row 1: a different crop: run; row 3: the same crop, but a
    # near-tie (margin 5e-4) that rounding could flip: run
    same = np.array([True, False, True, True])
    out = fast_path._fast_logits(Path("."), None, x, same, exact_logits)  # type: ignore[arg-type]
    assert seen == [2]
    assert (out[[0, 2]] == exact_logits[[0, 2]]).all() and (out[[1, 3]] == 7.0).all()


# -- benchmarks/pipeline.py ------------------------------------------------------------------
def test_pipeline_phase_tables() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import pipeline
    finally:
        sys.path.pop(0)
    metrics = {"phase_seconds": {"setup": 1.0, "features": 5.0}, "test": {"accuracy": 0.8}}
    train = pipeline.train_phases(metrics, 10.0)
    assert train == {"setup": 1.0, "features": 5.0, "start-up + rest": 4.0}
    old = pipeline.train_phases({"feature_seconds": 6.0, "total_seconds": 9.0}, 12.0)
    assert old == {"features": 6.0, "epochs": 3.0, "start-up + rest": 3.0}
    manifest = {
        "provenance": {"exports": [{"step_seconds": {"onnx int8": 4.0}, "seconds": 5.0}]},
        "artifacts": [{"format": "onnx", "precision": "int8", "details": {"verify_seconds": 1.0}}],
    }
    steps = pipeline.export_phases(manifest, 6.0)
    assert steps["onnx int8"] == 4.0 and steps["onnx int8:" + pipeline.OF_WHICH] == 1.0
    assert steps["other (calibration images, writing)"] == 1.0 and steps["start-up + rest"] == 1.0
    res = {
        "threads": 1,
        "load_average_before": [1.0, 1.0, 1.0],
        "load_average_after": [1.0, 1.0, 1.0],
        "train": {"wall": 10.0, "phases": train},
        "export": {"wall": 6.0, "phases": steps},
        "total_wall": 16.0,
        "test_accuracy": 0.8,
    }
    text = pipeline.table(res, res)
    assert "TOTAL WALL" in text and "1.00" in text and "before" in text


def test_tuner_keeps_the_scored_head_identical_to_a_refit() -> None:
    from ftedge.training.tune import Candidate, fit_head, tune_head

    g = torch.Generator().manual_seed(0)
    xt, xv = torch.randn(90, 16, generator=g), torch.randn(60, 16, generator=g)
    yt, yv = torch.arange(90) % 3, torch.arange(60) % 3
    xt[:, :3] += 2 * torch.nn.functional.one_hot(yt, 3)
    xv[:, :3] += 2 * torch.nn.functional.one_hot(yv, 3)
    grid = [Candidate("lbfgs", 0.1), Candidate("adamw", 0.01, lr=1e-2, steps=30, hidden=(8,))]
    res = tune_head((xt, yt), (xv, yv), 3, seed=5, grid=grid)
    assert res.protocol == "val"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tuner fits
    try:
        refit = fit_head(res.chosen.candidate, xt, yt, 3, 5)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(res.head.state_dict().values(), refit.state_dict().values(), strict=True):
        assert torch.equal(a, b)
