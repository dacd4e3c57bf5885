"""A killed detection run resumes from its last saved epoch and ends as an uninterrupted run."""

from __future__ import annotations

import json

import pytest

import ftedge
from ftedge.detection import epochs
from ftedge.errors import FtedgeError
from tests.detect_helpers import write_yolo_shapes


@pytest.mark.slow
def test_resumed_detection_run_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    root = write_yolo_shapes(tmp_path / "shapes", {"train": 12, "val": 4, "test": 4}, size=96)
    common = dict(task="detect", image_size=96, batch_size=6, epochs=3, patience=0)
    whole = ftedge.train(root, out=str(tmp_path / "a"), name="whole", **common)

    save = epochs._save_last

    def save_then_die(run_dir, det, meta, trainer, history, best):
        save(run_dir, det, meta, trainer, history, best)
        if history[-1].epoch == 1:
            raise KeyboardInterrupt  # killed right after the second epoch was saved

    monkeypatch.setattr(epochs, "_save_last", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        ftedge.train(root, out=str(tmp_path / "b"), name="killed", **common)
    monkeypatch.undo()
    killed = tmp_path / "b" / "killed"
    assert not (killed / "metrics.json").exists()

    resumed = ftedge.train(resume=killed)
    a = json.loads((whole.run_dir / "metrics.json").read_text())
    b = resumed.metrics
    assert [e["epoch"] for e in b["epochs"]] == [0, 1, 2]
    assert [e["train_loss"] for e in b["epochs"]] == pytest.approx(
        [e["train_loss"] for e in a["epochs"]], rel=1e-4
    )
    assert b["test"]["map"] == pytest.approx(a["test"]["map"], abs=1e-6)


def test_resume_refuses_a_run_without_a_saved_epoch(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: detect\n")
    with pytest.raises(FtedgeError, match="before its first epoch"):
        ftedge.train(resume=run)
