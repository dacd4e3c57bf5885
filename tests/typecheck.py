"""Run mypy on ftedge.runtime / ftedge.export with the TensorRT stubs really in effect.

Two things stop a plain ``mypy runtime export`` from checking what matters:
- the editable install maps ``ftedge.export``/``ftedge.runtime`` (folders ``export/`` and
  ``runtime/``) through an import hook mypy cannot follow, so the package is laid out with
  symlinks in a temporary MYPYPATH;
- the installed tensorrt-stubs folders have no ``py.typed`` and a few invalid lines (a parameter
  named ``in``, a non-default parameter after defaults), so a repaired copy goes on MYPYPATH;
  without this, ``tensorrt`` silently becomes ``Any`` and nothing is checked.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _fix_stub_defaults(line: str) -> str:
    """``f(a=..., b: int)`` is a syntax error: give later parameters a default."""
    head, sep, rest = line.partition("(")
    sig, close, tail = rest.rpartition(")")
    out, seen = [], False
    for p in sig.split(", "):
        seen |= "=" in p
        if seen and "=" not in p and ":" in p and not p.strip().startswith("*"):
            p += " = ..."
        out.append(p)
    return head + sep + ", ".join(out) + close + tail


def _sanitize_stub(text: str) -> str:
    lines = re.sub(r"([(,] *)in: ", r"\1in_: ", text).splitlines()
    for _ in range(200):
        try:
            ast.parse("\n".join(lines))
            return "\n".join(lines) + "\n"
        except SyntaxError as e:
            i = (e.lineno or 1) - 1
            fixed = _fix_stub_defaults(lines[i])
            if fixed == lines[i]:
                raise
            lines[i] = fixed
    raise AssertionError("too many syntax errors in tensorrt-stubs")


def _layout(tmp_path: Path) -> tuple[Path, Path]:
    pytest.importorskip("mypy")
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or spec.origin is None:
        pytest.skip("tensorrt-stubs is not installed")
    site = Path(spec.origin).parents[1]
    stubs, src = tmp_path / "stubs", tmp_path / "src" / "ftedge"
    if not src.exists():  # lay out once per test
        for pkg in ("tensorrt", "tensorrt_bindings"):
            for f in (site / pkg).glob("*.pyi"):
                (stubs / pkg).mkdir(parents=True, exist_ok=True)
                (stubs / pkg / f.name).write_text(_sanitize_stub(f.read_text()))
        src.mkdir(parents=True)
        for f in (REPO / "ftedge").iterdir():
            (src / f.name).symlink_to(f)
        (src / "export").symlink_to(REPO / "export")
        (src / "runtime").symlink_to(REPO / "runtime")
    return tmp_path / "src", stubs


def run_mypy(
    tmp_path: Path, packages: list[str], *, strict: bool, extra: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """mypy on ``packages`` (only their errors count; the rest of ftedge is context)."""
    src, stubs = _layout(tmp_path)
    judged = ",".join(f"{p},{p}.*" for p in packages)
    cfg = tmp_path / "mypy.ini"
    cfg.write_text(
        "[mypy]\npython_version = 3.11\nignore_missing_imports = True\nwarn_unused_ignores = True\n"
        "[mypy-ftedge,ftedge.*]\nignore_errors = True\n"
        f"[mypy-{judged}]\nignore_errors = False\n"
        "[mypy-tensorrt,tensorrt.*,tensorrt_bindings,tensorrt_bindings.*]\nignore_errors = True\n"
        "[mypy-torch,torch.*,torchvision.*,timm.*]\nfollow_imports = skip\n"
    )
    args = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(cfg),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--python-executable",
        sys.executable,
    ]
    if strict:
        args.append("--strict")
    for p in packages:
        args += ["-p", p]
    env = {"PATH": "/usr/bin:/bin", "MYPYPATH": f"{src}:{stubs}"}
    return subprocess.run(
        args + (extra or []), capture_output=True, text=True, env=env, timeout=600
    )
