"""Detection end to end on a synthetic multi-class set written as a YOLO folder: training,
export with verification, and the torch-free runtime finding objects where they were drawn
(the ``shapes_run`` / ``shapes_bundle`` fixtures live in conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.detect_helpers import CLASSES, shape_image


@pytest.mark.slow
def test_detector_learns_shapes_classes_and_boxes(shapes_run):
    run = shapes_run
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


@pytest.mark.slow
def test_export_verifies_boxes_against_pytorch(shapes_bundle, shapes_run):
    m = shapes_bundle.manifest
    assert m.task == "detection" and list(m.labels) == list(CLASSES)
    by_name = {a.name: a for a in m.artifacts}
    assert set(by_name) == {"onnx-fp32", "openvino-fp32"}
    for a in by_name.values():
        assert a.status == "ok", a.message
        assert a.parity is not None and a.parity.max_abs_diff <= 0.5  # pixels
        assert a.parity.top1_agreement >= 0.95  # images whose final detections match PyTorch's
        assert abs(a.accuracy_drop) <= 1.0  # mAP points
    # The reference mAP is the one the run measured on the same test split.
    assert m.reference.accuracy == pytest.approx(shapes_run.metrics["test"]["map"], abs=0.02)


DETECT_TORCH_FREE = """
import sys, json
sys.modules["torch"] = None  # any import of torch fails
import numpy as np
from ftedge.runtime import load
det = load(sys.argv[1], backend="onnxruntime")
frames = json.loads(sys.argv[2])
out = []
for f in frames:
    img = np.load(f["path"])
    found = det.detect(img, conf=0.3, color=f["color"])
    out.append([[d.index, d.score, *d.box] for d in found])
print(json.dumps({"backend": det.backend, "found": out}))
"""


@pytest.mark.slow
def test_runtime_detect_finds_drawn_objects_torch_free(shapes_bundle, tmp_path):
    """Frames of several sizes and aspect ratios, shapes at known places, BGR and RGB."""
    rng = np.random.default_rng(7)
    frames, truth = [], []
    for i, (w, h, color) in enumerate(
        [(128, 128, "rgb"), (200, 120, "bgr"), (96, 160, "rgb"), (256, 256, "bgr")]
    ):
        scale = min(128 / w, 128 / h)
        # Objects the size the model was trained on once letterboxed (24-40 input pixels).
        sizes = (round(24 / scale), round(40 / scale))
        img, boxes, labels = shape_image(rng, w, h, max_objects=2, sizes=sizes)
        path = tmp_path / f"f{i}.npy"
        np.save(path, img[..., ::-1] if color == "bgr" else img)
        frames.append({"path": str(path), "color": color})
        truth.append((boxes, labels, scale))
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            DETECT_TORCH_FREE,
            str(shapes_bundle.bundle_dir),
            json.dumps(frames),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["backend"] == "onnxruntime"
    for found, (boxes, labels, _scale) in zip(res["found"], truth, strict=True):
        for box, label in zip(boxes, labels, strict=True):
            same = [f for f in found if f[0] == label]
            assert same, f"class {label} at {box} not found in {found}"
            # Found in the frame's own pixels (letterbox undone), as the same class.
            assert max(_iou(np.array(f[2:]), box) for f in same) >= 0.6, (box, same)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
