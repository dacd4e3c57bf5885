"""DDP via torchrun on CPU (gloo): 2 processes train and match one process's accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

COMMON = ["--image-size", "64", "--epochs", "15", "--workers", "0", "--seed", "1"]


def _train(args: list[str], nproc: int) -> dict:
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        if nproc > 1
        else [sys.executable]
    )
    r = subprocess.run([*launcher, "-m", "ftedge", "train", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    out = Path(args[args.index("--out") + 1]) / args[args.index("--name") + 1]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_torchrun_two_processes_matches_single_process(default_data, tmp_path):
    base = ["--data", str(default_data), "--out", str(tmp_path), *COMMON]
    single = _train([*base, "--name", "single", "--batch-size", "64"], 1)
    # 2 x 32 per process = the same global batch as the single process.
    ddp = _train([*base, "--name", "ddp", "--batch-size", "32"], 2)
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert ddp["cached_features"] and sum(map(sum, ddp["test"]["confusion_matrix"])) == 1000
    assert abs(ddp["test"]["accuracy"] - single["test"]["accuracy"]) <= 0.02


def test_torchrun_full_loop_with_unfrozen_block(small_data, tmp_path):
    args = [
        "--data",
        str(small_data),
        "--out",
        str(tmp_path),
        "--name",
        "ddp_full",
        "--image-size",
        "64",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--unfreeze",
        "1",
    ]
    m = _train(args, 2)
    assert m["world_size"] == 2 and not m["cached_features"] and m["augment"]
    assert len(m["epochs"]) == 2 and sum(map(sum, m["test"]["confusion_matrix"])) == 24
