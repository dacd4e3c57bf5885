"""Environment capture: each parser on fixture text, and the live capture on this machine."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from ftedge.runtime.environment import (
    GpuFacts,
    capture_environment,
    gpu_info,
    library_versions,
    machine_label,
    parse_cpuinfo,
    parse_jetson_clocks,
    parse_nv_tegra_release,
    parse_nvidia_smi,
    parse_nvpmodel,
)

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu vme sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_tile amx_int8
"""
# Jetson Xavier NX /proc/cpuinfo (Arm reports "Features" and no model name)
ARM_CPUINFO = """processor\t: 0
model name\t: ARMv8 Processor rev 0 (v8l)
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp
CPU implementer\t: 0x4e
"""
NV_TEGRA_RELEASE = (
    "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
    "DATE: Tue Aug  1 19:57:35 UTC 2023\n"
)
NVPMODEL_Q = "NV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n"
JETSON_CLOCKS_SHOW = """SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-3
cpu0: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=921600 IdleStates: WFI=1 c7=1
GPU MinFreq=76800000 MaxFreq=921600000 CurrentFreq=921600000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=0
Fan: PWM=0
NV Power Mode: MAXN
"""
NVIDIA_SMI = (
    "NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB, 9.0\nNVIDIA L4, 550.54.15, 23034 MiB, 8.9\n"
)


def test_parse_cpuinfo_x86_and_arm() -> None:
    x = parse_cpuinfo(X86_CPUINFO)
    assert x["model"] == "AMD EPYC 9R14 96-Core Processor"
    assert {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8"} <= set(x["flags"])
    assert "fpu" not in x["flags"]  # only flags that matter to inference kernels
    a = parse_cpuinfo(ARM_CPUINFO)
    assert a["model"] == "ARMv8 Processor rev 0 (v8l)"
    assert {"asimd", "asimdhp", "fphp"} <= set(a["flags"])


def test_parse_jetson_probes() -> None:
    assert parse_nv_tegra_release(NV_TEGRA_RELEASE) == "35.4.1"
    assert parse_nv_tegra_release("garbage") is None
    assert parse_nvpmodel(NVPMODEL_Q) == {"name": "MAXN", "id": 0}
    assert parse_nvpmodel("") is None
    clocks = parse_jetson_clocks(JETSON_CLOCKS_SHOW)
    assert clocks["cpu_mhz"] == [1479.0, 921.6]  # kHz -> MHz
    assert clocks["gpu_mhz"] == 921.6 and clocks["emc_mhz"] == 1600.0  # Hz -> MHz
    assert clocks["power_mode"] == "MAXN"


def test_parse_nvidia_smi() -> None:
    gpus = parse_nvidia_smi(NVIDIA_SMI)
    assert [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3", "NVIDIA L4"]
    assert gpus[0].driver == "550.54.15" and gpus[1].compute_capability == "8.9"
    assert parse_nvidia_smi("") == []


def test_capture_here_is_complete_and_json() -> None:
    env = capture_environment()
    json.dumps(env)
    assert env["cpu"]["logical_cpus"] >= 1 and env["cpu"]["arch"]
    assert env["python"].count(".") == 2
    assert "numpy" in env["libraries"]
    assert env["jetson"] is None or "l4t" in env["jetson"]
    assert machine_label(env).startswith(env["host"])


def test_library_versions_do_not_report_stubs_as_tensorrt() -> None:
    from ftedge.runtime.backends import tensorrt_usable

    versions = library_versions()
    if not tensorrt_usable():  # here: tensorrt-stubs only, an empty namespace package
        assert "tensorrt" not in versions


def test_machine_label_prefers_jetson_then_gpu() -> None:
    base = {"host": "h", "cpu": {"model": "Cortex", "usable_cpus": 6}, "gpus": [], "jetson": None}
    assert machine_label(base) == "h: Cortex x6"
    assert machine_label({**base, "gpus": [{"name": "NVIDIA L4"}]}) == "h: NVIDIA L4"
    jet = {**base, "jetson": {"model": "NVIDIA Jetson Orin Nano Developer Kit"}}
    assert machine_label(jet) == "h: Jetson Orin Nano Developer Kit"


# -- GPU facts: NVML first, nvidia-smi when NVML is missing or fails ---------------------------
class _NVMLError(Exception):
    """pynvml.NVMLError: NVML's failures (NotSupported, LibraryNotFound, ...) subclass it."""


def fake_pynvml(*, as_bytes: bool, init_fails: bool = False) -> types.ModuleType:
    """A stand-in for ``pynvml`` (nvidia-ml-py) with the real function names and return types:
    two GPUs, names and driver as bytes (older releases) or str, memory in bytes, power in mW;
    the second GPU reports no power draw (NVMLError, as on many data-centre boards)."""
    m: Any = types.ModuleType("pynvml")
    gpus = [
        ("NVIDIA H200", 143771 * 2**20, 9, 0, 112_345),
        ("NVIDIA L4", 23034 * 2**20, 8, 9, None),
    ]

    def text(s: str) -> str | bytes:
        return s.encode() if as_bytes else s

    def init() -> None:
        if init_fails:
            raise _NVMLError("NVML Shared Library Not Found")

    def power(h: int) -> int:
        if gpus[h][4] is None:
            raise _NVMLError("Not Supported")
        return int(gpus[h][4])

    m.NVMLError = _NVMLError
    m.nvmlInit = init
    m.nvmlShutdown = lambda: None
    m.nvmlSystemGetDriverVersion = lambda: text("570.124.06")
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: text(gpus[h][0])
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        total=gpus[h][1], free=gpus[h][1] // 2, used=gpus[h][1] // 2
    )
    m.nvmlDeviceGetCudaComputeCapability = lambda h: (gpus[h][2], gpus[h][3])
    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    return m


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``nvidia-smi`` executable on PATH printing the fixture's CSV."""
    tool = tmp_path / "bin" / "nvidia-smi"
    tool.parent.mkdir()
    tool.write_text(f"#!/bin/sh\ncat <<'EOF'\n{NVIDIA_SMI}EOF\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}:/usr/bin:/bin")


@pytest.mark.parametrize("as_bytes", [True, False])
def test_gpu_facts_from_nvml(monkeypatch: pytest.MonkeyPatch, as_bytes: bool) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(as_bytes=as_bytes))
    h200, l4 = gpu_info()
    assert h200 == GpuFacts(
        name="NVIDIA H200",
        driver="570.124.06",
        memory="143771 MiB",
        compute_capability="9.0",
        power_w=112.345,
        power_limit_w=700.0,
        source="nvml",
    )
    assert l4.name == "NVIDIA L4" and l4.compute_capability == "8.9"
    assert l4.power_w is None and l4.power_limit_w == 700.0  # power draw not supported
    env = capture_environment()
    assert env["gpus"][0]["name"] == "NVIDIA H200" and json.dumps(env)
    assert machine_label(env).endswith(": NVIDIA H200")


def test_gpu_facts_fall_back_to_nvidia_smi_when_nvml_fails(
    monkeypatch: pytest.MonkeyPatch, fake_nvidia_smi: None
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(as_bytes=False, init_fails=True))
    gpus = gpu_info()
    assert [(g.name, g.source) for g in gpus] == [
        ("NVIDIA H100 80GB HBM3", "nvidia-smi"),
        ("NVIDIA L4", "nvidia-smi"),
    ]


def test_gpu_facts_here_fall_back_from_the_real_nvml(
    monkeypatch: pytest.MonkeyPatch, fake_nvidia_smi: None
) -> None:
    # No NVIDIA driver on this machine: the real nvidia-ml-py fails to load libnvidia-ml.
    pynvml: Any = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("NVML works here: the fallback is not reachable")
    assert [g.source for g in gpu_info()] == ["nvidia-smi", "nvidia-smi"]


def test_gpu_facts_without_nvml_or_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpu_info() == []


def test_importing_the_environment_module_does_not_import_pynvml() -> None:
    code = "import sys, ftedge.runtime.environment; print('pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
