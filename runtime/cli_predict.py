"""``ftedge predict BUNDLE --source ...``: top-k (classification) or objects (detection) per
image or frame, annotated output, FPS."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftedge.runtime.predict import FrameResult, PredictSummary


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "predict",
        help="classify or detect in images, folders, videos, cameras or streams with a bundle",
        description=(
            "Run every image or frame of --source through the best artifact of BUNDLE for this "
            "machine and print the top-k (classification bundle) or the objects per class "
            "(detection bundle) per image/frame, then an FPS summary (on stderr)."
        ),
    )
    p.add_argument("bundle", help="bundle directory made by 'ftedge export' (e.g. bundles/latest)")
    p.add_argument(
        "--source",
        required=True,
        help="image file, folder of images, video file, camera index (0) or rtsp://... URL",
    )
    p.add_argument("--topk", type=int, default=5, help="classes to report per frame (default 5)")
    p.add_argument(
        "--conf",
        type=float,
        default=None,
        help="detection: score threshold (default: the bundle's, chosen on val when trained)",
    )
    p.add_argument("--iou", type=float, default=0.5, help="detection: NMS IoU (default 0.5)")
    p.add_argument(
        "--max-det", type=int, default=100, help="detection: most objects per frame (default 100)"
    )
    p.add_argument(
        "--backend",
        default="auto",
        help="auto (default), onnxruntime, openvino, tensorrt or torch (the PyTorch reference)",
    )
    p.add_argument("--device", default=None, help="cpu (default), cuda, gpu or npu (OpenVINO)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None)
    p.add_argument("--save", metavar="DIR", default=None, help="write annotated images / .mp4 here")
    p.add_argument(
        "--json", metavar="FILE", default=None, help="JSON lines per frame ('-': stdout)"
    )
    p.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--timeout", type=float, default=10.0, help="stream open/read timeout, seconds")
    p.add_argument("--quiet", action="store_true", help="no per-frame lines, only the summary")
    p.add_argument(
        "--no-verify", action="store_true", help="skip the sha256 check of the bundle files"
    )
    p.add_argument(
        "--preprocessing",
        choices=("auto", "fast", "exact"),
        default="auto",
        help="classification: auto (the fast path where the export verified it), fast, or "
        "exact (the training-identical path)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    to_stdout = not args.quiet and args.json != "-"

    def show(res: FrameResult) -> None:
        print(res.line(), flush=True)

    try:
        summary = _predict(args, show if to_stdout else None)
    except BrokenPipeError:  # `ftedge predict ... | head`: the reader is gone, stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    sys.stderr.write(summary.line() + "\n")
    for path in summary.saved[:1]:
        more = f" (+{len(summary.saved) - 1} more)" if len(summary.saved) > 1 else ""
        sys.stderr.write(f"annotated output: {path}{more}\n")
    return 0


def _predict(
    args: argparse.Namespace, show: Callable[[FrameResult], None] | None
) -> PredictSummary:
    from ftedge.runtime.predict import predict

    return predict(
        args.bundle,
        args.source,
        topk=args.topk,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        save=args.save,
        json_path=args.json,
        max_frames=args.max_frames,
        on_result=show,
        keep_results=False,
        timeout_s=args.timeout,
        verify=not args.no_verify,
        preprocessing=args.preprocessing,
    )
