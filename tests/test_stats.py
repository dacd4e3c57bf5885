"""Latency statistics: exact values on known samples, consistency checks, the CoV flag."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ftedge.runtime.stats import UNSTABLE_COV, LatencyStats, check_consistent


def test_known_samples_in_milliseconds() -> None:
    s = LatencyStats.from_seconds([0.001, 0.002, 0.003, 0.004, 0.005])
    assert s.n == 5
    assert s.min == pytest.approx(1.0)
    assert s.max == pytest.approx(5.0)
    assert s.mean == pytest.approx(3.0)
    assert s.p50 == pytest.approx(3.0)
    assert s.p90 == pytest.approx(4.6)  # linear interpolation between order statistics
    assert s.p99 == pytest.approx(4.96)
    assert s.std == pytest.approx(math.sqrt(2.5))  # sample std (ddof=1)
    assert s.cov == pytest.approx(math.sqrt(2.5) / 3.0)
    assert s.total_s == pytest.approx(0.015)
    assert s.throughput(1) == pytest.approx(1000 / 3.0)
    assert s.throughput(8) == pytest.approx(8000 / 3.0)


def test_latency_ms_has_the_contract_fields() -> None:
    d = LatencyStats.from_seconds([0.01] * 3).latency_ms()
    assert list(d) == ["min", "mean", "p50", "p90", "p95", "p99", "max", "std"]
    assert d["std"] == 0.0 and d["p99"] == pytest.approx(10.0)


def test_unstable_flag_is_cov_above_five_percent() -> None:
    steady = LatencyStats.from_seconds([0.010, 0.0101, 0.0099, 0.010])
    noisy = LatencyStats.from_seconds([0.010, 0.010, 0.010, 0.030])
    assert steady.cov < UNSTABLE_COV and not steady.unstable
    assert noisy.cov > UNSTABLE_COV and noisy.unstable


def test_single_sample_has_zero_spread() -> None:
    s = LatencyStats.from_seconds([0.002])
    assert s.std == 0.0 and s.cov == 0.0 and s.p50 == s.min == s.max == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [[], [float("nan")], [-0.001], [[0.1, 0.2]]])
def test_rejects_bad_samples(bad: list) -> None:
    with pytest.raises(ValueError):
        LatencyStats.from_seconds(bad)


def test_random_samples_are_self_consistent() -> None:
    rng = np.random.default_rng(1)
    for batch in (1, 4, 16):
        s = LatencyStats.from_seconds(rng.lognormal(-5, 0.5, size=200))
        assert check_consistent(s.latency_ms(), s.throughput(batch), batch) == []


def test_check_consistent_catches_errors() -> None:
    good = {
        "min": 1.0,
        "mean": 2.0,
        "p50": 2.0,
        "p90": 3.0,
        "p95": 3.5,
        "p99": 4.0,
        "max": 5.0,
        "std": 1.0,
    }
    assert check_consistent(good, 500.0, 1) == []
    assert check_consistent(good, 400.0, 1)  # wrong throughput
    assert check_consistent({**good, "p50": 6.0}, 500.0, 1)  # p50 above max
    assert check_consistent({**good, "std": -1.0}, 500.0, 1)
