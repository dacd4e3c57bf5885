"""What every fuzz case asserts: exit code 1, one line on stderr, no traceback, inputs unchanged."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from ftedge.cli import main

TALLY: dict[str, bool] = {}  # case id -> handled (one clean line, exit 1, nothing lost)


def digests(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (links not followed)."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            if not p.is_symlink():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """``ftedge.cli.main(argv)`` in this process: (exit code, non-empty stderr lines)."""
    capsys.readouterr()
    try:
        rc = main(list(argv))
    except SystemExit as e:  # argparse errors exit through _Parser.error
        rc = int(e.code or 0)
    err = capsys.readouterr().err
    return rc, [line for line in err.splitlines() if line.strip()]


def expect_one_line_error(
    case: str,
    argv: Sequence[str],
    capsys: pytest.CaptureFixture[str],
    needle: str = "",
    guard: Sequence[Path] = (),
) -> str:
    """Run ``argv``; it must fail cleanly (and leave every file under ``guard`` unchanged)."""
    before = digests(*guard)
    rc, lines = run_cli(argv, capsys)
    after = digests(*guard)
    text = "\n".join(lines)
    handled = (
        rc == 1
        and len(lines) == 1
        and "Traceback" not in text
        and "internal error" not in text
        and needle.lower() in text.lower()
        and before == after
    )
    TALLY[case] = handled
    assert rc == 1, f"{case}: exit {rc}, stderr {text!r}"
    assert len(lines) == 1 and "Traceback" not in text, f"{case}: {text!r}"
    assert "internal error" not in text, f"{case}: an unforeseen exception: {text!r}"
    assert needle.lower() in text.lower(), f"{case}: {text!r} does not mention {needle!r}"
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert not changed, f"{case}: inputs changed or lost: {changed}"
    return lines[0]
