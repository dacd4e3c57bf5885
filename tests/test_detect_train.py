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
    # The score threshold chosen on val: a well-trained detector keeps most boxes right there.
    chosen = doc["threshold"]
    assert 0.05 <= chosen["conf"] <= 0.95 and chosen["chosen_on"] == "val"
    assert chosen["val_f1"] >= 0.8, chosen


@pytest.mark.slow
def test_export_verifies_boxes_against_pytorch(shapes_bundle, shapes_run):
    m = shapes_bundle.manifest
    assert m.task == "detection" and list(m.labels) == list(CLASSES)
    by_name = {a.name: a for a in m.artifacts}
    assert set(by_name) == {"onnx-fp32", "openvino-fp32", "onnx-int8", "openvino-int8"}
    for a in (by_name["onnx-fp32"], by_name["openvino-fp32"]):
        assert a.status == "ok", a.message
        assert a.parity is not None and a.parity.max_abs_diff <= 0.5  # pixels
        assert a.parity.top1_agreement >= 0.99  # detections paired with PyTorch's at IoU >= 0.5
        assert abs(a.accuracy_drop) <= 1.0  # mAP points
    assert m.output.conf == shapes_run.metrics["threshold"]["conf"]  # detect()'s default
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


@pytest.mark.slow
def test_int8_artifacts_detect_within_the_map_gate(shapes_bundle):
    """ONNX and OpenVINO INT8: decode kept in float, mAP drop within the gate, and the runtime
    selects them by precision and finds the shapes."""
    import onnx

    from ftedge.runtime import load

    bundle = shapes_bundle.bundle_dir
    m = shapes_bundle.manifest
    for name in ("onnx-int8", "openvino-int8"):
        a = next(a for a in m.artifacts if a.name == name)
        assert a.status == "ok", a.message
        assert a.gate is not None and a.gate.passed and a.gate.max_drop == 1.0
        assert a.accuracy_drop is not None and a.accuracy_drop <= 1.0  # mAP points
        assert a.parity is not None and a.parity.images == 40
    q = onnx.load(str(bundle / "onnx/model.int8.onnx")).graph
    decode = set(next(a for a in m.artifacts if a.name == "onnx-int8").details["decode_in_float"])
    assert decode and {n.name for n in q.node} >= decode  # same node names, still float ops
    producer = {o: n.op_type for n in q.node for o in n.output}
    assert not any(
        producer.get(i) == "DequantizeLinear" for n in q.node if n.name in decode for i in n.input
    )
    assert {producer[o.name] for o in q.output} <= {"Concat", "Sqrt"}
    import openvino as ov

    ir = ov.Core().read_model(str(bundle / "openvino/int8/model.xml"))
    fed = [
        t.get_node()
        for op in ir.get_ordered_ops()
        if op.get_type_name() == "FakeQuantize"
        for out in op.outputs()
        for t in out.get_target_inputs()
    ]
    assert "Convolution" in {n.get_type_name() for n in fed}
    # OpenVINO names an op after its ONNX node (possibly with a "/suffix"): no decode op is fed
    # by a quantizer.
    names = {n.get_friendly_name() for n in fed}
    assert not {n for n in names for d in decode if n == d or n.startswith(d + "/")}, names
    rng = np.random.default_rng(3)
    img, boxes, labels = shape_image(rng, 128, 128, max_objects=2, sizes=(24, 40))
    for backend in ("onnxruntime", "openvino"):
        with load(bundle, precision="int8", backend=backend) as det:
            assert det.artifact.precision == "int8"
            found = det.detect(img, conf=0.3, color="rgb")
            for box, label in zip(boxes, labels, strict=True):
                same = [d for d in found if d.index == label]
                assert same and max(_iou(np.array(d.box), box) for d in same) >= 0.6, (
                    backend,
                    found,
                )


@pytest.mark.slow
def test_a_map_gate_that_cannot_pass_fails_int8_and_exits_1(shapes_run, tmp_path):
    """An impossible budget: onnx-int8 is tried with more and more nodes in float, then kept
    marked failed; the CLI says so in one line and exits 1. TensorRT is not installed here:
    its entries carry the trtexec commands and the Q/DQ ONNX (decode in float) they build from."""
    out = tmp_path / "b"
    r = subprocess.run(
        [sys.executable, "-m", "ftedge", "export", str(shapes_run.run_dir), "--out", str(out)]
        + ["--formats", "onnx,tensorrt", "--precision", "fp16,int8", "--calib-images", "16"]
        + ["--max-accuracy-drop", "-100", "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1, r.stderr
    err = r.stderr.strip()
    assert "\n" not in err and "Traceback" not in err and "onnx-int8" in err, err
    from ftedge.runtime.manifest import Manifest

    m = Manifest.load(out)
    by_name = {a.name: a for a in m.artifacts}
    int8 = by_name["onnx-int8"]
    assert int8.status == "failed" and int8.gate is not None and not int8.gate.passed
    assert len(int8.details["sensitivity"]["attempts"]) >= 2 and int8.accuracy is not None
    assert by_name["onnx-fp32"].status == "ok"
    for p in ("fp16", "int8"):
        trt = by_name[f"tensorrt-{p}"]
        assert trt.status == "skipped" and "trtexec" in trt.details["trtexec"]["tensorrt10"]
    assert (out / "tensorrt/model.int8-qdq.onnx").is_file()
    qdq = trt.details["onnx_notes"]["excluded_nodes"]
    assert set(int8.details["decode_in_float"]) <= set(qdq)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging folder left


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
