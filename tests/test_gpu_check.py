"""benchmarks/gpu_check.py on a machine without a GPU: its logic, with real child processes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


gc = _load()


def _ctx(tmp_path: Path, **kw):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return gc.Ctx(tmp_path / "out", work, **kw)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="this machine has a GPU")
def test_without_a_gpu_it_prints_one_line_and_exits_0(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("gpu_check: no CUDA GPU here (torch ")
    assert "cuda available: False" in lines[0] and lines[0].endswith("nothing to do")
    assert not out.exists()  # nothing installed, nothing written


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "..s\n2 passed, 1 skipped, 412 deselected in 20.13s\n",
            {"passed": 2, "failed": 0, "skipped": 1, "errors": 0, "deselected": 412},
        ),
        (
            "F.\n=== short test summary info ===\nFAILED tests/test_train.py::test_x - boom\n"
            "1 failed, 1 passed, 3 deselected, 2 warnings in 65.02s (0:01:05)\n",
            {"passed": 1, "failed": 1, "skipped": 0, "errors": 0, "deselected": 3},
        ),
        (
            "1 skipped, 1 error in 0.50s\r\n",
            {"passed": 0, "failed": 0, "skipped": 1, "errors": 1, "deselected": 0},
        ),
        (
            "no tests ran in 0.01s",
            {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, "deselected": 0},
        ),
    ],
)
def test_pytest_summary_line(text, expected):
    assert gc.parse_pytest_summary(text) == expected


def test_pytest_output_without_a_summary_is_a_failure():
    with pytest.raises(gc.Failed, match="no pytest summary"):
        gc.parse_pytest_summary("ImportError: no module named torch\n")


def _child(ctx, name: str, code: str, timeout: float = 60):
    return gc.run_child(ctx, name, [sys.executable, "-c", code], timeout)


def test_a_failing_step_is_recorded_and_the_next_one_still_runs(tmp_path):
    ctx = _ctx(tmp_path)
    ctx.ready = True

    def failing(ctx, step):
        gc.expect(_child(ctx, "fails", "import sys; print('boom'); sys.exit(1)"), "the child")

    def passing(ctx, step):
        step.summary = gc.expect(_child(ctx, "passes", "print('fine')"), "the child").strip()

    first = gc.run_step(ctx, gc.Step("first"), failing)
    second = gc.run_step(ctx, gc.Step("second"), passing)
    assert first.status == "failed"
    assert "the child: exit status 1" in first.detail and "boom" in first.detail
    assert second.status == "ok" and second.summary.endswith("fine")
    assert (ctx.out / "logs" / "fails.log").read_text().splitlines()[-1] == "boom"


def test_a_bug_in_a_step_is_a_failure_too(tmp_path):
    ctx = _ctx(tmp_path)
    ctx.ready = True

    def buggy(ctx, step):
        raise KeyError("numbers")

    step = gc.run_step(ctx, gc.Step("buggy"), buggy)
    assert step.status == "failed" and step.detail.startswith("KeyError")


def test_steps_after_a_failed_set_up_are_skipped(tmp_path):
    ctx = _ctx(tmp_path)  # ready stays False, as after a failed environment step
    step = gc.run_step(ctx, gc.Step("training"), lambda c, s: None)
    assert step.status == "skipped" and "set-up failed" in step.detail


def test_a_child_past_its_timeout_is_killed_and_the_step_fails(tmp_path):
    ctx = _ctx(tmp_path)
    ctx.ready = True
    code = "import time; print('started', flush=True); time.sleep(120)"
    rc, out = _child(ctx, "sleeps", code, timeout=2)
    assert rc is None
    assert "started" in out and "killed at its 2 s timeout" in out

    def step_fn(ctx, step):
        gc.expect(_child(ctx, "sleeps-again", code, timeout=2), "sleeper")

    step = gc.run_step(ctx, gc.Step("slow"), step_fn)
    assert step.status == "failed" and step.detail.startswith("sleeper: timed out")


def test_a_spent_budget_skips_the_step(tmp_path):
    ctx = _ctx(tmp_path, deadline=time.monotonic() + 5)
    ctx.ready = True
    step = gc.run_step(ctx, gc.Step("late"), lambda c, s: _child(c, "never", "pass"))
    assert step.status == "skipped" and "out of time" in step.detail
    assert not (ctx.out / "logs" / "never.log").exists()


def test_the_json_and_markdown_reports(tmp_path):
    env = gc.Step("environment", "ok", 3.2, "NVIDIA H200 (sm 9.0, 139 GiB)", numbers={"x": 1})
    training = gc.Step("training", "ok", 90.0, "fp32 900.0 img/s, bf16_cl 2000.0 img/s")
    training.numbers = {"fp32": {"images_per_s": 900.0}, "b/a": 2.22}
    training.ran = ["fp32", "bf16", "channels_last"]
    ddp = gc.Step("ddp", "failed", 4.0, detail="torchrun: exit status 1\nNCCL error | oops")
    inference = gc.Step("inference", "skipped", 0.0, detail="out of time: budget spent")
    steps = [env, training, ddp, inference]
    md = gc.write_report(tmp_path / "out", steps, False, ["--out", "x y"])
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert (tmp_path / "out" / "gpu_check.md").read_text() == md
    assert report["schema_version"] == 1 and report["kind"] == "ftedge-gpu-check"
    assert report["environment"] == {"x": 1}
    assert report["command"] == "python benchmarks/gpu_check.py --out 'x y'"
    assert [s["name"] for s in report["steps"]] == ["environment", "training", "ddp", "inference"]
    assert report["steps"][1]["numbers"]["b/a"] == 2.22
    ran, not_run = report["cuda_paths"]["ran"], report["cuda_paths"]["not_run"]
    assert ran == [gc.PATHS[p][1] for p in ("fp32", "bf16", "channels_last")]
    assert any(p.startswith(gc.PATHS["compile"][1]) and "(ok: fp32 900.0" in p for p in not_run)
    assert f"{gc.PATHS['ddp'][1]} (failed: torchrun: exit status 1)" in not_run
    assert any("(not part of this check)" in p for p in not_run)
    assert "| training | ok | 90.0 | fp32 900.0 img/s, bf16_cl 2000.0 img/s |" in md
    assert "| ddp | failed | 4.0 | torchrun: exit status 1 |" in md
    assert "## ddp: failed" in md and "NCCL error | oops" in md  # the full detail, verbatim
    assert "## inference: skipped" in md
    assert f"- {gc.PATHS['bf16'][1]}" in md.split("did not run")[0]


def test_cuda_memory_helpers_without_a_gpu_record_errors():
    res = gc.child_cuda_memory(nbytes=1024)
    assert set(res) == {"cuda-python", "ctypes"}
    assert all(r["equal"] is False and r["error"] for r in res.values())


@pytest.fixture(scope="module")
def cpu_speed_run(tmp_path_factory, small_data):
    """The real set-up and one real speed run (``ftedge train`` CLI), on CPU, tiny."""
    tmp = tmp_path_factory.mktemp("gpu_check")
    extra = ("--data", str(small_data), "--workers", "0", "--threads", "2")
    ctx = _ctx(tmp, device="cpu", epochs=1, image_size=32, batch_size=16, train_extra=extra)
    env = gc.probe(ctx, "environment") if gc.install_ftedge(ctx) == [] else None
    ctx.modules = {}  # as on a machine without the offline weights package
    backbone = gc.prepare_backbone(ctx)
    return ctx, env, backbone, gc.train_variant(ctx, "fp32", 240)


def test_children_import_ftedge_from_the_temporary_install(cpu_speed_run):
    ctx, env, _, _ = cpu_speed_run
    site = ctx.work / "site"
    assert env["ftedge"] == str(site / "ftedge" / "runtime" / "__init__.py")
    assert (site / "ftedge" / "export" / "__init__.py").is_file()
    assert env["gpus"] == [] and set(env["modules"]) == set(gc.OPTIONAL)


def test_images_per_second_from_a_real_run(cpu_speed_run):
    ctx, _, backbone, r = cpu_speed_run
    assert "randomly initialised" in backbone
    assert ctx.model[0] == "--model" and ctx.model[1].startswith("tf_efficientnet_lite0@")
    run_dir = ctx.work / "runs" / "fp32"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    secs = [e["seconds"] for e in metrics["epochs"]]
    assert r["train_images"] == 60 and r["train_images_from"] == "metrics.json data.train"
    assert r["epoch_seconds"] == secs and len(secs) == 1
    assert r["images_per_s"] == round(60 / secs[0], 1)
    assert (r["device"], r["amp"], r["cached_features"]) == ("cpu", "off", False)
    assert r["config"] == {"amp": "off", "channels_last": False, "compile": False, "unfreeze": 2}


def test_the_detection_variant_trains_on_the_built_in_trees(cpu_speed_run):
    """The detection speed run as the check makes it (here on CPU, tiny): the full loop with its
    new layers in bf16, read back from the run's own files."""
    import dataclasses

    ctx, _, _, _ = cpu_speed_run
    ctx = dataclasses.replace(ctx, image_size=64, train_extra=("--workers", "0", "--threads", "2"))
    r = gc.train_variant(ctx, "detect_bf16_cl", 240)
    assert (r["device"], r["amp"], r["cached_features"]) == ("cpu", "bfloat16", False)
    from ftedge.detection.default import load_tree_tiles

    train_tiles = load_tree_tiles().counts()["train"]["images"]
    assert (r["train_images"], r["train_images_from"]) == (train_tiles, "splits.json")
    assert r["images_per_s"] > 0 and r["config"]["channels_last"] is True


def test_train_split_size_from_splits_json_when_metrics_lack_it(cpu_speed_run, tmp_path):
    ctx, _, _, _ = cpu_speed_run
    src = ctx.work / "runs" / "fp32"
    for name in ("metrics.json", "splits.json", "config.yaml"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    metrics["epochs"] = [{"seconds": 2.0}, {"seconds": 4.0}, {"seconds": 3.0}]
    del metrics["data"]
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    r = gc.run_speed(tmp_path)
    assert (r["train_images"], r["train_images_from"]) == (60, "splits.json")
    assert r["median_epoch_seconds"] == 3.0 and r["images_per_s"] == 20.0


def test_wheels_are_unpacked_into_the_temporary_install(tmp_path):
    import zipfile

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "tiny_pkg-0.1-py3-none-any.whl", "w") as z:
        z.writestr("tiny_pkg/__init__.py", "VALUE = 1\n")
        z.writestr("tiny_pkg-0.1.dist-info/METADATA", "Name: tiny-pkg\nVersion: 0.1\n")
    ctx = _ctx(tmp_path, wheels=wheels)
    assert gc.install_ftedge(ctx) == ["tiny_pkg-0.1-py3-none-any.whl"]
    site = ctx.work / "site"
    assert (site / "tiny_pkg" / "__init__.py").read_text() == "VALUE = 1\n"
    assert (site / "ftedge" / "runtime" / "cuda.py").is_file()
    assert not list(site.rglob("__pycache__"))
