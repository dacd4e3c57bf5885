"""Assembling a bundle out of sight and swapping it into place atomically.

The bundle is built in a temporary directory beside the destination and renamed into place at
the end, so an interrupted or failed export never leaves a half-written bundle that looks valid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ftedge.errors import FtedgeError
from ftedge.export.run_source import is_bundle
from ftedge.files import mkdtemp_beside


@contextlib.contextmanager
def staging_dir(dest: Path) -> Iterator[Path]:
    """A temporary directory beside ``dest``, removed if the block raises (or is interrupted)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = mkdtemp_beside(dest)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def copy_bundle(source: Path, tmp: Path) -> None:
    """Copy an existing bundle into the staging directory (leftover staging dirs excluded)."""
    shutil.copytree(
        source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*.tmp", "*ftedge-tmp-*")
    )


def check_destination(dest: Path) -> None:
    """``dest`` is absent, an empty folder or a bundle: anything else is never replaced."""
    if dest.exists() or dest.is_symlink():
        if dest.is_symlink() or dest.is_file():
            raise FtedgeError(f"--out {dest} exists and is not a bundle directory")
        if not is_bundle(dest) and any(dest.iterdir()):
            raise FtedgeError(
                f"--out {dest} exists and is not an ftedge bundle: refusing to replace it"
            )


def swap_into_place(tmp: Path, dest: Path) -> None:
    """Atomically replace ``dest`` with ``tmp`` (the old bundle is removed after the swap)."""
    if dest.exists() or dest.is_symlink():
        check_destination(dest)  # again: it may have changed while the bundle was made
        old = mkdtemp_beside(dest)
        os.replace(dest, old / "b")
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
