"""How the training recipe adapts to the size of the data.

The defaults (batch 64, 30 epochs, patience 8) suit a few thousand images. With forty, a batch
of 64 is the whole set, an epoch is one optimizer step and 30 epochs are 30 steps. The rules
here are stated in optimizer steps instead, and leave a large data set's recipe unchanged:

- batch: no larger than the data, and small enough for ``MIN_STEPS_PER_EPOCH`` steps per epoch
  (but not below 8 images unless the data is smaller);
- epochs: at least ``--min-steps`` optimizer steps in all;
- patience: at least a third of ``--min-steps`` in steps;
- validation: with fewer than ``SMALL_VAL_PER_CLASS`` images per class, one image moves the
  accuracy by several points, so early stopping and the best checkpoint follow the mean of the
  last ``SMOOTH_EPOCHS`` epochs' val accuracy; ties are broken by the lower val loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_STEPS_PER_EPOCH = 4
SMALL_VAL_PER_CLASS = 20
SMOOTH_EPOCHS = 3


@dataclass(frozen=True)
class Schedule:
    """The recipe a run actually uses, derived from its config and its data size."""

    batch_size: int
    steps_per_epoch: int
    epochs: int
    patience: int
    smooth_val: int  # epochs averaged for the early-stopping signal (1: raw val accuracy)

    def to_dict(self) -> dict[str, int]:
        return {
            "batch_size": self.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "patience": self.patience,
            "smooth_val": self.smooth_val,
        }


def batch_size_for(batch_size: int, n_train: int) -> int:
    """``batch_size``, reduced so that ``n_train`` images give several steps per epoch."""
    n = max(1, n_train)
    return max(1, min(batch_size, max(8, n // MIN_STEPS_PER_EPOCH), n))


def make_schedule(
    *,
    batch_size: int,
    epochs: int,
    patience: int,
    min_steps: int,
    n_train: int,
    n_val: int,
    num_classes: int,
) -> Schedule:
    """The schedule for ``n_train`` training images (this process's share under DDP)."""
    batch = batch_size_for(batch_size, n_train)
    steps = -(-max(1, n_train) // batch)
    run_epochs = max(epochs, math.ceil(min_steps / steps)) if min_steps > 0 else epochs
    if patience > 0 and min_steps > 0:
        patience = max(patience, math.ceil(min_steps / 3 / steps))
    small_val = n_val < SMALL_VAL_PER_CLASS * max(1, num_classes)
    return Schedule(batch, steps, run_epochs, patience, SMOOTH_EPOCHS if small_val else 1)
