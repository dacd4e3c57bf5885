"""The full detection loop: augmentation moves boxes with pixels; unfrozen blocks train, the
rest of the backbone (BatchNorm statistics included) stays exactly pretrained."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ftedge
from ftedge.detection.augment import Augment, augment
from ftedge.detection.orient import orientations, resolve_flips
from tests.detect_helpers import write_yolo_shapes


def _white_box(size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    return img


@pytest.mark.parametrize("seed", range(12))
def test_augmented_boxes_follow_the_pixels(seed):
    rng = np.random.default_rng(seed)
    img = _white_box(128, (40, 30, 90, 70))
    aug = Augment(scale=(0.5, 1.5), color=0.0, min_visible=0.5)
    out, boxes, labels = augment(
        img, np.array([[40, 30, 90, 70]], np.float32), np.array([0]), rng, aug, (0, 0, 0)
    )
    assert out.shape == img.shape and out.dtype == np.uint8
    ys, xs = np.nonzero(out[..., 0] > 127)
    if len(boxes) == 0:  # dropped: less than half of it is still on the canvas
        visible = len(xs) / (50 * 40 * (out.shape[0] / 128) ** 2)
        assert visible < 0.75
        return
    assert labels.tolist() == [0]
    x1, y1, x2, y2 = boxes[0]
    # The box is the white region (clipped to the canvas), to resampling's pixel.
    assert abs(xs.min() - x1) <= 1.5 and abs(xs.max() + 1 - x2) <= 1.5
    assert abs(ys.min() - y1) <= 1.5 and abs(ys.max() + 1 - y2) <= 1.5


@pytest.mark.parametrize("o", orientations("d4"))
def test_orientations_move_boxes_with_pixels(o):
    img = _white_box(64, (5, 10, 25, 50))
    out = o.images(img)
    ys, xs = np.nonzero(out[..., 0])
    box = o.boxes(np.array([[5, 10, 25, 50]], np.float32), 64)[0]
    assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_flips_resolve_per_data():
    from ftedge.config import TrainConfig

    assert len(orientations(resolve_flips(TrainConfig(task="detect")))) == 4  # built-in aerial
    assert resolve_flips(TrainConfig(task="detect", data="x")) == "h"
    assert resolve_flips(TrainConfig(task="detect", data="x", hflip=False)) == "none"
    assert resolve_flips(TrainConfig(task="detect", data="x", flips="hv")) == "hv"


def test_colour_jitter_keeps_geometry():
    rng = np.random.default_rng(0)
    img = _white_box(64, (10, 10, 30, 30)) // 2
    aug = Augment(scale=(1.0, 1.0), color=0.3)
    out, boxes, _ = augment(
        img, np.array([[10, 10, 30, 30]], np.float32), np.array([1]), rng, aug, (0, 0, 0)
    )
    assert boxes.tolist() == [[10, 10, 30, 30]] and not np.array_equal(out, img)


@pytest.mark.slow
def test_full_loop_trains_unfrozen_blocks_only(tmp_path):
    from ftedge.detection.model import MultiScaleBackbone
    from ftedge.models.registry import create_backbone, read_state_dict, resolve_backbone

    root = write_yolo_shapes(tmp_path / "shapes", {"train": 16, "val": 6, "test": 6}, size=96)
    run = ftedge.train(
        root,
        task="detect",
        image_size=96,
        epochs=2,
        batch_size=8,
        augment="on",
        unfreeze=1,
        unfreeze_epoch=0,
        out=str(tmp_path / "runs"),
        name="full",
    )
    doc = json.loads((run.run_dir / "metrics.json").read_text())
    assert doc["cached_features"] is False and len(doc["epochs"]) == 2
    state = read_state_dict(run.run_dir / "best.safetensors")
    model, _ = create_backbone(resolve_backbone("tf_efficientnet_lite0"))
    pre = MultiScaleBackbone(model)
    top = {id(p) for m in pre.units[-1] for p in m.parameters()}
    changed, frozen_same = 0, 0
    for name, p in pre.named_parameters():
        saved = state[f"backbone.{name}"].numpy()
        if id(p) in top:
            changed += not np.array_equal(saved, p.detach().numpy())
        else:
            frozen_same += np.array_equal(saved, p.detach().numpy())
    frozen = sum(1 for p in pre.parameters() if id(p) not in top)
    assert frozen_same == frozen, "a frozen backbone block changed"
    assert changed > 0, "the unfrozen block did not train"
    for name, buf in pre.named_buffers():  # BatchNorm statistics of frozen blocks unchanged
        if "running" in name and not name.startswith("model.blocks.6"):
            assert np.array_equal(state[f"backbone.{name}"].numpy(), buf.numpy()), name
