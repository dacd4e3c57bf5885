"""The bundle manifest: the single description of a deployable bundle (design.md §5).

A bundle is a directory holding ``manifest.json`` and the artifacts it lists. This module is
torch-free and backend-free so that a Jetson with numpy alone can read and check a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ftedge.errors import FtedgeError
from ftedge.runtime.preprocess import PreprocessSpec

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

FORMATS = ("onnx", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
STATUSES = ("ok", "failed", "skipped")


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


@dataclass
class Artifact:
    """One deployable model file (plus its side files) and how it was verified."""

    format: str  # onnx | openvino | tensorrt
    precision: str  # fp32 | fp16 | int8
    path: str  # relative to the bundle directory
    sha256: str | None = None
    status: str = "ok"  # ok | failed | skipped
    accuracy: float | None = None
    accuracy_drop: float | None = None  # points (percent) below the PyTorch accuracy
    parity: dict[str, Any] = field(default_factory=dict)  # max_abs_diff, top1_agreement, ...
    input: dict[str, Any] = field(default_factory=dict)  # name, dtype, layout, shape, color
    output: dict[str, Any] = field(default_factory=dict)  # name, kind: logits|probabilities
    files: dict[str, str] = field(default_factory=dict)  # every file of the artifact -> sha256
    details: dict[str, Any] = field(default_factory=dict)  # step-specific facts
    message: str | None = None  # why it failed or was skipped

    @property
    def name(self) -> str:
        baked = "-baked" if self.input.get("dtype") == "uint8" else ""
        return f"{self.format}-{self.precision}{baked}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Artifact:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Manifest:
    """Everything a consumer needs to run a bundle's artifacts correctly."""

    labels: list[str]
    preprocessing: dict[str, Any]
    input: dict[str, Any]  # the float NCHW model input: name, shape, dtype, layout
    output: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # root, test/calibration file lists
    reference: dict[str, Any] = field(default_factory=dict)  # PyTorch accuracy, logits file
    artifacts: list[Artifact] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.preprocessing)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["artifacts"] = [a.to_dict() for a in self.artifacts]
        return d

    def save(self, bundle_dir: str | os.PathLike[str]) -> Path:
        path = Path(bundle_dir) / MANIFEST_NAME
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path

    @classmethod
    def load(cls, bundle_dir: str | os.PathLike[str]) -> Manifest:
        """Read ``bundle_dir/manifest.json`` (or a manifest path), with one-line errors."""
        p = Path(bundle_dir)
        path = p if p.is_file() else p / MANIFEST_NAME
        if not path.is_file():
            raise FtedgeError(f"not a bundle: {path} does not exist (run 'ftedge export' first)")
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise FtedgeError(f"unreadable manifest {path}: {e}") from None
        if not isinstance(d, dict) or "schema_version" not in d:
            raise FtedgeError(f"{path} is not an ftedge manifest (no schema_version)")
        if d["schema_version"] > SCHEMA_VERSION:
            raise FtedgeError(
                f"{path} has schema_version {d['schema_version']}; this ftedge reads up to "
                f"{SCHEMA_VERSION}: upgrade ftedge"
            )
        try:
            return cls(
                labels=list(d["labels"]),
                preprocessing=dict(d["preprocessing"]),
                input=dict(d["input"]),
                output=dict(d.get("output", {})),
                provenance=dict(d.get("provenance", {})),
                data=dict(d.get("data", {})),
                reference=dict(d.get("reference", {})),
                artifacts=[Artifact.from_dict(a) for a in d.get("artifacts", [])],
                schema_version=int(d["schema_version"]),
            )
        except (KeyError, TypeError) as e:
            raise FtedgeError(f"{path} is missing a required field: {e}") from None

    def find(self, fmt: str, precision: str, baked: bool = False) -> Artifact | None:
        for a in self.artifacts:
            if (
                a.format == fmt
                and a.precision == precision
                and (a.input.get("dtype") == "uint8") == baked
            ):
                return a
        return None

    def verify_files(self, bundle_dir: str | os.PathLike[str]) -> list[str]:
        """Paths (relative) of every listed file that is missing or whose sha256 changed."""
        root = Path(bundle_dir)
        bad = []
        for a in self.artifacts:
            if a.status == "skipped":
                continue
            for rel, digest in a.files.items():
                f = root / rel
                if not f.is_file() or sha256_file(f) != digest:
                    bad.append(rel)
        return bad
