"""``ftedge predict`` on a real video file, folders and images, plus the README camera example."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ftedge.cli import main
from ftedge.runtime import load
from ftedge.runtime.frame_sources import open_source
from ftedge.runtime.manifest import Manifest
from ftedge.runtime.predict import FrameResult, predict
from ftedge.runtime.predict_writers import annotate
from tests.runtime_helpers import build_test_bundle

cv2 = pytest.importorskip("cv2")


@pytest.fixture(autouse=True, scope="module")
def _quiet_ffmpeg_process():
    """FFmpeg reads its log level once per process, at its first use. Here the fixtures use
    OpenCV's FFmpeg before ftedge opens a source, so run this module as a fresh
    ``ftedge predict`` process runs (ftedge's open first, FFmpeg quiet); a subprocess test in
    tests/test_long_running.py checks that case for real."""
    import os

    old = os.environ.get("OPENCV_FFMPEG_LOGLEVEL")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")
    yield
    if old is None:
        os.environ.pop("OPENCV_FFMPEG_LOGLEVEL", None)


ROOT = Path(__file__).resolve().parents[1]
N_FRAMES = 21
SIZE = (160, 120)  # video width, height


@pytest.fixture(scope="module")
def bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_bundle(tiny_run, tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="module")
def video(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """An mp4v .mp4 of real test images of every class (7 frames each), written with OpenCV."""
    m = Manifest.load(bundle)
    by_class: dict[int, list[str]] = {}
    for rel, y in m.data.test:
        by_class.setdefault(int(y), []).append(str(Path(m.data.root) / rel))
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, SIZE)
    assert writer.isOpened()
    labels = []
    for i in range(N_FRAMES):
        y = (i // 7) % len(by_class)  # bag x7, sneaker x7, trouser x7
        # Letterboxed on black (the Fashion-MNIST background), like a camera seeing the item.
        canvas = Image.new("RGB", SIZE)
        with Image.open(by_class[y][i % 7]) as im:
            side = SIZE[1]
            canvas.paste(
                im.convert("RGB").resize((side, side), Image.Resampling.BICUBIC),
                ((SIZE[0] - side) // 2, 0),
            )
        writer.write(np.ascontiguousarray(np.asarray(canvas)[:, :, ::-1]))
        labels.append(y)
    writer.release()
    return path, labels


def _decoded_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def test_video_predictions_equal_frame_by_frame_classification(
    bundle: Path, video: tuple[Path, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, labels = video
    frames = _decoded_frames(path)
    assert len(frames) == N_FRAMES and frames[0].shape == (SIZE[1], SIZE[0], 3)
    with load(bundle) as clf:
        expected = [clf.classify_one(f, topk=3, color="bgr") for f in frames]
    # The video still shows the classes it was made from (mp4v is lossy, the model is good).
    assert np.mean([p.index == y for p, y in zip(expected, labels, strict=True)]) >= 0.8

    # 1) the CLI, in process
    jpath, save = tmp_path / "preds.jsonl", tmp_path / "out"
    rc = main(
        [
            "predict",
            str(bundle),
            "--source",
            str(path),
            "--topk",
            "3",
            "--json",
            str(jpath),
            "--save",
            str(save),
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = [json.loads(ln) for ln in jpath.read_text().splitlines()]
    per_frame, summary = lines[:-1], lines[-1]
    assert [d["kind"] for d in per_frame] == ["frame"] * N_FRAMES
    assert summary["kind"] == "summary" and summary["frames"] == N_FRAMES
    assert summary["source_kind"] == "video" and summary["fps"] > 0
    assert summary["artifact"] == "openvino-fp32"
    for d, exp in zip(per_frame, expected, strict=True):
        assert [t["label"] for t in d["topk"]] == list(exp.labels)
        np.testing.assert_allclose([t["score"] for t in d["topk"]], exp.scores, atol=2e-6)
    assert [d["frame"] for d in per_frame] == list(range(N_FRAMES))
    np.testing.assert_allclose(
        [d["time_s"] for d in per_frame], np.arange(N_FRAMES) / 10, atol=1e-3
    )
    # stdout: one line per frame with its top-k; stderr: the FPS summary.
    assert len(out.splitlines()) == N_FRAMES
    assert out.splitlines()[3].startswith("frame     3") and str(expected[3]) in out.splitlines()[3]
    assert re.search(r"21 frame\(s\) in .* FPS end to end; classify p50", err)

    # annotated video: readable, same frame count and size, and the label was drawn
    annotated = _decoded_frames(save / "clip.mp4")
    assert len(annotated) == N_FRAMES and annotated[0].shape == frames[0].shape
    assert np.abs(annotated[0][:12, :60].astype(int) - frames[0][:12, :60]).mean() > 10

    # 2) the library function, with an already loaded classifier and a frame limit
    with load(bundle) as clf:
        summary2 = predict(clf, path, topk=3, max_frames=10)
    assert summary2.frames == 10 and len(summary2.results) == 10
    for r, exp in zip(summary2.results, expected, strict=False):
        assert isinstance(r, FrameResult)
        assert r.prediction.labels == exp.labels and (r.width, r.height) == SIZE
        np.testing.assert_allclose(r.prediction.scores, exp.scores, atol=1e-6)


def test_folder_and_single_image_sources(bundle: Path, tmp_path: Path) -> None:
    m = Manifest.load(bundle)
    root = Path(m.data.root) / "test"
    files = sorted(p for p in root.rglob("*.png"))
    with load(bundle) as clf:
        expected = {
            str(f): clf.classify_one(np.asarray(Image.open(f).convert("RGB")), topk=2)
            for f in files
        }
        seen: list[str] = []
        summary = predict(
            clf, root, topk=2, save=tmp_path / "ann", on_result=lambda r: seen.append(r.name)
        )
    assert summary.kind == "folder" and summary.frames == len(files) == len(seen)
    assert [r.name for r in summary.results] == [str(f) for f in files]  # sorted, recursive
    for r in summary.results:
        assert r.prediction.labels == expected[r.name].labels
        np.testing.assert_allclose(r.prediction.scores, expected[r.name].scores, atol=1e-6)
    # annotated copies keep the relative path; grayscale PNG sources come back as RGB PNGs
    assert len(summary.saved) == len(files)
    first = tmp_path / "ann" / files[0].relative_to(root)
    with Image.open(first) as im:
        assert im.size == (28, 28) and im.mode == "RGB"

    one = files[-1]
    rc = main(["predict", str(bundle), "--source", str(one), "--topk", "1", "--json", "-"])
    assert rc == 0
    s = predict(bundle, one, topk=1, backend="onnxruntime")
    assert s.kind == "image" and s.frames == 1 and s.backend == "onnxruntime"
    assert s.results[0].prediction.labels == expected[str(one)].labels[:1]


def test_json_to_stdout(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = Manifest.load(bundle)
    img = Path(m.data.root) / m.data.test[0][0]
    assert main(["predict", str(bundle), "--source", str(img), "--json", "-", "--topk", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(ln)["kind"] for ln in out] == ["frame", "summary"]
    assert len(json.loads(out[0])["topk"]) == 2


@pytest.mark.parametrize(
    "source, match",
    [
        ("does/not/exist.mp4", "does not exist"),
        ("BROKEN", "cannot open video file"),
        ("7", "cannot open camera '7'"),
        ("rtsp://127.0.0.1:9/none", "cannot open stream"),
        ("EMPTY", "no images in folder"),
        ("videotestsrc ! appsink", "cannot open GStreamer pipeline"),  # pip OpenCV: no GStreamer
    ],
)
def test_unopenable_source_is_one_line_exit_1(
    bundle: Path, tmp_path: Path, source: str, match: str
) -> None:
    if source == "BROKEN":
        source = str(tmp_path / "broken.mp4")
        Path(source).write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    elif source == "EMPTY":
        source = str(tmp_path / "empty")
        Path(source).mkdir()
    # A fresh process, as a user runs the CLI: OpenCV reads its FFmpeg log level once per
    # process, so earlier in-process tests that opened videos would decide what it prints.
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ftedge",
            "predict",
            str(bundle),
            "--source",
            source,
            "--timeout",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    rc, out, err = r.returncode, r.stdout, r.stderr
    assert rc == 1
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("ftedge predict: error: ") and match in err
    assert "Traceback" not in err


def test_bad_bundle_and_arguments(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(img)
    assert main(["predict", str(tmp_path), "--source", str(img)]) == 1
    assert "not a bundle" in capsys.readouterr().err
    assert main(["predict", str(bundle), "--source", str(img), "--topk", "0"]) == 1
    assert "topk" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse errors: one line, exit 1 too
        main(["predict", str(bundle)])
    assert e.value.code == 1


def test_annotate_draws_topk_in_the_frame_color_order() -> None:
    from skimage import data

    rgb = data.chelsea()
    from ftedge.runtime.classifier import top_k

    pred = top_k(np.array([0.7, 0.2, 0.1], np.float32), ["cat", "dog", "fox"], 3)
    a = annotate(rgb, pred, "rgb")
    b = annotate(np.ascontiguousarray(rgb[:, :, ::-1]), pred, "bgr")
    assert a.shape == rgb.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b[:, :, ::-1])
    assert (a != rgb).any() and (a[-50:] == rgb[-50:]).all()  # text top-left only


def test_open_source_kinds(tmp_path: Path, video: tuple[Path, list[int]]) -> None:
    with open_source(video[0]) as src:
        assert src.kind == "video" and src.fps == pytest.approx(10.0)
        assert sum(1 for _ in src) == N_FRAMES


def _readme_example() -> str:
    text = (ROOT / "docs" / "runtime.md").read_text()
    m = re.search(r"<!-- camera-app-example.*?-->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/runtime.md lost its camera-app example block"
    return m.group(1)


def test_camera_app_example_from_the_docs_runs(
    bundle: Path, video: tuple[Path, list[int]], tmp_path: Path
) -> None:
    code = _readme_example()
    assert 15 <= len([ln for ln in code.splitlines() if ln.strip()]) <= 30
    script = tmp_path / "camera_app.py"
    script.write_text(code)
    r = subprocess.run(
        [sys.executable, str(script), str(bundle), str(video[0])],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "openvino-fp32 on openvino:cpu"
    with load(bundle) as clf:
        want = [
            f"{p.label} {p.score:.0%}"
            for p in (clf.classify_one(f, topk=3, color="bgr") for f in _decoded_frames(video[0]))
        ]
    assert lines[1:] == want
    # and with an unopenable source it says so
    r = subprocess.run(
        [sys.executable, str(script), str(bundle), str(tmp_path / "nope.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 1 and "cannot open" in r.stderr
