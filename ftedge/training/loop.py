"""The fine-tuning loop: readable top to bottom (nanoGPT style), no Trainer framework.

``train(cfg)`` does, in order:
1. set up the process (device, DDP under torchrun, seeds, threads);
2. scan the data and build the model: pretrained backbone, new head, frozen blocks;
3. decide between the two ways of running an epoch:
   - *cached features*: the whole backbone is frozen and nothing random touches the images,
     so its output for an image never changes: compute it once, then every epoch trains the
     head on a tensor of features (epochs after the first cost ~nothing);
   - *full*: every batch goes through the backbone (augmentation, unfrozen blocks);
4. per epoch: train, validate, keep the best checkpoint by val accuracy, save ``last`` (with
   optimizer state) for ``--resume``, early-stop on patience;
5. test the best checkpoint; write metrics.json, plots and a summary table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ftedge.checkpoint import config_sha256, read_meta, save_checkpoint
from ftedge.config import TrainConfig, build_config, load_yaml, save_yaml
from ftedge.data.folders import scan_image_folder
from ftedge.data.torch_data import EpochShardSampler, ImageDataset, shard
from ftedge.data.transforms import eval_transform, train_transform
from ftedge.errors import FtedgeError
from ftedge.files import atomic_write_text, point_latest
from ftedge.models import FtedgeClassifier, HeadSpec, build_classifier, resolve_backbone
from ftedge.training import distributed as dist
from ftedge.training.features import FrozenExtractor, extract_features
from ftedge.training.metrics import classification_report, plot_confusion, plot_curves

METRICS_SCHEMA_VERSION = 1
DEFAULT_DATA_IMAGE_SIZE = 128  # the built-in images are 28 px: 224 px would only add compute


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]


@dataclass
class EpochStats:
    loss: float
    accuracy: float


# -- set-up helpers --------------------------------------------------------------------------


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FtedgeError(f"--device {name}: CUDA is not available on this machine")
    if name != "cpu" and not name.startswith("cuda"):
        raise FtedgeError(f"unknown --device {name!r} (auto, cpu, cuda, cuda:N)")
    return torch.device(name)


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16 (needs a grad scaler); None = fp32."""
    if cfg.amp == "off" or (device.type != "cuda" and cfg.amp == "auto"):
        return None
    if cfg.amp == "fp16":
        return torch.float16
    if cfg.amp == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 1% of the base learning rate."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(
    model: FtedgeClassifier, cfg: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    groups = model.param_groups(cfg.lr, cfg.backbone_lr, cfg.weight_decay)
    for g in groups:
        g["base_lr"] = g["lr"]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    # The fused kernel does the whole update in one launch on CUDA; foreach is the CPU analogue.
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused, foreach=None if fused else True)


def new_run_dir(cfg: TrainConfig) -> Path:
    out = Path(cfg.out)
    name = cfg.name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir, i = out / name, 1
    while run_dir.exists() and cfg.name is None:
        run_dir, i = out / f"{name}-{i}", i + 1
    run_dir.mkdir(parents=True, exist_ok=cfg.name is not None)
    return run_dir


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill in what 'default' means for this run, so the saved config reproduces it."""
    changes: dict[str, Any] = {}
    if cfg.data is None:
        from ftedge.data.default import materialize_default

        changes["data"] = str(materialize_default())
        if cfg.image_size is None:
            changes["image_size"] = DEFAULT_DATA_IMAGE_SIZE
    return dataclasses.replace(cfg, **changes)


def plan(cfg: TrainConfig) -> tuple[bool, bool]:
    """(augment, cache_features) for this config, with a clear error for contradictions."""
    frozen_whole_run = cfg.unfreeze == 0
    augment = cfg.augment == "on" or (cfg.augment == "auto" and not frozen_whole_run)
    if cfg.cache_features == "on" and not frozen_whole_run:
        raise FtedgeError("--cache-features on needs a frozen backbone (--unfreeze 0)")
    cache = cfg.cache_features == "on" or (
        cfg.cache_features == "auto" and frozen_whole_run and not augment
    )
    if cache and augment:
        warnings.warn("cached features are computed once without augmentation", stacklevel=2)
        augment = False
    return augment, cache


# -- one epoch -------------------------------------------------------------------------------


def run_epoch_full(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer | None,
    ctx: TrainContext,
) -> EpochStats:
    """One pass over images: trains when ``optimizer`` is given, else evaluates."""
    training = optimizer is not None
    model.train(training)
    totals = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # loss sum, correct, count
    with torch.set_grad_enabled(training):
        for x, y in loader:
            # non_blocking copies from pinned memory overlap the transfer with compute on CUDA.
            x = x.to(ctx.device, non_blocking=True, memory_format=ctx.memory_format)
            y = y.to(ctx.device, non_blocking=True)
            totals += ctx.step(model, x, y, optimizer)
    return ctx.reduce(totals)


def run_epoch_cached(
    head: nn.Module,
    feats: torch.Tensor,
    labels: torch.Tensor,
    order: list[int] | None,
    optimizer: torch.optim.Optimizer | None,
    ctx: TrainContext,
) -> EpochStats:
    """The same as run_epoch_full, on precomputed backbone features (head only)."""
    training = optimizer is not None
    head.train(training)
    idx = torch.tensor(order) if order is not None else torch.arange(len(labels))
    totals = torch.zeros(3, dtype=torch.float64, device=ctx.device)
    bs = ctx.cfg.batch_size
    with torch.set_grad_enabled(training):
        for i in range(0, len(idx), bs):
            b = idx[i : i + bs]
            x = feats[b].to(ctx.device, non_blocking=True)
            y = labels[b].to(ctx.device, non_blocking=True)
            totals += ctx.step(head, x, y, optimizer)
    return ctx.reduce(totals)


@dataclass
class TrainContext:
    """What every training/eval step needs: device, precision, schedule, DDP."""

    cfg: TrainConfig
    device: torch.device
    memory_format: torch.memory_format
    amp: torch.dtype | None
    scaler: torch.amp.GradScaler | None
    steps_per_epoch: int
    global_step: int = 0

    def autocast(self) -> Any:
        if self.amp is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def step(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        optimizer: torch.optim.Optimizer | None,
    ) -> torch.Tensor:
        """Forward (+ backward and update when training); returns [loss sum, correct, n]."""
        with self.autocast():
            logits = model(x)
        logits = logits.float()
        if optimizer is None:
            # Validation/test loss is plain cross-entropy (no smoothing): comparable across runs.
            loss = F.cross_entropy(logits, y, reduction="sum")
        else:
            self.set_lr(optimizer)
            loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                # fp16 gradients underflow without scaling; unscale before clipping so the
                # threshold applies to the true gradient norm.
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(optimizer)
                self.clip(optimizer)
                self.scaler.step(optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.clip(optimizer)
                optimizer.step()
            self.global_step += 1
            loss = loss.detach() * len(y)
        correct = (logits.argmax(1) == y).sum()
        # Stay on the device: a .item() here would force a CUDA sync every step.
        return torch.stack(
            [loss.double(), correct.double(), torch.tensor(len(y), device=x.device).double()]
        )

    def set_lr(self, optimizer: torch.optim.Optimizer) -> None:
        total = self.cfg.epochs * self.steps_per_epoch
        warmup = round(self.cfg.warmup_epochs * self.steps_per_epoch)
        f = lr_factor(self.global_step, total, warmup)
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * f

    def clip(self, optimizer: torch.optim.Optimizer) -> None:
        if self.cfg.grad_clip > 0:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)

    def reduce(self, totals: torch.Tensor) -> EpochStats:
        totals = dist.all_reduce_sum(totals)
        loss, correct, n = totals.tolist()
        return EpochStats(loss / max(1.0, n), correct / max(1.0, n))


# -- the whole run ---------------------------------------------------------------------------


def _loader(
    dataset: ImageDataset, sampler: Any, cfg: TrainConfig, device: torch.device
) -> torch.utils.data.DataLoader:
    workers = cfg.workers
    if workers < 0:
        cpus = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
        # On a small CPU box the model needs every core; on a GPU box decoding is the bottleneck.
        workers = min(8, cpus) if device.type == "cuda" else (0 if cpus <= 4 else min(4, cpus // 2))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )


def load_resume_config(run_dir: Path) -> TrainConfig:
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FtedgeError(f"cannot resume: {cfg_path} does not exist")
    return build_config(TrainConfig, load_yaml(cfg_path))


def train(cfg: TrainConfig, *, resume: str | Path | None = None) -> TrainResult:
    """Fine-tune per ``cfg`` (or continue the run in ``resume``) and return its directory."""
    # 1. Process set-up -----------------------------------------------------------------------
    ddp = dist.init()
    if resume is not None:
        resume_dir = Path(resume).resolve()
        cfg = load_resume_config(resume_dir)
    else:
        resolve_backbone(cfg.model)  # a bad --model fails before any data is written or scanned
        cfg = resolve_config(cfg)
    device = pick_device(cfg.device, ddp.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # cudnn autotunes convolution algorithms for the (fixed) input shape.
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    elif ddp.world_size > 1 and device.type == "cpu":
        # Each process gets its share of the cores instead of all of them fighting.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // ddp.world_size))
    torch.manual_seed(cfg.seed)
    main = ddp.rank == 0

    # 2. Data and model -----------------------------------------------------------------------
    splits = scan_image_folder(
        cfg.data or "",
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.seed,
    )
    classes = splits.classes
    source = resolve_backbone(cfg.model)
    head_spec = HeadSpec(len(classes), cfg.head_hidden, cfg.dropout)
    built = build_classifier(source, head_spec)
    spec = built.preprocess
    if cfg.image_size is not None:
        spec = dataclasses.replace(spec, input_size=(3, cfg.image_size, cfg.image_size))
    model = built.model
    model.freeze_backbone(cfg.unfreeze if cfg.unfreeze_epoch == 0 else 0)
    augment, cache = plan(cfg)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)

    if resume is not None:
        run_dir = resume_dir
    else:
        # Rank 0 names the run; the others learn it (they read best.safetensors at the end).
        run_dir = dist.broadcast_object(new_run_dir(cfg) if main else None)
    meta = {
        "classes": classes,
        "backbone": source.to_dict(),
        "head": head_spec.to_dict(),
        "num_features": model.num_features,
        "preprocessing": spec.to_dict(),
        "config": cfg.to_dict(),
        "config_sha256": config_sha256(cfg.to_dict()),
        "data": {"root": splits.root, "splits": "splits.json", "skipped": len(splits.skipped)},
    }
    if main and resume is None:
        save_yaml(cfg, run_dir / "config.yaml")
        splits.save(run_dir / "splits.json")
        point_latest(run_dir)

    optimizer = make_optimizer(model, cfg, device)
    amp = amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None

    # 3. Cached features or the full pipeline ---------------------------------------------------
    eval_tf = eval_transform(spec)
    train_tf = eval_tf
    if augment:
        train_tf = train_transform(
            spec, hflip=cfg.hflip, crop_scale=cfg.crop_scale, color_jitter=cfg.color_jitter
        )

    def local(name: str) -> list[int]:  # this rank's share of an evaluation split
        return shard(len(splits.split(name)), ddp.rank, ddp.world_size)

    def dataset(name: str, transform: Any, indices: list[int] | None = None) -> ImageDataset:
        samples = splits.split(name)
        chosen = samples if indices is None else [samples[i] for i in indices]
        return ImageDataset(splits, chosen, transform)

    n_train = len(splits.train)
    sampler = EpochShardSampler(n_train, seed=cfg.seed, rank=ddp.rank, world_size=ddp.world_size)
    ctx = TrainContext(
        cfg, device, memory_format, amp, scaler, math.ceil(len(sampler) / cfg.batch_size)
    )
    feats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    t_features = time.perf_counter()
    loaders: dict[str, torch.utils.data.DataLoader] = {}
    extractor = FrozenExtractor(model.backbone)
    if cache:
        # Each rank embeds only its shard of each split; test features wait for the test.
        for name in ("train", "val"):
            idx = local(name)
            loader = _loader(dataset(name, eval_tf, idx), None, cfg, device)
            feats[name] = extract_features(
                extractor, loader, ctx, name, cfg.feature_cache_dir, show=main
            )
    else:
        loaders["train"] = _loader(dataset("train", train_tf), sampler, cfg, device)
        for name in ("val", "test"):
            loaders[name] = _loader(dataset(name, eval_tf, local(name)), None, cfg, device)

    feature_seconds = time.perf_counter() - t_features if cache else 0.0

    def trainable() -> nn.Module:
        """The module that learns, compiled and DDP-wrapped as configured."""
        m: nn.Module = model.head if cache else model
        if cfg.compile:
            m = torch.compile(m)  # type: ignore[assignment]
        return dist.wrap(m, device)

    # 4. Epochs -----------------------------------------------------------------------------------
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"val_accuracy": -1.0, "epoch": -1, "stale": 0}
    start_epoch = 0
    if resume is not None:
        state = _load_resume_state(run_dir)
        if cfg.unfreeze and state["epoch"] + 1 > cfg.unfreeze_epoch > 0:
            model.freeze_backbone(cfg.unfreeze)
        from ftedge.models.registry import read_state_dict

        model.load_state_dict(read_state_dict(run_dir / "last.safetensors"))
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        start_epoch, history, best = state["epoch"] + 1, state["history"], state["best"]
        ctx.global_step = state["global_step"]
        if best["stale"] >= cfg.patience > 0 or start_epoch >= cfg.epochs:
            start_epoch = cfg.epochs  # the run had already finished training: just test
    wrapped = trainable()

    from tqdm.auto import tqdm

    bar = tqdm(
        range(start_epoch, cfg.epochs),
        desc="epochs",
        disable=not main,
        file=sys.stderr,
        initial=start_epoch,
        total=cfg.epochs,
    )
    stopped_early = False
    for epoch in bar:
        t0 = time.perf_counter()
        if cfg.unfreeze and epoch == cfg.unfreeze_epoch and epoch > 0:
            # Staged unfreezing: the top blocks start training now, at the backbone rate;
            # DDP must be rebuilt because it registers trainable parameters at construction.
            model.freeze_backbone(cfg.unfreeze)
            wrapped = trainable()
        # Seed per epoch (not once): a resumed run replays epoch e exactly.
        torch.manual_seed(cfg.seed * 7919 + epoch)
        sampler.set_epoch(epoch)
        if cache:
            order = local_order(len(feats["train"][1]), len(sampler), cfg.seed, epoch)
            tr = run_epoch_cached(wrapped, *feats["train"], order, optimizer, ctx)
            va = run_epoch_cached(model.head, *feats["val"], None, None, ctx)
        else:
            tr = run_epoch_full(wrapped, loaders["train"], optimizer, ctx)
            va = run_epoch_full(model, loaders["val"], None, ctx)
        history.append(
            {
                "epoch": epoch,
                "train_loss": round(tr.loss, 6),
                "train_accuracy": round(tr.accuracy, 6),
                "val_loss": round(va.loss, 6),
                "val_accuracy": round(va.accuracy, 6),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        improved = va.accuracy > best["val_accuracy"]
        best = (
            {"val_accuracy": va.accuracy, "epoch": epoch, "stale": 0}
            if improved
            else best | {"stale": best["stale"] + 1}
        )
        if main:
            epoch_meta = meta | {"epoch": epoch, "val_accuracy": va.accuracy}
            if improved:
                save_checkpoint(run_dir / "best", model, epoch_meta)
            # `last` carries the optimizer state and is written after `best`: a kill between
            # the two replays this epoch on resume, which rewrites both identically.
            train_state = {
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else {},
                "epoch": epoch,
                "global_step": ctx.global_step,
                "history": history,
                "best": best,
            }
            save_checkpoint(run_dir / "last", model, epoch_meta, train_state=train_state)
        bar.set_postfix(
            loss=f"{tr.loss:.3f}", val_acc=f"{va.accuracy:.3f}", best=f"{best['val_accuracy']:.3f}"
        )
        if cfg.patience and best["stale"] >= cfg.patience:
            stopped_early = True
            break
    bar.close()

    # 5. Test the best checkpoint -----------------------------------------------------------------
    from ftedge.models.registry import read_state_dict

    dist.barrier()  # rank 0 has written best.safetensors; every rank reads it (shared disk)
    model.load_state_dict(read_state_dict(run_dir / "best.safetensors"))
    model.eval()
    if cache:
        loader = _loader(dataset("test", eval_tf, local("test")), None, cfg, device)
        feats["test"] = extract_features(
            extractor, loader, ctx, "test", cfg.feature_cache_dir, show=main
        )
        logits, labels_t = predict_cached(model.head, *feats["test"], ctx)
    else:
        logits, labels_t = predict_full(model, loaders["test"], ctx)
    preds = dist.gather_predictions(local("test"), logits.argmax(1).cpu().numpy(), len(splits.test))
    truth = np.array([s.label for s in splits.test])
    report = classification_report(truth, preds, classes)
    loss_n = dist.all_reduce_sum(
        torch.tensor(
            [F.cross_entropy(logits, labels_t, reduction="sum").item(), len(labels_t)],
            dtype=torch.float64,
        )
    )
    report["loss"] = float(loss_n[0] / max(1.0, float(loss_n[1])))
    metrics = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "run_dir": str(run_dir),
        "epochs": history,
        "best_epoch": best["epoch"],
        "best_val_accuracy": best["val_accuracy"],
        "stopped_early": stopped_early,
        "test": report,
        "cached_features": cache,
        "augment": augment,
        "device": str(device),
        "world_size": ddp.world_size,
        "amp": str(amp).removeprefix("torch.") if amp else "off",
        "data": {
            "root": splits.root,
            "train": len(splits.train),
            "val": len(splits.val),
            "test": len(splits.test),
            "skipped": len(splits.skipped),
            "skipped_files": splits.skipped[:20],
        },
        # Epoch seconds exclude the one-off feature extraction; total_seconds includes it.
        "feature_seconds": round(feature_seconds, 3),
        "total_seconds": round(feature_seconds + sum(e["seconds"] for e in history), 3),
    }
    if main:
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        # The best checkpoint's sidecar learns its test accuracy (weights untouched).
        best_meta = read_meta(run_dir, "best")
        best_meta.pop("_json_path", None)
        best_meta["test_accuracy"] = report["accuracy"]
        atomic_write_text(run_dir / "best.json", json.dumps(best_meta, indent=2) + "\n")
        plot_curves(history, run_dir / "curves.png")
        plot_confusion(report["confusion_matrix"], classes, run_dir / "confusion_matrix.png")
    dist.barrier()
    dist.shutdown()
    return TrainResult(run_dir, metrics)


def local_order(n_local: int, steps_len: int, seed: int, epoch: int) -> list[int]:
    """Per-epoch permutation of this rank's cached rows, padded to the common length."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n_local, generator=g).tolist()
    return (order * math.ceil(steps_len / max(1, n_local)))[:steps_len]


@torch.inference_mode()
def predict_full(
    model: nn.Module, loader: torch.utils.data.DataLoader, ctx: TrainContext
) -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = [], []
    for x, y in loader:
        x = x.to(ctx.device, non_blocking=True, memory_format=ctx.memory_format)
        with ctx.autocast():
            logits.append(model(x).float())
        labels.append(y.to(ctx.device))
    return torch.cat(logits), torch.cat(labels)


@torch.inference_mode()
def predict_cached(
    head: nn.Module, feats: torch.Tensor, labels: torch.Tensor, ctx: TrainContext
) -> tuple[torch.Tensor, torch.Tensor]:
    return head(feats.to(ctx.device)).float(), labels.to(ctx.device)


def _load_resume_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "last.state.pt"
    if not path.is_file() or not (run_dir / "last.json").is_file():
        raise FtedgeError(f"cannot resume {run_dir}: no completed epoch was saved")
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise FtedgeError(f"unreadable training state {path}: {str(e).splitlines()[0]}") from None
    return state
