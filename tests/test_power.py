"""Jetson power: tegrastats parsing on real lines from four Jetson generations, the INA3221 sysfs
reader on a fake sysfs tree, and the background sampler fed by a real child process."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from ftedge.runtime.power import (
    PowerSample,
    PowerSampler,
    SysfsSource,
    TegrastatsSource,
    detect_power_source,
    discover_ina3221,
    parse_tegrastats_line,
    summarize_power,
    total_power_mw,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tegrastats"


def lines(name: str) -> list[str]:
    return [
        ln for ln in (FIXTURES / name).read_text().splitlines() if ln and not ln.startswith("#")
    ]


def rails(line: str) -> dict[str, float]:
    r = parse_tegrastats_line(line)
    assert r is not None
    return r


def module_mw(line: str) -> float | None:
    return total_power_mw(rails(line))[0]


def test_nano_jetpack4_bare_numbers() -> None:
    first, second, third = lines("nano.txt")
    assert rails(first) == {"POM_5V_IN": 1388, "POM_5V_GPU": 122, "POM_5V_CPU": 163}
    # current and running average differ: the current one is the sample
    assert rails(second) == {"POM_5V_IN": 2545, "POM_5V_GPU": 0, "POM_5V_CPU": 549}
    assert module_mw(third) == 2056  # POM_5V_IN is the module input
    # RAM/SWAP/IRAM "used/total" pairs are never mistaken for rails
    assert not {"RAM", "SWAP", "IRAM"} & set(rails(third))


def test_xavier_generation_bare_numbers() -> None:
    nx, agx_xavier, tx2 = lines("xavier_nx.txt")
    assert rails(nx) == {"VDD_IN": 3902, "VDD_CPU_GPU_CV": 1331, "VDD_SOC": 997}
    assert module_mw(nx) == 3902
    # AGX Xavier has no input rail: the module figure is the sum of the six rails
    assert rails(agx_xavier) == {
        "GPU": 463,
        "CPU": 618,
        "SOC": 2936,
        "CV": 0,
        "VDDRQ": 309,
        "SYS5V": 3306,
    }
    assert module_mw(agx_xavier) == 463 + 618 + 2936 + 0 + 309 + 3306
    assert rails(tx2)["VDD_IN"] == 1776 and rails(tx2)["VDD_DDR"] == 250


def test_orin_nano_jetpack6_milliwatt_suffix_and_timestamp() -> None:
    idle, _, clocked, _ = lines("orin_nano.txt")
    assert rails(idle) == {"VDD_IN": 4761, "VDD_CPU_GPU_CV": 515, "VDD_SOC": 1428}
    assert clocked.startswith("04-27-2026 15:00:54 ")  # the timestamp prefix is skipped
    assert module_mw(clocked) == 6626


def test_agx_orin_has_no_input_rail() -> None:
    (line,) = lines("agx_orin.txt")
    assert rails(line) == {
        "VDD_GPU_SOC": 3150,
        "VDD_CPU_CV": 14312,
        "VIN_SYS_5V0": 4968,
        "VDDQ_VDD2_1V8AO": 1091,
    }
    assert module_mw(line) == 3150 + 14312 + 4968 + 1091
    assert total_power_mw(rails(line))[1].startswith("sum(")


def test_jetpack7_triple_values_and_not_connected_rails() -> None:
    line = "VDD_GPU_SOC 4385mW/3787mW/4385mW NC 0mW/0mW VDD_CPU_CV 1196mW/897mW"
    assert rails(line) == {"VDD_GPU_SOC": 4385, "VDD_CPU_CV": 1196}  # NC: not connected


def test_lines_without_stats_are_ignored() -> None:
    assert parse_tegrastats_line("") is None
    assert parse_tegrastats_line("tegrastats: permission denied") is None
    assert parse_tegrastats_line("RAM 775/7620MB (lfb 1x4MB) SWAP 0/3810MB (cached 0MB)") is None


def _fake_hwmon(root: Path) -> Path:
    """JetPack 5/6 layout: inN_label / inN_input (mV) / currN_input (mA)."""
    d = root / "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    d.mkdir(parents=True)
    for n, (label, mv, ma) in enumerate(
        [("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 200), ("NC", 0, 0)], start=1
    ):
        (d / f"in{n}_label").write_text(label + "\n")
        (d / f"in{n}_input").write_text(f"{mv}\n")
        (d / f"curr{n}_input").write_text(f"{ma}\n")
    return d


def test_sysfs_hwmon_channels(tmp_path: Path) -> None:
    _fake_hwmon(tmp_path)
    chans = discover_ina3221(tmp_path)
    assert [c.name for c in chans] == ["VDD_IN", "VDD_CPU_GPU_CV"]  # NC skipped
    src = SysfsSource(chans)
    sample = src.read()
    assert sample.rails == {"VDD_IN": 5000.0, "VDD_CPU_GPU_CV": 1000.0}
    assert sample.total_mw == 5000.0 and src.rail_description == "VDD_IN"


def test_sysfs_iio_channels_jetpack4(tmp_path: Path) -> None:
    d = tmp_path / "bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    d.mkdir(parents=True)
    for n, (label, mw) in enumerate(
        [("POM_5V_IN", 2100), ("POM_5V_GPU", 300), ("POM_5V_CPU", 400)]
    ):
        (d / f"rail_name_{n}").write_text(label + "\n")
        (d / f"in_power{n}_input").write_text(f"{mw}\n")
    src = detect_power_source("sysfs", sys_root=tmp_path)
    assert isinstance(src, SysfsSource)
    assert src.read().rails == {"POM_5V_IN": 2100.0, "POM_5V_GPU": 300.0, "POM_5V_CPU": 400.0}


def test_no_power_source_off_jetson(tmp_path: Path) -> None:
    assert detect_power_source("sysfs", sys_root=tmp_path) is None
    assert detect_power_source("none") is None


def test_sampler_with_sysfs_source_and_idle_subtraction(tmp_path: Path) -> None:
    d = _fake_hwmon(tmp_path)
    with PowerSampler(SysfsSource(discover_ina3221(tmp_path), interval_s=0.01)) as sampler:
        assert sampler.wait_for_samples(2)
        idle = sampler.idle_mw(0.1)
        (d / "curr1_input").write_text("1600\n")  # load: 8 W instead of 5 W
        time.sleep(0.05)
        t0 = time.perf_counter()
        time.sleep(0.2)
        window = sampler.window(t0, time.perf_counter())
    assert idle == pytest.approx(5000.0)
    assert window and all(s.total_mw == pytest.approx(8000.0) for s in window)
    p = summarize_power(
        window,
        idle_mw=idle,
        seconds=2.0,
        images=400,
        calls=100,
        source="ina3221-sysfs",
        rail="VDD_IN",
    )
    assert p["mean_w"] == pytest.approx(8.0) and p["idle_w"] == pytest.approx(5.0)
    assert p["net_w"] == pytest.approx(3.0)
    assert p["mj_per_image"] == pytest.approx(3000.0 * 2.0 / 400)  # 15 mJ
    assert p["mj_per_inference"] == pytest.approx(3000.0 * 2.0 / 100)
    assert p["mj_per_image_total"] == pytest.approx(8000.0 * 2.0 / 400)


def test_sampler_reads_a_tegrastats_process(tmp_path: Path) -> None:
    """A stand-in ``tegrastats`` (a real child process) printing the Orin Nano fixture lines."""
    script = tmp_path / "fake_tegrastats.py"
    script.write_text(
        "import sys, time\n"
        f"lines = [l for l in open({str(FIXTURES / 'orin_nano.txt')!r}) if not l.startswith('#')]\n"
        "for i in range(200):\n"
        "    print(lines[i % len(lines)].strip(), flush=True)\n"
        "    time.sleep(0.01)\n"
    )
    src = TegrastatsSource([sys.executable, str(script)])
    with PowerSampler(src) as sampler:
        assert sampler.wait_for_samples(4, timeout_s=10)
    got = {s.total_mw for s in sampler.samples()}
    assert got <= {4761.0, 6626.0} and 4761.0 in got
    assert src.rail_description == "VDD_IN"


def test_summary_without_samples_is_null() -> None:
    p = summarize_power([], idle_mw=None, seconds=1.0, images=10, calls=10, source="x", rail=None)
    assert p["mean_w"] is None and p["mj_per_image"] is None
    one = [PowerSample(0.0, 5000.0, {"VDD_IN": 5000.0})]
    q = summarize_power(one, idle_mw=None, seconds=1.0, images=10, calls=10, source="x", rail=None)
    assert q["mean_w"] == pytest.approx(5.0) and q["net_w"] is None
    assert q["mj_per_image_total"] == pytest.approx(500.0)
