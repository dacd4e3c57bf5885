"""Property tests of the parsers, images that used to come out wrong, runs, temp files, signals."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ftedge.errors import FtedgeError
from tests.fuzz_helpers import expect_one_line_error, run_cli

V1 = Path(__file__).parent / "fixtures" / "bundle_v1"
MANIFEST = json.loads((V1 / "manifest.json").read_text())

# -- property tests: any document is parsed or refused with one FtedgeError ------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


MANIFEST_PATHS = _paths(MANIFEST)[1:]


def _replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MANIFEST_PATHS), JSON)
def test_manifest_parser_never_raises_anything_else(path: tuple[Any, ...], value: Any) -> None:
    from ftedge.runtime.manifest import Manifest

    try:
        Manifest.from_dict(_replaced(MANIFEST, path, value))
    except FtedgeError as e:
        assert "\n" not in str(e)


# Every field, each replaced by a value of the wrong kind or range: a deterministic sweep
# beside the random one above (a null crop_pct once slipped through as a TypeError).
ADVERSARIAL = [
    None,
    True,
    0,
    -1,
    2**70,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "../x",
    [],
    {},
    [None],
]


def test_manifest_parser_on_every_field_replaced_by_bad_values() -> None:
    from ftedge.runtime.manifest import Manifest

    for path in MANIFEST_PATHS:
        for value in ADVERSARIAL:
            try:
                Manifest.from_dict(_replaced(MANIFEST, path, value))
            except FtedgeError as e:
                assert "\n" not in str(e), (path, value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(MANIFEST) + ["x"]), JSON, max_size=6))
def test_manifest_parser_on_any_top_level(doc: dict[str, Any]) -> None:
    from ftedge.runtime.manifest import Manifest

    try:
        Manifest.from_dict(doc)
    except FtedgeError as e:
        assert "\n" not in str(e)


CONFIG_KEYS = [
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "grad_clip",
    "name",
    "head_hidden",
    "image_size",
    "hflip",
    "augment",
    "threads",
    "workers",
    "warmup_epochs",
    "out",
]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON, max_size=4))
def test_config_parser_never_raises_anything_else(values: dict[str, Any]) -> None:
    import math

    from ftedge.config import TrainConfig, build_config

    try:
        cfg = build_config(TrainConfig, values)
    except FtedgeError as e:
        assert "\n" not in str(e)
        return
    assert all(math.isfinite(v) for v in (cfg.lr, cfg.weight_decay, cfg.grad_clip))
    assert isinstance(cfg.epochs, int) and not isinstance(cfg.epochs, bool) and cfg.epochs >= 1
    assert cfg.name is None or ("/" not in cfg.name and cfg.name not in ("latest", "..", "."))


# -- images: one opener for train and predict ----------------------------------------------------
def test_16_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    from ftedge.runtime.images import read_rgb

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")
    rgb = read_rgb(tmp_path / "deep.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    np.testing.assert_array_equal(rgb[..., 0], (ramp >> 8).astype(np.uint8))
    assert (rgb == 255).mean() < 0.01  # clipping made almost every pixel white


def test_exif_orientation_is_applied_identically_in_train_and_predict(tmp_path: Path) -> None:
    from ftedge.data.folders import DatasetSplits, Sample
    from ftedge.data.torch_data import ImageDataset
    from ftedge.runtime.frame_sources import open_source

    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255  # stored landscape, left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: portrait, top half white
    Image.fromarray(img).save(tmp_path / "phone.jpg", exif=exif, quality=100)

    splits = DatasetSplits(str(tmp_path), ["a"], [Sample("phone.jpg", 0)], [], [], [])
    trained = np.asarray(ImageDataset(splits, splits.train, lambda im: im)[0][0])
    with open_source(str(tmp_path / "phone.jpg")) as src:
        predicted = next(iter(src)).image
    assert trained.shape == predicted.shape == (40, 20, 3)
    np.testing.assert_array_equal(trained, predicted)
    assert trained[:20].mean() > 200 > 50 > trained[20:].mean()


def test_decompression_bomb_is_skipped_in_a_folder_and_one_line_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (16, 16)).save(folder / "a.png")
    Image.new("RGB", (400, 400)).save(folder / "big.png")
    Image.new("RGB", (16, 16)).save(folder / "c.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 160,000 px is over twice the limit
    rc, lines = run_cli(["predict", str(V1), "--source", str(folder), "--quiet"], capsys)
    assert rc == 0 and "1 unreadable file(s) skipped" in lines[-1] and "2 frame(s)" in lines[-1]
    argv = ["predict", str(V1), "--source", str(folder / "big.png")]
    expect_one_line_error("image-decompression-bomb", argv, capsys, "too large", [folder])


# -- runs: names are owned, temp files of killed processes are swept -----------------------------
def test_stale_temps_of_dead_processes_are_swept(tmp_path: Path) -> None:
    from ftedge.files import sweep_stale_temps, temp_prefix

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    (tmp_path / f".last.safetensors.ftedge-tmp-{dead}-x.tmp").write_bytes(b"half")
    (tmp_path / f".b.ftedge-tmp-{dead}-y").mkdir()
    mine = tmp_path / f"{temp_prefix('.c')}z"  # this process is alive: kept
    mine.mkdir()
    (tmp_path / "user.tmp").write_text("not ours")
    assert sweep_stale_temps(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, "user.tmp"])


def test_a_finished_run_is_replaced_only_with_exist_ok(tmp_path: Path, tiny_run: Path) -> None:
    from ftedge.training.run_dir import claim_run_dir, release_run_dir

    shutil.copytree(tiny_run, tmp_path / "tiny")
    before = (tmp_path / "tiny" / "best.safetensors").read_bytes()
    with pytest.raises(FtedgeError, match="--exist-ok"):
        claim_run_dir(tmp_path, "tiny")
    assert (tmp_path / "tiny" / "best.safetensors").read_bytes() == before
    run = claim_run_dir(tmp_path, "tiny", exist_ok=True)
    assert not any(run.glob("best.*")) and not (run / "metrics.json").exists()
    with pytest.raises(FtedgeError, match="in use"):  # another process: the lock is held
        _claim_elsewhere(tmp_path, "tiny")
    release_run_dir(run)
    (tmp_path / "stopped").mkdir()  # stopped before its first epoch: taken over
    (tmp_path / "stopped" / "config.yaml").write_text("epochs: 1\n")
    assert claim_run_dir(tmp_path, "stopped") == tmp_path / "stopped"
    release_run_dir(tmp_path / "stopped")


def _claim_elsewhere(out: Path, name: str) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from ftedge.errors import FtedgeError\n"
        "from ftedge.training.run_dir import claim_run_dir\n"
        f"try: claim_run_dir(Path({str(out)!r}), {name!r}, True)\n"
        "except FtedgeError as e: print(e); sys.exit(1)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode == 1:
        raise FtedgeError(r.stdout.strip())


# -- signals: a terminated export leaves nothing behind ------------------------------------------
def test_sigterm_during_export_leaves_no_temp_folder(tmp_path: Path, tiny_run: Path) -> None:
    out = tmp_path / "bundles" / "b"
    cmd = [
        sys.executable,
        "-m",
        "ftedge",
        "export",
        str(tiny_run),
        "--out",
        str(out),
        "--formats",
        "onnx",
        "--precision",
        "fp32",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.parent.is_dir() and any("ftedge-tmp" in p.name for p in out.parent.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err, err
    assert "ftedge: terminated" in err.splitlines(), err
    assert not out.exists() and list(out.parent.iterdir()) == []
    assert not [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob(f"*ftedge-tmp-{proc.pid}-*")]


def test_a_swallowed_sigterm_is_raised_again_at_the_next_export_step() -> None:
    """A SIGTERM whose exception a library swallows (a bare ``except:`` around an import) still
    stops the export at its next step boundary, before anything is written."""
    from ftedge import errors
    from ftedge.export.progress import StepProgress

    progress = StepProgress(2, enabled=False)
    try:
        # what the CLI's SIGTERM handler does, inside a library's bare except
        with contextlib.suppress(BaseException):
            errors.request_termination()
        with pytest.raises(errors.Terminated), progress.step("next step"):
            raise AssertionError("the step must not start")
    finally:
        errors._terminate_requested[0] = False
    with progress.step("after a reset"):
        pass
    assert "after a reset" in progress.seconds
