"""Automatic head tuning on cached backbone features.

With the backbone frozen, a head trains on a [N, F] tensor in well under a second, so a run can
afford to try a small grid of heads and keep the best by validation:

- ``lbfgs``: a linear head (multinomial logistic regression) fitted to convergence with L-BFGS
  and an L2 penalty; the grid is over the penalty;
- ``adamw``: a linear or one-hidden-layer head trained with AdamW for a number of steps (cosine
  schedule, the batch size of ``ftedge.training.recipe``); the grid is over rate, decay, depth;
- ``mean``: the grid's linear heads averaged into one (their weights and biases, hence their
  logits). It costs no fit of its own while scoring: its held-out logits are the mean of theirs.
  With a handful of images per class the validation scores of single candidates are noisy and
  picking the best of them partly picks noise; the average is steadier (``docs/training.md``).

Every candidate trains on centred features scaled by one factor per feature group (the pooled
features, each tap: ``FtedgeClassifier.feature_groups``), so that each group carries the same
share of the total energy whatever its width and magnitude (from the data it is fitted on;
per-feature scales from a handful of images are noise); the scaling is folded into the first
linear layer afterwards, so the head is an ordinary ``nn.Sequential`` on raw features that
checkpoints and exports like any other.

Validation protocol: with at least ``SMALL_VAL_PER_CLASS`` val images per class, candidates
train on train and are scored on val, and the chosen one is fitted on train. With fewer, one
val image is several points, so candidates are scored by stratified k-fold cross-validation on
train + val together, and the chosen one is fitted on train + val (every labelled image outside
test). Scores: accuracy, ties broken by the lower cross-entropy. Everything is seeded.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ftedge.training.recipe import SMALL_VAL_PER_CLASS, batch_size_for

FOLDS = 5


@dataclass(frozen=True)
class Candidate:
    """One head recipe the tuner tries."""

    kind: Literal["lbfgs", "adamw", "mean"]
    weight_decay: float
    lr: float = 0.0
    steps: int = 0
    hidden: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        if self.kind == "lbfgs":
            return f"lbfgs-linear wd={self.weight_decay:g}"
        if self.kind == "mean":
            return "mean of the linear heads"
        depth = "x".join(map(str, self.hidden)) or "linear"
        return f"adamw-{depth} lr={self.lr:g} wd={self.weight_decay:g} steps={self.steps}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"hidden": list(self.hidden), "name": self.name}

    @property
    def linear(self) -> bool:
        """A single linear layer fitted on its own (what ``mean`` averages)."""
        return not self.hidden and self.kind != "mean"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        return cls(
            d["kind"],
            float(d["weight_decay"]),
            float(d["lr"]),
            int(d["steps"]),
            tuple(int(h) for h in d["hidden"]),
        )


@dataclass(frozen=True)
class Score:
    candidate: Candidate
    accuracy: float
    loss: float

    def key(self) -> tuple[float, float]:
        return (self.accuracy, -self.loss)

    def to_dict(self) -> dict[str, Any]:
        return self.candidate.to_dict() | {
            "accuracy": round(self.accuracy, 6),
            "loss": round(self.loss, 6),
        }


@dataclass(frozen=True)
class TuneResult:
    """The candidates' scores, the chosen one, and the head fitted with it."""

    protocol: Literal["val", "kfold"]
    scores: tuple[Score, ...]
    chosen: Score
    head: nn.Sequential
    fit_on: Literal["train", "train+val"]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "folds": FOLDS if self.protocol == "kfold" else 0,
            "fit_on": self.fit_on,
            "chosen": self.chosen.to_dict(),
            "candidates": [s.to_dict() for s in self.scores],
            "seconds": round(self.seconds, 3),
        }


def default_grid(n_fit: int, hidden: tuple[int, ...] = ()) -> list[Candidate]:
    """The candidates: L-BFGS logistic regression over its penalty, a few AdamW heads, and the
    mean of the linear ones.

    AdamW heads get enough steps for ~40 passes over the data, between 200 and 1000 steps.
    """
    batch = batch_size_for(64, n_fit)
    steps = min(1000, max(200, 40 * math.ceil(n_fit / batch)))
    mlp = hidden or (256,)
    return [
        *(Candidate("lbfgs", wd) for wd in (1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0)),
        Candidate("adamw", 1e-4, 3e-3, steps),
        Candidate("adamw", 1e-2, 1e-2, steps),
        Candidate("adamw", 1e-2, 1e-3, steps, mlp),
        Candidate("mean", 0.0),
    ]


def fit_head(
    c: Candidate,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    seed: int,
    groups: tuple[int, ...] = (),
) -> nn.Sequential:
    """A head trained per ``c`` on features ``x`` (raw), with the standardisation folded in."""
    mean, std = _scaling(x, groups)
    z = (x - mean) / std
    g = torch.Generator().manual_seed(seed)
    head = _new_head(x.shape[1], c.hidden, num_classes, g).to(x.device)
    if c.kind == "lbfgs":
        _fit_lbfgs(head, z, y, c.weight_decay)
    else:
        _fit_adamw(head, z, y, c, g)
    first = head[0]
    assert isinstance(first, nn.Linear)
    with torch.no_grad():
        first.weight.div_(std)
        first.bias.sub_(first.weight @ mean)
    return head.eval()


def _scaling(x: torch.Tensor, groups: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre, and one scale per group of features (``groups``: widths, summing to the feature
    count; empty: one group) so every group has the same mean squared norm, and the mean
    squared feature value is 1."""
    mean = x.mean(0)
    groups = groups or (x.shape[1],)
    # One scale per group, not per feature: per-feature scales estimated from a handful of
    # images are noisy and amplify features that barely vary.
    share = x.shape[1] / len(groups)
    scales = [
        ((part - m).pow(2).sum(1).mean().sqrt() / share**0.5).clamp_min(1e-12).expand(w)
        for part, m, w in zip(x.split(groups, 1), mean.split(groups), groups, strict=True)
    ]
    return mean, torch.cat(scales)


def _new_head(dim: int, hidden: tuple[int, ...], k: int, g: torch.Generator) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(dim, h), nn.ReLU(inplace=True)]
        dim = h
    layers.append(nn.Linear(dim, k))
    head = nn.Sequential(*layers)
    with torch.no_grad():  # seeded init that does not touch the global RNG
        for m in head:
            if isinstance(m, nn.Linear):
                bound = 1 / math.sqrt(m.in_features)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2 * bound - bound)
                m.bias.zero_()
    if not hidden:
        with torch.no_grad():
            head[0].weight.zero_()  # type: ignore[operator]
    return head


def _fit_lbfgs(head: nn.Sequential, z: torch.Tensor, y: torch.Tensor, wd: float) -> None:
    """Mean cross-entropy + wd/2 * |W|^2, minimised to convergence (a convex problem)."""
    params = list(head.parameters())
    opt = torch.optim.LBFGS(
        params, lr=1, max_iter=200, history_size=20, line_search_fn="strong_wolfe"
    )
    weights = [p for p in params if p.dim() > 1]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(z), y) + 0.5 * wd * sum((w * w).sum() for w in weights)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        opt.step(closure)  # type: ignore[no-untyped-call]


def _fit_adamw(
    head: nn.Sequential, z: torch.Tensor, y: torch.Tensor, c: Candidate, g: torch.Generator
) -> None:
    opt = torch.optim.AdamW(head.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    batch = batch_size_for(64, len(y))
    head.train()
    order = torch.empty(0, dtype=torch.long)
    with torch.enable_grad():
        for step in range(c.steps):
            if len(order) < batch:
                order = torch.cat([order, torch.randperm(len(y), generator=g)])
            b, order = order[:batch].to(z.device), order[batch:]
            for group in opt.param_groups:
                group["lr"] = c.lr * 0.5 * (1 + math.cos(math.pi * step / c.steps))
            opt.zero_grad()
            F.cross_entropy(head(z[b]), y[b], label_smoothing=0.1).backward()
            opt.step()


def _logits(head: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return head(x).float()


def _score(c: Candidate, logits: torch.Tensor, y: torch.Tensor) -> Score:
    """Accuracy and mean cross-entropy of held-out ``logits``."""
    loss = F.cross_entropy(logits, y).item()
    return Score(c, float((logits.argmax(1) == y).float().mean()), loss)


def mean_head(heads: list[nn.Sequential]) -> nn.Sequential:
    """One linear head whose logits are the mean of the linear ``heads``' logits."""
    layers: list[nn.Linear] = []
    for h in heads:
        if len(h) != 1 or not isinstance(h[0], nn.Linear):
            raise ValueError("only single linear heads can be averaged")
        layers.append(h[0])
    out = nn.Linear(layers[0].in_features, layers[0].out_features)
    with torch.no_grad():
        out.weight.copy_(torch.stack([m.weight for m in layers]).mean(0))
        out.bias.copy_(torch.stack([m.bias for m in layers]).mean(0))
    return nn.Sequential(out).eval()


def stratified_folds(y: torch.Tensor, folds: int, seed: int) -> list[torch.Tensor]:
    """Indices of ``folds`` disjoint folds, each class dealt round-robin after a shuffle."""
    g = torch.Generator().manual_seed(seed)
    parts: list[list[int]] = [[] for _ in range(folds)]
    pos = 0
    for cls in torch.unique(y).tolist():
        idx = torch.nonzero(y.cpu() == cls).flatten()
        for i in idx[torch.randperm(len(idx), generator=g)].tolist():
            parts[pos % folds].append(i)
            pos += 1
    return [torch.tensor(sorted(p), dtype=torch.long) for p in parts if p]


def tune_head(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    seed: int,
    grid: list[Candidate] | None = None,
    groups: tuple[int, ...] = (),
) -> TuneResult:
    """Score every candidate (val or k-fold, see the module docstring); fit the best.
    ``groups``: the widths of the feature groups, each scaled on its own."""
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    # Matrices of a few hundred rows: one thread beats several, which mostly wait on each
    # other (by 10-50x on a busy 2-core machine), and makes the fits bit-reproducible.
    torch.set_num_threads(1)
    try:
        return _tune(train, val, num_classes, seed, grid, groups, t0)
    finally:
        torch.set_num_threads(threads)


def _tune(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    seed: int,
    grid: list[Candidate] | None,
    groups: tuple[int, ...],
    t0: float,
) -> TuneResult:
    (xt, yt), (xv, yv) = (_cpu(train[0]), _cpu(train[1])), (_cpu(val[0]), _cpu(val[1]))
    kfold = len(yv) < SMALL_VAL_PER_CLASS * num_classes
    x_fit, y_fit = (torch.cat([xt, xv]), torch.cat([yt, yv])) if kfold else (xt, yt)
    grid = grid if grid is not None else default_grid(len(y_fit))
    folds = stratified_folds(y_fit, FOLDS, seed) if kfold else []
    y_held = y_fit if kfold else yv
    # Each candidate's logits on rows its heads did not see (its folds', or val), and with the
    # val protocol its head fitted on train (scored as it is kept: same data, seed, one thread).
    held: dict[Candidate, torch.Tensor] = {}
    heads: dict[Candidate, nn.Sequential] = {}
    for c in (c for c in grid if c.kind != "mean"):
        if kfold:
            held[c] = torch.empty(len(y_fit), num_classes)
            for i, rows in enumerate(folds):
                keep = torch.ones(len(y_fit), dtype=torch.bool)
                keep[rows] = False
                head = fit_head(c, x_fit[keep], y_fit[keep], num_classes, seed + i, groups)
                held[c][rows] = _logits(head, x_fit[rows])
        else:
            heads[c] = fit_head(c, xt, yt, num_classes, seed, groups)
            held[c] = _logits(heads[c], xv)
    linear = [c for c in grid if c.linear]
    for c in (c for c in grid if c.kind == "mean"):
        if linear:  # nothing to average otherwise: the candidate is left out
            held[c] = torch.stack([held[m] for m in linear]).mean(0)
            if not kfold:
                heads[c] = mean_head([heads[m] for m in linear])
    scores = [_score(c, held[c], y_held) for c in grid if c in held]
    # max() keeps the first of equal keys: the grid order (simplest first) breaks exact ties.
    best = max(scores, key=Score.key)
    # The val protocol keeps the head it scored; k-fold fits the chosen recipe on every
    # labelled image outside test.
    if not kfold:
        head = heads[best.candidate]
    elif best.candidate.kind == "mean":
        head = mean_head([fit_head(c, x_fit, y_fit, num_classes, seed, groups) for c in linear])
    else:
        head = fit_head(best.candidate, x_fit, y_fit, num_classes, seed, groups)
    fit_on: Literal["train", "train+val"] = "train+val" if kfold else "train"
    protocol: Literal["val", "kfold"] = "kfold" if kfold else "val"
    return TuneResult(protocol, tuple(scores), best, head, fit_on, time.perf_counter() - t0)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    """Tuning runs on CPU in float32: tiny matrices, and bit-reproducible there.

    A copy: cached features are inference-mode tensors, which autograd refuses to save.
    """
    return torch.as_tensor(t).to("cpu", torch.float32 if t.is_floating_point() else None).clone()
