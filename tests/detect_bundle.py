"""A detection bundle whose ONNX graph finds objects exactly, built from real ONNX ops.

The graph takes the letterboxed, normalised input (N, 3, S, S) with mean 0 and std 1 (pixel /
255), so padding and a black background are 0 and a pure red, green or blue object is 1 in its
own channel. Per channel c (= class c): mask = x[:, c] > 0.5; a row (column) holds the object
when its mask row (column) has any pixel; the box is the first and one past the last such
row/column, in input pixels. Outputs follow the detection contract: boxes (N, 3, 4) xyxy input
pixels (proposal c is class c's box) and scores (N, 3, 3) (1 on the diagonal when the object is
there). Threshold 0.5 is the middle of the object's edge after bilinear resizing, so the box
lands on the true edge within half an input pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ("red", "green", "blue")
COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


def box_finder_onnx(path: Path, size: int) -> None:
    """Write the box-finding graph for a ``size`` x ``size`` input to ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    idx = np.arange(size, dtype=np.float32)
    consts = {
        "half": np.array(0.5, np.float32),
        "size": np.array(float(size), np.float32),
        "idx1": idx + 1,  # one past pixel i
        "rev": size - idx,  # S - i: the largest for the first pixel
        "eye": np.eye(len(CLASSES), dtype=np.float32),
        "ax2": np.array([2], np.int64),
        "ax3": np.array([3], np.int64),
        "ax_last": np.array([-1], np.int64),
    }
    n = helper.make_node
    nodes = [
        n("Greater", ["input", "half"], ["mask_b"]),
        n("Cast", ["mask_b"], ["mask"], to=TensorProto.FLOAT),
        n("ReduceMax", ["mask", "ax3"], ["rows"], keepdims=0),  # (N, C, S): row has object
        n("ReduceMax", ["mask", "ax2"], ["cols"], keepdims=0),  # (N, C, S): column has object
        n("Mul", ["rows", "idx1"], ["rows_end"]),
        n("ReduceMax", ["rows_end", "ax_last"], ["y2"], keepdims=1),
        n("Mul", ["rows", "rev"], ["rows_start"]),
        n("ReduceMax", ["rows_start", "ax_last"], ["y1r"], keepdims=1),
        n("Sub", ["size", "y1r"], ["y1"]),
        n("Mul", ["cols", "idx1"], ["cols_end"]),
        n("ReduceMax", ["cols_end", "ax_last"], ["x2"], keepdims=1),
        n("Mul", ["cols", "rev"], ["cols_start"]),
        n("ReduceMax", ["cols_start", "ax_last"], ["x1r"], keepdims=1),
        n("Sub", ["size", "x1r"], ["x1"]),
        n("Concat", ["x1", "y1", "x2", "y2"], ["boxes"], axis=-1),  # (N, C, 4)
        n("ReduceMax", ["rows", "ax_last"], ["present"], keepdims=1),  # (N, C, 1)
        n("Mul", ["present", "eye"], ["scores"]),  # (N, C, C)
    ]
    graph = helper.make_graph(
        nodes,
        "box_finder",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 3, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3, 3]),
        ],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_box_finder_bundle(bundle: Path, size: int = 640, conf: float = 0.25) -> Path:
    """A real detection bundle (manifest + ONNX) around ``box_finder_onnx``; ``conf``: the
    bundle's default score threshold."""
    from ftedge.files import sha256_file
    from ftedge.runtime.manifest import Artifact, InputSpec, Manifest, Reference
    from ftedge.runtime.preprocess import PreprocessSpec
    from ftedge.runtime.tasks import DetectionOutput

    (bundle / "onnx").mkdir(parents=True, exist_ok=True)
    model = bundle / "onnx" / "model.onnx"
    box_finder_onnx(model, size)
    spec = InputSpec("input", "float32", "NCHW", (-1, 3, size, size))
    output = DetectionOutput(fill=(0, 0, 0), conf=conf)
    digest = sha256_file(model)
    art = Artifact(
        format="onnx",
        precision="fp32",
        path="onnx/model.onnx",
        sha256=digest,
        accuracy=1.0,
        input=spec,
        output=output,
        files={"onnx/model.onnx": digest},
    )
    Manifest(
        labels=CLASSES,
        preprocessing=PreprocessSpec(
            input_size=(3, size, size), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)
        ),
        input=spec,
        output=output,
        task="detection",
        reference=Reference(accuracy=1.0),
        artifacts=(art,),
    ).save(bundle)
    return bundle


def draw_objects(
    rng: np.random.Generator, width: int, height: int
) -> tuple[np.ndarray, dict[int, tuple[int, int, int, int]]]:
    """A dark noisy RGB frame with one red, green and blue rectangle each at random, disjoint
    places (side 15-45 % of the frame's); returns it and each class's true box (x1, y1, x2, y2),
    the rectangle covering pixels x1..x2-1, y1..y2-1."""
    img = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    truth: dict[int, tuple[int, int, int, int]] = {}
    # one vertical band per class keeps the rectangles apart
    band = width // len(CLASSES)
    for c, colour in enumerate(COLOURS):
        w = max(3, int(rng.uniform(0.15, 0.3) * width))
        w = min(w, band - 2)
        h = max(3, int(rng.uniform(0.15, 0.45) * height))
        x1 = c * band + int(rng.integers(0, band - w))
        y1 = int(rng.integers(0, height - h))
        img[y1 : y1 + h, x1 : x1 + w] = colour
        truth[c] = (x1, y1, x1 + w, y1 + h)
    return img, truth
