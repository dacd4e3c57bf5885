"""COCO detection metrics: known AP values for perfect, shifted, missing and wrong predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ftedge.detection import DetectionSample, evaluate_detections, precision_recall_curve

BOX = np.array([[10.0, 10.0, 110.0, 110.0]])  # 100 x 100


def _pred(boxes, labels, scores=None):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, np.float64)
    return boxes, scores, np.asarray(labels, np.int64)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _two_class_gt():
    return [
        (np.array([[0, 0, 50, 40], [60, 60, 120, 100]], float), np.array([0, 1])),
        (np.array([[5, 5, 45, 85]], float), np.array([1])),
    ]


def test_perfect_predictions_score_one(capsys):
    gt = _two_class_gt()
    preds = [_pred(b, y) for b, y in gt]
    m = evaluate_detections(gt, preds, ["cat", "dog"])
    assert m.map == pytest.approx(1.0)
    assert m.ap50 == pytest.approx(1.0) and m.ap75 == pytest.approx(1.0)
    assert m.per_class == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0)}
    assert (m.num_images, m.num_boxes, m.num_predictions) == (2, 3, 3)
    assert capsys.readouterr().out == ""  # the evaluator's progress prints are silenced


def test_shifted_boxes_count_only_at_the_iou_thresholds_they_reach():
    shifted = BOX + np.array([26.0, 0, 26.0, 0])
    iou = _iou(BOX[0], shifted[0])
    assert 0.55 < iou < 0.6  # 74 / 126
    m = evaluate_detections([(BOX, [0])], [_pred(shifted, [0])], ["tree"])
    assert m.ap50 == pytest.approx(1.0)
    assert m.ap75 == pytest.approx(0.0)
    assert m.map == pytest.approx(0.2)  # matched at 0.50 and 0.55: 2 of 10 thresholds


def test_a_class_without_ground_truth_is_left_out_of_the_mean():
    gt = _two_class_gt()
    preds = [_pred(b, y) for b, y in gt]
    m = evaluate_detections(gt, preds, ["cat", "dog", "bird"])
    assert m.per_class["bird"] is None
    assert m.map == pytest.approx(1.0)
    assert m.to_dict()["per_class"]["bird"] is None


def test_a_class_with_ground_truth_but_no_predictions_scores_zero():
    gt = _two_class_gt()
    preds = [_pred(b[y == 0], y[y == 0]) for b, y in gt]  # dogs never predicted
    m = evaluate_detections(gt, preds, ["cat", "dog"])
    assert m.per_class == {"cat": pytest.approx(1.0), "dog": 0.0}
    assert m.map == pytest.approx(0.5)


def test_images_without_ground_truth_or_predictions():
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64))
    no_pred = _pred(np.zeros((0, 4)), [])
    # An empty image with no predictions changes nothing.
    m = evaluate_detections([(BOX, [0]), empty], [_pred(BOX, [0]), no_pred], ["tree"])
    assert m.map == pytest.approx(1.0) and m.num_images == 2
    # A confident prediction on an empty image is a false positive ranked first: precision
    # is 1/2 at every recall level.
    fp = _pred(BOX, [0], scores=[0.9])
    m = evaluate_detections([(BOX, [0]), empty], [_pred(BOX, [0], scores=[0.8]), fp], ["tree"])
    assert m.ap50 == pytest.approx(0.5)
    # An image whose box is never predicted: recall stops at 1/2 (51 of the 101 recall points).
    m = evaluate_detections([(BOX, [0]), (BOX, [0])], [_pred(BOX, [0]), no_pred], ["tree"])
    assert m.ap50 == pytest.approx(51 / 101)


def test_wrong_class_predictions_score_zero_for_that_class():
    gt = [(BOX, [0])]
    m = evaluate_detections(gt, [_pred(BOX, [1])], ["cat", "dog"])
    assert m.per_class["cat"] == 0.0
    assert m.per_class["dog"] is None  # no dog in the ground truth
    assert m.map == 0.0


def test_detection_samples_are_accepted_as_ground_truth():
    s = DetectionSample("/x.jpg", 200, 200, BOX, np.array([0]))
    m = evaluate_detections([s], [_pred(BOX, [0])], ["tree"])
    assert m.map == pytest.approx(1.0)


def test_no_ground_truth_at_all_is_nan_not_a_crash():
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64))
    m = evaluate_detections([empty], [_pred(BOX, [0])], ["tree"])
    assert math.isnan(m.map) and m.to_dict()["map"] is None


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError, match="predictions"):
        evaluate_detections([(BOX, [0])], [], ["tree"])
    with pytest.raises(ValueError, match="labels must be in"):
        evaluate_detections([(BOX, [3])], [_pred(BOX, [0])], ["tree"])


def test_precision_recall_curve():
    gt = [(BOX, [0]), (BOX, [0])]
    preds = [_pred(BOX, [0], scores=[0.7]), _pred(np.zeros((0, 4)), [])]
    c = precision_recall_curve(gt, preds, ["tree", "car"], iou_threshold=0.5)
    assert c.recall.shape == (101,) and c.precision.shape == c.scores.shape == (2, 101)
    assert c.precision[0, :51] == pytest.approx(np.ones(51)) and np.all(c.precision[0, 51:] == 0)
    assert np.all(c.scores[0, :51] == pytest.approx(0.7)) and np.isnan(c.scores[0, 51:]).all()
    assert np.isnan(c.precision[1]).all()  # no car in the ground truth
    with pytest.raises(ValueError, match="iou_threshold"):
        precision_recall_curve(gt, preds, ["tree", "car"], iou_threshold=0.42)
