"""Detection neck/head, label assignment, loss and decoding on constructed cases."""

from __future__ import annotations

import pytest
import torch

from ftedge.detection.assign import assign, centerness
from ftedge.detection.decode import distances_to_boxes, scores
from ftedge.detection.grid import level_sizes, make_grid
from ftedge.detection.loss import detection_loss
from ftedge.detection.model import STRIDES, DetectionLayers, DetectorSpec

SIZE = 128


@pytest.fixture
def grid():
    return make_grid(level_sizes(SIZE, SIZE, STRIDES), STRIDES)


def test_grid_cells_are_centres_in_head_order(grid):
    assert grid.centers.shape == (16 * 16 + 8 * 8 + 4 * 4, 2)
    assert grid.centers[0].tolist() == [4.0, 4.0]  # first stride-8 cell
    assert grid.centers[1].tolist() == [12.0, 4.0]  # row-major: x moves first
    assert grid.centers[256].tolist() == [8.0, 8.0]  # first stride-16 cell
    assert level_sizes(100, 70, STRIDES) == [(13, 9), (7, 5), (4, 3)]


def test_assignment_uses_centre_cells_of_the_right_level(grid):
    small = torch.tensor([[20.0, 20.0, 52.0, 52.0]])  # 32 px: reach 16 -> stride 8
    big = torch.tensor([[0.0, 0.0, 128.0, 128.0]])  # reach 64 at the centre -> stride 16
    t = assign(grid, small, torch.tensor([1]))
    pos = t.positive
    assert pos.sum() > 0 and set(t.labels[pos].tolist()) == {1}
    assert (grid.strides[pos] == 8).all()
    # every positive cell is within 1.5 strides of the box centre
    assert ((grid.centers[pos] - 36.0).abs() <= 12.0).all()
    assert torch.equal(t.boxes[pos], small.expand(int(pos.sum()), 4))
    tb = assign(grid, big, torch.tensor([0]))
    assert set(grid.strides[tb.positive].tolist()) == {16.0}


def test_overlapping_boxes_give_the_cell_to_the_smaller(grid):
    boxes = torch.tensor([[8.0, 8.0, 56.0, 56.0], [24.0, 24.0, 40.0, 40.0]])
    t = assign(grid, boxes, torch.tensor([0, 1]))
    centre_cell = int(((grid.centers - torch.tensor([28.0, 28.0])).abs().sum(1)).argmin())
    assert t.labels[centre_cell] == 1


def test_no_boxes_means_all_background(grid):
    t = assign(grid, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert not t.positive.any() and t.boxes.abs().sum() == 0


def test_centerness_is_one_at_the_centre_and_falls_to_the_edge():
    c = centerness(torch.tensor([[10.0, 10.0, 10.0, 10.0], [1.0, 10.0, 19.0, 10.0]]))
    assert c[0] == pytest.approx(1.0) and 0 < c[1] < 0.25


def test_decoding_inverts_the_distances(grid):
    box = torch.tensor([30.0, 40.0, 70.0, 90.0])
    ltrb = torch.stack(
        [
            grid.centers[:, 0] - box[0],
            grid.centers[:, 1] - box[1],
            box[2] - grid.centers[:, 0],
            box[3] - grid.centers[:, 1],
        ],
        1,
    )[None]
    out = distances_to_boxes(grid.centers, ltrb)
    assert torch.allclose(out[0], box.expand_as(out[0]), atol=1e-5)
    s = scores(torch.zeros(1, 5, 3), torch.zeros(1, 5))
    assert torch.allclose(s, torch.full((1, 5, 3), 0.5))


def test_loss_falls_when_predictions_match_targets(grid):
    torch.manual_seed(0)
    layers = DetectionLayers(DetectorSpec(num_classes=2, in_channels=(8, 16, 32)))
    feats = [
        torch.randn(2, c, *hw)
        for c, hw in zip((8, 16, 32), level_sizes(SIZE, SIZE, STRIDES), strict=True)
    ]
    boxes = torch.tensor([[20.0, 20.0, 52.0, 60.0], [70.0, 64.0, 110.0, 100.0]])
    targets = [
        assign(grid, boxes, torch.tensor([0, 1])),
        assign(grid, boxes[:1], torch.tensor([1])),
    ]
    opt = torch.optim.AdamW(layers.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        cls, ltrb, ctr = layers(feats)
        loss = detection_loss(cls, distances_to_boxes(grid.centers, ltrb), ctr, targets)
        assert torch.isfinite(loss.total)
        first = first if first is not None else float(loss.total)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    assert float(loss.total) < 0.5 * first
    empty = [assign(grid, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))] * 2
    cls, ltrb, ctr = layers(feats)
    parts = detection_loss(cls, distances_to_boxes(grid.centers, ltrb), ctr, empty)
    assert float(parts.box) == 0.0 and torch.isfinite(parts.cls)
