"""Files that are never seen half-written: atomic writes, sha256, temp folders, ``latest`` links.

Used by training (checkpoints, run folders), export (bundles) and the runtime (reports), so it
imports nothing beyond the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ftedge.errors import FtedgeError

# Every temporary file or folder ftedge makes carries this mark and its process id, so a later
# run can tell its own leftovers (from a SIGKILL or a power cut) from anything else and remove
# them once that process is gone (``sweep_stale_temps``).
_TEMP_MARK = "ftedge-tmp"
_TEMP_RE = re.compile(rf"{_TEMP_MARK}-(\d+)-")


def temp_prefix(name: str) -> str:
    """The prefix of a temporary file/folder made for ``name`` by this process."""
    return f"{name}.{_TEMP_MARK}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale_temps(folder: str | os.PathLike[str]) -> int:
    """Remove ftedge's temporary files/folders in ``folder`` whose process has ended.

    Only names of our own making are touched (``temp_prefix``), and only when the process that
    made them is no longer running: a concurrent run's work in progress is left alone.
    Returns how many were removed.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        m = _TEMP_RE.search(entry.name)
        if m is None or _alive(int(m.group(1))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
        except OSError:
            pass
    return removed


def check_output_not_input(
    outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str]], flag: str
) -> None:
    """Refuse (one line naming ``flag``) when any output path is one of the input files.

    Paths are compared after resolving symlinks and ``..``, so ``--save .`` beside the source
    video, or a hard-to-spot link to an input, is caught before anything is written.
    """

    def key(p: str | os.PathLike[str]) -> str:
        return os.path.normcase(os.path.realpath(os.path.expanduser(os.fspath(p))))

    ins = {key(p): p for p in inputs}
    for out in outputs:
        hit = ins.get(key(out))
        if hit is not None:
            raise FtedgeError(
                f"{flag} would overwrite the input {hit}: choose an output outside the inputs"
            )


def check_output_kinds(
    files: Iterable[tuple[str, str | os.PathLike[str] | None]],
    folders: Iterable[tuple[str, str | os.PathLike[str] | None]] = (),
) -> None:
    """``(flag, path)`` outputs that must be files (not folders) or folders (not files)."""
    for flag, path in files:
        if path is not None and os.fspath(path) != "-" and Path(path).expanduser().is_dir():
            raise FtedgeError(f"{flag} {path} is a folder, expected a file")
    for flag, path in folders:
        p = Path(path).expanduser() if path is not None else None
        if p is not None and p.exists() and not p.is_dir():
            raise FtedgeError(f"{flag} {path} is a file, expected a folder")


def read_text(path: str | os.PathLike[str], what: str) -> str:
    """The UTF-8 text of ``path``, or one line saying why it cannot be read as ``what``."""
    p = Path(path)
    try:
        return p.read_bytes().decode("utf-8")
    except IsADirectoryError:
        raise FtedgeError(f"{what} {p} is a directory, expected a file") from None
    except OSError as e:
        raise FtedgeError(f"cannot read {what} {p}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise FtedgeError(f"{what} {p} is not a UTF-8 text file") from None


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """The JSON document at ``path`` (``read_text``), or one line saying what is wrong."""
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as e:
        raise FtedgeError(f"{what} {path} is not valid JSON: {e}") from None
    except RecursionError:
        raise FtedgeError(f"{what} {path} is nested too deeply") from None


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(f".{path.name}"), suffix=".tmp")
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


def mkdtemp_beside(path: Path) -> Path:
    """A temporary directory next to ``path``, to be renamed onto it when complete.

    mkdtemp creates it 0700; it gets the usual umask-based mode of an ordinary folder.
    """
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=temp_prefix(f".{path.name}")))
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
    tmp = target.parent / f"{temp_prefix('.latest')}link"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    os.replace(tmp, link)
