"""The Python API: docs/api.md's example runs as written; options are checked like flags."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ftedge

REPO = Path(__file__).resolve().parents[1]


def _example() -> str:
    text = (REPO / "docs" / "api.md").read_text()
    m = re.search(r"<!-- api-example -->\n```python\n(.*?)```", text, re.S)
    assert m, "docs/api.md has no api-example block"
    return m.group(1)


@pytest.mark.slow
def test_docs_api_example_runs(tmp_path):
    env = {**os.environ, "FTEDGE_HOME": str(tmp_path / "home")}  # the built-in data goes here
    r = subprocess.run(
        [sys.executable, "-c", _example()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert re.search(r"test accuracy 0\.\d{3} in runs/api-example", out), out
    assert "{'onnx-fp32': 'ok'}" in out
    assert re.search(r"onnx-fp32 on onnxruntime: p50 \d+\.\d\d ms", out), out
    assert (tmp_path / "bundles" / "latest" / "manifest.json").is_file()


def test_unknown_options_are_one_line_errors():
    with pytest.raises(ftedge.FtedgeError, match="unknown train option 'epoch'"):
        ftedge.train(epoch=3)
    with pytest.raises(ftedge.FtedgeError, match="unknown benchmark option 'batch'"):
        ftedge.benchmark("bundles/latest", batch=(1,))
    with pytest.raises(ftedge.FtedgeError, match="saved config"):
        ftedge.train(resume="runs/x", epochs=3)


def test_api_is_lazy_and_export_is_callable():
    code = (
        "import sys, ftedge; assert callable(ftedge.export) and callable(ftedge.train);"
        "import ftedge.export.bundle; assert callable(ftedge.export);"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
