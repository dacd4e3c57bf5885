"""A device that installed only ``ftedge[onnx]``: predict, benchmark and classify still work.

Instead of building a second virtualenv, every module this environment has beyond what the
``[onnx]`` extra resolves to (torch, OpenVINO, nncf, onnx, cv2, matplotlib...) is made
unimportable in the child processes (a ``sitecustomize`` on PYTHONPATH, so the benchmark's
worker processes are covered too); the requirement graph is the one tests/test_packaging.py
resolves from the installed metadata.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_packaging import closure

BUNDLE = Path(__file__).parent / "fixtures" / "bundle_v1"

SITECUSTOMIZE = """
import importlib.abc, sys
BLOCKED = set({blocked!r})
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in ftedge[onnx])")
        return None
sys.meta_path.insert(0, _Block())
"""


def _blocked_modules() -> set[str]:
    from packaging.utils import canonicalize_name

    allowed = closure("ftedge", frozenset({"onnx"})) | {"ftedge"}
    blocked = set()
    for module, dists in metadata.packages_distributions().items():
        if not any(canonicalize_name(d) in allowed for d in dists):
            blocked.add(module)
    return blocked - set(sys.stdlib_module_names) - {"_pytest", "pytest", "pluggy"}


@pytest.fixture(scope="module")
def onnx_only_env(tmp_path_factory):
    site = tmp_path_factory.mktemp("onnx-only-site")
    blocked = _blocked_modules()
    assert {"torch", "openvino", "nncf", "onnx", "cv2", "matplotlib"} <= blocked
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(blocked=sorted(blocked)))
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }


def _ftedge(env, *args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "ftedge", *args], env=env, cwd=cwd, capture_output=True, text=True
    )


def test_blocker_really_blocks(onnx_only_env, tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", "import torch"], env=onnx_only_env, capture_output=True, text=True
    )
    assert r.returncode != 0 and "not in ftedge[onnx]" in r.stderr


def test_load_classify_predict_and_benchmark_with_onnx_only(onnx_only_env, tmp_path):
    img = tmp_path / "frame.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(img)
    code = (
        "import numpy as np; from ftedge.runtime import load; import sys;"
        f"clf = load({str(BUNDLE)!r});"
        "p = clf.classify(np.zeros((48, 64, 3), np.uint8), topk=2, color='bgr');"
        "print(clf.backend, p.label, len(p.labels));"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], env=onnx_only_env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("onnxruntime ") and r.stdout.split()[-1] == "2"

    out = tmp_path / "preds.jsonl"
    r = _ftedge(
        onnx_only_env,
        "predict",
        str(BUNDLE),
        "--source",
        str(img),
        "--json",
        str(out),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert any(x.get("kind") != "summary" and x.get("topk") for x in lines), lines

    bench = tmp_path / "bench.json"
    r = _ftedge(
        onnx_only_env,
        "benchmark",
        str(BUNDLE),
        "--batch",
        "1",
        "--min-iters",
        "10",
        "--min-seconds",
        "0.1",
        "--json",
        str(bench),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(bench.read_text())["results"]
    assert rows and {row["backend"] for row in rows} == {"onnxruntime"}
