"""Files that are never seen half-written: atomic writes, sha256, temp folders, ``latest`` links.

Used by training (checkpoints, run folders), export (bundles) and the runtime (reports), so it
imports nothing beyond the standard library.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_write_with(path: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, fsync it, rename it onto ``path``.

    Readers never see half a file. The mode is set after ``write`` because writers such as
    safetensors and torch.save recreate the file: mkstemp's 0600 would otherwise survive, and
    the result gets the usual umask-based mode instead.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def mkdtemp_beside(path: Path, prefix: str) -> Path:
    """A temporary directory next to ``path``, to be renamed onto it when complete.

    mkdtemp creates it 0700; it gets the usual umask-based mode of an ordinary folder.
    """
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (``atomic_write_with``)."""
    atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """``atomic_write_bytes`` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def point_latest(target: Path) -> None:
    """Make ``<parent>/latest`` a symlink to ``target``, replaced atomically.

    A real file or folder the user named ``latest`` is left alone.
    """
    link = target.parent / "latest"
    if link.exists() and not link.is_symlink():
        return
    tmp = target.parent / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    os.replace(tmp, link)
