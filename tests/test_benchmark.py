"""ftedge benchmark on a real tiny bundle: real onnxruntime/OpenVINO sessions, real files, child
processes; numbers checked for self-consistency (never for speed)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from ftedge.runtime.bench_select import jobs_for_bundle, jobs_for_model
from ftedge.runtime.bench_spec import BenchmarkOptions, Job
from ftedge.runtime.benchmark import run_benchmark
from ftedge.runtime.report import (
    LATENCY_FIELDS,
    REQUIRED_RESULT_FIELDS,
    load_report,
    markdown_table,
    merge_reports,
    to_csv,
    write_json,
    write_plots,
)
from ftedge.runtime.stats import check_consistent

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

FAST = dict(min_iters=5, min_seconds=0.0, warmup_iters=2, warmup_seconds=0.0, idle_seconds=0.0)
SIZE = 32
CLASSES = 3


def _tiny_onnx(path: Path, *, baked: bool = False, batch: int | str = "batch") -> None:
    """Conv-ReLU-GAP-Gemm classifier; ``baked``: uint8 NHWC input normalised inside the graph."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "W"),
        numpy_helper.from_array(np.zeros(8, np.float32), "B"),
        numpy_helper.from_array(rng.standard_normal((CLASSES, 8)).astype(np.float32), "G"),
        numpy_helper.from_array(np.zeros(CLASSES, np.float32), "GB"),
    ]
    nodes = []
    x = "input"
    if baked:
        inits += [
            numpy_helper.from_array(np.array(1 / 127.5, np.float32), "scale"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        ]
        nodes += [
            helper.make_node("Cast", ["input"], ["xf"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["xf"], ["xt"], perm=[0, 3, 1, 2]),
            helper.make_node("Mul", ["xt", "scale"], ["xs"]),
            helper.make_node("Sub", ["xs", "one"], ["xn"]),
        ]
        x = "xn"
    nodes += [
        helper.make_node("Conv", [x, "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "G", "GB"], ["logits"], transB=1),
    ]
    shape = [batch, SIZE, SIZE, 3] if baked else [batch, 3, SIZE, SIZE]
    dtype = TensorProto.UINT8 if baked else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", dtype, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle: ONNX fp32, ONNX uint8-baked, OpenVINO IR fp32, test images on disk."""
    from PIL import Image

    from ftedge.files import sha256_file
    from ftedge.runtime.manifest import Manifest

    out = tmp_path_factory.mktemp("bundle")
    _tiny_onnx(out / "model.onnx")
    _tiny_onnx(out / "model_uint8.onnx", baked=True)
    arts = []
    inp = {"name": "input", "dtype": "float32", "layout": "NCHW", "shape": [-1, 3, SIZE, SIZE]}
    baked = {
        "name": "input",
        "dtype": "uint8",
        "layout": "NHWC",
        "shape": [-1, SIZE, SIZE, 3],
        "color": "rgb",
    }
    outp = {"name": "logits", "kind": "logits"}
    for fmt, rel, files, ispec, acc in [
        ("onnx", "model.onnx", ["model.onnx"], inp, 0.5),
        ("onnx", "model_uint8.onnx", ["model_uint8.onnx"], baked, 0.5),
    ]:
        arts.append(
            {
                "format": fmt,
                "precision": "fp32",
                "path": rel,
                "sha256": sha256_file(out / rel),
                "accuracy": acc,
                "input": ispec,
                "output": outp,
                "files": {f: sha256_file(out / f) for f in files},
            }
        )
    try:
        import openvino as ov

        (out / "ov").mkdir()
        ov.save_model(ov.convert_model(str(out / "model.onnx")), str(out / "ov" / "model.xml"))
        arts.append(
            {
                "format": "openvino",
                "precision": "fp32",
                "path": "ov/model.xml",
                "accuracy": 0.5,
                "input": inp,
                "output": outp,
                "files": {f: sha256_file(out / f) for f in ("ov/model.xml", "ov/model.bin")},
            }
        )
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    tests = []
    for i in range(6):
        d = out / "data" / f"c{i % CLASSES}"
        d.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 255, (40 + i, 48, 3), dtype=np.uint8)
        Image.fromarray(img).save(d / f"{i}.{'png' if i % 2 else 'jpg'}")
        tests.append([f"c{i % CLASSES}/{i}.{'png' if i % 2 else 'jpg'}", i % CLASSES])
    # The reference logits (PyTorch's, in a real bundle): here plain onnxruntime on the fp32 model.
    import onnxruntime as ort

    from ftedge.runtime.preprocess import PreprocessSpec, preprocess_file

    spec = PreprocessSpec(input_size=(3, SIZE, SIZE), interpolation="bilinear", crop_pct=0.875)
    x = np.stack([preprocess_file(str(out / "data" / p), spec) for p, _ in tests])
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    np.save(out / "reference_logits.npy", sess.run(None, {"input": x})[0])
    Manifest.from_dict(
        dict(
            schema_version=2,
            labels=["a", "b", "c"],
            preprocessing={
                "input_size": [3, SIZE, SIZE],
                "interpolation": "bilinear",
                "crop_pct": 0.875,
                "mean": [0.5] * 3,
                "std": [0.5] * 3,
            },
            input=inp,
            output=outp,
            data={"root": str(out / "data"), "test": tests},
            reference={"accuracy": 0.5, "logits": "reference_logits.npy"},
            artifacts=arts,
        )
    ).save(out)
    return out


def _check_result(r: dict) -> None:
    for k in REQUIRED_RESULT_FIELDS:
        assert k in r, k
    lat = r["latency_ms"]
    assert set(lat) == set(LATENCY_FIELDS)
    assert lat["min"] <= lat["p50"] <= lat["max"]
    assert check_consistent(lat, r["throughput_ips"], r["batch"]) == []
    assert r["throughput_ips"] == pytest.approx(r["batch"] * 1000 / lat["mean"])
    assert r["iterations"] >= FAST["min_iters"]
    assert r["cold_start_ms"] == pytest.approx(r["load_ms"] + r["first_inference_ms"])
    assert r["peak_rss_mb"] > 10
    assert r["unstable"] == (r["cov"] > 0.05)
    assert r["power"] is None  # not a Jetson
    assert r["mode"] in ("compute", "end_to_end")


def test_plan_covers_every_artifact_and_backend(bundle: Path) -> None:
    plan = jobs_for_bundle(bundle, BenchmarkOptions(**FAST))
    got = {(j.artifact, j.backend, j.variant) for j in plan.jobs}
    assert ("onnx-fp32", "onnxruntime", None) in got
    assert ("onnx-fp32-baked", "onnxruntime", None) in got
    pytest.importorskip("openvino")
    assert ("onnx-fp32", "openvino", None) in got  # OpenVINO reads ONNX too
    assert ("openvino-fp32", "openvino", None) in got  # default hint (bf16 on AMX/AVX512-BF16)
    assert ("openvino-fp32", "openvino", "f32") in got  # f32 hint
    # no checkpoint recorded in this bundle: the torch reference is skipped with a reason
    assert any(s["backend"] == "torch" for s in plan.skipped)


def test_isolated_run_json_csv_plots_compare(bundle: Path, tmp_path: Path) -> None:
    opts = BenchmarkOptions(
        batches=(1, 3),
        modes=("compute", "end_to_end"),
        backends=("onnxruntime", "openvino"),
        **FAST,
    )
    plan = jobs_for_bundle(bundle, opts)
    plan.jobs = [j for j in plan.jobs if j.variant != "f32"][:3]  # keep the test short
    report = run_benchmark(plan)
    results = report["results"]
    assert len(results) == len(plan.jobs) * 2 * 2, report["skipped"]
    for r in results:
        _check_result(r)
        assert r["accuracy"] == 0.5 and r["accuracy_source"] == "manifest"
    # one child process per job: each has its own pid-specific RSS, all jobs were measured
    assert {r["artifact"] for r in results} >= {"onnx-fp32", "onnx-fp32-baked"}

    # JSON contract
    path = write_json(report, tmp_path / "a.json")
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1
    assert {"cpu", "libraries", "host"} <= set(data["environment"])
    assert load_report(path)["results"][0]["latency_ms"]["p50"] > 0

    # CSV parses back to the same numbers
    rows = list(csv.DictReader(io.StringIO(to_csv(results))))
    assert len(rows) == len(results)
    assert float(rows[0]["p50_ms"]) == pytest.approx(results[0]["latency_ms"]["p50"])
    assert int(rows[-1]["batch"]) == results[-1]["batch"]

    # PNG plots are real images
    from PIL import Image

    files = write_plots(results, tmp_path / "plots")
    assert {f.name for f in files} == {"latency_vs_batch.png", "accuracy_vs_latency.png"}
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(f) as im:
            im.verify()
            assert im.size[0] > 100

    # --compare: two machines merged into one table with a machine column
    other = json.loads(path.read_text())
    other["environment"]["host"] = "jetson"
    other["environment"]["jetson"] = {"model": "NVIDIA Jetson Orin Nano Developer Kit"}
    write_json(other, tmp_path / "b.json")
    merged = merge_reports([load_report(tmp_path / "a.json"), load_report(tmp_path / "b.json")])
    assert len(merged["results"]) == 2 * len(results)
    machines = {r["machine"] for r in merged["results"]}
    assert len(machines) == 2 and any("Jetson Orin Nano" in m for m in machines)
    table = markdown_table(merged["results"])
    assert table.splitlines()[0].startswith("| machine |")
    assert len(table.splitlines()) == 2 + len(merged["results"])


def test_in_process_openvino_reports_execution_precision(bundle: Path) -> None:
    pytest.importorskip("openvino")
    opts = BenchmarkOptions(backends=("openvino",), isolate=False, **FAST)
    plan = jobs_for_bundle(bundle, opts)
    plan.jobs = [j for j in plan.jobs if j.format == "openvino"]
    report = run_benchmark(plan)
    by_variant = {r["variant"]: r for r in report["results"]}
    assert by_variant["f32"]["execution_precision"] == "f32"
    assert by_variant[None]["execution_precision"] in ("f32", "bf16", "f16")
    for r in report["results"]:
        _check_result(r)
        assert r["shape"] == "static"  # compiled per batch size, like benchmark_app -shape
        # OpenVINO's own request latency is measured inside the timed call: never above it
        inner = r["backend_latency_ms"]
        assert set(inner) == set(LATENCY_FIELDS)
        assert inner["min"] <= r["latency_ms"]["min"] * 1.01
        assert inner["p50"] <= r["latency_ms"]["p50"] * 1.01
    # --dynamic-shapes: the dynamic-batch model as ftedge.runtime.load() runs it
    dyn = BenchmarkOptions(
        backends=("openvino",), isolate=False, openvino_static=False, batches=(1, 2), **FAST
    )
    plan = jobs_for_bundle(bundle, dyn)
    plan.jobs = [j for j in plan.jobs if j.format == "openvino" and j.variant is None]
    results = run_benchmark(plan)["results"]
    assert [(r["batch"], r["shape"]) for r in results] == [(1, "dynamic"), (2, "dynamic")]


def test_measured_accuracy_reuses_export_verification(bundle: Path) -> None:
    """--measure-accuracy runs the test split through the backend being timed and compares it
    with the reference logits (ftedge.export.verify): ORT on the fp32 ONNX matches exactly."""
    ref = np.load(bundle / "reference_logits.npy")
    from ftedge.runtime.manifest import Manifest

    labels = np.array([y for _, y in Manifest.load(bundle).data.test])
    want = float(np.mean(ref.argmax(1) == labels))
    opts = BenchmarkOptions(backends=("onnxruntime",), isolate=False, measure_accuracy=True, **FAST)
    plan = jobs_for_bundle(bundle, opts)
    report = run_benchmark(plan)
    by = {r["artifact"]: r for r in report["results"]}
    r = by["onnx-fp32"]
    assert r["accuracy_source"] == "measured"
    assert r["accuracy"] == pytest.approx(want)
    assert r["parity"]["max_abs_diff"] < 1e-5 and r["parity"]["top1_agreement"] == 1.0
    # the uint8-baked model gets the uint8 crops and normalises inside the graph
    assert by["onnx-fp32-baked"]["parity"]["max_abs_diff"] < 1e-4


def test_bare_model_with_static_batch(tmp_path: Path) -> None:
    model = tmp_path / "static.onnx"
    _tiny_onnx(model, batch=1)
    opts = BenchmarkOptions(
        batches=(1, 4), backends=("onnxruntime",), modes=("end_to_end",), isolate=False, **FAST
    )
    plan = jobs_for_model(model, opts)
    assert [(j.format, j.precision, j.backend) for j in plan.jobs] == [
        ("onnx", "fp32", "onnxruntime")
    ]
    report = run_benchmark(plan)
    (r,) = report["results"]  # batch 4 cannot run on a fixed batch-1 model
    assert r["batch"] == 1 and r["mode"] == "end_to_end" and r["accuracy"] is None
    _check_result(r)
    assert any(s.get("batch") == 4 and "fixed batch" in s["reason"] for s in report["skipped"])


def test_failing_job_is_reported_not_fatal(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx file")
    job = Job("onnx-fp32", "onnx", "fp32", "onnxruntime", "cpu", str(bad))
    from ftedge.runtime.bench_select import JobSet
    from ftedge.runtime.bench_worker import run_job_isolated

    out = run_job_isolated(job, BenchmarkOptions(**FAST))
    assert "onnxruntime cannot load" in out["error"]
    report = run_benchmark(
        JobSet([job], BenchmarkOptions(isolate=False, **FAST), {"kind": "model"})
    )
    assert report["results"] == [] and "cannot load" in report["skipped"][0]["reason"]


def test_cli_bundle_json_and_compare(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ftedge.cli import main

    out = tmp_path / "cli.json"
    rc = main(
        [
            "benchmark",
            str(bundle),
            "--backends",
            "onnxruntime",
            "--batch",
            "1,2",
            "--min-iters",
            "5",
            "--min-seconds",
            "0",
            "--warmup-iters",
            "2",
            "--warmup-seconds",
            "0",
            "--json",
            str(out),
            "--csv",
            str(tmp_path / "cli.csv"),
            "--no-accuracy",
            "--quiet",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "| artifact | backend |" in text and "onnx-fp32" in text
    data = load_report(out)
    assert {r["batch"] for r in data["results"]} == {1, 2}
    assert all(r["accuracy"] is None for r in data["results"])
    assert main(["benchmark", "--compare", str(out), str(out)]) == 0
    assert "| machine |" in capsys.readouterr().out


def test_cli_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ftedge.cli import main

    assert main(["benchmark", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a bundle" in err
    assert main(["benchmark", "--compare", str(tmp_path / "missing.json")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["benchmark", "--model", str(tmp_path / "m.tflite")]) == 1
    with pytest.raises(SystemExit) as exc:  # argparse errors: one line, exit code 1
        main(["benchmark", "--batch", "0"])
    assert exc.value.code == 1


def test_benchmark_modules_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ftedge.runtime.benchmark, ftedge.runtime.bench_worker, "
        "ftedge.runtime.report, ftedge.runtime.power, "
        "ftedge.runtime.environment, ftedge.runtime.cli_benchmark; "
        "from ftedge.runtime.environment import capture_environment; capture_environment(); "
        "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tensorrt_jobs_use_the_tensorrt_runner(tmp_path: Path) -> None:
    """No GPU here: the job finds the TensorRT runner class and fails with a clear error."""
    from ftedge.runtime.bench_measure import _make_runner, run_job

    job = Job("tensorrt-fp16", "tensorrt", "fp16", "tensorrt", "cuda:0", str(tmp_path / "m.plan"))
    runner = _make_runner(job, BenchmarkOptions(**FAST))
    assert runner.backend == "tensorrt" and runner.device == "cuda:0"
    out = run_job(job, BenchmarkOptions(**FAST))
    assert out["error"] and "\n" not in out["error"]
    # a bare .plan without TensorRT installed: planned as skipped, with the reason
    (tmp_path / "m.plan").write_bytes(b"\0" * 16)
    plan = jobs_for_model(tmp_path / "m.plan", BenchmarkOptions(**FAST))
    if not plan.jobs:
        assert plan.skipped and "tensorrt" in plan.skipped[0]["reason"]


def test_both_modes_alternate_in_stretches_that_add_up() -> None:
    """--mode both times compute and end-to-end in alternating stretches: each stretch gets
    its share of the iteration budget, later ones only a short re-warm, and the stretches of a
    mode merge into one row's latencies and timed windows."""
    from ftedge.runtime.bench_measure import MODE_ROUNDS
    from ftedge.runtime.bench_timing import REWARM_ITERS, TimedLoop, timed_loop

    calls: list[int] = []
    opts = BenchmarkOptions(**{**FAST, "min_iters": 8, "warmup_iters": 3})
    first = timed_loop(lambda: calls.append(1), opts, share=1.0 / MODE_ROUNDS)
    assert len(calls) == 3 + len(first.latencies_s) and len(first.latencies_s) == 2
    calls.clear()
    later = timed_loop(lambda: calls.append(1), opts, share=1.0 / MODE_ROUNDS, warm=False)
    assert len(calls) == REWARM_ITERS + len(later.latencies_s)
    merged = TimedLoop.merged([first, later])
    assert merged.latencies_s == first.latencies_s + later.latencies_s
    assert merged.windows == first.windows + later.windows
    assert first.windows[0][1] <= later.windows[0][0]
