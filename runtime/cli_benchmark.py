"""``ftedge benchmark``: latency, throughput, accuracy (mAP for detection), memory and (Jetson)
power of a bundle.

    ftedge benchmark bundles/latest --batch 1,8 --mode both --json bench.json --plot plots/
    ftedge benchmark --model model.onnx --threads 2
    ftedge benchmark --compare jetson.json laptop.json --plot plots/

Imports nothing heavy at module level (``ftedge --help`` stays fast).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ftedge.errors import FtedgeError


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return values


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "benchmark",
        help="measure every artifact of a bundle on every backend available here",
        description=(
            "Measure latency (min/mean/p50/p90/p95/p99/max/std/CoV), throughput, cold start, "
            "peak memory, accuracy and (on a Jetson) power of every artifact x backend, each in "
            "its own process. Prints a Markdown table; --json/--csv/--plot write files."
        ),
    )
    p.add_argument("bundle", nargs="?", help="bundle directory (default: bundles/latest)")
    _add_input_options(p)
    _add_run_options(p)
    _add_timing_options(p)
    _add_output_options(p)
    _add_accuracy_options(p)
    _add_execution_options(p)
    return p


def _add_input_options(p: argparse.ArgumentParser) -> None:
    """What to measure instead of a bundle: a bare model, or earlier results to merge."""
    p.add_argument("--model", help="benchmark a bare model file (.onnx, .xml, .plan/.engine)")
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="JSON",
        help="merge --json files from several machines into one table/plot",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Batch sizes, threads, backends, device and mode."""
    p.add_argument("--batch", type=_int_list, default=(1,), help="batch sizes, e.g. 1,2,4,8,16")
    p.add_argument("--threads", type=int, help="intra-op threads per backend (default: library's)")
    p.add_argument(
        "--backends", help="comma list: onnxruntime,openvino,tensorrt,torch (default: all)"
    )
    p.add_argument("--device", help="cpu (default), cuda, cuda:N, tensorrt, gpu, npu")
    p.add_argument(
        "--mode",
        choices=["compute", "end_to_end", "both"],
        default="compute",
        help="compute-only (input in place) or end-to-end (decode, preprocess, infer, top-k)",
    )


def _add_timing_options(p: argparse.ArgumentParser) -> None:
    """How long to warm up and to time."""
    p.add_argument("--min-iters", type=int, default=50, help="timed iterations, at least")
    p.add_argument("--min-seconds", type=float, default=2.0, help="timed seconds, at least")
    p.add_argument("--warmup-iters", type=int, default=10, help="warm-up iterations, at least")
    p.add_argument("--warmup-seconds", type=float, default=0.5, help="warm-up seconds, at least")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    """Files written besides the printed table."""
    p.add_argument("--json", help="write the results (schema in docs/benchmark.md) to this file")
    p.add_argument("--csv", help="write one CSV row per result to this file")
    p.add_argument(
        "--plot", metavar="DIR", help="write latency_vs_batch.png, accuracy_vs_latency.png"
    )


def _add_accuracy_options(p: argparse.ArgumentParser) -> None:
    """Accuracy, the PyTorch reference, and the images end-to-end mode reads."""
    p.add_argument("--no-accuracy", action="store_true", help="leave accuracy out")
    p.add_argument(
        "--measure-accuracy",
        action="store_true",
        help="re-measure accuracy on the test split with each backend (default: the "
        "manifest's, measured at export)",
    )
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager reference")
    p.add_argument("--torch-checkpoint", help="run dir/checkpoint for the PyTorch reference")
    p.add_argument("--images", help="folder of images for end-to-end mode (default: test split)")
    p.add_argument(
        "--frames",
        metavar="WxH",
        help="end-to-end mode on in-memory camera-like BGR frames of this size (e.g. 640x480) "
        "instead of image files: preprocessing, inference and top-k, as a camera app calls "
        "Classifier.classify (classification bundles)",
    )
    p.add_argument(
        "--preprocessing",
        choices=["auto", "fast", "exact"],
        default="auto",
        help="with --frames: auto (the fast path where the export verified it), fast, or exact "
        "(the training-identical path)",
    )


def _add_execution_options(p: argparse.ArgumentParser) -> None:
    """Power source, backend tuning, process isolation and progress output."""
    p.add_argument(
        "--power",
        choices=["auto", "sysfs", "tegrastats", "none"],
        default="auto",
        help="Jetson power source (default: auto)",
    )
    p.add_argument(
        "--ort-spin", action="store_true", help="keep onnxruntime threads spinning between runs"
    )
    p.add_argument(
        "--dynamic-shapes",
        action="store_true",
        help="time OpenVINO's dynamic-batch model as loaded (default: compile each "
        "batch size static, like benchmark_app -shape)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run every backend in this process (debugging; backends can disturb each other)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _image_files(folder: str) -> list[str]:
    from pathlib import Path

    from ftedge.data.folders import IMAGE_EXTENSIONS

    d = Path(folder)
    if not d.is_dir():
        raise FtedgeError(f"--images {folder} is not a directory")
    files = sorted(str(f) for f in d.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FtedgeError(f"--images {folder} holds no image files")
    return files


def _write_outputs(report: dict[str, Any], args: argparse.Namespace) -> None:
    from ftedge.runtime import report as rep

    if args.json:
        rep.write_json(report, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.csv:
        rep.write_csv(report["results"], args.csv)
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.plot and report["results"]:
        for f in rep.write_plots(report["results"], args.plot):
            print(f"wrote {f}", file=sys.stderr)


def _check_outputs(args: argparse.Namespace) -> None:
    """--json/--csv/--plot are of the right kind and none of them is an input, before any work."""
    from pathlib import Path

    from ftedge.files import check_output_kinds, check_output_not_input

    check_output_kinds([("--json", args.json), ("--csv", args.csv)], [("--plot", args.plot)])
    inputs = [Path(p) for p in (args.compare or [])]
    for given in (args.bundle or "bundles/latest", args.model, args.images, args.torch_checkpoint):
        if given is not None and Path(given).is_dir():
            inputs += [p for p in Path(given).rglob("*") if p.is_file()]
        elif given is not None:
            inputs.append(Path(given))
    outputs = [p for p in (args.json, args.csv) if p is not None]
    check_output_not_input(outputs, inputs, "--json/--csv")


def _frame_size(args: argparse.Namespace) -> tuple[int, int] | None:
    """--frames as (width, height), checked against the options it cannot go with."""
    if not args.frames:
        return None
    from ftedge.runtime.bench_frames import parse_frame_size

    if args.images or args.model:
        raise FtedgeError("--frames replaces --images and needs a bundle (not --model)")
    return parse_frame_size(args.frames)


def run(args: argparse.Namespace) -> int:
    from ftedge.runtime import report as rep

    _check_outputs(args)
    if args.compare:
        if args.bundle or args.model:
            raise FtedgeError("--compare takes JSON files only (no bundle or --model)")
        merged = rep.merge_reports([rep.load_report(p) for p in args.compare])
        print(rep.render_text(merged))
        _write_outputs(merged, args)
        return 0

    from ftedge.runtime.bench_select import jobs_for_bundle, jobs_for_model
    from ftedge.runtime.benchmark import BenchmarkOptions, run_benchmark

    if args.bundle and args.model:
        raise FtedgeError("give a bundle or --model, not both")
    modes = ("compute", "end_to_end") if args.mode == "both" else (args.mode,)
    frames = _frame_size(args)
    options = BenchmarkOptions(
        batches=tuple(args.batch),
        modes=modes,
        threads=args.threads,
        backends=tuple(b for b in args.backends.split(",") if b.strip()) if args.backends else None,
        device=args.device,
        min_iters=args.min_iters,
        min_seconds=args.min_seconds,
        warmup_iters=args.warmup_iters,
        warmup_seconds=args.warmup_seconds,
        isolate=not args.in_process,
        ort_spin=args.ort_spin,
        openvino_static=not args.dynamic_shapes,
        power=args.power,
        measure_accuracy=args.measure_accuracy and not args.no_accuracy,
        include_torch=not args.no_torch,
        frames=frames,
        preprocessing=args.preprocessing,
    )
    images = _image_files(args.images) if args.images else None
    if args.model:
        plan = jobs_for_model(args.model, options, images=images)
    else:
        plan = jobs_for_bundle(
            args.bundle or "bundles/latest",
            options,
            torch_checkpoint=args.torch_checkpoint,
            images=images,
        )
    if not plan.jobs:
        reasons = "; ".join(s["reason"] for s in plan.skipped) or "no backend available"
        raise FtedgeError(f"nothing to benchmark: {reasons}")
    progress = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    report = run_benchmark(plan, progress=progress)
    if args.no_accuracy:
        for r in report["results"]:
            r["accuracy"] = None
            r["accuracy_source"] = None
            if "map" in r:
                r["map"] = None
    print(rep.render_text(report))
    _write_outputs(report, args)
    return 0 if report["results"] else 1
