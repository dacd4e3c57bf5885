"""``ftedge export``: a run directory or bundle -> a verified bundle; ``--check`` re-verifies one.

Imports nothing heavy at module level (``ftedge --help`` stays fast).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ftedge.errors import FtedgeError


def _csv(text: str) -> tuple[str, ...]:
    items = tuple(t.strip().lower() for t in text.split(",") if t.strip())
    if not items:  # "--formats ," must not quietly mean "all formats"
        raise argparse.ArgumentTypeError(f"expected a comma list of names, got {text!r}")
    return items


# What only an export uses: given with --check (which re-verifies and writes nothing), refused.
_EXPORT_ONLY = (
    "formats",
    "precision",
    "calib_images",
    "calib_method",
    "batch_range",
    "bake_preprocess",
    "softmax",
    "max_accuracy_drop",
    "out",
)
_DEFAULTS: dict[str, Any] = {}


def _batch_range(text: str) -> tuple[int, int, int]:
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:OPT:MAX integers, got {text!r}") from None
    if len(parts) == 1:
        parts = [parts[0]] * 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected MIN:OPT:MAX, got {text!r}")
    return parts[0], parts[1], parts[2]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained run to a verified bundle (ONNX, OpenVINO, INT8, TensorRT)",
        description=(
            "Export RUN_DIR (default runs/latest) or extend an existing BUNDLE. Every artifact is "
            "verified against the PyTorch reference (parity + test accuracy) and recorded in "
            "manifest.json. Default: every format available here, FP32 and INT8."
        ),
    )
    p.add_argument("source", nargs="?", default="runs/latest", metavar="RUN_DIR_OR_BUNDLE")
    _add_selection_options(p)
    _add_calibration_options(p)
    _add_artifact_options(p)
    _add_output_options(p)
    _DEFAULTS.update({name: p.get_default(name) for name in _EXPORT_ONLY})


def _add_selection_options(p: argparse.ArgumentParser) -> None:
    """Which formats and precisions to make."""
    p.add_argument(
        "--formats",
        type=_csv,
        default=None,
        help="comma list of onnx,openvino,tensorrt (default: all available here)",
    )
    p.add_argument(
        "--precision",
        type=_csv,
        default=("fp32", "int8"),
        help="comma list of fp32,fp16,int8 (default fp32,int8; fp16: openvino/tensorrt)",
    )


def _add_calibration_options(p: argparse.ArgumentParser) -> None:
    """INT8 calibration data and method."""
    p.add_argument(
        "--calib-images",
        type=int,
        default=None,
        metavar="N",
        help="INT8 calibration images from the training split, stratified by class "
        "(default 300, or all training images if fewer)",
    )
    p.add_argument(
        "--calib-method",
        default="minmax",
        choices=["minmax", "entropy", "percentile"],
        help="ONNX INT8 calibration method (default minmax)",
    )


def _add_artifact_options(p: argparse.ArgumentParser) -> None:
    """What the artifacts look like: TensorRT profile, inputs, outputs, accuracy budget."""
    p.add_argument(
        "--batch-range",
        type=_batch_range,
        default=(1, 8, 32),
        metavar="MIN:OPT:MAX",
        help="TensorRT optimization profile batch range (default 1:8:32)",
    )
    p.add_argument(
        "--bake-preprocess",
        choices=["rgb", "bgr"],
        default=None,
        help="also write an ONNX taking uint8 NHWC frames with preprocessing inside",
    )
    p.add_argument(
        "--softmax",
        action="store_true",
        help="models output probabilities (softmax) instead of logits",
    )
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=1.0,
        metavar="POINTS",
        help="INT8/FP16 accuracy budget vs PyTorch in points (default 1.0)",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.95,
        metavar="FRACTION",
        help="INT8/FP16 top-1 agreement with the FP32 PyTorch reference, at least (default 0.95)",
    )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    """Where the bundle and the summary go; ``--check`` instead of exporting."""
    p.add_argument("--out", default=None, help="bundle directory (default bundles/<run name>)")
    p.add_argument(
        "--check",
        action="store_true",
        help="re-verify an existing bundle: file hashes and parity (torch-free)",
    )
    p.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="also write the summary as JSON to FILE ('-' for stdout)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _emit_json(target: str | None, payload: dict[str, Any]) -> None:
    if target is None:
        return
    text = json.dumps(payload, indent=2) + "\n"
    if target == "-":
        sys.stdout.write(text)
    else:
        from ftedge.files import atomic_write_text

        atomic_write_text(target, text)


def _check_json_target(args: argparse.Namespace, inputs: list[Path]) -> None:
    """``--json`` names a file that is none of the inputs, before any work is done."""
    from ftedge.files import check_output_kinds, check_output_not_input

    check_output_kinds([("--json", args.json)])
    if args.json is None or args.json == "-":
        return
    target = Path(args.json)
    if not target.parent.is_dir():
        raise FtedgeError(f"--json {target}: folder {target.parent} does not exist")
    check_output_not_input([target], inputs, "--json")


def _source_files(source: Path) -> list[Path]:
    folder = source if source.is_dir() else source.parent
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


def run(args: argparse.Namespace) -> int:
    _check_json_target(args, _source_files(Path(args.source)))
    if args.check:
        given = [n for n in _EXPORT_ONLY if getattr(args, n) != _DEFAULTS.get(n)]
        if given:
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            raise FtedgeError(f"--check re-verifies a bundle and exports nothing: drop {flags}")
        return _check(args)
    from ftedge.export.bundle import ExportOptions, export_bundle, format_table, summary_rows

    opts = ExportOptions(
        formats=args.formats or None,
        precisions=args.precision,
        calib_images=args.calib_images,
        calib_method=args.calib_method,
        batch_range=args.batch_range,
        bake_preprocess=args.bake_preprocess,
        softmax=args.softmax,
        max_accuracy_drop=args.max_accuracy_drop,
        min_agreement=args.min_agreement,
        out=args.out,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    result = export_bundle(args.source, opts)
    out = sys.stderr if args.json == "-" else sys.stdout
    print(format_table(result.manifest, result.bundle_dir), file=out)
    for note in result.notes:
        print(f"note: {note}", file=out)
    print(f"bundle: {result.bundle_dir} ({result.seconds:.1f} s)", file=out)
    _emit_json(
        args.json,
        {
            "schema_version": 1,
            "bundle": str(result.bundle_dir),
            "seconds": result.seconds,
            "reference_accuracy": result.manifest.reference.accuracy,
            "artifacts": summary_rows(result.manifest, result.bundle_dir),
            "failed": result.failed,
            "notes": result.notes,
        },
    )
    if result.failed:
        msgs = [a.message for a in result.manifest.artifacts if a.status == "failed" and a.message]
        sys.stderr.write(
            f"ftedge export: error: failed: {', '.join(result.failed)}"
            + (f" ({'; '.join(msgs)})" if msgs else "")
            + "\n"
        )
        return 1
    return 0


def _check(args: argparse.Namespace) -> int:
    from ftedge.export.verify import check_bundle

    bundle = Path(args.source)
    if not (bundle / "manifest.json").is_file():
        raise FtedgeError(f"--check needs a bundle directory; {bundle} has no manifest.json")
    manifest, results = check_bundle(bundle)
    out = sys.stderr if args.json == "-" else sys.stdout
    print(
        f"{bundle}: all {sum(len(a.files) for a in manifest.artifacts)} files match their sha256",
        file=out,
    )
    ran = next((r for r in results if r.parity), None)
    if ran is not None and ran.parity is not None:
        where = "the test split" if ran.data == "dataset" else "the crops stored in the bundle"
        print(f"parity on {ran.parity['images']} images from {where}", file=out)
    print(
        f"{'artifact':<22}{'check':<9}{'acc':>8}{'max|diff|':>11}{'top1 agr':>10}  note", file=out
    )
    for r in results:
        p = r.parity or {}
        acc = f"{r.accuracy * 100:.2f}%" if r.accuracy is not None else "-"
        diff = f"{p['max_abs_diff']:.1e}" if "max_abs_diff" in p else "-"
        agr = f"{p['top1_agreement'] * 100:.1f}%" if "top1_agreement" in p else "-"
        print(f"{r.artifact:<22}{r.status:<9}{acc:>8}{diff:>11}{agr:>10}  {r.message}", file=out)
    _emit_json(
        args.json,
        {
            "schema_version": 1,
            "bundle": str(bundle),
            "files_ok": True,
            "results": [r.__dict__ for r in results],
        },
    )
    failed = [r.artifact for r in results if r.status == "failed"]
    if failed:
        sys.stderr.write(f"ftedge export --check: error: parity failed: {', '.join(failed)}\n")
        return 1
    return 0
