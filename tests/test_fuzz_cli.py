"""Bad inputs for every subcommand and tampered bundles: one line, exit 1, nothing lost.

Every case runs ``ftedge.cli.main`` in this process and asserts exit code 1, exactly one line on
stderr, no traceback (nor the last-resort "internal error"), and the sha256 of every input file
unchanged. The last test prints how many cases were tried and handled (docs/reliability.md).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.fuzz_helpers import TALLY, expect_one_line_error

V1 = Path(__file__).parent / "fixtures" / "bundle_v1"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> dict[str, Path]:
    """A workspace of inputs: a bundle, images, a video, runs, odd files."""
    root = tmp_path_factory.mktemp("fuzz")
    bundle = root / "bundle"
    shutil.copytree(V1, bundle, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    imgs = root / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), np.uint8)).save(imgs / f"{i}.png")
    runs = root / "runs"
    shutil.copytree(tiny_run, runs / "tiny")
    swapped = runs / "swapped"  # last.safetensors replaced by another valid file
    shutil.copytree(tiny_run, swapped)
    (swapped / "last.safetensors").write_bytes((swapped / "best.safetensors").read_bytes() + b"")
    _flip_last_byte(swapped / "last.safetensors")
    empty = runs / "empty"  # killed before its first epoch: config.yaml only
    empty.mkdir()
    shutil.copy(tiny_run / "config.yaml", empty / "config.yaml")
    (root / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (root / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (root / "epochs_true.yaml").write_text("epochs: true\n")
    (root / "name_map.yaml").write_text("name: {a: 1}\n")
    (root / "deep.json").write_text("[" * 100_000)
    (root / "a_dir").mkdir()
    (root / "out").mkdir()
    paths = {
        "root": root,
        "bundle": bundle,
        "imgs": imgs,
        "img": imgs / "0.png",
        "runs": runs,
        "run": runs / "tiny",
    }
    paths["video"] = _video(root)
    return paths


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _video(root: Path) -> Path:
    path = root / "clip.mp4"
    try:
        import cv2
    except ImportError:
        return path
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 32))
    for i in range(6):
        writer.write(np.full((32, 32, 3), i * 40, np.uint8))
    writer.release()
    return path


# (case id, argv with {placeholders} from ws, text the one line must contain)
CLI_CASES: list[tuple[str, str, str]] = [
    # -- predict: outputs never overwrite inputs; path kinds; values
    ("predict-save-into-source", "predict {bundle} --source {imgs} --save {imgs}", "overwrite"),
    ("predict-save-video-dot", "predict {bundle} --source {video} --save {root}", "overwrite"),
    ("predict-json-onto-image", "predict {bundle} --source {imgs} --json {img}", "overwrite"),
    (
        "predict-json-onto-manifest",
        "predict {bundle} --source {imgs} --json {bundle}/manifest.json",
        "overwrite",
    ),
    ("predict-json-is-dir", "predict {bundle} --source {imgs} --json {root}/a_dir", "folder"),
    ("predict-save-is-file", "predict {bundle} --source {imgs} --save {root}/blob.bin", "file"),
    ("predict-timeout-negative", "predict {bundle} --source {imgs} --timeout -1", "timeout"),
    ("predict-timeout-inf", "predict {bundle} --source {imgs} --timeout inf", "timeout"),
    ("predict-timeout-nan", "predict {bundle} --source {imgs} --timeout nan", "timeout"),
    ("predict-topk-zero", "predict {bundle} --source {imgs} --topk 0", "topk"),
    ("predict-max-frames-negative", "predict {bundle} --source {imgs} --max-frames -1", "max"),
    ("predict-bundle-is-file", "predict {root}/blob.bin --source {imgs}", ""),
    ("predict-bundle-is-run", "predict {run} --source {imgs}", "bundle"),
    ("predict-source-missing", "predict {bundle} --source {root}/nope.png", "does not exist"),
    ("predict-source-binary", "predict {bundle} --source {root}/blob.bin", ""),
    ("predict-source-empty-dir", "predict {bundle} --source {root}/a_dir", ""),
    ("predict-bad-precision", "predict {bundle} --source {imgs} --precision fp64", "precision"),
    ("predict-bad-backend", "predict {bundle} --source {imgs} --backend cuda9", "backend"),
    # -- export
    ("export-check-with-formats", "export --check {bundle} --formats onnx", "--formats"),
    ("export-check-with-out", "export --check {bundle} --out {root}/out/b", "--out"),
    ("export-formats-comma", "export {bundle} --formats ,", "--formats"),
    ("export-precision-empty", "export {bundle} --precision ' , '", "--precision"),
    ("export-out-is-file", "export {run} --out {root}/blob.bin", "not a bundle"),
    ("export-out-is-run", "export {bundle} --out {run}", "not an ftedge bundle"),
    ("export-json-is-dir", "export --check {bundle} --json {root}/a_dir", "folder"),
    (
        "export-json-onto-manifest",
        "export --check {bundle} --json {bundle}/manifest.json",
        "overwrite",
    ),
    ("export-json-onto-weights", "export {run} --json {run}/best.safetensors", "overwrite"),
    ("export-source-is-yaml", "export {run}/config.yaml", "JSON"),
    ("export-source-is-binary", "export {root}/blob.bin", ""),
    ("export-source-missing", "export {root}/nope", "does not exist"),
    ("export-source-plain-dir", "export {root}/a_dir", "neither"),
    ("export-check-file", "export --check {root}/blob.bin", "bundle"),
    ("export-check-run", "export --check {run}", "bundle"),
    ("export-batch-range", "export {run} --batch-range 1:x:3", "batch"),
    ("export-calib-zero", "export {run} --calib-images 0", "calib"),
    # -- benchmark
    ("benchmark-file", "benchmark {root}/blob.bin", ""),
    ("benchmark-run-dir", "benchmark {run}", ""),
    ("benchmark-json-is-dir", "benchmark {bundle} --json {root}/a_dir", "folder"),
    ("benchmark-csv-onto-manifest", "benchmark {bundle} --csv {bundle}/manifest.json", "overwrite"),
    ("benchmark-plot-is-file", "benchmark {bundle} --plot {root}/blob.bin", "file"),
    ("benchmark-min-seconds-inf", "benchmark {bundle} --min-seconds inf", "finite"),
    ("benchmark-warmup-nan", "benchmark {bundle} --warmup-seconds nan", "finite"),
    ("benchmark-threads-negative", "benchmark {bundle} --threads -1", "threads"),
    ("benchmark-compare-binary", "benchmark --compare {root}/blob.bin", ""),
    ("benchmark-compare-deep", "benchmark --compare {root}/deep.json", ""),
    ("benchmark-model-yaml", "benchmark --model {run}/config.yaml", "model"),
    # -- train: values, names, YAML kinds, path kinds, resume
    ("train-lr-inf", "train --lr inf", "finite"),
    ("train-lr-nan", "train --lr nan", "finite"),
    ("train-warmup-inf", "train --warmup-epochs inf", "finite"),
    ("train-weight-decay-negative", "train --weight-decay -1", "weight-decay"),
    ("train-grad-clip-negative", "train --grad-clip -0.5", "grad-clip"),
    ("train-threads-negative", "train --threads -1", "threads"),
    ("train-workers-negative", "train --workers -2", "workers"),
    ("train-image-size-huge", "train --image-size 100000", "image-size"),
    ("train-epochs-zero", "train --epochs 0", "epochs"),
    ("train-epochs-float", "train --epochs 2.5", "--epochs"),
    ("train-name-latest", "train --name latest", "reserved"),
    ("train-name-dotdot", "train --name ../../x", "path"),
    ("train-name-absolute", "train --name /tmp/ftedge-x", "path"),
    ("train-name-hidden", "train --name .x", "'.'"),
    ("train-name-taken", "train --out {runs} --name tiny", "--exist-ok"),
    ("train-yaml-epochs-true", "train --config {root}/epochs_true.yaml", "epochs"),
    ("train-yaml-name-mapping", "train --config {root}/name_map.yaml", "name"),
    ("train-yaml-binary", "train --config {root}/blob.bin", "UTF-8"),
    ("train-yaml-latin1", "train --config {root}/latin1.yaml", "UTF-8"),
    ("train-yaml-dir", "train --config {root}/a_dir", "directory"),
    ("train-yaml-missing", "train --config {root}/nope.yaml", "cannot read"),
    ("train-out-is-file", "train --out {root}/blob.bin", "--out"),
    ("train-cache-dir-is-file", "train --feature-cache-dir {root}/blob.bin", "feature-cache"),
    ("train-data-is-file", "train --data {root}/blob.bin --out {root}/out", "not a folder"),
    ("train-resume-with-epochs", "train --resume {run} --epochs 50", "--epochs"),
    ("train-resume-with-exist-ok", "train --resume {run} --exist-ok", "--exist-ok"),
    ("train-resume-not-a-run", "train --resume {runs}", "not a run"),
    ("train-resume-file", "train --resume {run}/best.json", "not a run"),
    ("train-resume-before-first-epoch", "train --resume {runs}/empty", "first epoch"),
    ("train-resume-swapped-weights", "train --resume {runs}/swapped", "sha256"),
    ("cli-unknown-option", "predict {bundle} --source {imgs} --frobnicate", "unrecognized"),
]


@pytest.mark.parametrize(("case", "argv", "needle"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_input_is_one_line(
    case: str, argv: str, needle: str, ws: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import shlex

    if case == "predict-save-video-dot" and not ws["video"].is_file():
        pytest.skip("OpenCV is not installed")
    args = shlex.split(argv.format(**{k: str(v) for k, v in ws.items()}))
    guard = [ws["bundle"], ws["imgs"], ws["runs"], ws["root"] / "blob.bin"]
    if ws["video"].is_file():
        guard.append(ws["video"])
    expect_one_line_error(case, args, capsys, needle, guard)
    assert not (ws["runs"] / "latest").exists() or (ws["runs"] / "latest").is_symlink()


# -- tampered bundles ---------------------------------------------------------------------------
def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def tamper(bundle: Path) -> None:
        d = json.loads((bundle / "manifest.json").read_text())
        change(d)
        (bundle / "manifest.json").write_text(json.dumps(d))

    return tamper


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    def tamper(bundle: Path) -> None:
        (bundle / name).unlink()
        (bundle / name).write_bytes(data)

    return tamper


def _manifest_dir(bundle: Path) -> None:
    (bundle / "manifest.json").unlink()
    (bundle / "manifest.json").mkdir()


def _model_link_out(bundle: Path) -> None:
    """The artifact becomes a symlink to an identical file outside the bundle (hash matches)."""
    model = bundle / "onnx" / "model.fp32.onnx"
    outside = bundle.parent / "outside.onnx"
    shutil.copy(model, outside)
    model.unlink()
    model.symlink_to(outside)


def _path_outside(bundle: Path) -> None:
    outside = bundle.parent / "model.fp32.onnx"
    shutil.copy(bundle / "onnx" / "model.fp32.onnx", outside)

    def change(d: dict[str, Any]) -> None:
        sha = d["artifacts"][0]["files"].pop("onnx/model.fp32.onnx")
        d["artifacts"][0].update(path="../model.fp32.onnx", files={"../model.fp32.onnx": sha})

    _edit(change)(bundle)


def _all_failed(d: dict[str, Any]) -> None:
    for a in d["artifacts"]:
        a["status"] = "failed"


BOTH, CHECK = ("predict", "check"), ("check",)
TAMPERS: list[tuple[str, Callable[[Path], None], tuple[str, ...], str]] = [
    ("schema-version-string", _edit(lambda d: d.update(schema_version="1")), BOTH, "schema"),
    ("schema-version-null", _edit(lambda d: d.update(schema_version=None)), BOTH, "schema"),
    ("schema-version-future", _edit(lambda d: d.update(schema_version=99)), BOTH, "schema"),
    ("crop-pct-zero", _edit(lambda d: d["preprocessing"].update(crop_pct=0)), BOTH, "crop_pct"),
    (
        "input-size-zeros",
        _edit(lambda d: d["preprocessing"].update(input_size=[3, 0, 0])),
        BOTH,
        "input_size",
    ),
    (
        "interpolation-unknown",
        _edit(lambda d: d["preprocessing"].update(interpolation="lanczos9")),
        BOTH,
        "interpolation",
    ),
    ("std-zero", _edit(lambda d: d["preprocessing"].update(std=[0, 0, 0])), BOTH, "std"),
    ("labels-string", _edit(lambda d: d.update(labels="cat,dog,bird")), BOTH, "labels"),
    ("labels-count", _edit(lambda d: d.update(labels=["cat", "dog"])), CHECK, "label"),
    ("precision-fp64", _edit(lambda d: d["artifacts"][0].update(precision="fp64")), BOTH, "fp64"),
    ("path-absolute", _edit(lambda d: d["artifacts"][0].update(path="/etc/passwd")), BOTH, "out"),
    ("path-dotdot-hash-ok", _path_outside, BOTH, "outside"),
    ("symlink-out-hash-ok", _model_link_out, BOTH, "outside"),
    (
        "reference-logits-dotdot",
        _edit(lambda d: d["reference"].update(logits="../reference_logits.npy")),
        BOTH,
        "reference.logits",
    ),
    ("reference-logits-garbage", _write("reference_logits.npy", b"\x93NUMPY garbage"), CHECK, ""),
    ("all-artifacts-failed", _edit(_all_failed), BOTH, ""),
    (
        "model-bytes-changed",
        _write("onnx/model.fp32.onnx", b"\x08\x01garbage"),
        BOTH,
        "model.fp32.onnx",
    ),
    ("manifest-binary", _write("manifest.json", bytes(range(256))), BOTH, "manifest"),
    (
        "manifest-latin1",
        _write("manifest.json", '{"labels": ["caf\xe9"]}'.encode("latin-1")),
        BOTH,
        "",
    ),
    ("manifest-list", _write("manifest.json", b"[]"), BOTH, ""),
    ("manifest-empty-object", _write("manifest.json", b"{}"), BOTH, ""),
    ("manifest-deep", _write("manifest.json", b"[" * 100_000), BOTH, ""),
    (
        "manifest-nan-mean",
        _edit(lambda d: d["preprocessing"].update(mean=[float("nan")] * 3)),
        BOTH,
        "mean",
    ),
    ("manifest-is-dir", _manifest_dir, BOTH, ""),
]
TAMPER_RUNS = [(t[0], cmd) for t in TAMPERS for cmd in t[2]]


@pytest.mark.parametrize(
    ("tamper", "command"), TAMPER_RUNS, ids=[f"{t}-{c}" for t, c in TAMPER_RUNS]
)
def test_tampered_bundle_is_refused(
    tamper: str,
    command: str,
    ws: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, change, _, needle = next(t for t in TAMPERS if t[0] == tamper)
    bundle = tmp_path / "b"
    shutil.copytree(ws["bundle"], bundle)
    change(bundle)
    if command == "predict":
        argv = ["predict", str(bundle), "--source", str(ws["img"]), "--quiet"]
    else:
        argv = ["export", "--check", str(bundle)]
    expect_one_line_error(f"bundle-{tamper}-{command}", argv, capsys, needle, [ws["imgs"]])


def test_zz_report(capsys: pytest.CaptureFixture[str]) -> None:
    """The count recorded in docs/reliability.md (when the whole module ran)."""
    handled = sum(TALLY.values())
    with capsys.disabled():
        print(f"\nfuzz: {len(TALLY)} bad inputs tried, {handled} handled cleanly")
    assert handled == len(TALLY)
