"""The detector's default score threshold: best F1 on val at IoU 0.5, ties to the higher one."""

from __future__ import annotations

import numpy as np
import pytest

from ftedge.detection.threshold import FALLBACK_CONF, choose_conf


def _dets(rows: list[tuple[list[float], float, int]]):
    boxes = np.array([r[0] for r in rows], np.float32).reshape(-1, 4)
    return boxes, np.array([r[1] for r in rows], np.float32), np.array([r[2] for r in rows])


def test_the_best_f1_threshold_is_chosen_ties_to_the_higher():
    a, b, c = [0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 15, 15]
    # Image 1: true boxes a, b (class 0). Detections: a (0.9), a false box (0.6), a box of the
    # wrong class on b (0.55), b (0.3), a duplicate of a (0.1, a false positive once a is taken).
    img1 = _dets([(a, 0.9, 0), ([50, 50, 60, 60], 0.6, 0), (b, 0.55, 1), (b, 0.3, 0), (a, 0.1, 0)])
    # Image 2: true box c (class 1), found at 0.7.
    img2 = _dets([(c, 0.7, 1)])
    gt_boxes = [np.array([a, b], np.float32), np.array([c], np.float32)]
    gt_labels = [np.array([0, 0]), np.array([1])]
    got = choose_conf([img1, img2], gt_boxes, gt_labels)
    # F1 by threshold: 0.05-0.10 all six (3 right: 0.667); 0.15-0.30 five (0.75); 0.35-0.55
    # a, the false box, the wrong class and c (0.571); 0.60 a, the false box and c (0.667);
    # 0.65-0.70 a and c (P 1, R 2/3: 0.8); 0.75-0.90 a alone (0.5). The best, 0.8, is reached
    # at 0.65 and 0.70: the higher wins.
    assert got.conf == pytest.approx(0.70)
    assert (got.precision, got.recall) == pytest.approx((1.0, 2 / 3))
    assert got.f1 == pytest.approx(0.8)


def test_without_val_boxes_the_usual_threshold_is_kept():
    empty = _dets([([0, 0, 5, 5], 0.9, 0)])
    got = choose_conf([empty], [np.zeros((0, 4), np.float32)], [np.zeros(0, int)])
    assert got.conf == FALLBACK_CONF
