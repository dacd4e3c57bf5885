"""Referee: torchvision's own FCOS vs ftedge's detector, same frozen backbone, same data, epochs.

    python benchmarks/detect_vs_torchvision.py [--epochs 10] [--channels 128] [--json FILE]

Both detectors sit on the same frozen, pretrained EfficientNet-Lite0 (stride 8/16/32 features)
and train on the built-in tree crowns (256 x 256, the same flips and turns) for the same
number of epochs of the same number of optimizer steps (AdamW, warm-up + cosine), keeping the
epoch with the best val mAP; both are tested with pycocotools on the same test split.

- torchvision: ``torchvision.models.detection.FCOS`` with its own FPN (P3-P7, ``--channels``
  wide; torchvision's COCO model uses 256) and its own head (4 conv + GroupNorm per branch),
  its own loss and post-processing (score threshold 0.05, NMS 0.5, 100 detections). The
  backbone runs on every batch: that is how torchvision trains.
- ftedge: ``ftedge train --task detect`` defaults (cached features, light FPN + FCOS head).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_speed import machine  # noqa: E402

import ftedge  # noqa: E402
from ftedge.config import TrainConfig  # noqa: E402
from ftedge.detection import load_detection_data, materialise_default_detection_data  # noqa: E402
from ftedge.detection.epochs import MIN_STEPS_PER_EPOCH  # noqa: E402
from ftedge.detection.features import load_inputs  # noqa: E402
from ftedge.detection.metrics import evaluate_detections  # noqa: E402
from ftedge.detection.model import MultiScaleBackbone  # noqa: E402
from ftedge.detection.orient import orientations, resolve_flips  # noqa: E402
from ftedge.models.registry import create_backbone, resolve_backbone  # noqa: E402

SIZE = 256


class FrozenBackboneFPN(nn.Module):
    """The frozen multi-scale backbone + torchvision's FPN with P6/P7, as FCOS expects."""

    def __init__(self, body: MultiScaleBackbone, channels: int) -> None:
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(
            list(body.channels), channels, extra_blocks=LastLevelP6P7(channels, channels)
        )
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        with torch.no_grad():
            feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def build_fcos(num_classes: int, channels: int) -> tuple[nn.Module, object]:
    from torchvision.models.detection import FCOS

    model, spec = create_backbone(resolve_backbone("tf_efficientnet_lite0"))
    body = MultiScaleBackbone(model).eval()
    fcos = FCOS(
        FrozenBackboneFPN(body, channels),
        num_classes=num_classes + 1,  # torchvision counts a background class
        min_size=SIZE,
        max_size=SIZE,
        image_mean=list(spec.mean),
        image_std=list(spec.std),
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_img=100,
    )
    return fcos, spec


def _batch(inputs, idx, orients):
    images, targets = [], []
    for i, o in zip(idx, orients, strict=True):
        img, boxes = o.images(inputs.images[i]), o.boxes(inputs.boxes[i], SIZE)
        images.append(torch.from_numpy(img).permute(2, 0, 1).float() / 255)
        targets.append(
            {
                "boxes": torch.from_numpy(boxes).float(),
                "labels": torch.from_numpy(inputs.labels[i] + 1).long(),
            }
        )
    return images, targets


@torch.no_grad()
def _detect(model, inputs) -> list:
    model.eval()
    out = []
    for start in range(0, len(inputs.images), 8):
        imgs = [
            torch.from_numpy(im).permute(2, 0, 1).float() / 255
            for im in inputs.images[start : start + 8]
        ]
        for d in model(imgs):
            keep = d["labels"] > 0  # index 0 is torchvision's background class
            boxes, scores, labels = d["boxes"][keep], d["scores"][keep], d["labels"][keep] - 1
            out.append((boxes.numpy(), scores.numpy(), labels.numpy()))
    return out


def _map(model, inputs, names) -> tuple[float, float]:
    gt = list(zip(inputs.boxes, inputs.labels, strict=True))
    m = evaluate_detections(gt, _detect(model, inputs), names)
    return float(np.nan_to_num(m.map)), float(np.nan_to_num(m.ap50))


def train_torchvision(epochs: int, channels: int, batch: int, lr: float) -> dict:
    cfg = TrainConfig(task="detect")
    root = materialise_default_detection_data()
    data = load_detection_data(
        root, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed
    )
    names = list(data.class_names)
    model, spec = build_fcos(len(names), channels)
    train, val, test = (load_inputs(data.split(s), SIZE, spec) for s in ("train", "val", "test"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    per_epoch = max(math.ceil(len(train.images) / batch), MIN_STEPS_PER_EPOCH)
    total = per_epoch * epochs

    def factor(step: int) -> float:  # the same warm-up + cosine as ftedge
        if step < per_epoch:
            return (step + 1) / per_epoch
        return 0.5 * (1 + math.cos(math.pi * (step - per_epoch) / max(1, total - per_epoch)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    rng = np.random.default_rng(cfg.seed)
    views = orientations(resolve_flips(cfg))  # the same orientations ftedge trains on
    best, best_state, seconds = -1.0, None, 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        model.backbone.body.eval()  # frozen, BatchNorm included
        for _ in range(per_epoch):
            idx = rng.integers(0, len(train.images), batch)
            images, targets = _batch(
                train, idx, [views[j] for j in rng.integers(len(views), size=batch)]
            )
            loss = sum(model(images, targets).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        val_map, _ = _map(model, val, names)
        seconds += time.perf_counter() - t0
        print(
            f"torchvision epoch {epoch}: loss {float(loss):.3f} val mAP {val_map:.3f}", flush=True
        )
        if val_map > best:
            best, best_state = val_map, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test_map, test_ap50 = _map(model, test, names)
    head = sum(p.numel() for p in params)
    return {
        "train_seconds": round(seconds, 1),
        "test_map": round(test_map, 4),
        "test_ap50": round(test_ap50, 4),
        "trainable_params": head,
    }


def train_ftedge(epochs: int, out: Path, threads: int) -> dict:
    # ftedge.train applies the detection defaults (batch 16, lr 5e-3) as the CLI does.
    kw = dict(task="detect", epochs=epochs, patience=0, threads=threads)
    m = ftedge.train(out=str(out), name="ftedge", **kw).metrics
    return {
        "train_seconds": m["total_seconds"],  # feature extraction + epochs
        "test_map": round(m["test"]["map"], 4),
        "test_ap50": round(m["test"]["ap50"], 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--channels", type=int, default=128, help="torchvision FPN / head width")
    p.add_argument("--lr", type=float, default=1e-3, help="torchvision's AdamW learning rate")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        ours = train_ftedge(a.epochs, Path(tmp), a.threads)
    theirs = train_torchvision(a.epochs, a.channels, 16, a.lr)
    speed = theirs["train_seconds"] / ours["train_seconds"]
    print(f"machine: {machine()}")
    print(f"{'':16}{'ftedge':>10}{'torchvision':>14}")
    for key in ("train_seconds", "test_map", "test_ap50"):
        print(f"{key:16}{ours[key]:>10}{theirs[key]:>14}")
    print(
        f"ftedge trains {speed:.1f}x faster; mAP difference "
        f"{100 * (ours['test_map'] - theirs['test_map']):+.1f} points (ftedge - torchvision)"
    )
    if a.json:
        doc = {"machine": machine(), "epochs": a.epochs, "channels": a.channels, "lr": a.lr}
        doc["load_average"] = [round(x, 2) for x in os.getloadavg()]
        doc |= {"ftedge": ours, "torchvision_fcos": theirs, "speedup": round(speed, 2)}
        a.json.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
