"""Validated reads of untrusted JSON: each failure is one FtedgeError naming the field.

    f = Fields(raw, "manifest.json: artifacts[2]")
    precision = f.choice("precision", ("fp32", "fp16", "int8"))   # ... must be one of ..., got 'fp64'
    path = f.bundle_path("path")                                  # relative, inside the bundle

Used by ``ftedge.runtime.manifest`` only; kept apart so the schema reads as data classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, TypeVar

from ftedge.errors import FtedgeError

T = TypeVar("T")
_MISSING = object()


class Fields:
    """Typed access to one JSON object; ``where`` prefixes every error ("manifest.json: input")."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise FtedgeError(f"{where} must be an object, got {_kind(raw)}")
        self.raw: dict[str, Any] = raw
        self.where = where

    def name(self, key: str) -> str:
        sep = "" if self.where.endswith(": ") or not self.where else "."
        return f"{self.where}{sep}{key}"

    def fail(self, key: str, problem: str) -> FtedgeError:
        return FtedgeError(f"{self.name(key)} {problem}")

    def get(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw.get(key, default)
        if value is _MISSING:
            raise self.fail(key, "is missing")
        return value

    def sub(self, key: str, default: Any = _MISSING) -> Fields:
        return Fields(self.get(key, default), self.name(key))

    def text(self, key: str, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {_kind(value)}")
        return value

    def integer(self, key: str, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.fail(key, f"must be an int, got {_kind(value)}")
        return value

    def number(self, key: str, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise self.fail(key, f"must be a number, got {_kind(value)}")
        if value is not None and not math.isfinite(value):  # JSON's NaN/Infinity extensions
            raise self.fail(key, f"must be a finite number, got {value}")
        return None if value is None else float(value)

    def choice(self, key: str, allowed: Sequence[T], default: Any = _MISSING) -> T:
        value: T = self.get(key, default)
        if value not in allowed:
            raise self.fail(key, f"must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be an object, got {_kind(value)}")
        return dict(value)

    def array(self, key: str, default: Any = _MISSING) -> list[Any]:
        value = self.get(key, default)
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {_kind(value)}")
        return list(value)

    def strings(self, key: str, default: Any = _MISSING) -> tuple[str, ...]:
        items = self.array(key, default)
        if not all(isinstance(v, str) for v in items):
            raise self.fail(key, "must be a list of strings")
        return tuple(items)

    def bundle_path(self, key: str, default: Any = _MISSING) -> Any:
        """A path that must stay inside the bundle folder: relative and without ``..``."""
        value = self.text(key, default)
        if value is not None:
            check_bundle_path(value, self.name(key))
        return value


def check_bundle_path(rel: str, field: str) -> None:
    """Refuse a manifest path that could point outside the bundle (absolute or with ``..``)."""
    posix, windows = PurePosixPath(rel), PureWindowsPath(rel)
    if (
        not rel
        or posix.is_absolute()
        or windows.is_absolute()
        or windows.drive
        or ".." in posix.parts
        or ".." in windows.parts
    ):
        raise FtedgeError(f"{field} {rel!r} points outside the bundle")


def inside(bundle_dir: Path, rel: str, field: str) -> Path:
    """``bundle_dir / rel``, refused when it resolves (symlinks followed) outside the bundle."""
    check_bundle_path(rel, field)
    root = Path(bundle_dir).resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise FtedgeError(f"{field} {rel!r} points outside the bundle")
    return path


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:80]
