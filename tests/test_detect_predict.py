"""Detection bundles through the runtime: ``load(bundle).detect`` finding drawn objects within
2 px in frames of any shape, and ``ftedge predict`` / ``ftedge benchmark`` on detection bundles.

Two bundles: a box-finder graph that locates pure red, green and blue rectangles exactly
(tests/detect_bundle.py: real ONNX ops, real onnxruntime session), which pins the letterbox and
the way back to frame pixels; and the trained shapes detector (``shapes_bundle`` in conftest.py),
run as a device would, with torch unimportable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ftedge.cli import main
from ftedge.runtime import load
from tests.detect_bundle import CLASSES, draw_objects, write_box_finder_bundle

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

FAST = ["--min-iters", "3", "--min-seconds", "0", "--warmup-iters", "1", "--warmup-seconds", "0"]
SHAPES = [(640, 480), (480, 640), (1280, 720), (300, 300), (97, 211)]


@pytest.fixture(scope="module")
def finder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_box_finder_bundle(tmp_path_factory.mktemp("finder") / "bundle", size=640)


@pytest.mark.parametrize(("w", "h"), SHAPES)
def test_detect_finds_drawn_objects_within_2px(finder: Path, w: int, h: int) -> None:
    """Every corner of every object within 2 px, in RGB and BGR frames of several shapes."""
    rng = np.random.default_rng(w * 7 + h)
    with load(finder, backend="onnxruntime") as det:
        assert type(det).__name__ == "Detector"
        for trial in range(2):
            img, truth = draw_objects(rng, w, h)
            for color in ("rgb", "bgr"):
                frame = np.ascontiguousarray(img[:, :, ::-1]) if color == "bgr" else img
                found = det.detect(frame, color=color)
                assert sorted(d.index for d in found) == [0, 1, 2], (trial, color, found)
                for d in found:
                    assert d.label == CLASSES[d.index] and d.score == pytest.approx(1.0)
                    err = np.abs(np.subtract(d.box, truth[d.index])).max()
                    assert err <= 2.0, (w, h, color, d.box, truth[d.index])
                assert set(det.last_timing) == {"preprocess_ms", "infer_ms", "postprocess_ms"}


def test_detect_defaults_to_the_bundle_threshold(tmp_path: Path) -> None:
    """``conf=None`` means the manifest's threshold: the finder's scores are exactly 1, so a
    bundle threshold of 1.0 finds nothing (scores must exceed it) until ``conf`` is given."""
    from ftedge.errors import FtedgeError

    bundle = write_box_finder_bundle(tmp_path / "b", size=320, conf=1.0)
    img, _ = draw_objects(np.random.default_rng(0), 320, 240)
    with load(bundle, backend="onnxruntime") as det:
        assert det.default_conf == 1.0
        assert det.detect(img) == []
        assert len(det.detect(img, conf=0.5)) == 3
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["output"]["conf"] = 1.5
    (bundle / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(FtedgeError, match="conf"):
        load(bundle, backend="onnxruntime", verify=False)


def _write_images(folder: Path, n: int, seed: int = 0) -> dict[str, dict[int, tuple]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(n):
        w, h = SHAPES[i % len(SHAPES)]
        img, boxes = draw_objects(rng, w, h)
        path = folder / f"img{i}.png"
        Image.fromarray(img).save(path)
        truth[str(path)] = boxes
    return truth


def test_predict_writes_boxes_counts_and_annotations(finder: Path, tmp_path: Path) -> None:
    """Library predict on a folder: JSON boxes in frame pixels where the objects were drawn,
    per-class counts in the lines, annotated copies that differ from the inputs."""
    truth = _write_images(tmp_path / "imgs", 3)
    lines: list[str] = []
    from ftedge.runtime.predict import predict

    s = predict(
        finder,
        tmp_path / "imgs",
        save=tmp_path / "out",
        json_path=tmp_path / "p.jsonl",
        on_result=lambda r: lines.append(r.line()),
    )
    assert s.frames == 3 and s.task == "detection" and s.postprocess_ms_p50 is not None
    assert "detect p50" in s.line() and "NMS" in s.line()
    assert all(line.endswith("red: 1  green: 1  blue: 1") for line in lines), lines
    records = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert records[-1]["kind"] == "summary" and records[-1]["task"] == "detection"
    for rec in records[:-1]:
        boxes = truth[rec["source"]]
        assert rec["counts"] == {"red": 1, "green": 1, "blue": 1}
        for d in rec["detections"]:
            assert np.abs(np.subtract(d["box"], boxes[d["index"]])).max() <= 2.0
        src = np.asarray(Image.open(rec["source"]))
        out = np.asarray(Image.open(tmp_path / "out" / Path(rec["source"]).name))
        assert out.shape == src.shape and (out != src).any()


def test_predict_detection_options_are_checked_in_one_line(
    finder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_images(tmp_path / "imgs", 1)
    for flag, value in (("--conf", "1.5"), ("--iou", "-0.1"), ("--max-det", "0")):
        assert main(["predict", str(finder), "--source", str(tmp_path / "imgs"), flag, value]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and flag.lstrip("-").replace("-", "_") in err, err
    with load(finder) as det, pytest.raises(Exception, match="conf must be"):
        det.detect(np.zeros((8, 8, 3), np.uint8), conf=float("nan"))


def test_benchmark_in_process_reports_map_and_both_latencies(finder: Path, tmp_path: Path) -> None:
    from ftedge.runtime.bench_select import jobs_for_bundle
    from ftedge.runtime.bench_spec import BenchmarkOptions
    from ftedge.runtime.benchmark import run_benchmark
    from ftedge.runtime.report import render_text

    _write_images(tmp_path / "imgs", 2)
    options = BenchmarkOptions(
        modes=("compute", "end_to_end"),
        backends=("onnxruntime",),
        isolate=False,
        min_iters=3,
        min_seconds=0.0,
        warmup_iters=1,
        warmup_seconds=0.0,
        idle_seconds=0.0,
        power="none",
    )
    images = sorted(str(p) for p in (tmp_path / "imgs").iterdir())
    report = run_benchmark(jobs_for_bundle(finder, options, images=images))
    rows = {r["mode"]: r for r in report["results"]}
    assert set(rows) == {"compute", "end_to_end"}
    for r in rows.values():
        assert r["task"] == "detection" and r["map"] == r["accuracy"] == 1.0
        assert r["latency_ms"]["p50"] > 0 and r["accuracy_source"] == "manifest"
    e2e = rows["end_to_end"]
    assert e2e["end_to_end_vs_compute"] == pytest.approx(
        e2e["latency_ms"]["p50"] / rows["compute"]["latency_ms"]["p50"]
    )
    assert report["source"]["task"] == "detection" and "accuracy_note" in report["source"]
    text = render_text(report)
    assert "| mAP |" in text and "end to end / compute" in text


# -- the trained shapes detector, as a device runs it: torch unimportable ----------------------
BLOCK_TORCH = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
        return None
sys.meta_path.insert(0, _Block())
"""


@pytest.fixture(scope="module")
def no_torch_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose Python processes (benchmark workers too) cannot import torch."""
    site = tmp_path_factory.mktemp("no-torch-site")
    (site / "sitecustomize.py").write_text(BLOCK_TORCH)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    r = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True)
    assert r.returncode != 0
    return env


def _ftedge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ftedge", *args], env=env, capture_output=True, text=True
    )


def _shapes_inputs(folder: Path) -> tuple[Path, Path]:
    """PNG frames of several sizes and a 10-frame mp4v video of shapes (OpenCV)."""
    from tests.detect_helpers import shape_image

    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    images = folder / "images"
    images.mkdir(parents=True)
    for i, (w, h) in enumerate([(128, 128), (200, 120), (96, 160)]):
        scale = min(128 / w, 128 / h)
        img, _, _ = shape_image(rng, w, h, sizes=(round(24 / scale), round(40 / scale)))
        Image.fromarray(img).save(images / f"shapes{i}.png")
    video = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    for _ in range(10):
        img, _, _ = shape_image(rng, 160, 120, sizes=(30, 48))
        writer.write(np.ascontiguousarray(img[:, :, ::-1]))
    writer.release()
    return images, video


def _check_jsonl(path: Path, n: int) -> list[dict]:
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(records) == n + 1 and records[-1]["kind"] == "summary"
    for rec in records[:-1]:
        for d in rec["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= rec["width"] and 0 <= y1 <= y2 <= rec["height"], rec
            assert d["label"] in ("square", "disc", "triangle") and 0.3 <= d["score"] <= 1
        assert rec["counts"] == _counts(rec["detections"])
    return records[:-1]


def _counts(dets: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dets:
        out[d["label"]] = out.get(d["label"], 0) + 1
    return out


@pytest.mark.slow
def test_predict_cli_on_the_shapes_bundle_without_torch(shapes_bundle, no_torch_env, tmp_path):
    cv2 = pytest.importorskip("cv2")
    bundle = str(shapes_bundle.bundle_dir)
    images, video = _shapes_inputs(tmp_path)
    out = tmp_path / "out"
    r = _ftedge(
        no_torch_env,
        "predict",
        bundle,
        "--source",
        str(images),
        "--conf",
        "0.3",
        "--save",
        str(out),
        "--json",
        str(tmp_path / "img.jsonl"),
    )
    assert r.returncode == 0, r.stderr
    found = _check_jsonl(tmp_path / "img.jsonl", 3)
    assert sum(len(rec["detections"]) for rec in found) >= 3  # the model does find shapes
    for rec in found:  # the printed line is the per-class count
        text = "  ".join(f"{k}: {v}" for k, v in rec["counts"].items()) or "no objects"
        assert f"{rec['source']}  {text}" in r.stdout
        src = np.asarray(Image.open(rec["source"]))
        drawn = np.asarray(Image.open(out / Path(rec["source"]).name))
        assert drawn.shape == src.shape and (drawn != src).any() == bool(rec["detections"])
    assert "detect p50" in r.stderr
    r = _ftedge(
        no_torch_env,
        "predict",
        bundle,
        "--source",
        str(video),
        "--conf",
        "0.3",
        "--save",
        str(out),
        "--json",
        str(tmp_path / "vid.jsonl"),
    )
    assert r.returncode == 0, r.stderr
    frames = _check_jsonl(tmp_path / "vid.jsonl", 10)
    assert r.stdout.count("frame ") == 10 and any(f["detections"] for f in frames)
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 10


@pytest.mark.slow
def test_benchmark_cli_on_the_shapes_bundle_without_torch(shapes_bundle, no_torch_env, tmp_path):
    bundle = str(shapes_bundle.bundle_dir)
    images, _ = _shapes_inputs(tmp_path)
    out = tmp_path / "bench.json"
    r = _ftedge(
        no_torch_env,
        "benchmark",
        bundle,
        "--mode",
        "both",
        "--backends",
        "onnxruntime,openvino",
        "--images",
        str(images),
        "--json",
        str(out),
        "--quiet",
        "--power",
        "none",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    assert "| mAP |" in r.stdout and "end to end / compute" in r.stdout
    report = json.loads(out.read_text())
    manifest_map = {a.name: a.accuracy for a in shapes_bundle.manifest.artifacts}
    seen = {}
    for row in report["results"]:
        assert row["map"] == pytest.approx(manifest_map[row["artifact"]])
        assert row["metric"] == "COCO mAP@[.5:.95]" and row["latency_ms"]["p50"] > 0
        seen.setdefault(row["artifact"], set()).add(row["mode"])
        if row["mode"] == "end_to_end":
            assert row["end_to_end_vs_compute"] > 0
    assert seen == {name: {"compute", "end_to_end"} for name in manifest_map}
