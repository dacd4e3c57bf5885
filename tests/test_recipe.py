"""The data-size rules of the training recipe and the head tuner on cached features."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from ftedge.checkpoint import load_checkpoint
from ftedge.config import TrainConfig
from ftedge.training.recipe import make_schedule
from ftedge.training.resume import BestSoFar
from ftedge.training.tune import (
    Candidate,
    default_grid,
    fit_head,
    mean_head,
    stratified_folds,
    tune_head,
)


def _schedule(n_train: int, n_val: int, classes: int, **kw):
    args = dict(batch_size=64, epochs=30, patience=8, min_steps=300) | kw
    return make_schedule(n_train=n_train, n_val=n_val, num_classes=classes, **args)


def test_tiny_set_gets_smaller_batches_more_epochs_and_a_smoothed_val_signal():
    s = _schedule(40, 15, 5)  # 8 train / 3 val images per class
    assert s.batch_size == 10 and s.steps_per_epoch == 4
    assert s.epochs * s.steps_per_epoch >= 300 and s.epochs == 75
    assert s.patience * s.steps_per_epoch >= 100
    assert s.smooth_val == 3
    assert _schedule(5, 3, 1).batch_size == 5  # never larger than the data


def test_large_set_keeps_the_configured_recipe():
    s = _schedule(2000, 500, 10)  # the built-in data
    assert (s.batch_size, s.steps_per_epoch, s.epochs, s.patience, s.smooth_val) == (
        64,
        32,
        30,
        8,
        1,
    )
    off = _schedule(40, 15, 5, min_steps=0)
    assert (off.epochs, off.patience) == (30, 8)


def test_equal_scores_go_to_the_lower_val_loss():
    b = BestSoFar().after(0, 0.8, 0.5)
    assert b.after(1, 0.8, 0.6).epoch == 0
    assert b.after(1, 0.8, 0.4).epoch == 1
    assert b.after(1, 0.7, 0.1).stale == 1
    # States saved before scores existed rank by val accuracy.
    assert BestSoFar.from_dict({"val_accuracy": 0.9, "epoch": 3, "stale": 1}).score == 0.9


def _blobs(n_per_class: int, seed: int, classes: int = 3, dim: int = 16, sep: float = 4.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(classes, dim) * sep
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[y] + torch.randn(len(y), dim, generator=g), y


def test_tuner_keeps_the_candidate_with_the_best_validation_score():
    good = Candidate("lbfgs", 1e-2)
    useless = Candidate("adamw", 0.0, lr=1e-9, steps=1)  # left at its random start
    with torch.inference_mode():  # as cached features are
        train, val = _blobs(30, 0), _blobs(25, 1)  # 25 val per class: scored on val
    r = tune_head(train, val, 3, seed=0, grid=[useless, good])
    assert r.protocol == "val" and r.fit_on == "train"
    assert [s.candidate for s in r.scores] == [useless, good]
    assert r.chosen.candidate == good
    assert r.chosen.accuracy == max(s.accuracy for s in r.scores) > r.scores[0].accuracy
    doc = json.loads(json.dumps(r.to_dict()))
    assert doc["chosen"]["name"] == good.name and len(doc["candidates"]) == 2
    # Same inputs, same choice and bit-identical head.
    again = tune_head(train, val, 3, seed=0, grid=[useless, good])
    assert all(
        torch.equal(a, b)
        for a, b in zip(r.head.state_dict().values(), again.head.state_dict().values(), strict=True)
    )


def test_mean_candidate_is_the_linear_heads_averaged():
    lbfgs, adamw = Candidate("lbfgs", 1e-2), Candidate("adamw", 1e-4, 1e-2, 50)
    mlp, mean = Candidate("adamw", 1e-4, 1e-2, 50, (8,)), Candidate("mean", 0.0)
    assert Candidate.from_dict(json.loads(json.dumps(mean.to_dict()))) == mean
    assert default_grid(100)[-1] == mean and not mean.linear and not mlp.linear
    train, val = _blobs(30, 0), _blobs(25, 1)
    r = tune_head(train, val, 3, seed=0, grid=[lbfgs, adamw, mlp, mean])
    heads = [fit_head(c, *train, 3, seed=0) for c in (lbfgs, adamw)]  # the MLP is left out
    with torch.no_grad():
        want = torch.stack([h(val[0]) for h in heads]).mean(0)
        assert torch.allclose(mean_head(heads)(val[0]), want, atol=1e-5)
    score = r.scores[-1]
    assert score.candidate == mean and len(r.scores) == 4
    assert score.accuracy == (want.argmax(1) == val[1]).float().mean().item()
    assert score.loss == pytest.approx(F.cross_entropy(want, val[1]).item(), rel=1e-4)
    with pytest.raises(ValueError, match="single linear"):
        mean_head([fit_head(mlp, *train, 3, seed=0)])


def test_tuner_fits_the_mean_head_on_train_plus_val_when_it_wins_the_k_fold():
    # Overlapping classes, 6 + 3 images each: a near-unregularised L-BFGS head and a barely
    # trained AdamW head each get about half of the held-out folds right, their mean more.
    lbfgs, adamw = Candidate("lbfgs", 1e-3), Candidate("adamw", 1e-4, 1e-2, 30)
    train, val = _blobs(6, 0, sep=1.5), _blobs(3, 10, sep=1.5)
    r = tune_head(train, val, 3, seed=0, grid=[lbfgs, adamw, Candidate("mean", 0.0)])
    assert r.protocol == "kfold" and r.chosen.candidate.kind == "mean"
    assert r.chosen.accuracy > max(s.accuracy for s in r.scores[:2])
    x, y = torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]])
    want = mean_head([fit_head(c, x, y, 3, seed=0) for c in (lbfgs, adamw)])
    assert len(r.head) == 1 and torch.equal(r.head[0].weight, want[0].weight)


def test_small_val_split_is_folded_into_a_k_fold_on_train_plus_val():
    r = tune_head(_blobs(6, 0), _blobs(3, 1), 3, seed=0, grid=[Candidate("lbfgs", 1e-2)])
    assert r.protocol == "kfold" and r.fit_on == "train+val"
    folds = stratified_folds(torch.arange(3).repeat_interleave(9), 5, seed=0)
    assert sorted(torch.cat(folds).tolist()) == list(range(27))


def test_fitted_head_works_on_raw_features():
    """The scaling used while fitting is folded into the first layer."""
    x, y = _blobs(20, 0)
    x = x * 50 + 300  # far from zero mean and unit scale
    for c in (Candidate("lbfgs", 1e-2), Candidate("adamw", 1e-4, 1e-2, 100, (8,))):
        head = fit_head(c, x, y, 3, seed=0)
        with torch.no_grad():
            assert (head(x).argmax(1) == y).float().mean() > 0.95, c.name


@pytest.mark.slow
def test_tuned_run_records_candidates_exports_its_head_and_resumes(small_data, tmp_path):
    from ftedge.training.loop import train

    cfg = TrainConfig(
        data=str(small_data), out=str(tmp_path), name="tuned", image_size=64, workers=0
    )
    m = train(cfg).metrics
    t = m["tuning"]
    assert t["protocol"] == "kfold" and len(t["candidates"]) >= 6
    assert t["chosen"]["accuracy"] == max(c["accuracy"] for c in t["candidates"])
    assert m["schedule"]["batch_size"] == 15  # 60 training images: 4 steps per epoch
    assert m["best_val_accuracy"] == t["chosen"]["accuracy"] and m["test"]["accuracy"] >= 0.8
    run = tmp_path / "tuned"
    assert json.loads((run / "tuning.json").read_text())["chosen"] == t["chosen"]
    loaded = load_checkpoint(run)
    assert loaded.info.head.hidden == tuple(t["chosen"]["hidden"])
    (run / "metrics.json").unlink()
    again = train(resume=run).metrics
    assert again["test"] == m["test"] and again["tuning"]["chosen"] == t["chosen"]
