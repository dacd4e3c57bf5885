"""The torch-free detection runtime's geometry and NMS, on constructed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from ftedge.runtime.detect import nms, select
from ftedge.runtime.letterbox import fill_colour, fit, letterbox


@pytest.mark.parametrize(("w", "h"), [(640, 480), (480, 640), (256, 256), (100, 30), (37, 300)])
def test_letterbox_places_the_frame_top_left_and_maps_boxes_back(w, h):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    canvas, box = letterbox(frame, 256, (127, 127, 127))
    assert canvas.shape == (256, 256, 3)
    assert max(box.width, box.height) == 256 and box.width <= 256 and box.height <= 256
    assert abs(box.width / box.height - w / h) < 0.05 * w / h + 2 / min(box.width, box.height)
    assert (canvas[box.height :, :] == 127).all() and (canvas[:, box.width :] == 127).all()
    # A box in frame pixels -> input pixels (x scale) -> back: exact up to float rounding.
    frame_box = np.array([[0.1 * w, 0.2 * h, 0.7 * w, 0.9 * h]], np.float32)
    back = box.boxes_to_frame(frame_box * box.scale, w, h)
    assert np.allclose(back, frame_box, atol=1e-3)
    # Boxes past the letterboxed image are clipped to the frame.
    assert box.boxes_to_frame(np.array([[-5.0, -5.0, 400.0, 400.0]]), w, h).tolist() == [
        [0.0, 0.0, float(w), float(h)]
    ]


def test_letterbox_of_an_exact_size_frame_is_the_frame():
    frame = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    canvas, box = letterbox(frame, 64, (0, 0, 0))
    assert box.scale == 1.0 and np.array_equal(canvas, frame)
    assert fit(640, 480, 320).scale == 0.5
    assert fill_colour((0.5, 0.5, 0.5)) == (128, 128, 128)


def test_nms_keeps_the_best_of_overlapping_boxes_per_class():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]  # box 3 repeats box 0
    assert nms(boxes[:3], scores[:3], 0.5).tolist() == [0, 2]
    # per class: the same box in two classes survives in both
    cell_scores = np.zeros((4, 2), np.float32)
    cell_scores[0, 0], cell_scores[1, 0], cell_scores[2, 0], cell_scores[3, 1] = 0.9, 0.8, 0.7, 0.6
    b, s, c = select(boxes, cell_scores, conf=0.5, iou=0.5, max_det=10)
    assert s.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert c.tolist() == [0, 0, 1]
    assert b[2].tolist() == [0, 0, 10, 10]


def test_select_thresholds_and_caps():
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(10)], np.float32)
    scores = np.linspace(0.1, 1.0, 10, dtype=np.float32)[:, None]
    b, s, c = select(boxes, scores, conf=0.35, iou=0.5, max_det=3)
    assert len(b) == 3 and s[0] == pytest.approx(1.0) and (s >= 0.35).all()
    b, s, c = select(boxes, scores, conf=2.0, iou=0.5, max_det=3)
    assert b.shape == (0, 4) and s.shape == (0,) and c.shape == (0,)


def test_detection_agreement_pairs_same_class_boxes_one_to_one():
    from ftedge.export.detection_verify import agreement

    def dets(boxes, labels):
        b = np.array(boxes, np.float32).reshape(-1, 4)
        return b, np.ones(len(b), np.float32), np.array(labels, np.int64)

    ours = [dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1]), dets([], [])]
    same = [dets([[1, 0, 11, 10], [20, 20, 30, 30]], [0, 1]), dets([], [])]
    assert agreement(ours, same) == 1.0  # a box moved by 1 px is the same object
    other_class = [dets([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1]), dets([], [])]
    assert agreement(ours, other_class) == 0.5  # 2 x 1 pair / 4 detections
    missed = [dets([[0, 0, 10, 10]], [0]), dets([[50, 50, 60, 60]], [0])]
    assert agreement(ours, missed) == 0.5  # 1 pair; one missed, one extra
    two_on_one = [dets([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], [0, 0, 1]), dets([], [])]
    assert agreement(ours, two_on_one) == 2 * 2 / 5  # one to one: a duplicate pairs with nothing
    assert agreement([dets([], [])], [dets([], [])]) == 1.0
