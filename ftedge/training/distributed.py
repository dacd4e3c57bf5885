"""DDP via torchrun: process-group set-up and the few collectives the loop needs.

Without torchrun (WORLD_SIZE unset or 1) every function is a cheap no-op, so the loop reads
the same for one process and for many.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as td
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class DDPInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def init() -> DDPInfo:
    """This process's place under torchrun, with the process group up (idempotent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DDPInfo()
    if not td.is_initialized():
        # NCCL for GPUs; gloo runs the same code on CPU (and is what the tests use).
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        td.init_process_group(backend=backend)
    return DDPInfo(td.get_rank(), td.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def active() -> bool:
    return td.is_available() and td.is_initialized()


def rank() -> int:
    return td.get_rank() if active() else 0


def rank_zero_first(work: Callable[[], T]) -> T:
    """``work()`` on rank 0, then, once rank 0 is done, on the other ranks.

    For one-off work on a shared disk (writing the built-in dataset): rank 0 does it while the
    others wait at a barrier, then finds it done. The process group is brought up first if it
    is not yet, since the barrier needs it.
    """
    ddp = init()
    if ddp.world_size == 1:
        return work()
    if ddp.rank == 0:
        result = work()
        barrier()
        return result
    barrier()
    return work()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if not active():
        return t
    t = t.clone()
    # gloo cannot reduce CUDA float64 on every build; reduce on the tensor's own device.
    td.all_reduce(t, op=td.ReduceOp.SUM)
    return t


def barrier() -> None:
    if active():
        td.barrier()


def shutdown() -> None:
    if active():
        td.destroy_process_group()


def broadcast_object(obj: Any) -> Any:
    if not active():
        return obj
    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """DDP-wrap the trainable module (gradients are averaged across ranks in backward)."""
    if not active():
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def gather_predictions(indices: list[int], preds: np.ndarray, n: int) -> np.ndarray:
    """Each rank predicted ``indices`` of an n-sample set; assemble the full prediction array."""
    parts = [(indices, preds.tolist())]
    if active():
        parts = [None] * td.get_world_size()  # type: ignore[list-item]
        td.all_gather_object(parts, (indices, preds.tolist()))
    out = np.full(n, -1, dtype=np.int64)
    for idx, p in parts:
        out[np.asarray(idx, dtype=np.int64)] = p
    return out
