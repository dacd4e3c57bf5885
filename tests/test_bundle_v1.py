"""A bundle written by an older ftedge (manifest schema 1) still loads, classifies and checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

V1 = Path(__file__).parent / "fixtures" / "bundle_v1"


@pytest.fixture()
def bundle_v1(tmp_path: Path) -> Path:
    dest = tmp_path / "bundle_v1"
    shutil.copytree(V1, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return dest


def test_fixture_is_schema_1():
    assert json.loads((V1 / "manifest.json").read_text())["schema_version"] == 1


def test_v1_bundle_loads_and_classifies(bundle_v1: Path):
    from ftedge.runtime import load

    frame = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    with load(bundle_v1) as plain, load(bundle_v1, baked=True) as baked:
        assert plain.artifact.name == "onnx-fp32"
        assert baked.artifact.name == "onnx-fp32-baked"
        p, b = (
            plain.classify_one(frame, topk=3, color="bgr"),
            baked.classify_one(frame, topk=3, color="bgr"),
        )
    assert p.labels == b.labels
    assert set(p.labels) == {"cat", "dog", "bird"}
    np.testing.assert_allclose(p.scores, b.scores, atol=1e-5)


def test_v1_bundle_passes_export_check(bundle_v1: Path, capsys: pytest.CaptureFixture[str]):
    from ftedge.cli import main

    assert main(["export", "--check", str(bundle_v1)]) == 0
    out = capsys.readouterr().out
    assert "onnx-fp32 " in out and "onnx-fp32-baked" in out
