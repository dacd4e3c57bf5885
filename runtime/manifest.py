"""The bundle manifest: the single description of a deployable bundle.

A bundle is a directory holding ``manifest.json`` and the artifacts it lists. This module is
torch-free and backend-free so that a Jetson with numpy alone can read and check a bundle.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ftedge.errors import FtedgeError
from ftedge.files import atomic_write_text, sha256_file
from ftedge.runtime.preprocess import PreprocessSpec

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

FORMATS = ("onnx", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
STATUSES = ("ok", "failed", "skipped")


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
