"""Jetson power: tegrastats / INA3221 sysfs sampling during a timed window, idle-subtracted.

Two sources, both read in a background thread so the timed loop is never interrupted:

- ``tegrastats --interval 100`` (every JetPack): one line per interval whose power rails look like
  ``POM_5V_IN 2100/2100`` (Nano, JetPack 4: bare mW, ``current/average``),
  ``VDD_IN 4301/4301 VDD_CPU_GPU_CV ...`` (Xavier NX, JetPack 4),
  ``VDD_IN 5002mW/5002mW ...`` (Orin, JetPack 5/6, optional ``MM-DD-YYYY HH:MM:SS`` prefix) or
  ``VDD_GPU_SOC 3150mW/2971mW ... VIN_SYS_5V0 ...`` (AGX Orin: no input rail);
- the INA3221 power monitors in sysfs: ``/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/``
  (``inN_label``, ``inN_input`` mV, ``currN_input`` mA; JetPack 5+) or
  ``/sys/bus/i2c/drivers/ina3221x/*/iio:device*/`` (``rail_name_N``, ``in_powerN_input`` mW;
  JetPack 4).

The *module* power is the input rail (``VDD_IN`` / ``POM_5V_IN``) when there is one, else the sum
of every monitored rail (AGX Xavier / AGX Orin have no input rail: the sum misses the carrier
board and is said so in the report). Idle power is measured before the timed window and
subtracted, giving the energy the inference itself costs. Every probe is tolerant of absence: off
a Jetson the sampler is ``None`` and power fields are null.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Rails that measure the whole module's input, in order of preference.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
#: Channels that exist but are not connected.
_SKIP_RAILS = frozenset({"NC", ""})

# A rail: NAME current[mW]/average[mW] with an optional third /max (JetPack 7). The look-arounds
# keep "RAM 775/7620MB", "SWAP 0/3810MB" and "IRAM 0/252kB" out (a letter follows the number).
_RAIL_RE = re.compile(
    r"(?<![\w@])([A-Za-z][A-Za-z0-9_]*) (\d+)(?:mW)?/\d+(?:mW)?(?:/\d+(?:mW)?)?(?![\w/])"
)


def total_power_mw(rails: dict[str, float]) -> tuple[float | None, str | None]:
    """``(mW, how)``: the input rail when present, else the sum of all rails."""
    for name in INPUT_RAILS:
        if name in rails:
            return rails[name], name
    if not rails:
        return None, None
    return float(sum(rails.values())), "sum(" + "+".join(rails) + ")"


def parse_tegrastats_line(line: str) -> dict[str, float] | None:
    """The power rails of one tegrastats line of any Jetson generation, as rail name -> current
    mW (the running average and maximum that follow are not kept); None without rails."""
    rails = {
        name: float(current)
        for name, current in _RAIL_RE.findall(line.strip())
        if name not in _SKIP_RAILS and name not in ("RAM", "SWAP", "IRAM")
    }
    return rails or None


# -- sources -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerSample:
    """Module power at one instant (``time.perf_counter`` clock) and the rails behind it."""

    t: float
    total_mw: float
    rails: dict[str, float]


class PowerSource:
    """A stream of power samples; ``samples()`` blocks between samples until ``close()``."""

    name = "none"
    rail_description: str | None = None

    def samples(self) -> Iterator[PowerSample]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class TegrastatsSource(PowerSource):
    """Run ``tegrastats --interval N`` and parse its lines as they arrive."""

    name = "tegrastats"

    def __init__(self, command: Sequence[str] | None = None, interval_ms: int = 100) -> None:
        self.command = list(command or ["tegrastats", "--interval", str(interval_ms)])
        self._proc: subprocess.Popen[str] | None = None

    def samples(self) -> Iterator[PowerSample]:
        self._proc = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            rails = parse_tegrastats_line(line)
            if rails is None:
                continue
            total, how = total_power_mw(rails)
            if total is None:
                continue
            self.rail_description = how
            yield PowerSample(time.perf_counter(), total, rails)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


@dataclass(frozen=True)
class SysfsChannel:
    """One INA3221 channel: a power file (mW), or a voltage (mV) and a current (mA) file."""

    name: str
    power_file: str | None = None
    voltage_file: str | None = None
    current_file: str | None = None

    def read_mw(self) -> float:
        if self.power_file:
            return float(Path(self.power_file).read_text().split()[0])
        assert self.voltage_file and self.current_file
        mv = float(Path(self.voltage_file).read_text().split()[0])
        ma = float(Path(self.current_file).read_text().split()[0])
        return mv * ma / 1000.0


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def discover_ina3221(sys_root: str | os.PathLike[str] = "/sys") -> list[SysfsChannel]:
    """INA3221 channels under ``sys_root`` (hwmon driver first, then the JetPack 4 iio driver)."""
    root = str(sys_root)
    channels: list[SysfsChannel] = []
    seen: set[str] = set()
    for d in sorted(glob.glob(f"{root}/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")):
        for label_file in sorted(glob.glob(f"{d}/in*_label")):
            n = re.search(r"in(\d+)_label$", label_file)
            name = _read(label_file)
            if not n or name in _SKIP_RAILS or name in seen:
                continue
            v, c = f"{d}/in{n.group(1)}_input", f"{d}/curr{n.group(1)}_input"
            if os.path.exists(v) and os.path.exists(c):
                channels.append(SysfsChannel(name, voltage_file=v, current_file=c))
                seen.add(name)
    for d in sorted(glob.glob(f"{root}/bus/i2c/drivers/ina3221x/*/iio:device*")):
        for label_file in sorted(glob.glob(f"{d}/rail_name_*")):
            n = re.search(r"rail_name_(\d+)$", label_file)
            name = _read(label_file)
            if not n or name in _SKIP_RAILS or name in seen:
                continue
            p = f"{d}/in_power{n.group(1)}_input"
            if os.path.exists(p):
                channels.append(SysfsChannel(name, power_file=p))
                seen.add(name)
    return channels


class SysfsSource(PowerSource):
    """Poll INA3221 channels from sysfs every ``interval_s``."""

    name = "ina3221-sysfs"

    def __init__(self, channels: list[SysfsChannel], interval_s: float = 0.05) -> None:
        if not channels:
            raise ValueError("no INA3221 channels")
        self.channels = channels
        self.interval_s = interval_s
        self._closed = threading.Event()

    def read(self) -> PowerSample:
        rails = {ch.name: ch.read_mw() for ch in self.channels}
        total, how = total_power_mw(rails)
        self.rail_description = how
        assert total is not None
        return PowerSample(time.perf_counter(), total, rails)

    def samples(self) -> Iterator[PowerSample]:
        while not self._closed.is_set():
            try:
                yield self.read()
            except (OSError, ValueError, IndexError):
                return  # a rail vanished or is unreadable: stop sampling, keep what we have
            self._closed.wait(self.interval_s)

    def close(self) -> None:
        self._closed.set()


def detect_power_source(
    prefer: str = "auto", sys_root: str | os.PathLike[str] = "/sys"
) -> PowerSource | None:
    """The best power source here, or None (not a Jetson / no access).

    ``prefer``: ``auto`` (sysfs when readable — no child process, finer interval — else
    tegrastats), ``sysfs``, ``tegrastats`` or ``none``.
    """
    if prefer == "none":
        return None
    if prefer in ("auto", "sysfs"):
        channels = discover_ina3221(sys_root)
        try:
            if channels:
                for ch in channels:
                    ch.read_mw()
                return SysfsSource(channels)
        except (OSError, ValueError, IndexError):
            pass
    if prefer in ("auto", "tegrastats") and shutil.which("tegrastats"):
        return TegrastatsSource()
    return None


# -- sampling ----------------------------------------------------------------------------------
class PowerSampler:
    """Collect samples from a source in a background thread; cut windows out by time.

    ``with PowerSampler(source) as s: t0 = perf_counter(); ...; s.window(t0, perf_counter())``
    """

    def __init__(self, source: PowerSource) -> None:
        self.source = source
        self._samples: list[PowerSample] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __enter__(self) -> PowerSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        def run() -> None:
            try:
                for s in self.source.samples():
                    with self._lock:
                        self._samples.append(s)
                    if self._stop.is_set():
                        break
            except OSError:
                pass  # the tool vanished: power stays null rather than failing the benchmark

        self._thread = threading.Thread(target=run, name="ftedge-power", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.source.close()
        if self._thread is not None:
            self._thread.join(timeout=3)

    def samples(self) -> list[PowerSample]:
        with self._lock:
            return list(self._samples)

    def window(self, t0: float, t1: float) -> list[PowerSample]:
        return [s for s in self.samples() if t0 <= s.t <= t1]

    def wait_for_samples(self, n: int, timeout_s: float = 3.0) -> bool:
        """Block until ``n`` samples exist (tegrastats needs a moment to start)."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if len(self.samples()) >= n:
                return True
            time.sleep(0.02)
        return False

    def idle_mw(self, seconds: float = 1.0) -> float | None:
        """Mean module power over the next ``seconds`` with nothing running."""
        t0 = time.perf_counter()
        time.sleep(seconds)
        return mean_mw(self.window(t0, time.perf_counter()))


def mean_mw(samples: Sequence[PowerSample]) -> float | None:
    return sum(s.total_mw for s in samples) / len(samples) if samples else None


def summarize_power(
    window: Sequence[PowerSample],
    *,
    idle_mw: float | None,
    seconds: float,
    images: int,
    calls: int,
    source: str,
    rail: str | None,
) -> dict[str, Any]:
    """The ``power`` object of a result: mean and idle-subtracted watts, mJ per image and call.

    ``seconds`` is the timed window's length, ``images``/``calls`` what ran in it. Energy of the
    window = mean power x seconds (mW x s = mJ), shared out over the images (and batched calls).
    """
    out: dict[str, Any] = {
        "source": source,
        "rail": rail,
        "samples": len(window),
        "idle_w": None if idle_mw is None else idle_mw / 1e3,
        "mean_w": None,
        "net_w": None,
        "mj_per_image": None,
        "mj_per_image_total": None,
        "mj_per_inference": None,
    }
    mean = mean_mw(window)
    if mean is None or images <= 0 or calls <= 0 or seconds <= 0:
        return out
    out["mean_w"] = mean / 1e3
    out["mj_per_image_total"] = mean * seconds / images
    if idle_mw is not None:
        net = mean - idle_mw
        out["net_w"] = net / 1e3
        out["mj_per_image"] = net * seconds / images
        out["mj_per_inference"] = net * seconds / calls
    return out
