"""DDP via torchrun on CPU (gloo): 2 processes train and match one process's accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMON = [
    "--image-size",
    "64",
    "--epochs",
    "15",
    "--min-steps",
    "0",
    "--workers",
    "0",
    "--seed",
    "1",
]


def _train(args: list[str], nproc: int, env: dict[str, str] | None = None) -> dict:
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        if nproc > 1
        else [sys.executable]
    )
    r = subprocess.run(
        [*launcher, "-m", "ftedge", "train", *args], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = Path(args[args.index("--out") + 1]) / args[args.index("--name") + 1]
    return json.loads((out / "metrics.json").read_text()) | {"stderr": r.stderr}


@pytest.mark.slow
def test_torchrun_two_processes_matches_single_process(default_data, tmp_path):
    # The same epoch loop in both (head tuning is single-process only).
    base = ["--data", str(default_data), "--out", str(tmp_path), *COMMON, "--tune", "off"]
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
        "--min-steps",
        "0",
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


def test_torchrun_on_the_built_in_data_writes_it_once(tmp_path):
    """No --data: rank 0 writes the built-in dataset while rank 1 waits, then both scan it."""
    home = tmp_path / "home"
    args = ["--out", str(tmp_path), "--name", "ddp_default", "--image-size", "32"]
    args += ["--epochs", "1", "--min-steps", "0", "--batch-size", "64", "--workers", "0"]
    m = _train(args, 2, env=os.environ | {"FTEDGE_HOME": str(home)})
    assert (tmp_path / "ddp_default" / "metrics.json").is_file()
    assert m["stderr"].count("writing the built-in dataset") == 1, m["stderr"][-3000:]
    data = home / "datasets" / "fashion-mnist-sample"
    assert m["world_size"] == 2 and m["data"]["root"] == str(data.resolve())
    assert (m["data"]["train"], m["data"]["val"], m["data"]["test"]) == (2000, 500, 1000)
    assert sum(map(sum, m["test"]["confusion_matrix"])) == 1000
    # Intact: every image, the marker, and no half-written copy left beside it.
    assert (data / ".complete").is_file()
    assert len(list(data.rglob("*.png"))) == 3500
    assert [p.name for p in data.parent.iterdir()] == ["fashion-mnist-sample"]
