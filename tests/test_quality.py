"""Code health, run by the README's test command: ruff lint + format, mypy on runtime/export."""

from __future__ import annotations

import subprocess
import sys

from tests.typecheck import REPO, run_mypy


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True
    )


def test_ruff_lint():
    r = _ruff("check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format():
    r = _ruff("format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_runtime_and_export(tmp_path):
    r = run_mypy(tmp_path, ["ftedge.runtime", "ftedge.export"], strict=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success" in r.stdout
