"""The end-to-end / compute ratio of a benchmark run measured in both modes: what decoding,
preprocessing and the task's post-processing (top-k, or NMS) add to inference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def add_mode_ratios(results: list[dict[str, Any]]) -> None:
    """``end_to_end_vs_compute`` on every end-to-end row that has a compute twin (same job,
    batch, machine): its p50 over the compute p50, i.e. what decode, preprocessing and the
    task's post-processing (top-k, or NMS) add to inference."""
    key = ("machine", "artifact", "backend", "variant", "device", "batch")
    compute = {
        tuple(r.get(k) for k in key): r["latency_ms"]["p50"]
        for r in results
        if r["mode"] == "compute"
    }
    for r in results:
        c = compute.get(tuple(r.get(k) for k in key))
        if r["mode"] == "end_to_end" and c:
            r["end_to_end_vs_compute"] = r["latency_ms"]["p50"] / c


def mode_ratio_table(results: Sequence[dict[str, Any]]) -> str | None:
    """End-to-end p50 / compute p50 per job and batch, when both modes were measured."""
    rows = [r for r in results if r.get("end_to_end_vs_compute") is not None]
    if not rows:
        return None
    from ftedge.runtime.report import backend_label

    # Camera-frame runs also split each end-to-end call (the classifier's own timers).
    split = any(r.get("split_ms") for r in rows)
    head = "| artifact | backend | device | batch | end to end / compute (p50) |"
    lines = [head + (" preprocess ms (p50) | inference ms (p50) |" if split else "")]
    lines.append("|---|---|---|---|---|" + ("---|---|" if split else ""))
    for r in rows:
        line = (
            f"| {r['artifact']} | {backend_label(r)} | {r['device']} | {r['batch']} | "
            f"{r['end_to_end_vs_compute']:.2f}x |"
        )
        if split:
            s = r.get("split_ms") or {}
            line += "".join(
                f" {s[k]:.3f} |" if k in s else " - |" for k in ("preprocess", "inference")
            )
        lines.append(line)
    return "\n".join(lines)
