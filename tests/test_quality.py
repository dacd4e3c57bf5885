"""Code health, run by the README's test command: ruff lint + format, mypy on runtime/export."""

from __future__ import annotations

import ast
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


# -- size limits: a reader holds a function in their head, a module in one sitting ------------
MAX_FUNCTION_LINES = 60  # logical lines: no blanks, comments or docstring
MAX_MODULE_LINES = 500
SOURCE_DIRS = ("ftedge", "export", "runtime", "benchmarks", "tools")


def _sources() -> list:
    return sorted(p for d in SOURCE_DIRS for p in (REPO / d).rglob("*.py"))


def _logical_lines(lines: list[str], node) -> int:
    skip: set[int] = set()
    body = node.body
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        skip.update(range(first.lineno, first.end_lineno + 1))  # the docstring
    count = 0
    for n in range(node.lineno, node.end_lineno + 1):
        text = lines[n - 1].strip()
        if n not in skip and text and not text.startswith("#"):
            count += 1
    return count


def function_sizes() -> list[tuple[str, int]]:
    """(path:line name, logical lines) of every function in the project's sources."""
    out = []
    for path in _sources():
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{path.relative_to(REPO)}:{node.lineno} {node.name}"
                out.append((where, _logical_lines(lines, node)))
    return out


def test_no_function_over_the_limit():
    big = [f"{w} ({n})" for w, n in function_sizes() if n > MAX_FUNCTION_LINES]
    assert not big, "functions over 60 logical lines: " + ", ".join(big)


def test_no_module_over_the_limit():
    big = [
        f"{p.relative_to(REPO)} ({n})"
        for p in _sources()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not big, "modules over 500 lines: " + ", ".join(big)
