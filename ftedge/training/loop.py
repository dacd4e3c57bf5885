"""The fine-tuning run, readable top to bottom: no Trainer framework.

``train(cfg)`` does, in order:
1. set-up: DDP under torchrun, the resolved config, device, seeds, the run directory;
2. data: scan the image folder into train/val/test splits;
3. model: pretrained backbone, new head, frozen blocks; optimizer and precision;
4. epochs: train, validate, keep the best checkpoint by val accuracy, save ``last`` (with the
   optimizer state) for ``--resume``, stop early on patience. An epoch runs either on cached
   backbone features or on full images (``ftedge.training.epochs``);
5. test: the best checkpoint on the test split; metrics.json, plots, and a summary.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftedge.checkpoint import CheckpointMeta, DataRecord, config_sha256, save_checkpoint
from ftedge.config import TrainConfig
from ftedge.data.folders import DatasetSplits, scan_image_folder
from ftedge.data.torch_data import EpochShardSampler
from ftedge.data.transforms import eval_transform, train_transform
from ftedge.errors import FtedgeError, raise_if_terminated
from ftedge.files import point_latest
from ftedge.models import FtedgeClassifier, HeadSpec, build_classifier, resolve_backbone
from ftedge.runtime.preprocess import PreprocessSpec
from ftedge.training import distributed as dist
from ftedge.training.epochs import CachedFeatures, EpochSource, FullImages, RunData
from ftedge.training.recipe import Schedule, make_schedule
from ftedge.training.results import (
    METRICS_SCHEMA_VERSION,
    Phases,
    TestReference,
    data_summary,
    evaluate_on_test,
    write_results,
)
from ftedge.training.resume import BestSoFar, EpochRecord, TrainState, check_resumable, restore
from ftedge.training.run_dir import (
    check_run_dir_free,
    load_run_config,
    lock_run_dir,
    release_run_dir,
    start_run_dir,
)
from ftedge.training.setup import (
    EpochMode,
    amp_dtype,
    choose_epoch_mode,
    configure_torch,
    resolve_config,
)
from ftedge.training.steps import StepRunner, make_optimizer
from ftedge.training.tuning import model_head_spec, tuned_epoch_record, tuning_for_run


@dataclass(frozen=True)
class TrainResult:
    """A finished run: its directory and its metrics.json document."""

    run_dir: Path
    metrics: dict[str, Any]

    @property
    def test_accuracy(self) -> float:
        return float(self.metrics["test"]["accuracy"])


def train(
    cfg: TrainConfig | None = None, *, resume: str | Path | None = None, exist_ok: bool = False
) -> TrainResult:
    """Fine-tune per ``cfg``, or continue the killed run in directory ``resume``.

    A resumed run uses the config saved in its directory, so give one or the other. Build a
    config from keyword arguments: ``train(TrainConfig(data="photos/", epochs=10))``.
    ``exist_ok`` replaces a finished run of the same name (otherwise refused).
    Under torchrun every process calls this; rank 0 writes the files.
    """
    phases = Phases()
    ddp = dist.init()
    cfg, run_dir = _resolve(cfg, resume)
    if run_dir is None:
        check_run_dir_free(Path(cfg.out), cfg.name, exist_ok)  # before any work is done
    device = configure_torch(cfg, ddp)
    phases.mark("setup")
    splits = scan_image_folder(
        cfg.data or "",
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.seed,
    )
    phases.mark("data")

    model, meta = _build_model(cfg, splits)
    mode = choose_epoch_mode(cfg)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    run_dir = run_dir or start_run_dir(cfg, splits, exist_ok)
    sampler = EpochShardSampler(
        len(splits.train), seed=cfg.seed, rank=ddp.rank, world_size=ddp.world_size
    )
    schedule, run_cfg = _schedule(cfg, len(sampler), splits)
    amp = amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    data = _run_data(run_cfg, splits, meta.preprocessing, mode, device, ddp)
    steps = StepRunner(run_cfg, device, memory_format, amp, scaler, schedule.steps_per_epoch)
    phases.mark("model")
    source: EpochSource = (
        CachedFeatures(data, steps, sampler, model)
        if mode.cache_features
        else FullImages(data, steps, sampler)
    )
    phases.mark("features")
    tuning = None
    if isinstance(source, CachedFeatures) and cfg.tune == "auto" and ddp.world_size == 1:
        tuning = _tuning(source, model, run_dir, cfg.seed, resumed=resume is not None)
        meta = dataclasses.replace(meta, head=model_head_spec(model, meta.head))
    optimizer = make_optimizer(model, cfg, device)
    state = (
        restore(run_dir, model, optimizer, scaler, (cfg.unfreeze, cfg.unfreeze_epoch))
        if resume is not None
        else None
    )
    run = _Run(run_cfg, run_dir, model, optimizer, steps, source, meta, device, ddp.rank == 0)
    run.schedule = schedule
    if tuning is not None:
        progress = _tuned_epoch(run, tuning) if state is None else _finished(state)
    else:
        progress = _run_epochs(run, _progress_from(state, run_cfg, steps))
    phases.mark("tuning" if tuning is not None else "epochs")
    metrics = _test_and_write(run, data, progress, mode, amp, splits, ddp, tuning, phases)
    dist.barrier()
    dist.shutdown()
    release_run_dir(run_dir)
    return TrainResult(run_dir, metrics)


def _test_and_write(
    run: _Run,
    data: RunData,
    progress: _Progress,
    mode: EpochMode,
    amp: torch.dtype | None,
    splits: DatasetSplits,
    ddp: dist.DDPInfo,
    tuning: dict[str, Any] | None,
    phases: Phases,
) -> dict[str, Any]:
    """Test the best checkpoint; rank 0 writes metrics.json, the plots, the test logits."""
    from ftedge.models.registry import read_state_dict

    dist.barrier()  # rank 0 has written best.safetensors; every rank reads it (shared disk)
    run.model.load_state_dict(read_state_dict(run.run_dir / "best.safetensors"))
    report, logits = evaluate_on_test(run.model, run.source, data)
    metrics = _metrics(run, progress, report, mode, amp, splits, ddp.world_size)
    metrics["tuning"] = tuning
    phases.mark("test")
    raise_if_terminated()  # a terminated run writes no results: a resume tests it again
    if run.main:
        ref = _reference(run, logits, amp, splits, ddp.world_size)
        write_results(run.run_dir, metrics, splits.classes, phases, ref)
    return metrics


def _resolve(cfg: TrainConfig | None, resume: str | Path | None) -> tuple[TrainConfig, Path | None]:
    """(the run's resolved config, its existing directory when resuming)."""
    if resume is not None:
        if cfg is not None:
            raise FtedgeError("a resumed run uses its saved config: pass a config or resume")
        run_dir = Path(resume).resolve()
        # Checked before any data is scanned or a feature computed: a run stopped before its
        # first epoch, or whose last checkpoint does not match its sha256, fails at once.
        check_resumable(run_dir)
        if dist.rank() == 0:
            lock_run_dir(run_dir)
        return load_run_config(run_dir), run_dir
    if cfg is None:
        raise FtedgeError("train() needs a TrainConfig (or resume=RUN_DIR)")
    resolve_backbone(cfg.model)  # a bad --model fails before any data is written or scanned
    return resolve_config(cfg), None


def _schedule(
    cfg: TrainConfig, n_train: int, splits: DatasetSplits
) -> tuple[Schedule, TrainConfig]:
    """The schedule for this data size, and the config with it applied (recipe.py)."""
    schedule = make_schedule(
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        patience=cfg.patience,
        min_steps=cfg.min_steps,
        n_train=n_train,
        n_val=len(splits.val),
        num_classes=len(splits.classes),
    )
    run_cfg = dataclasses.replace(
        cfg, batch_size=schedule.batch_size, epochs=schedule.epochs, patience=schedule.patience
    )
    return schedule, run_cfg


def _build_model(
    cfg: TrainConfig, splits: DatasetSplits
) -> tuple[FtedgeClassifier, CheckpointMeta]:
    """The classifier (pretrained backbone, new head, blocks frozen) and its checkpoint sidecar."""
    source = resolve_backbone(cfg.model)
    head = HeadSpec(len(splits.classes), cfg.head_hidden, cfg.dropout, cfg.taps)
    built = build_classifier(source, head)
    head = dataclasses.replace(head, taps=len(built.model.taps))  # what this backbone allows
    spec = built.preprocess
    if cfg.image_size is not None:
        spec = dataclasses.replace(spec, input_size=(3, cfg.image_size, cfg.image_size))
    model = built.model
    model.freeze_backbone(cfg.unfreeze if cfg.unfreeze_epoch == 0 else 0)
    meta = CheckpointMeta(
        classes=tuple(splits.classes),
        backbone=source,
        head=head,
        num_features=model.num_features,
        preprocessing=spec,
        config=cfg.to_dict(),
        config_sha256=config_sha256(cfg.to_dict()),
        data=DataRecord(splits.root, "splits.json", len(splits.skipped)),
        epoch=-1,
        val_accuracy=-1.0,
    )
    return model, meta


def _run_data(
    cfg: TrainConfig,
    splits: DatasetSplits,
    spec: PreprocessSpec,
    mode: EpochMode,
    device: torch.device,
    ddp: dist.DDPInfo,
) -> RunData:
    eval_tf = eval_transform(spec)
    train_tf = eval_tf
    if mode.augment:
        train_tf = train_transform(
            spec, hflip=cfg.hflip, crop_scale=cfg.crop_scale, color_jitter=cfg.color_jitter
        )
    return RunData(splits, cfg, device, train_tf, eval_tf, ddp.rank, ddp.world_size)


# -- epochs -----------------------------------------------------------------------------------
@dataclass
class _Run:
    """The pieces of one run the epoch loop works with."""

    cfg: TrainConfig
    run_dir: Path
    model: FtedgeClassifier
    optimizer: torch.optim.Optimizer
    steps: StepRunner
    source: EpochSource
    meta: CheckpointMeta
    device: torch.device
    main: bool  # rank 0: writes the files
    schedule: Schedule | None = None

    def learner(self) -> nn.Module:
        """The module that learns, compiled and DDP-wrapped as configured."""
        m = self.source.learner(self.model)
        if self.cfg.compile:
            m = torch.compile(m)  # type: ignore[assignment]
        return dist.wrap(m, self.device)


@dataclass
class _Progress:
    start_epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    best: BestSoFar = field(default_factory=BestSoFar)
    stopped_early: bool = False


def _tuning(
    source: CachedFeatures, model: FtedgeClassifier, run_dir: Path, seed: int, resumed: bool
) -> dict[str, Any]:
    """Tune the head on the cached features (or, resuming, rebuild the head chosen before)."""
    return tuning_for_run(source.train, source.val, model, run_dir, seed, resumed=resumed)


def _tuned_epoch(run: _Run, tuning: dict[str, Any]) -> _Progress:
    """The tuned head, fitted already, recorded as epoch 0 and saved as best and last."""
    assert isinstance(run.source, CachedFeatures)
    record, best = tuned_epoch_record(run.source, run.model, tuning)
    progress = _Progress(0, [record], best)
    if run.main:
        _save_epoch(run, progress, 0, best.val_accuracy, True)
    return progress


def _finished(state: TrainState) -> _Progress:
    """A resumed run whose training had finished: only the test is left."""
    return _Progress(state.epoch + 1, list(state.history), state.best)


def _progress_from(state: TrainState | None, cfg: TrainConfig, steps: StepRunner) -> _Progress:
    if state is None:
        return _Progress()
    steps.global_step = state.global_step
    start = state.epoch + 1
    if state.best.stale >= cfg.patience > 0 or start >= cfg.epochs:
        start = cfg.epochs  # the run had already finished training: just test
    return _Progress(start, list(state.history), state.best)


def _run_epochs(run: _Run, progress: _Progress) -> _Progress:
    from tqdm.auto import tqdm

    cfg = run.cfg
    learner = run.learner()
    epochs = range(progress.start_epoch, cfg.epochs)
    bar = tqdm(
        epochs,
        desc="epochs",
        disable=not run.main,
        file=sys.stderr,
        initial=progress.start_epoch,
        total=cfg.epochs,
    )
    for epoch in bar:
        # A SIGTERM that library code swallowed stops the run here, resumable from `last`.
        raise_if_terminated()
        t0 = time.perf_counter()
        if cfg.unfreeze and epoch == cfg.unfreeze_epoch and epoch > 0:
            # Staged unfreezing: the top blocks start training now, at the backbone rate;
            # DDP must be rebuilt because it registers trainable parameters at construction.
            run.model.freeze_backbone(cfg.unfreeze)
            learner = run.learner()
        # Seed per epoch (not once): a resumed run replays epoch e exactly.
        torch.manual_seed(cfg.seed * 7919 + epoch)
        tr = run.source.train_epoch(learner, run.optimizer, epoch)
        if not math.isfinite(tr.loss):
            raise FtedgeError(
                f"training diverged at epoch {epoch}: the loss is {tr.loss} "
                "(lower --lr, or set --grad-clip)"
            )
        va = run.source.validate(run.model)
        record = EpochRecord(
            epoch=epoch,
            train_loss=round(tr.loss, 6),
            train_accuracy=round(tr.accuracy, 6),
            val_loss=round(va.loss, 6),
            val_accuracy=round(va.accuracy, 6),
            lr=run.optimizer.param_groups[0]["lr"],
            seconds=round(time.perf_counter() - t0, 3),
        )
        progress.history.append(record)
        # Small val splits: rank epochs by the mean of the last few val accuracies (recipe.py).
        window = run.schedule.smooth_val if run.schedule else 1
        score = sum(e.val_accuracy for e in progress.history[-window:]) / len(
            progress.history[-window:]
        )
        progress.best = progress.best.after(epoch, va.accuracy, va.loss, score)
        improved = progress.best.epoch == epoch
        if run.main:
            _save_epoch(run, progress, epoch, va.accuracy, improved)
        bar.set_postfix(
            loss=f"{tr.loss:.3f}",
            val_acc=f"{va.accuracy:.3f}",
            best=f"{progress.best.val_accuracy:.3f}",
        )
        if cfg.patience and progress.best.stale >= cfg.patience:
            progress.stopped_early = True
            break
    bar.close()
    return progress


def _save_epoch(
    run: _Run, progress: _Progress, epoch: int, val_accuracy: float, improved: bool
) -> None:
    meta = dataclasses.replace(run.meta, epoch=epoch, val_accuracy=val_accuracy)
    if improved:
        save_checkpoint(run.run_dir / "best", run.model, meta)
    # `last` carries the optimizer state and is written after `best`: a kill between the two
    # replays this epoch on resume, which rewrites both identically.
    scaler = run.steps.scaler
    state = TrainState(
        epoch=epoch,
        global_step=run.steps.global_step,
        history=tuple(progress.history),
        best=progress.best,
        optimizer=run.optimizer.state_dict(),
        scaler=scaler.state_dict() if scaler is not None else {},
    )
    save_checkpoint(run.run_dir / "last", run.model, meta, train_state=state.to_dict())
    point_latest(run.run_dir)  # from its first saved epoch on, the run can be resumed/exported


# -- results ----------------------------------------------------------------------------------
def _reference(
    run: _Run, logits: Any, amp: torch.dtype | None, splits: DatasetSplits, world_size: int
) -> TestReference | None:
    """The test logits for the export to reuse: float32 on a CPU, one process, all of test."""
    if run.device.type != "cpu" or amp is not None or world_size != 1:
        return None
    if len(logits) != len(splits.test):
        return None
    src = run.source
    features = src.extractor.record() if isinstance(src, CachedFeatures) else {"backend": "torch"}
    computed_by = {"features": features, "head": "torch"}
    return TestReference(logits, [(s.path, s.label) for s in splits.test], computed_by)


def _metrics(
    run: _Run,
    progress: _Progress,
    report: dict[str, Any],
    mode: EpochMode,
    amp: torch.dtype | None,
    splits: DatasetSplits,
    world_size: int,
) -> dict[str, Any]:
    """The metrics.json document."""
    history = [e.to_dict() for e in progress.history]
    extraction = run.source.extraction_seconds
    folding = backend = None
    if isinstance(run.source, CachedFeatures):
        ex = run.source.extractor
        folding = {"pairs": ex.folded, "max_abs_diff": ex.max_abs_diff}
        backend = ex.record()
    return {
        "schema_version": METRICS_SCHEMA_VERSION,
        "run_dir": str(run.run_dir),
        "epochs": history,
        "best_epoch": progress.best.epoch,
        "best_val_accuracy": progress.best.val_accuracy,
        "stopped_early": progress.stopped_early,
        "test": report,
        "cached_features": mode.cache_features,
        "augment": mode.augment,
        "device": str(run.device),
        "world_size": world_size,
        "amp": str(amp).removeprefix("torch.") if amp else "off",
        "data": data_summary(splits),
        # Epoch seconds exclude the one-off feature extraction; total_seconds includes it.
        "feature_seconds": round(extraction, 3),
        "total_seconds": round(extraction + sum(e.seconds for e in progress.history), 3),
        "batchnorm_folding": folding,  # cached features: BN pairs folded, max diff vs unfolded
        "feature_backend": backend,  # cached features: torch, openvino or onnxruntime
        # What the head sees: the pooled features, then each tap's pooled output (widths).
        "features": {"taps": list(run.model.taps), "groups": list(run.model.feature_groups)},
        "schedule": run.schedule.to_dict() if run.schedule else None,
    }
