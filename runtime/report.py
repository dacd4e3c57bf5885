"""Benchmark reports: the JSON contract, a Markdown table, CSV and PNG plots, and
``--compare``: runs from several machines merged into one table and one plot.

JSON (``schema_version`` 1)::

    {"schema_version": 1, "kind": "ftedge-benchmark", "environment": {...}, "source": {...},
     "options": {...}, "results": [{"artifact", "format", "precision", "backend", "device",
     "batch", "latency_ms": {"min", "mean", "p50", "p90", "p95", "p99", "max", "std"},
     "throughput_ips", "accuracy", "mode", "variant", "cov", "unstable", "iterations",
     "cold_start_ms", "peak_rss_mb", "execution_precision", "power", ...}], "skipped": [...]}

matplotlib is imported only when a plot is written (``pip install 'ftedge[plots]'``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftedge.errors import FtedgeError, MissingExtraError
from ftedge.runtime.report_ratios import add_mode_ratios, mode_ratio_table

SCHEMA_VERSION = 1
KIND = "ftedge-benchmark"
REQUIRED_RESULT_FIELDS = (
    "artifact",
    "format",
    "precision",
    "backend",
    "device",
    "batch",
    "latency_ms",
    "throughput_ips",
    "accuracy",
    "mode",
)
LATENCY_FIELDS = ("min", "mean", "p50", "p90", "p95", "p99", "max", "std")


def build_report(
    environment: dict[str, Any],
    results: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    *,
    options: dict[str, Any],
    source: dict[str, Any],
) -> dict[str, Any]:
    """The JSON document of one benchmark run (end-to-end rows get their ratio to compute)."""
    from ftedge import __version__

    add_mode_ratios(results)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "ftedge_version": __version__,
        "environment": environment,
        "source": source,
        "options": options,
        "results": results,
        "skipped": skipped,
    }


def write_json(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a report atomically, readable like any file the user writes (umask, not 0600)."""
    from ftedge.files import atomic_write_text

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(report, indent=2, default=str) + "\n")
    return p


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``--json`` file, checking it is a benchmark report this version understands."""
    from ftedge.files import read_json

    p = Path(path)
    if not p.exists():
        raise FtedgeError(f"{p} does not exist")
    d = read_json(p, "benchmark report")
    if not isinstance(d, dict) or "schema_version" not in d or "results" not in d:
        raise FtedgeError(f"{p} is not an ftedge benchmark report (no schema_version/results)")
    if int(d["schema_version"]) > SCHEMA_VERSION:
        raise FtedgeError(
            f"{p} has schema_version {d['schema_version']}; this ftedge reads up to "
            f"{SCHEMA_VERSION}: upgrade ftedge"
        )
    for r in d["results"]:
        missing = [k for k in REQUIRED_RESULT_FIELDS if k not in r]
        if missing:
            raise FtedgeError(f"{p}: a result lacks {', '.join(missing)}")
    return d


def machine_of(report: dict[str, Any]) -> str:
    from ftedge.runtime.environment import machine_label

    return machine_label(report.get("environment") or {})


def merge_reports(
    reports: Sequence[dict[str, Any]], names: Sequence[str] | None = None
) -> dict[str, Any]:
    """One report holding every run's results, each labelled with its machine."""
    if not reports:
        raise FtedgeError("nothing to compare")
    labels = list(names) if names else [machine_of(r) for r in reports]
    # Two runs on the same machine still need distinct labels.
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] > 1:
            labels[i] = f"{lab} #{seen[lab]}"
    results = []
    for rep, lab in zip(reports, labels, strict=True):
        for r in rep["results"]:
            results.append({**r, "machine": lab})
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "merged": True,
        "machines": [
            {"machine": lab, "environment": rep.get("environment"), "source": rep.get("source")}
            for rep, lab in zip(reports, labels, strict=True)
        ],
        "environment": {"machines": labels},
        "results": results,
        "skipped": [s for rep in reports for s in rep.get("skipped", [])],
    }


# -- table -------------------------------------------------------------------------------------
def backend_label(r: dict[str, Any]) -> str:
    v = r.get("variant")
    return f"{r['backend']}[{v}]" if v else str(r["backend"])


def precision_label(r: dict[str, Any]) -> str:
    ex = r.get("execution_precision")
    ex_short = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(ex or "", ex)
    if ex_short and ex_short != r["precision"] and r["precision"] != "int8":
        return f"{r['precision']} (runs {ex_short})"
    return str(r["precision"])


def _fmt_ms(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def _fmt_acc(v: Any, task: str | None = None) -> str:
    """Accuracy is a fraction (as in the manifest), shown in percent; mAP as the fraction."""
    if v is None:
        return "-"
    return f"{float(v):.3f}" if task == "detection" else f"{100 * float(v):.2f}%"


def accuracy_header(results: Sequence[dict[str, Any]]) -> str:
    """``accuracy`` (classification), ``mAP`` (detection: mAP@[.5:.95]) or both names."""
    tasks = {r.get("task", "classification") for r in results}
    if tasks == {"detection"}:
        return "mAP"
    return "accuracy / mAP" if "detection" in tasks else "accuracy"


def torch_ratios(results: Sequence[dict[str, Any]]) -> dict[int, float]:
    """For each result (by index): torch eager p50 / its p50 at the same batch, mode, machine."""
    ref = {
        (r.get("machine"), r["batch"], r["mode"]): r["latency_ms"]["p50"]
        for r in results
        if r["backend"] == "torch"
    }
    out = {}
    for i, r in enumerate(results):
        t = ref.get((r.get("machine"), r["batch"], r["mode"]))
        if t is not None and r["latency_ms"]["p50"] > 0:
            out[i] = t / r["latency_ms"]["p50"]
    return out


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """The stdout table (one row per result), with a machine column when results were merged."""
    with_machine = any("machine" in r for r in results)
    ratios = torch_ratios(results)
    head = [
        "artifact",
        "backend",
        "device",
        "precision",
        "batch",
        "mode",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "img/s",
        accuracy_header(results),
        "vs torch",
        "CoV",
    ]
    if with_machine:
        head.insert(0, "machine")
    rows = []
    for i, r in enumerate(results):
        lat = r["latency_ms"]
        cov = r.get("cov")
        flag = (
            "-" if cov is None else f"{100 * cov:.1f}%" + (" UNSTABLE" if r.get("unstable") else "")
        )
        row = [
            r["artifact"],
            backend_label(r),
            r["device"],
            precision_label(r),
            str(r["batch"]),
            r["mode"],
            _fmt_ms(lat["p50"]),
            _fmt_ms(lat["p90"]),
            _fmt_ms(lat["p99"]),
            f"{r['throughput_ips']:.1f}",
            _fmt_acc(r.get("accuracy"), r.get("task")),
            f"{ratios[i]:.2f}x" if i in ratios else "-",
            flag,
        ]
        if with_machine:
            row.insert(0, str(r["machine"]))
        rows.append(row)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def cold_start_table(results: Sequence[dict[str, Any]]) -> str:
    """Cold start (load + first inference) and peak memory, one row per job."""
    seen = set()
    lines = [
        "| artifact | backend | device | load ms | first inference ms | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        key = (r.get("machine"), r["artifact"], backend_label(r), r["device"])
        if key in seen or r.get("cold_start_ms") is None:
            continue
        seen.add(key)
        lines.append(
            f"| {r['artifact']} | {backend_label(r)} | {r['device']} | {r['load_ms']:.1f} | "
            f"{r['first_inference_ms']:.1f} | {r.get('peak_rss_mb') or 0:.0f} |"
        )
    return "\n".join(lines)


def power_table(results: Sequence[dict[str, Any]]) -> str | None:
    rows = [r for r in results if (r.get("power") or {}).get("mean_w") is not None]
    if not rows:
        return None
    lines = [
        "| artifact | backend | batch | mode | mean W | idle W | net W | mJ/image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["power"]
        net = "-" if p.get("net_w") is None else f"{p['net_w']:.2f}"
        idle = "-" if p.get("idle_w") is None else f"{p['idle_w']:.2f}"
        mj = (
            p.get("mj_per_image")
            if p.get("mj_per_image") is not None
            else p.get("mj_per_image_total")
        )
        lines.append(
            f"| {r['artifact']} | {backend_label(r)} | {r['batch']} | {r['mode']} | "
            f"{p['mean_w']:.2f} | {idle} | {net} | {mj:.2f} |"
        )
    return "\n".join(lines)


# -- CSV ---------------------------------------------------------------------------------------
CSV_COLUMNS = [
    "machine",
    "artifact",
    "format",
    "precision",
    "execution_precision",
    "backend",
    "variant",
    "device",
    "batch",
    "mode",
    "threads",
    *[f"{k}_ms" for k in LATENCY_FIELDS],
    "cov",
    "unstable",
    "throughput_ips",
    "iterations",
    "accuracy",
    "accuracy_source",
    "cold_start_ms",
    "load_ms",
    "first_inference_ms",
    "peak_rss_mb",
    "device_memory_mb",
    "power_mean_w",
    "power_net_w",
    "mj_per_image",
]


def to_csv(results: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in results:
        row = {k: r.get(k) for k in CSV_COLUMNS}
        for k in LATENCY_FIELDS:
            row[f"{k}_ms"] = r["latency_ms"][k]
        p = r.get("power") or {}
        row["power_mean_w"] = p.get("mean_w")
        row["power_net_w"] = p.get("net_w")
        row["mj_per_image"] = p.get("mj_per_image")
        w.writerow(row)
    return buf.getvalue()


def write_csv(results: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(to_csv(results))
    return p


# -- plots -------------------------------------------------------------------------------------
def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError("matplotlib (for --plot)", "plots") from None
    return plt


def _series_name(r: dict[str, Any], with_machine: bool) -> str:
    name = f"{r['artifact']} / {backend_label(r)}"
    return f"{r['machine']}: {name}" if with_machine else name


def write_plots(results: Sequence[dict[str, Any]], out_dir: str | os.PathLike[str]) -> list[Path]:
    """``latency_vs_batch.png`` (p50 per batch, one line per artifact/backend, one panel per
    mode) and ``accuracy_vs_latency.png`` (smallest batch, first mode). Returns the files."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with_machine = any("machine" in r for r in results)
    modes = sorted({r["mode"] for r in results})
    written = []
    for name, draw in (
        ("latency_vs_batch.png", _plot_latency_vs_batch),
        ("accuracy_vs_latency.png", _plot_accuracy_vs_latency),
    ):
        fig = draw(plt, results, modes, with_machine)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)
    return written


def _plot_latency_vs_batch(
    plt: Any, results: Sequence[dict[str, Any]], modes: list[str], with_machine: bool
) -> Any:
    from matplotlib.ticker import FuncFormatter, NullLocator

    fig, axes = plt.subplots(1, len(modes), figsize=(7 * len(modes), 5), squeeze=False)
    for ax, m in zip(axes[0], modes, strict=True):
        series: dict[str, list[tuple[int, float]]] = {}
        for r in results:
            if r["mode"] == m:
                series.setdefault(_series_name(r, with_machine), []).append(
                    (r["batch"], r["latency_ms"]["p50"])
                )
        for name, pts in sorted(series.items()):
            pts.sort()
            ax.plot([b for b, _ in pts], [v for _, v in pts], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted({b for pts in series.values() for b, _ in pts})
        ax.set_xticks(ticks, [str(b) for b in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xlabel("batch size")
        ax.set_ylabel("p50 latency per batch (ms)")
        ax.set_title(f"latency vs batch ({m})")
        ax.grid(True, which="both", alpha=0.3)
        if series:
            ax.legend(fontsize=7)
    return fig


def _plot_accuracy_vs_latency(
    plt: Any, results: Sequence[dict[str, Any]], modes: list[str], with_machine: bool
) -> Any:
    smallest = min(x["batch"] for x in results)
    acc_pts = [
        r
        for r in results
        if r["batch"] == smallest and r["mode"] == modes[0] and r.get("accuracy") is not None
    ]
    fig, ax = plt.subplots(figsize=(10, 5))
    markers = "osD^vP*Xh<>p"
    for i, r in enumerate(acc_pts):
        ax.scatter(
            r["latency_ms"]["p50"],
            100 * r["accuracy"],
            s=50,
            marker=markers[i % len(markers)],
            label=_series_name(r, with_machine),
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency (ms), batch {acc_pts[0]['batch'] if acc_pts else 1}, {modes[0]}")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs latency" if acc_pts else "accuracy vs latency (no accuracy recorded)")
    ax.grid(True, which="both", alpha=0.3)
    if acc_pts:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def render_text(report: dict[str, Any]) -> str:
    """Everything printed to stdout for a report: results, cold starts, power, what was skipped."""
    from ftedge.runtime.environment import machine_label

    results = report["results"]
    parts = []
    if report.get("merged"):
        parts.append("machines: " + "; ".join(m["machine"] for m in report.get("machines", [])))
    else:
        parts.append(f"machine: {machine_label(report.get('environment') or {})}")
    if results:
        parts.append(markdown_table(results))
        parts.append(
            "cold start (load + first inference, reported apart):\n" + cold_start_table(results)
        )
        ratios = mode_ratio_table(results)
        if ratios:
            parts.append("end to end vs compute:\n" + ratios)
        pt = power_table(results)
        if pt:
            parts.append("power (idle-subtracted):\n" + pt)
        if any(r.get("unstable") for r in results):
            parts.append("UNSTABLE = CoV > 5%: the machine was noisy; compare medians, re-run.")
        note = (report.get("source") or {}).get("accuracy_note")
        if note:
            parts.append(f"mAP: {note}")
    else:
        parts.append("no results")
    for s in report.get("skipped", []):
        what = " ".join(str(s[k]) for k in ("artifact", "backend", "device") if s.get(k)) + (
            f" batch {s['batch']}" if s.get("batch") else ""
        )
        parts.append(f"skipped: {what}: {s.get('reason')}")
    return "\n\n".join(parts)
