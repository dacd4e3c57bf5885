"""The ftedge CLI: fast help, options with defaults, precedence, one-line errors (exit 1)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ftedge.cli import main
from ftedge.config import TrainConfig, build_config, load_yaml


def test_help_imports_nothing_heavy():
    code = (
        "import sys; from ftedge.cli import build_parser; build_parser();"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'openvino', 'cv2', 'timm',"
        " 'matplotlib', 'tensorrt', 'nncf') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_runtime_import_does_not_import_torch():
    code = "import sys, ftedge.runtime; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_train_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    import dataclasses

    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "(default: tf_efficientnet_lite0)" in text and "(default: 30)" in text


def test_precedence_defaults_yaml_flags(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("epochs: 5\nlr: 0.5\nhead_hidden: [64, 32]\n")
    cfg = build_config(TrainConfig, load_yaml(y), {"lr": "0.25", "epochs": None})
    assert (cfg.epochs, cfg.lr, cfg.head_hidden) == (5, 0.25, (64, 32))
    assert cfg.batch_size == TrainConfig().batch_size


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "/no/such/dir"], "does not exist"),
        (["train", "--model", "no_such_model_xyz"], "unknown model"),
        (["train", "--epochs", "-1"], "--epochs must be >= 1"),
        (["train", "--epochs", "two"], "invalid value 'two'"),
        (["train", "--taps", "-1"], "--taps must be >= 0"),
        (["train", "--augment", "maybe"], "invalid choice"),
        (["train", "--model", "resnet18@/no/such/file.pth"], "does not exist"),
        (["train", "--resume", "/no/such/run"], "not a run directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_1(args, message, tmp_path):
    code = _run(args + (["--out", str(tmp_path)] if "--resume" not in args else []))
    assert code.returncode == 1, code.stderr
    lines = code.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], code.stderr
    assert "Traceback" not in code.stderr


def test_unknown_yaml_key_and_unreadable_checkpoint(tmp_path, small_data):
    y = tmp_path / "c.yaml"
    y.write_text("epochs: 2\nlearning_rate: 0.1\n")
    r = _run(["train", "--config", str(y)])
    assert (
        r.returncode == 1
        and r.stderr.strip() == "ftedge train: error: unknown config key 'learning_rate'"
    )
    bad = tmp_path / "mobilenet_v2-0123abcd.pth"
    bad.write_bytes(b"garbage")
    r = _run(["train", "--model", str(bad), "--data", str(small_data), "--out", str(tmp_path)])
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "unreadable checkpoint" in r.stderr


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ftedge", *args], capture_output=True, text=True)
