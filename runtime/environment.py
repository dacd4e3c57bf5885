"""Environment capture for benchmark reports: CPU, OS, library versions, GPU, Jetson state.

Every probe is tolerant of absence (a missing file or tool gives ``None``), imports nothing heavy
(library versions come from ``importlib.metadata``, never from importing torch or TensorRT) and
each parser is a pure function of a string so it is unit-tested on fixture text.

GPU facts come from NVML (``nvidia-ml-py``, imported only when probed) where an NVIDIA driver
is present, else from ``nvidia-smi``; a Jetson has no NVML and is described by its device tree,
L4T release, nvpmodel and clocks (``jetson_info``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

#: CPU flags that decide which kernels inference libraries pick (x86 and Arm).
INTERESTING_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "neon",
    "asimd",
    "asimdhp",
    "asimddp",
    "fphp",
    "sve",
    "sve2",
    "i8mm",
    "bf16",
)

#: Distributions whose versions matter to inference numbers (pip names).
LIBRARIES = (
    "numpy",
    "pillow",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-openvino",
    "openvino",
    "tensorrt",
    "tensorrt-cu12",
    "tensorrt-cu12-bindings",
    "cuda-python",
    "cuda-bindings",
    "nvidia-ml-py",
    "torch",
    "torchvision",
    "timm",
    "onnx",
    "nncf",
    "opencv-python-headless",
    "opencv-python",
)


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    """stdout of a command, or None when it is missing, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


# -- parsers (pure) ----------------------------------------------------------------------------
def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model name and the interesting flags from ``/proc/cpuinfo`` (x86 ``flags``, Arm
    ``Features``)."""
    model = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model is None and value.strip():
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return {"model": model, "flags": [f for f in INTERESTING_FLAGS if f in flags]}


def parse_nv_tegra_release(text: str) -> str | None:
    """L4T release from ``/etc/nv_tegra_release``: ``# R35 (release), REVISION: 4.1`` -> 35.4.1."""
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def parse_nvpmodel(text: str) -> dict[str, Any] | None:
    """``nvpmodel -q``: ``NV Power Mode: MAXN`` followed by the mode id on the next line."""
    m = re.search(r"NV Power Mode:\s*(.+)", text)
    if not m:
        return None
    mode_id = None
    after = text[m.end() :].strip().splitlines()
    if after and after[0].strip().isdigit():
        mode_id = int(after[0].strip())
    return {"name": m.group(1).strip(), "id": mode_id}


def parse_jetson_clocks(text: str) -> dict[str, Any]:
    """``jetson_clocks --show``: per-CPU and GPU/EMC current frequencies in MHz."""
    out: dict[str, Any] = {"cpu_mhz": [], "gpu_mhz": None, "emc_mhz": None, "power_mode": None}
    for line in text.splitlines():
        line = line.strip()
        cur = re.search(r"CurrentFreq=(\d+)", line)
        if re.match(r"cpu\d+:", line) and cur:
            # CPU frequencies are in kHz, GPU and EMC ones in Hz.
            out["cpu_mhz"].append(int(cur.group(1)) / 1e3)
        elif line.startswith("GPU") and cur:
            out["gpu_mhz"] = int(cur.group(1)) / 1e6
        elif line.startswith("EMC") and cur:
            out["emc_mhz"] = int(cur.group(1)) / 1e6
        elif line.startswith("NV Power Mode:"):
            out["power_mode"] = line.split(":", 1)[1].strip()
    return out


@dataclass(frozen=True)
class GpuFacts:
    """One NVIDIA GPU: name, driver, total memory, compute capability and (NVML) power."""

    name: str
    driver: str
    memory: str | None  # total, e.g. "81559 MiB"
    compute_capability: str | None  # e.g. "9.0"
    power_w: float | None = None  # draw when captured
    power_limit_w: float | None = None
    source: Literal["nvml", "nvidia-smi"] = "nvidia-smi"


def parse_nvidia_smi(text: str) -> list[GpuFacts]:
    """``nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader``."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0]:
            gpus.append(
                GpuFacts(
                    name=parts[0],
                    driver=parts[1],
                    memory=parts[2] if len(parts) > 2 else None,
                    compute_capability=parts[3] if len(parts) > 3 else None,
                )
            )
    return gpus


# -- probes ------------------------------------------------------------------------------------
def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions by distribution name, without importing anything."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    # JetPack installs TensorRT's Python module with apt, not pip: look for its dist-info by
    # module name too (``tensorrt-stubs`` alone is type stubs, not TensorRT).
    if "tensorrt" not in out:
        for dist in metadata.distributions():
            n = str(dist.metadata["Name"] or "").lower()
            if n.startswith("tensorrt") and "stubs" not in n and "bindings" not in n:
                out["tensorrt"] = dist.version
                break
    return out


def cpu_info() -> dict[str, Any]:
    info = parse_cpuinfo(_read("/proc/cpuinfo") or "")
    if info["model"] is None:
        info["model"] = platform.processor() or None
    info["arch"] = platform.machine()
    info["logical_cpus"] = os.cpu_count()
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        info["usable_cpus"] = os.cpu_count()
    info["physical_cores"] = _physical_cores()
    return info


def _physical_cores() -> int | None:
    try:
        import psutil  # optional

        n = psutil.cpu_count(logical=False)
        return int(n) if n else None
    except ImportError:
        pass
    text = _read("/proc/cpuinfo") or ""
    pairs = set(re.findall(r"physical id\s*:\s*(\d+)[\s\S]*?core id\s*:\s*(\d+)", text))
    return len(pairs) or None


def gpu_info() -> list[GpuFacts]:
    """Every NVIDIA GPU here: NVML when it answers, else ``nvidia-smi``, else none."""
    gpus = nvml_gpus()
    if gpus:
        return gpus
    text = _run(
        [
            "nvidia-smi",
            "--query-gpu=name,driver_version,memory.total,compute_cap",
            "--format=csv,noheader",
        ]
    )
    return parse_nvidia_smi(text) if text else []


def nvml_gpus() -> list[GpuFacts] | None:
    """GPU facts from NVML; None when ``nvidia-ml-py`` or the driver's NVML library is missing
    (CPU machines, Jetsons) or NVML fails."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError):
        return None
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        return [_nvml_gpu(pynvml, h, driver) for h in handles]
    except (pynvml.NVMLError, AttributeError, OSError):  # AttributeError: an older nvidia-ml-py
        return None
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def _nvml_gpu(pynvml: Any, handle: Any, driver: str) -> GpuFacts:
    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
    return GpuFacts(
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        driver=driver,
        memory=f"{int(pynvml.nvmlDeviceGetMemoryInfo(handle).total) // 2**20} MiB",
        compute_capability=f"{major}.{minor}",
        power_w=_nvml_watts(pynvml, pynvml.nvmlDeviceGetPowerUsage, handle),
        power_limit_w=_nvml_watts(pynvml, pynvml.nvmlDeviceGetEnforcedPowerLimit, handle),
        source="nvml",
    )


def _nvml_watts(pynvml: Any, query: Any, handle: Any) -> float | None:
    """A milliwatt NVML query in watts; None where the GPU does not report it."""
    try:
        return int(query(handle)) / 1e3
    except pynvml.NVMLError:
        return None


def _text(value: str | bytes) -> str:
    # Older nvidia-ml-py releases return names and versions as bytes, newer ones as str.
    return value.decode() if isinstance(value, bytes) else str(value)


def jetson_info() -> dict[str, Any] | None:
    """Model, L4T, nvpmodel mode and clocks on a Jetson; None elsewhere."""
    model = _read("/proc/device-tree/model")
    release = _read("/etc/nv_tegra_release")
    if not release and not (model and "jetson" in model.lower()):
        return None
    info: dict[str, Any] = {
        "model": model.strip("\x00 \n") if model else None,
        "l4t": parse_nv_tegra_release(release or ""),
        "nvpmodel": None,
        "clocks": None,
    }
    q = _run(["nvpmodel", "-q"])
    if q:
        info["nvpmodel"] = parse_nvpmodel(q)
    show = _run(["jetson_clocks", "--show"])  # usually needs root; falls back to sysfs below
    if show:
        info["clocks"] = parse_jetson_clocks(show)
    else:
        cpus = []
        for f in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
            v = _read(f)
            if v and v.strip().isdigit():
                cpus.append(int(v) / 1e3)
        gpu = None
        for f in Path("/sys/class/devfreq").glob("*/cur_freq"):
            if "gpu" in str(f.parent.resolve()).lower() or "gv11b" in str(f) or "ga10b" in str(f):
                v = _read(f)
                gpu = int(v) / 1e6 if v and v.strip().isdigit() else None
        info["clocks"] = {"cpu_mhz": cpus, "gpu_mhz": gpu, "emc_mhz": None, "power_mode": None}
    return info


def capture_environment() -> dict[str, Any]:
    """Everything a reader needs to judge or reproduce a benchmark's numbers."""
    return {
        "host": socket.gethostname(),
        "captured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu_info(),
        "libraries": library_versions(),
        "gpus": [asdict(g) for g in gpu_info()],
        "jetson": jetson_info(),
        "env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
            if k in os.environ
        },
    }


def machine_label(env: dict[str, Any]) -> str:
    """A short name for a machine in merged reports: Jetson model, GPU or CPU, plus host."""
    jetson = env.get("jetson") or {}
    if jetson.get("model"):
        what = str(jetson["model"]).replace("NVIDIA ", "")
    elif env.get("gpus"):
        what = env["gpus"][0]["name"]
    else:
        cpu = env.get("cpu") or {}
        what = f"{cpu.get('model') or 'CPU'} x{cpu.get('usable_cpus') or '?'}"
    return f"{env.get('host', '?')}: {what}"
