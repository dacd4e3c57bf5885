"""A runtime that runs for days: bounded memory per call, no leftovers, no side effects on import."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MODEL = Path(__file__).parent / "fixtures" / "bundle_v1" / "onnx" / "model.fp32.onnx"


def test_runner_keeps_a_bounded_window_of_timings() -> None:
    from ftedge.runtime.runners.base import TIMING_WINDOW
    from ftedge.runtime.runners.onnxruntime import OnnxRuntimeRunner

    feeds = {"input": np.zeros((1, 3, 8, 8), np.float32)}
    with OnnxRuntimeRunner(str(MODEL), threads=1) as runner:
        for _ in range(200_000):
            runner.infer(feeds, check=False)
        assert len(runner.inference_times_s) == TIMING_WINDOW <= 10_000
        assert runner.last_inference_s == runner.inference_times_s[-1]


def test_importing_the_runtime_changes_no_environment_variable() -> None:
    code = """
import importlib, json, os, pkgutil, sys
before = dict(os.environ)
import ftedge.runtime
names = [m.name for m in pkgutil.walk_packages(ftedge.runtime.__path__, "ftedge.runtime.")]
for name in names:
    if not name.endswith("__main__"):
        importlib.import_module(name)
after = dict(os.environ)
print(json.dumps({"modules": names, "changed": sorted(
    k for k in set(before) | set(after) if before.get(k) != after.get(k))}))
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "ftedge.runtime.predict" in result["modules"]
    assert "ftedge.runtime.backends" in result["modules"]
    assert result["changed"] == []


def test_opening_a_video_restores_the_environment(tmp_path: Path, monkeypatch) -> None:
    import os

    from ftedge.errors import FtedgeError
    from ftedge.runtime.predict import open_source

    monkeypatch.delenv("OPENCV_FFMPEG_LOGLEVEL", raising=False)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    with contextlib.suppress(FtedgeError):  # not a video: refused, but the env is restored
        open_source(bad).close()
    assert "OPENCV_FFMPEG_LOGLEVEL" not in os.environ


def test_end_to_end_benchmark_removes_its_synthetic_images() -> None:
    from ftedge.runtime.benchmark import BenchmarkOptions, Job, run_job

    before = set(Path(tempfile.gettempdir()).glob("ftedge-bench-img-*"))
    job = Job("onnx-fp32", "onnx", "fp32", "onnxruntime", "cpu", str(MODEL))
    options = BenchmarkOptions(
        modes=("end_to_end",), min_iters=2, min_seconds=0, warmup_iters=1, warmup_seconds=0
    )
    out = run_job(job, options)
    assert not out.get("error"), out
    assert out["results"] and out["results"][0]["mode"] == "end_to_end"
    assert set(Path(tempfile.gettempdir()).glob("ftedge-bench-img-*")) == before


def test_ftedge_predict_reports_a_broken_video_in_one_line(tmp_path: Path) -> None:
    """In a fresh process ftedge's open is FFmpeg's first use: it runs with FFmpeg quiet."""
    import os

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    bundle = Path(__file__).parent / "fixtures" / "bundle_v1"
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    r = subprocess.run(
        [sys.executable, "-m", "ftedge", "predict", str(bundle), "--source", str(bad)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [
        f"ftedge predict: error: cannot open video file {str(bad)!r} with OpenCV"
    ]
