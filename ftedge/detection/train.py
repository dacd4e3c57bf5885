"""Detection training: pretrained backbone (frozen by default), new FPN neck + FCOS head.

``train_detector(cfg)`` reads top to bottom:
1. set-up: device, threads, seeds; the run directory;
2. data: a YOLO / COCO / VOC folder or the built-in tree crowns, letterboxed to a square input;
3. model: the pretrained backbone (frozen, BatchNorm included) as a stride 8/16/32 feature
   extractor, and the new layers;
4. features: every image's feature maps, computed once (and once mirrored, for flips);
5. epochs: train the new layers on the cached features, score val mAP, keep the best; with
   ``--augment on`` or ``--unfreeze N`` the full loop (``full_loop``) runs the backbone instead;
6. test: the best layers on the test split; metrics.json, PR curve and a picture of results.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ftedge.config import TrainConfig
from ftedge.detection.assign import Targets, assign
from ftedge.detection.checkpoint import DetectionCheckpointMeta, save_detection_checkpoint
from ftedge.detection.decode import distances_to_boxes
from ftedge.detection.evaluate import NmsSettings, detect_on_features, score
from ftedge.detection.features import Inputs, extract, flip_boxes, load_inputs
from ftedge.detection.full_loop import needs_full_loop
from ftedge.detection.grid import Grid, level_sizes, make_grid
from ftedge.detection.loss import detection_loss
from ftedge.detection.model import DetectionLayers, Detector, DetectorSpec, MultiScaleBackbone
from ftedge.detection.types import DetectionDataset
from ftedge.errors import FtedgeError
from ftedge.runtime.letterbox import fill_colour

DEFAULT_INPUT_SIZE = 256
MIN_STEPS_PER_EPOCH = 20  # tiny datasets: an "epoch" is still enough steps to move


@dataclass(frozen=True)
class DetectResult:
    """A finished detection run: its directory and its metrics.json document."""

    run_dir: Path
    metrics: dict[str, Any]

    @property
    def test_map(self) -> float:
        return float(self.metrics["test"]["map"])


@dataclass(frozen=True)
class SplitCache:
    """One split's cached features, inputs and per-cell targets (train: also mirrored)."""

    inputs: Inputs
    feats: list[torch.Tensor]
    targets: list[Targets]
    feats_flip: list[torch.Tensor] | None = None
    targets_flip: list[Targets] | None = None


def train_detector(cfg: TrainConfig, *, exist_ok: bool = False) -> DetectResult:
    """Train a detector per ``cfg`` (``cfg.task == "detect"``); see the module docstring.

    ``exist_ok`` replaces a finished run of the same name (otherwise refused)."""
    from ftedge.training import distributed as dist
    from ftedge.training.setup import configure_torch

    ddp = dist.init()
    if ddp.world_size > 1:
        raise FtedgeError("detection training runs in one process (torchrun is for classification)")
    from ftedge.training.run_dir import check_run_dir_free

    check_run_dir_free(Path(cfg.out), cfg.name, exist_ok)  # before any work is done
    device = configure_torch(cfg, ddp)
    data = _load_data(cfg)
    size = cfg.image_size or DEFAULT_INPUT_SIZE
    backbone, meta = _build(cfg, data, size, device)
    grid = make_grid(level_sizes(size, size, meta.detector.strides), meta.detector.strides)
    full = needs_full_loop(cfg)
    t0 = time.perf_counter()
    # The full loop runs the backbone on the train images itself; val and test features stay
    # valid while the backbone is frozen (refreshed per epoch once blocks are unfrozen).
    train_c = _cache(backbone, data.train, meta, grid, device, mirrored=True, features=not full)
    val_c = _cache(backbone, data.val, meta, grid, device)
    test_c = _cache(backbone, data.test, meta, grid, device)
    feature_seconds = time.perf_counter() - t0

    run_dir = _start_run_dir(cfg, data, exist_ok)
    det = Detector(backbone, DetectionLayers(meta.detector).to(device))
    history, best = _fit(cfg, det, train_c, val_c, grid, meta, run_dir, full)
    if cfg.unfreeze:  # the best checkpoint's backbone is not the pretrained one: test with it
        from ftedge.models.registry import read_state_dict

        det.load_state_dict(read_state_dict(run_dir / "best.safetensors"))
        test_c = _cache(backbone, data.test, meta, grid, device)
    from ftedge.detection.results import finish

    metrics = finish(
        run_dir, det.layers, test_c, grid, data, history, best, feature_seconds, cached=not full
    )
    from ftedge.training.run_dir import release_run_dir

    release_run_dir(run_dir)
    return DetectResult(run_dir, metrics)


def _load_data(cfg: TrainConfig) -> DetectionDataset:
    from ftedge.detection import load_detection_data, materialise_default_detection_data

    root = cfg.data if cfg.data is not None else materialise_default_detection_data()
    data = load_detection_data(
        root, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed
    )
    for name in ("train", "val", "test"):
        if not getattr(data, name):
            raise FtedgeError(f"the {name} split of {root} has no images")
    return data


def _build(
    cfg: TrainConfig, data: DetectionDataset, size: int, device: torch.device
) -> tuple[MultiScaleBackbone, DetectionCheckpointMeta]:
    """The frozen feature extractor and the checkpoint sidecar describing the detector."""
    from ftedge.models.registry import create_backbone, resolve_backbone

    source = resolve_backbone(cfg.model)
    model, spec = create_backbone(source)
    backbone = MultiScaleBackbone(model).to(device).eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    spec = dataclasses.replace(spec, input_size=(3, size, size))
    det = DetectorSpec(num_classes=len(data.class_names), in_channels=backbone.channels)
    meta = DetectionCheckpointMeta(
        classes=tuple(data.class_names),
        backbone=source,
        detector=det,
        preprocessing=spec,
        input_size=size,
        config=cfg.to_dict(),
    )
    return backbone, meta


def _cache(
    backbone: MultiScaleBackbone,
    samples: Any,
    meta: DetectionCheckpointMeta,
    grid: Grid,
    device: torch.device,
    *,
    mirrored: bool = False,
    features: bool = True,
) -> SplitCache:
    inputs = load_inputs(samples, meta.input_size, meta.preprocessing)
    if not features:
        return SplitCache(inputs, [], [])
    feats = extract(backbone, inputs.images, meta.preprocessing, device)
    targets = [_targets(grid, b, lab) for b, lab in zip(inputs.boxes, inputs.labels, strict=True)]
    if not mirrored:
        return SplitCache(inputs, feats, targets)
    size = meta.input_size
    flipped = [flip_boxes(b, size) for b in inputs.boxes]
    feats_flip = extract(backbone, inputs.images, meta.preprocessing, device, flip=True)
    targets_flip = [_targets(grid, b, lab) for b, lab in zip(flipped, inputs.labels, strict=True)]
    return SplitCache(inputs, feats, targets, feats_flip, targets_flip)


def _targets(grid: Grid, boxes: np.ndarray, labels: np.ndarray) -> Targets:
    return assign(grid, torch.from_numpy(boxes), torch.from_numpy(labels))


def _start_run_dir(cfg: TrainConfig, data: DetectionDataset, exist_ok: bool) -> Path:
    import json

    from ftedge.config import save_yaml
    from ftedge.files import atomic_write_text
    from ftedge.training.run_dir import new_run_dir

    run_dir = new_run_dir(cfg, exist_ok)
    save_yaml(cfg, run_dir / "config.yaml")
    splits = {name: [s.path for s in data.split(name)] for name in ("train", "val", "test")}
    atomic_write_text(run_dir / "splits.json", json.dumps(splits, indent=1) + "\n")
    return run_dir


# -- epochs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_map: float
    val_ap50: float
    lr: float
    seconds: float


def _fit(
    cfg: TrainConfig,
    det: Detector,
    train_c: SplitCache,
    val_c: SplitCache,
    grid: Grid,
    meta: DetectionCheckpointMeta,
    run_dir: Path,
    full: bool,
) -> tuple[list[EpochRecord], EpochRecord]:
    """Epochs of training (cached features, or the full loop); the best (val mAP) is saved."""
    from tqdm.auto import tqdm

    run_epoch = _epoch_runner(cfg, det, train_c, grid, meta, full)
    history: list[EpochRecord] = []
    best: EpochRecord | None = None
    bar = tqdm(range(cfg.epochs), desc="epochs", file=sys.stderr)
    for epoch in bar:
        t0 = time.perf_counter()
        if cfg.unfreeze and epoch == cfg.unfreeze_epoch:
            det.backbone.freeze(cfg.unfreeze)  # staged unfreezing: from this epoch on
        loss, lr = run_epoch()
        m = _validate(det, val_c, grid, meta)
        rec = EpochRecord(
            epoch, round(loss, 6), _num(m.map), _num(m.ap50), lr, round(time.perf_counter() - t0, 3)
        )
        history.append(rec)
        if best is None or rec.val_map > best.val_map:
            best = rec
            done = dataclasses.replace(meta, epoch=epoch, val_map=rec.val_map)
            save_detection_checkpoint(run_dir / "best", det, done)
            if len(history) == 1:
                from ftedge.files import point_latest

                point_latest(run_dir)  # from its first checkpoint on, the run can be exported
        bar.set_postfix(
            loss=f"{loss:.3f}", val_map=f"{rec.val_map:.3f}", best=f"{best.val_map:.3f}"
        )
        if cfg.patience and epoch - best.epoch >= cfg.patience:
            break
    bar.close()
    assert best is not None
    return history, best


def _epoch_runner(
    cfg: TrainConfig,
    det: Detector,
    train_c: SplitCache,
    grid: Grid,
    meta: DetectionCheckpointMeta,
    full: bool,
) -> Callable[[], tuple[float, float]]:
    """A function that trains one epoch and returns (mean loss, learning rate at its end)."""
    from ftedge.detection import full_loop

    n = len(train_c.inputs.images)
    batch = min(cfg.batch_size, n)
    per_epoch = max(math.ceil(n / batch), MIN_STEPS_PER_EPOCH)
    if full:
        opt: torch.optim.Optimizer = full_loop.optimizer(det, cfg)
    else:
        params = det.layers.parameters()
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _schedule(opt, per_epoch * cfg.epochs, int(per_epoch * cfg.warmup_epochs))
    gen = torch.Generator().manual_seed(cfg.seed)
    loop = full_loop.FullLoop(
        train_c.inputs,
        meta.preprocessing,
        fill_colour(meta.preprocessing.mean),
        grid,
        full_loop.augmentation(cfg),
        cfg.grad_clip,
    )
    rng = np.random.default_rng(cfg.seed)

    def run() -> tuple[float, float]:
        if full:
            loss = full_loop.train_epoch_full(det, opt, sched, loop, batch, per_epoch, rng)
        else:
            loss = _train_epoch(det.layers, opt, sched, train_c, grid, batch, per_epoch, gen)
        return loss, opt.param_groups[0]["lr"]

    return run


def _validate(det: Detector, val_c: SplitCache, grid: Grid, meta: DetectionCheckpointMeta) -> Any:
    """Val COCO metrics; with unfrozen blocks the cached val features are recomputed first."""
    feats = val_c.feats
    if any(p.requires_grad for p in det.backbone.parameters()):
        det.eval()
        feats = extract(det.backbone, val_c.inputs.images, meta.preprocessing, grid.centers.device)
    dets = detect_on_features(det.layers, feats, grid.centers, NmsSettings())
    return score(dets, val_c.inputs.boxes, val_c.inputs.labels, list(meta.classes))


def _num(x: float) -> float:
    return 0.0 if math.isnan(x) else round(float(x), 6)


def _schedule(
    opt: torch.optim.Optimizer, total: int, warmup: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to zero, per optimizer step."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _train_epoch(
    layers: DetectionLayers,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LambdaLR,
    c: SplitCache,
    grid: Grid,
    batch: int,
    steps: int,
    gen: torch.Generator,
) -> float:
    assert c.feats_flip is not None and c.targets_flip is not None
    layers.train()
    total = 0.0
    n = len(c.targets)
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=gen)
        flip = torch.rand(batch, generator=gen) < 0.5
        feats = [
            torch.where(flip.view(-1, 1, 1, 1), ff[idx], f[idx])
            for f, ff in zip(c.feats, c.feats_flip, strict=True)
        ]
        targets = [
            c.targets_flip[i] if fl else c.targets[i]
            for i, fl in zip(idx.tolist(), flip.tolist(), strict=True)
        ]
        cls, ltrb, ctr = layers([f.to(grid.centers.device) for f in feats])
        loss = detection_loss(cls, distances_to_boxes(grid.centers, ltrb), ctr, targets).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach())
    return total / steps
