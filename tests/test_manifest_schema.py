"""The typed manifest: validation with one-line errors, round trips, and confinement to the bundle."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ftedge.errors import FtedgeError
from ftedge.runtime.manifest import SCHEMA_VERSION, Manifest

V1 = Path(__file__).parent / "fixtures" / "bundle_v1"


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    dest = tmp_path / "b"
    shutil.copytree(V1, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return dest


def _edit(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = bundle / "manifest.json"
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


def test_round_trip_and_version() -> None:
    raw = json.loads((V1 / "manifest.json").read_text())
    m = Manifest.from_dict(raw)
    assert SCHEMA_VERSION == 2 and m.task == "classification"
    assert m.schema_version == 1
    again = Manifest.from_dict(m.to_dict())  # written back in the current schema
    assert again == dataclasses.replace(m, schema_version=2)
    assert again.to_dict() == m.to_dict()
    assert [a.baked for a in m.artifacts] == [False, True]
    assert [a.name for a in m.artifacts] == ["onnx-fp32", "onnx-fp32-baked"]
    assert m.provenance.checkpoint is not None and m.provenance.checkpoint.epoch == 1


TAMPERED: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (
        lambda d: d["artifacts"][1].update(precision="fp64"),
        "artifacts[1].precision must be one of fp32, fp16, int8, got 'fp64'",
    ),
    (lambda d: d["preprocessing"].update(crop_pct=0), "preprocessing.crop_pct must be in (0, 1]"),
    (lambda d: d["preprocessing"].update(std=[0.5, 0, 0.5]), "preprocessing.std must be non-zero"),
    (lambda d: d["input"].update(shape=[-1, 3, 0, 8]), "input.shape must be positive ints"),
    (lambda d: d.update(labels="cat,dog,bird"), "labels must be a list"),
    (lambda d: d.update(labels=["cat", 2, "bird"]), "labels must be a list of strings"),
    (lambda d: d.update(schema_version="1"), "schema_version must be an int"),
    (lambda d: d.update(schema_version=None), "schema_version must be"),
    (lambda d: d.update(task="segmentation"), "task must be one of classification"),
    (lambda d: d["artifacts"][0].update(status="great"), "artifacts[0].status must be one of"),
    (lambda d: d["artifacts"][0].update(accuracy="high"), "artifacts[0].accuracy must be a number"),
    (lambda d: d["artifacts"][0].update(input=[1, 2]), "artifacts[0].input must be an object"),
    (
        lambda d: d["artifacts"][0].update(path="/etc/passwd"),
        "artifacts[0].path '/etc/passwd' points outside the bundle",
    ),
    (
        lambda d: d["artifacts"][0].update(path="../x.onnx"),
        "artifacts[0].path '../x.onnx' points outside the bundle",
    ),
    (
        lambda d: d["artifacts"][0]["files"].update({"../../x.onnx": "0" * 64}),
        "artifacts[0].files '../../x.onnx' points outside the bundle",
    ),
    (
        lambda d: d["reference"].update(logits="../reference_logits.npy"),
        "reference.logits '../reference_logits.npy' points outside the bundle",
    ),
    (
        lambda d: d["reference"].update(parity_inputs="/tmp/p.npz"),
        "reference.parity_inputs '/tmp/p.npz' points outside the bundle",
    ),
    (lambda d: d["data"].update(test=[["a.png", "cat"]]), "data.test[0] must be [path, label]"),
]


@pytest.mark.parametrize(("change", "message"), TAMPERED)
def test_tampered_manifest_is_one_line_error(
    bundle: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    from ftedge.runtime import load

    _edit(bundle, change)
    with pytest.raises(FtedgeError) as e:
        load(bundle)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith(str(bundle / "manifest.json"))


def test_tampered_bundle_via_the_cli_is_exit_1_and_one_line(
    bundle: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from ftedge.cli import main

    image = bundle.parent / "frame.png"
    Image.new("RGB", (16, 12)).save(image)
    _edit(bundle, lambda d: d["artifacts"][0].update(path="../x.onnx"))
    for args in (
        ["export", "--check", str(bundle)],
        ["predict", str(bundle), "--source", str(image)],
    ):
        assert main(args) == 1
        out, err = capfd.readouterr()
        assert len(err.strip().splitlines()) == 1, err
        assert "points outside the bundle" in err and "Traceback" not in err


def test_symlink_leading_out_of_the_bundle_is_refused(bundle: Path, tmp_path: Path) -> None:
    from ftedge.runtime import load

    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(bundle / "onnx" / "model.fp32.onnx", outside)
    (bundle / "onnx" / "model.fp32.onnx").unlink()
    (bundle / "onnx" / "model.fp32.onnx").symlink_to(outside)  # same bytes: the hash matches
    with pytest.raises(FtedgeError, match=r"artifacts\[0\]\.path 'onnx/model.fp32.onnx' points"):
        load(bundle)


def test_garbage_reference_logits_fail_check_in_one_line(bundle: Path) -> None:
    from ftedge.export.verify import check_bundle

    def unhash(d: dict[str, Any]) -> None:
        d["reference"].pop("logits_sha256")

    _edit(bundle, unhash)
    (bundle / "reference_logits.npy").write_bytes(b"garbage, not numpy")
    with pytest.raises(FtedgeError, match="unreadable reference.logits") as e:
        check_bundle(bundle)
    assert "\n" not in str(e.value)


def test_check_fails_when_labels_do_not_match_the_model(bundle: Path) -> None:
    from ftedge.export.verify import check_bundle

    _edit(bundle, lambda d: d.update(labels=["cat", "dog", "bird", "fish"]))
    with pytest.raises(FtedgeError, match="expected \\(images, 4\\) for the bundle's 4 labels"):
        check_bundle(bundle)


def test_check_fails_when_the_model_output_does_not_match_the_labels(bundle: Path) -> None:
    from ftedge.export.verify import check_bundle

    # Reference and labels agree on 2 classes, the model outputs 3: parity must fail.
    ref = np.load(bundle / "reference_logits.npy")[:, :2]
    np.save(bundle / "reference_logits.npy", ref)

    def two(d: dict[str, Any]) -> None:
        d["labels"] = ["cat", "dog"]
        d["reference"].pop("logits_sha256")

    _edit(bundle, two)
    _, results = check_bundle(bundle)
    assert {r.status for r in results} == {"failed"}
    assert "outputs 3 classes but the manifest has 2 labels" in results[0].message


def test_check_fails_when_nothing_could_be_verified(bundle: Path) -> None:
    from ftedge.export.verify import check_bundle

    _edit(bundle, lambda d: [a.update(status="skipped") for a in d["artifacts"]])
    with pytest.raises(FtedgeError, match="no artifact could be verified here"):
        check_bundle(bundle)


def test_data_root_test_files_must_stay_inside_it(bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")

    def point(d: dict[str, Any]) -> None:
        d["data"]["root"] = str(root)
        d["data"]["test"] = [["../secret.png", 0]]

    _edit(bundle, point)
    with pytest.raises(FtedgeError, match=r"data.test\[0\] '../secret.png' points outside"):
        Manifest.load(bundle).data.test_files()
