"""INT8 accuracy control on ONNX: ftedge's sensitivity search vs NNCF's, side by side.

    .venv/bin/python benchmarks/int8_accuracy_control.py                     # bundles/latest
    .venv/bin/python benchmarks/int8_accuracy_control.py BUNDLE --max-drop 1.0,0.2 --json out.json

For every budget (points of top-1 accuracy), on the bundle's FP32 ONNX and its recorded
calibration images (``manifest.data.calibration``) and test split (``manifest.data.test``):

- ``ftedge``: ``ftedge export BUNDLE --formats onnx --precision int8 --max-accuracy-drop X`` on a
  copy of the bundle (onnxruntime static Q/DQ u8s8, then the sensitivity search keeping the fewest
  nodes in float); its time is the artifact's ``export_seconds`` (quantization, search and
  verification on the test split);
- ``nncf``: ``nncf.quantize_with_accuracy_control`` on the same ``onnx.ModelProto`` (NNCF
  defaults: symmetric int8 activations and weights), validated by top-1 accuracy in
  onnxruntime on the same test split, same calibration images; its time is that call.

Both INT8 models are then scored the same way in onnxruntime on the test split: accuracy, drop vs
the FP32 ONNX, top-1 agreement with the FP32 ONNX, compute layers (Conv/Gemm/MatMul) left in
float, file size, and batch-1 latency (median; informative only on a shared machine). One table,
and JSON (default ``benchmarks/results/int8_accuracy_control.json``) with the machine and load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.export.calibration import CalibrationSet, load_crops
from ftedge.runtime.preprocess import PreprocessSpec, normalize

FP32_ONNX = "onnx/model.fp32.onnx"
INT8_ONNX = "onnx/model.int8.onnx"
COMPUTE_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class Data:
    """The bundle's FP32 ONNX, calibration set and test split, with FP32 ONNX logits."""

    fp32_onnx: Path
    calib: CalibrationSet
    images: np.ndarray
    labels: np.ndarray
    fp32_logits: np.ndarray


@dataclass(frozen=True)
class Row:
    """One INT8 model, scored against the FP32 ONNX on the test split."""

    method: str
    max_drop: float
    accuracy: float
    drop_points: float
    top1_agreement: float
    float_layers: int
    compute_layers: int
    seconds: float
    size_mb: float
    p50_ms_batch1: float
    details: dict[str, Any]


def session(model: Any) -> Any:
    """An onnxruntime CPU session from a path or an ``onnx.ModelProto``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    src = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def logits(sess: Any, images: np.ndarray, batch: int = 50) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate(
        [sess.run(None, {name: images[i : i + batch]})[0] for i in range(0, len(images), batch)]
    )


def load_data(bundle: Path) -> Data:
    """Read the bundle's manifest.json (plain JSON) and its dataset at ``data.root``."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    spec = PreprocessSpec.from_dict(manifest["preprocessing"])
    data = manifest["data"]
    test = data["test"]
    calib = CalibrationSet.from_samples(
        data["root"], [(str(p), int(y)) for p, y in data["calibration"]], spec
    )
    images = normalize(load_crops(data["root"], test, spec), spec)
    fp32 = bundle / FP32_ONNX
    return Data(
        fp32, calib, images, np.array([int(t[1]) for t in test]), logits(session(fp32), images)
    )


def float_layers(model_path: Path) -> tuple[int, int]:
    """(Conv/Gemm/MatMul nodes whose weights are not dequantized int8, all such nodes)."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    compute = [n for n in graph.node if n.op_type in COMPUTE_OPS]
    return sum(n.input[1] not in dequantized for n in compute), len(compute)


def p50_ms(sess: Any, image: np.ndarray, runs: int = 200) -> float:
    name = sess.get_inputs()[0].name
    feed = {name: image[None]}
    for _ in range(20):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def score(
    method: str, max_drop: float, model_path: Path, data: Data, seconds: float, details: dict
) -> Row:
    """Accuracy, drop and agreement vs the FP32 ONNX, float layers, size, latency."""
    sess = session(model_path)
    out = logits(sess, data.images)
    ref = data.fp32_logits.argmax(1)
    accuracy = float((out.argmax(1) == data.labels).mean())
    kept, total = float_layers(model_path)
    return Row(
        method=method,
        max_drop=max_drop,
        accuracy=accuracy,
        drop_points=round(100 * (float((ref == data.labels).mean()) - accuracy), 2),
        top1_agreement=float((out.argmax(1) == ref).mean()),
        float_layers=kept,
        compute_layers=total,
        seconds=round(seconds, 1),
        size_mb=round(model_path.stat().st_size / 1e6, 2),
        p50_ms_batch1=round(p50_ms(sess, data.images[0]), 3),
        details=details,
    )


def run_ftedge(bundle: Path, data: Data, max_drop: float, work: Path) -> Row:
    """``ftedge export --formats onnx --precision int8`` on a copy of the bundle."""
    copy = work / f"ftedge-{max_drop}"
    shutil.copytree(bundle, copy, symlinks=False)
    summary = work / f"ftedge-{max_drop}.json"
    cmd = [sys.executable, "-m", "ftedge", "export", str(copy), "--formats", "onnx"]
    cmd += ["--precision", "int8", "--max-accuracy-drop", str(max_drop), "--json", str(summary)]
    wall = time.perf_counter()
    # Exit 1 means "over budget": the summary is still written and says so.
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - wall
    rows = json.loads(summary.read_text())["artifacts"]
    int8 = next(r for r in rows if r["artifact"] == "onnx-int8")
    manifest = json.loads((copy / "manifest.json").read_text())
    art = next(
        a for a in manifest["artifacts"] if a["format"] == "onnx" and a["precision"] == "int8"
    )
    details = {
        "status": int8["status"],
        "excluded_nodes": art["details"].get("excluded_nodes", []),
        "attempts": art["details"].get("sensitivity", {}).get("attempts", []),
        "command_wall_seconds": round(wall, 1),
    }
    return score("ftedge", max_drop, copy / INT8_ONNX, data, int8["export_seconds"], details)


def run_nncf(data: Data, max_drop: float, work: Path) -> Row:
    """``nncf.quantize_with_accuracy_control`` on the FP32 ``onnx.ModelProto``."""
    import nncf
    import onnx

    nncf.set_log_level(logging.ERROR)
    name = data.calib.input_name
    n = len(data.calib)
    bs = max(d for d in range(1, min(32, n) + 1) if n % d == 0)  # equal batches
    calib = nncf.Dataset(list(data.calib.batches(bs)), lambda x: {name: x})
    val = nncf.Dataset(
        [(data.images[i : i + 50], data.labels[i : i + 50]) for i in range(0, len(data.images), 50)]
    )

    def validate(model: Any, items: Any) -> float:
        sess = session(model)
        hits = [int((sess.run(None, {name: x})[0].argmax(1) == y).sum()) for x, y in items]
        return sum(hits) / len(data.labels)

    t = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars
        q = nncf.quantize_with_accuracy_control(
            onnx.load(str(data.fp32_onnx)),
            calib,
            val,
            validate,
            max_drop=max_drop / 100.0,
            drop_type=nncf.DropType.ABSOLUTE,
            subset_size=n // bs,
        )
    seconds = time.perf_counter() - t
    path = work / f"nncf-{max_drop}.onnx"
    onnx.save(q, str(path))
    return score("nncf", max_drop, path, data, seconds, {"nncf_version": nncf.__version__})


HEADER = (
    f"{'budget':>6}  {'method':<7} {'accuracy':>8} {'drop pt':>7} {'top1 agr':>8} "
    f"{'float layers':>12} {'seconds':>8} {'MB':>6} {'p50 ms b1':>9}"
)


def row_line(r: Row) -> str:
    return (
        f"{r.max_drop:>6.2f}  {r.method:<7} {100 * r.accuracy:>7.2f}% {r.drop_points:>+7.2f} "
        f"{100 * r.top1_agreement:>7.1f}% {f'{r.float_layers}/{r.compute_layers}':>12} "
        f"{r.seconds:>8.1f} {r.size_mb:>6.2f} {r.p50_ms_batch1:>9.3f}"
    )


def table(rows: list[Row], fp32_accuracy: float) -> str:
    lines = [f"FP32 ONNX accuracy {100 * fp32_accuracy:.2f} %", HEADER, "-" * len(HEADER)]
    return "\n".join(lines + [row_line(r) for r in rows])


def machine() -> dict[str, Any]:
    import nncf
    import onnxruntime

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "nncf": nncf.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", nargs="?", default="bundles/latest", type=Path)
    p.add_argument("--max-drop", default="1.0,0.2", help="budgets in points, comma-separated")
    p.add_argument("--json", default="benchmarks/results/int8_accuracy_control.json")
    args = p.parse_args(argv)
    budgets = [float(b) for b in args.max_drop.split(",")]
    data = load_data(args.bundle.resolve())
    load_before = os.getloadavg()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ftedge-int8-ac-") as tmp:
        for budget in budgets:
            rows.append(run_ftedge(args.bundle.resolve(), data, budget, Path(tmp)))
            rows.append(run_nncf(data, budget, Path(tmp)))
            for r in rows[-2:]:
                print(row_line(r), file=sys.stderr, flush=True)
    fp32_accuracy = float((data.fp32_logits.argmax(1) == data.labels).mean())
    print(table(rows, fp32_accuracy))
    payload = {
        "schema_version": 1,
        "bundle": str(args.bundle.resolve()),
        "fp32_accuracy": fp32_accuracy,
        "test_images": len(data.labels),
        "calibration_images": len(data.calib),
        "machine": machine(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "rows": [asdict(r) for r in rows],
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
