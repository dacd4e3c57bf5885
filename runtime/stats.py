"""Latency statistics for the benchmark: percentiles, spread, throughput.

Pure numpy. Latencies go in as seconds (what ``time.perf_counter`` differences give) and come out
in milliseconds, the unit every report and the JSON contract use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: A run whose coefficient of variation (std / mean) exceeds this is flagged unstable.
UNSTABLE_COV = 0.05

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one timed loop, in milliseconds (``cov`` is a fraction, e.g. 0.03)."""

    n: int
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float
    cov: float
    total_s: float

    @classmethod
    def from_seconds(cls, samples_s: Sequence[float] | np.ndarray) -> LatencyStats:
        """Summarise per-iteration latencies given in seconds."""
        a = np.asarray(samples_s, dtype=np.float64)
        if a.ndim != 1 or a.size == 0:
            raise ValueError("need at least one latency sample")
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError("latency samples must be finite and non-negative")
        ms = a * 1e3
        # linear interpolation between order statistics (numpy's default, same as trtexec's
        # percentile on sorted samples for large n)
        p50, p90, p95, p99 = (float(v) for v in np.percentile(ms, PERCENTILES))
        mean = float(ms.mean())
        # population std (ddof=0) would understate spread for small n: use the sample std.
        std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
        return cls(
            n=int(ms.size),
            min=float(ms.min()),
            mean=mean,
            p50=p50,
            p90=p90,
            p95=p95,
            p99=p99,
            max=float(ms.max()),
            std=std,
            cov=std / mean if mean > 0 else 0.0,
            total_s=float(a.sum()),
        )

    @property
    def unstable(self) -> bool:
        """True when CoV > 5%: the machine was noisy, quote the median and re-run."""
        return self.cov > UNSTABLE_COV

    def throughput(self, batch: int) -> float:
        """Images per second: ``batch / mean latency``."""
        return batch * 1e3 / self.mean if self.mean > 0 else math.inf

    def latency_ms(self) -> dict[str, float]:
        """The ``latency_ms`` object of the JSON contract."""
        d = asdict(self)
        return {k: d[k] for k in ("min", "mean", "p50", "p90", "p95", "p99", "max", "std")}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_consistent(latency_ms: dict[str, float], throughput_ips: float, batch: int) -> list[str]:
    """Problems with a result's numbers (empty when self-consistent); used by tests and --compare.

    Checks min <= p50 <= p90 <= p95 <= p99 <= max, min <= mean <= max, std >= 0 and
    throughput == batch * 1000 / mean (to 1e-6 relative).
    """
    problems = []
    order = ["min", "p50", "p90", "p95", "p99", "max"]
    for lo, hi in zip(order, order[1:], strict=False):
        if latency_ms[lo] > latency_ms[hi] * (1 + 1e-9):
            problems.append(f"{lo} {latency_ms[lo]} > {hi} {latency_ms[hi]}")
    if not latency_ms["min"] <= latency_ms["mean"] * (1 + 1e-9) <= latency_ms["max"] * (1 + 2e-9):
        problems.append("mean outside [min, max]")
    if latency_ms["std"] < 0:
        problems.append("negative std")
    want = batch * 1e3 / latency_ms["mean"]
    if not math.isclose(throughput_ips, want, rel_tol=1e-6):
        problems.append(f"throughput {throughput_ips} != batch*1000/mean {want}")
    return problems
