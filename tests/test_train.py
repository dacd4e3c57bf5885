"""The training loop on real image folders: freezing, cached features, resume, corrupt data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ftedge.checkpoint import (
    CheckpointMeta,
    load_checkpoint,
    read_checkpoint_meta,
    read_meta,
    resolve_checkpoint,
)
from ftedge.config import TrainConfig
from ftedge.errors import FtedgeError
from ftedge.training.loop import train

FIXTURES = Path(__file__).parent / "fixtures"
# Fixed-length epoch runs: no minimum step count, no head tuning (tests/test_recipe.py has those).
BASE = dict(
    image_size=64, batch_size=16, workers=0, epochs=3, lr=1e-2, patience=0, min_steps=0, tune="off"
)


def _cfg(data, out, name, **kw) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), name=name, **(BASE | kw))


def _comparable(metrics: dict) -> dict:
    epochs = [{k: v for k, v in e.items() if k != "seconds"} for e in metrics["epochs"]]
    return {"epochs": epochs, "test": metrics["test"], "best_epoch": metrics["best_epoch"]}


def test_tiny_run_layout(tiny_run):
    for f in (
        "best.safetensors",
        "best.json",
        "last.safetensors",
        "last.json",
        "last.state.pt",
        "splits.json",
        "metrics.json",
        "config.yaml",
        "curves.png",
        "confusion_matrix.png",
    ):
        assert (tiny_run / f).is_file(), f
    assert (tiny_run.parent / "latest").resolve() == tiny_run.resolve()
    # Atomic writes go through 0600 temp files: the results still get the user's umask.
    umask = os.umask(0)
    os.umask(umask)
    for f in ("best.safetensors", "best.json", "metrics.json", "config.yaml"):
        assert (tiny_run / f).stat().st_mode & 0o777 == 0o666 & ~umask, f
    m = json.loads((tiny_run / "metrics.json").read_text())
    for e in m["epochs"]:
        assert {
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "seconds",
        } <= set(e)
    assert {"accuracy", "per_class", "confusion_matrix"} <= set(m["test"])
    assert np.asarray(m["test"]["confusion_matrix"]).sum() == 24
    assert m["test"]["accuracy"] >= 0.8  # 3 very different Fashion-MNIST classes
    meta = read_meta(tiny_run)
    assert meta["preprocessing"]["input_size"] == [3, 64, 64]
    assert meta["test_accuracy"] == m["test"]["accuracy"]


def test_frozen_parameters_and_bn_statistics_are_bit_identical(small_data, tmp_path):
    """Uncached path with augmentation: every batch passes through the frozen backbone."""
    from ftedge.models import HeadSpec, build_classifier, resolve_backbone

    ref = build_classifier(resolve_backbone("tf_efficientnet_lite0"), HeadSpec(3)).model
    before = {k: v.clone() for k, v in ref.backbone.state_dict().items()}
    result = train(_cfg(small_data, tmp_path, "aug", augment="on", epochs=2))
    assert result.metrics["cached_features"] is False and result.metrics["augment"] is True
    after = load_checkpoint(result.run_dir, "last").model.backbone.state_dict()
    assert before.keys() == after.keys()
    assert any("running_mean" in k for k in before)
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_unfreeze_top_block_trains_only_that_block(small_data, tmp_path):
    from ftedge.models import HeadSpec, build_classifier, resolve_backbone
    from ftedge.models.classifier import backbone_units

    ref = build_classifier(resolve_backbone("tf_efficientnet_lite0"), HeadSpec(3)).model
    result = train(_cfg(small_data, tmp_path, "unfreeze", unfreeze=1, unfreeze_epoch=1, epochs=2))
    assert result.metrics["augment"] is True and not result.metrics["cached_features"]
    got = load_checkpoint(result.run_dir, "last").model
    ref_units, got_units = backbone_units(ref.backbone), backbone_units(got.backbone)
    changed = [
        any(
            not torch.equal(a, b)
            for m1, m2 in zip(u1, u2, strict=True)
            for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True)
        )
        for u1, u2 in zip(ref_units, got_units, strict=True)
    ]
    assert changed[-1] and not any(changed[:-1])


def test_cached_features_match_the_full_loop_and_save_a_full_model(small_data, tmp_path):
    cached = train(_cfg(small_data, tmp_path, "cached", epochs=3))
    full = train(_cfg(small_data, tmp_path, "full", epochs=3, cache_features="off"))
    assert cached.metrics["cached_features"] and not full.metrics["cached_features"]
    for a, b in zip(cached.metrics["epochs"], full.metrics["epochs"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-3)
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=1e-6)
    assert cached.metrics["test"]["accuracy"] == full.metrics["test"]["accuracy"]
    m1 = load_checkpoint(cached.run_dir).model
    m2 = load_checkpoint(full.run_dir).model
    assert m1.state_dict().keys() == m2.state_dict().keys()
    x = torch.randn(4, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(m1(x), m2(x), atol=1e-3, rtol=1e-3)


def test_corrupt_jpeg_in_training_data_is_skipped_and_counted(small_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    (data / "train" / "bag" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        result = train(_cfg(data, tmp_path, "corrupt", epochs=1))
    assert result.metrics["data"]["skipped"] == 1
    assert result.metrics["data"]["skipped_files"] == ["train/bag/broken.jpg"]


def _train_cmd(data: Path, out: Path, name: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ftedge",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--name",
        name,
        "--image-size",
        "64",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--epochs",
        "4",
        "--augment",
        "on",
        "--patience",
        "0",
        "--min-steps",
        "0",
        "--threads",
        "1",
    ]


@pytest.mark.slow
def test_resume_after_sigkill_reproduces_the_uninterrupted_run(small_data, tmp_path):
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    ref = subprocess.run(
        _train_cmd(small_data, tmp_path, "ref"), env=env, capture_output=True, text=True
    )
    assert ref.returncode == 0, ref.stderr[-2000:]
    proc = subprocess.Popen(
        _train_cmd(small_data, tmp_path, "killed"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = tmp_path / "killed" / "last.json"
    deadline = time.time() + 300
    # Kill as soon as epoch 1 is saved: the process is then inside epoch 2.
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and json.loads(last.read_text()).get("epoch", -1) >= 1:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    res = subprocess.run(
        [sys.executable, "-m", "ftedge", "train", "--resume", str(tmp_path / "killed")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    a = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    b = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert len(b["epochs"]) == 4
    assert _comparable(a) == _comparable(b)


def test_a_swallowed_sigterm_stops_training_at_the_next_epoch(small_data, tmp_path, monkeypatch):
    """A SIGTERM whose exception library code swallowed (here: during epoch 0's save) stops
    the run before epoch 1 and before any results are written; the run then resumes."""
    import contextlib

    from ftedge import errors
    from ftedge.training import loop

    save = loop._save_epoch

    def save_then_swallow(*args, **kwargs):
        save(*args, **kwargs)
        with contextlib.suppress(BaseException):  # what a library's bare except does
            errors.request_termination()

    monkeypatch.setattr(loop, "_save_epoch", save_then_swallow)
    cfg = _cfg(small_data, tmp_path, "swallowed", epochs=2)
    try:
        with pytest.raises(errors.Terminated):
            train(cfg)
    finally:
        errors._terminate_requested[0] = False
    run = tmp_path / "swallowed"
    assert json.loads((run / "last.json").read_text())["epoch"] == 0
    assert not (run / "metrics.json").exists()
    monkeypatch.setattr(loop, "_save_epoch", save)
    assert len(train(resume=run).metrics["epochs"]) == 2


@pytest.mark.needs_cuda
def test_cuda_amp_channels_last_with_unfrozen_blocks(small_data, tmp_path):
    result = train(_cfg(small_data, tmp_path, "cuda", unfreeze=2, epochs=2, device="cuda"))
    m = result.metrics
    assert m["device"].startswith("cuda") and m["amp"] in ("bfloat16", "float16")
    assert not m["cached_features"] and m["test"]["accuracy"] >= 0.5
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.isfinite(load_checkpoint(result.run_dir).model(x)).all()


def test_checkpoint_sidecar_is_typed_and_names_its_files(tiny_run):
    loaded = load_checkpoint(tiny_run)
    assert loaded.json_path == tiny_run / "best.json"
    assert loaded.path == tiny_run / "best.safetensors"
    assert isinstance(loaded.info, CheckpointMeta)
    assert loaded.info.preprocessing.input_size == (3, 64, 64)
    assert loaded.info.classes == ("bag", "sneaker", "trouser")
    assert (
        loaded.info.test_accuracy
        == json.loads((tiny_run / "metrics.json").read_text())["test"]["accuracy"]
    )
    on_disk = json.loads((tiny_run / "best.json").read_text())
    assert read_meta(tiny_run) == loaded.meta == on_disk  # nothing added on read


def test_checkpoint_written_by_version_0_1_0_is_still_read(tmp_path):
    """tests/fixtures/checkpoint_v1: a sidecar as ftedge 0.1.0 wrote it (make_fixture.py)."""
    import shutil

    run = tmp_path / "old-run"
    shutil.copytree(FIXTURES / "checkpoint_v1", run)
    on_disk = json.loads((run / "best.json").read_text())
    for where in (run, run / "best.json", run / "best.safetensors"):
        assert resolve_checkpoint(where) == run / "best.json"
        assert read_meta(where) == on_disk
    meta = read_checkpoint_meta(run / "best.json")
    assert meta.classes == ("bag", "sneaker", "trouser")
    assert (meta.backbone.arch, meta.backbone.weights) == ("tf_efficientnet_lite0", "offline")
    assert meta.head.num_classes == 3 and meta.num_features == 1280
    assert meta.preprocessing.input_size == (3, 64, 64) and meta.preprocessing.mean == (0.5,) * 3
    assert (meta.epoch, meta.val_accuracy, meta.test_accuracy) == (
        2,
        0.9583333333333334,
        0.9166666666666666,
    )
    assert meta.config["image_size"] == 64 and meta.data.splits == "splits.json"
    # The weights are found beside the sidecar and pass their sha256 check; this stand-in
    # (a 4 -> 3 linear layer) then does not fit the Lite0 classifier its sidecar describes.
    with pytest.raises(FtedgeError, match="does not fit its metadata"):
        load_checkpoint(run)
    (run / "best.safetensors").write_bytes(b"altered")
    with pytest.raises(FtedgeError, match="do not match their sha256"):
        load_checkpoint(run)


def test_train_takes_a_config_or_a_run_to_resume_not_both(tmp_path):
    with pytest.raises(FtedgeError, match="saved config"):
        train(TrainConfig(), resume=tmp_path)
