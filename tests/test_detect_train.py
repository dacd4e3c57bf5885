"""Detection training end to end on a synthetic multi-class set written as a YOLO folder."""

from __future__ import annotations

import json

import pytest

import ftedge
from tests.detect_helpers import CLASSES, write_yolo_shapes


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return write_yolo_shapes(root, {"train": 120, "val": 30, "test": 40})


@pytest.mark.slow
def test_detector_learns_shapes_classes_and_boxes(shapes, tmp_path):
    run = ftedge.train(
        shapes, task="detect", image_size=128, epochs=40, out=str(tmp_path), name="shapes"
    )
    test = run.metrics["test"]
    # Class mapping, assignment and decoding are all right only if every class is found.
    assert test["ap50"] >= 0.9, test
    assert set(test["per_class"]) == set(CLASSES)
    assert all(ap > 0.3 for ap in test["per_class"].values()), test["per_class"]
    doc = json.loads((run.run_dir / "metrics.json").read_text())
    assert doc["task"] == "detection" and doc["best_epoch"] >= 0
    assert (run.run_dir / "best.safetensors").is_file() and (run.run_dir / "best.json").is_file()
    assert (run.run_dir / "pr_curve.png").stat().st_size > 1000
    assert (run.run_dir / "test_predictions.png").stat().st_size > 1000
    side = json.loads((run.run_dir / "best.json").read_text())
    assert side["task"] == "detection" and side["classes"] == list(CLASSES)
