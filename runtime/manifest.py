"""The bundle manifest: the single, typed description of a deployable bundle.

A bundle is a directory holding ``manifest.json`` and the artifacts it lists. This module is
torch-free and backend-free so that a Jetson with numpy alone can read and check a bundle.
Every class here is a frozen dataclass; ``Manifest.from_dict`` validates types and values and
raises one ``FtedgeError`` naming the bad field, and ``to_dict`` writes the same JSON back.
Steps that fill something in return a new object (``dataclasses.replace``).

Every path a manifest names (artifact paths and files, the reference logits, the parity inputs)
is relative to the bundle and must stay inside it: ``from_dict`` refuses absolute paths and
``..``, and ``Manifest.load`` refuses symlinks that lead out. ``data.root`` alone names a folder
outside the bundle (the user's dataset, read-only): ``DataRef.test_files`` checks it exists and
that every test file stays inside it.

Tasks: ``Manifest.task`` picks, from ``ftedge.runtime.tasks.TASKS``, the class that parses the
output specs and names the metric ``accuracy`` holds; everything else is shared by every task.

Schema history: 1 = the first release; 2 adds ``task`` and typed validation (1 loads unchanged).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ftedge.errors import FtedgeError
from ftedge.files import atomic_write_text, read_json, sha256_file
from ftedge.runtime.preprocess import PreprocessSpec
from ftedge.runtime.schema_fields import Fields, check_bundle_path, inside
from ftedge.runtime.tasks import TASKS, ClassificationOutput, Gate, OutputKind, OutputSpec

SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.json"

# "torch" names the PyTorch reference checkpoint that load(backend="torch") runs; it is never
# an artifact of a manifest (FORMATS, which from_dict accepts, leaves it out).
Format = Literal["onnx", "openvino", "tensorrt", "torch"]
Precision = Literal["fp32", "fp16", "int8"]
Status = Literal["ok", "failed", "skipped"]
Layout = Literal["NCHW", "NHWC"]
Color = Literal["rgb", "bgr"]
FORMATS: tuple[Format, ...] = ("onnx", "openvino", "tensorrt")  # what a bundle can hold
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")
STATUSES: tuple[Status, ...] = ("ok", "failed", "skipped")
LAYOUTS: tuple[Layout, ...] = ("NCHW", "NHWC")
COLORS: tuple[Color | None, ...] = ("rgb", "bgr", None)
DTYPES = ("float32", "float16", "uint8")


@dataclass(frozen=True)
class InputSpec:
    """A model input: float NCHW (preprocessed) or uint8 NHWC crops ("baked" preprocessing)."""

    name: str = "input"
    dtype: str = "float32"  # float32 | float16 | uint8
    layout: Layout = "NCHW"
    shape: tuple[int, ...] = ()  # -1 first for a dynamic batch; () when not recorded
    color: Color | None = None  # channel order of uint8 inputs

    @property
    def baked(self) -> bool:
        """The preprocessing (normalisation) is inside the model: it takes uint8 crops."""
        return self.dtype == "uint8"

    @classmethod
    def from_fields(cls, f: Fields) -> InputSpec:
        dtype = f.choice("dtype", DTYPES, "float32")
        layout = f.choice("layout", LAYOUTS, "NHWC" if dtype == "uint8" else "NCHW")
        shape = f.array("shape", [])
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape) or not all(
            d > 0 or (i == 0 and d == -1) for i, d in enumerate(shape)
        ):
            raise f.fail("shape", f"must be positive ints (-1 for a dynamic batch), got {shape}")
        color = f.choice("color", COLORS, None)
        return cls(f.text("name", "input"), dtype, layout, tuple(shape), color)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "layout": self.layout}
        if self.shape:
            d["shape"] = list(self.shape)
        if self.color is not None:
            d["color"] = self.color
        return d


@dataclass(frozen=True)
class Parity:
    """How an artifact's outputs compare with the PyTorch reference's on the test images."""

    max_abs_diff: float
    top1_agreement: float
    mean_abs_diff: float | None = None
    compared: OutputKind = "logits"
    images: int | None = None
    execution_precision: str | None = None  # what OpenVINO really ran (f32, bf16...)

    @classmethod
    def from_fields(cls, f: Fields) -> Parity | None:
        if not f.raw:
            return None
        return cls(
            max_abs_diff=f.number("max_abs_diff"),
            top1_agreement=f.number("top1_agreement"),
            mean_abs_diff=f.number("mean_abs_diff", None),
            compared=f.choice("compared", ("logits", "probabilities"), "logits"),
            images=f.integer("images", None),
            execution_precision=f.text("execution_precision", None),
        )

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class Artifact:
    """One deployable model file (plus its side files) and how it was verified."""

    format: Format
    precision: Precision
    path: str  # relative to the bundle directory
    sha256: str | None = None
    status: Status = "ok"
    accuracy: float | None = None  # the task's metric on the test split, in [0, 1]
    accuracy_drop: float | None = None  # points (percent) below the PyTorch reference
    parity: Parity | None = None
    input: InputSpec = field(default_factory=InputSpec)
    output: OutputSpec = field(default_factory=ClassificationOutput)
    files: dict[str, str] = field(default_factory=dict)  # every file of the artifact -> sha256
    details: dict[str, Any] = field(default_factory=dict)  # step-specific facts (free-form)
    message: str | None = None  # why it failed or was skipped
    gate: Gate | None = None  # the accuracy budget it was held to (where recorded)

    @property
    def baked(self) -> bool:
        return self.input.baked

    @property
    def name(self) -> str:
        return f"{self.format}-{self.precision}{'-baked' if self.baked else ''}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "precision": self.precision,
            "path": self.path,
            "sha256": self.sha256,
            "status": self.status,
            "accuracy": self.accuracy,
            "accuracy_drop": self.accuracy_drop,
            "parity": self.parity.to_dict() if self.parity else {},
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "files": dict(self.files),
            "details": self.details,
            "message": self.message,
            **({"gate": self.gate.to_dict()} if self.gate else {}),
        }

    @classmethod
    def from_fields(cls, f: Fields, output_cls: Any) -> Artifact:
        files = f.mapping("files")
        for rel, digest in files.items():
            check_bundle_path(rel, f.name("files"))
            if not isinstance(digest, str):
                raise f.fail(f"files[{rel!r}]", "must be a sha256 string")
        return cls(
            format=f.choice("format", FORMATS),
            precision=f.choice("precision", PRECISIONS),
            path=f.bundle_path("path"),
            sha256=f.text("sha256", None),
            status=f.choice("status", STATUSES, "ok"),
            accuracy=f.number("accuracy", None),
            accuracy_drop=f.number("accuracy_drop", None),
            parity=Parity.from_fields(f.sub("parity", {})),
            input=InputSpec.from_fields(f.sub("input", {})),
            output=output_cls.from_fields(f.sub("output", {})),
            files=files,
            details=f.mapping("details"),
            message=f.text("message", None),
            gate=Gate.from_fields(f.sub("gate", {})),
        )

    @classmethod
    def from_dict(cls, d: Any, where: str = "artifact") -> Artifact:
        """A validated classification artifact from its manifest entry."""
        return cls.from_fields(Fields(d, where), ClassificationOutput)

    def with_files(self, bundle_dir: Path, paths: list[Path]) -> Artifact:
        """This artifact with ``files`` (and ``sha256``) hashed from ``paths`` on disk."""
        files = {p.relative_to(bundle_dir).as_posix(): sha256_file(p) for p in paths}
        return replace(self, files=files, sha256=files[self.path])


@dataclass(frozen=True)
class CheckpointRef:
    """The run checkpoint a bundle was exported from (for the PyTorch reference)."""

    path: str
    sha256: str | None = None
    epoch: int | None = None


@dataclass(frozen=True)
class Provenance:
    """Where the bundle came from. Only ``checkpoint`` is read back (by the torch reference);
    the rest is a record for people, kept as written."""

    checkpoint: CheckpointRef | None = None
    exports: tuple[dict[str, Any], ...] = ()
    record: dict[str, Any] = field(default_factory=dict)  # ftedge_version, created, backbone...

    @classmethod
    def from_fields(cls, f: Fields) -> Provenance:
        record = {k: v for k, v in f.raw.items() if k not in ("checkpoint", "exports")}
        ck = f.get("checkpoint", None)
        if isinstance(ck, str):  # schema 1 allowed a bare path
            ck = {"path": ck}
        ref = None
        if ck is not None:
            c = Fields(ck, f.name("checkpoint"))
            ref = CheckpointRef(c.text("path"), c.text("sha256", None), c.integer("epoch", None))
        exports = f.array("exports", [])
        if not all(isinstance(e, dict) for e in exports):
            raise f.fail("exports", "must be a list of objects")
        return cls(ref, tuple(exports), record)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.record)
        if self.checkpoint is not None:
            d["checkpoint"] = {k: getattr(self.checkpoint, k) for k in ("path", "sha256", "epoch")}
        if self.exports:
            d["exports"] = list(self.exports)
        return d


Samples = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class DataRef:
    """The images export used: ``root`` (the user's dataset, outside the bundle) and
    (relative path, label) lists of the test, calibration and train splits."""

    root: str | None = None
    test: Samples = ()
    calibration: Samples = ()
    train: Samples = ()

    @classmethod
    def from_fields(cls, f: Fields) -> DataRef:
        def samples(key: str) -> Samples:
            items = f.array(key, [])
            for i, s in enumerate(items):
                ok = isinstance(s, (list, tuple)) and len(s) == 2 and isinstance(s[0], str)
                if not ok or isinstance(s[1], bool) or not isinstance(s[1], int):
                    raise f.fail(f"{key}[{i}]", f"must be [path, label], got {s!r}"[:120])
            return tuple((str(p), int(y)) for p, y in items)

        return cls(f.text("root", None), samples("test"), samples("calibration"), samples("train"))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"root": self.root}
        for key in ("test", "calibration", "train"):
            d[key] = [list(s) for s in getattr(self, key)]
        return d

    def test_files(self) -> list[tuple[Path, int]] | None:
        """The test images as absolute paths, or None when the dataset is not on this machine.

        A test path that leads out of ``root`` (absolute, ``..``, a symlink) is refused."""
        if not self.root or not self.test or not Path(self.root).is_dir():
            return None
        root = Path(self.root).resolve()
        out = []
        for i, (rel, label) in enumerate(self.test):
            path = (root / rel).resolve()
            if not path.is_relative_to(root):
                raise FtedgeError(f"data.test[{i}] {rel!r} points outside data.root {self.root}")
            out.append((path, label))
        return out if out[0][0].is_file() else None


@dataclass(frozen=True)
class FastPreprocessing:
    """The fast preprocessing path measured at export on the test split, with the FP32 ONNX."""

    engine: str  # opencv | pillow (ftedge.runtime.fast_preprocess)
    accuracy: float  # with the fast path, in [0, 1]
    agreement: float  # top-1 agreement with the exact (Pillow, training-identical) path
    images: int
    exact_accuracy: float | None = None  # the exact path's, on the same images
    frames: str = "test"  # "test": the images as stored; "WxH": centred in WxH frames
    # Frames only: the exact path's top-1 agreement with itself, each frame one pixel over.
    shift_agreement: float | None = None
    version: int = 1  # the fast path's algorithm measured (fast_preprocess.FAST_PATH_VERSION)

    @classmethod
    def from_fields(cls, f: Fields) -> FastPreprocessing:
        return cls(
            engine=f.choice("engine", ("opencv", "pillow")),
            accuracy=float(f.number("accuracy")),
            agreement=float(f.number("agreement")),
            images=int(f.integer("images") or 0),
            exact_accuracy=f.number("exact_accuracy", None),
            frames=f.text("frames", "test") or "test",
            shift_agreement=f.number("shift_agreement", None),
            version=int(f.integer("version", 1) or 1),
        )

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class Reference:
    """The PyTorch reference: its accuracy and logits on the test split, the stored crops."""

    accuracy: float | None = None
    logits: str = "reference_logits.npy"
    logits_sha256: str | None = None
    parity_inputs: str | None = None
    parity_count: int | None = None
    parity_inputs_sha256: str | None = None
    fast_preprocessing: tuple[FastPreprocessing, ...] = ()

    def fast_paths(self, engine: str) -> tuple[FastPreprocessing, ...]:
        """Every measurement of the fast path with ``engine`` (test images, camera frames)."""
        return tuple(p for p in self.fast_preprocessing if p.engine == engine)

    @classmethod
    def from_fields(cls, f: Fields) -> Reference:
        return cls(
            accuracy=f.number("accuracy", None),
            logits=f.bundle_path("logits", "reference_logits.npy"),
            logits_sha256=f.text("logits_sha256", None),
            parity_inputs=f.bundle_path("parity_inputs", None),
            parity_count=f.integer("parity_count", None),
            parity_inputs_sha256=f.text("parity_inputs_sha256", None),
            fast_preprocessing=tuple(
                FastPreprocessing.from_fields(Fields(p, f.name(f"fast_preprocessing[{i}]")))
                for i, p in enumerate(f.array("fast_preprocessing", []))
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["fast_preprocessing"] = [p.to_dict() for p in self.fast_preprocessing] or None
        return {k: v for k, v in d.items() if v is not None}


def preprocessing_from_fields(f: Fields) -> PreprocessSpec:
    """The preprocessing spec, with its values checked (a zero std would divide by zero)."""
    size = f.array("input_size")
    if len(size) != 3 or not all(isinstance(v, int) and v > 0 for v in size):
        raise f.fail("input_size", f"must be 3 positive ints (C, H, W), got {size}")
    crop = f.number("crop_pct", 0.875)
    if crop is None or not 0 < crop <= 1:
        raise f.fail("crop_pct", f"must be in (0, 1], got {crop}")
    stats = {}
    for key in ("mean", "std"):
        v = f.array(key)
        if len(v) != 3 or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v
        ):
            raise f.fail(key, f"must be 3 finite numbers, got {v}")
        stats[key] = tuple(float(x) for x in v)
    if any(s == 0 for s in stats["std"]):
        raise f.fail("std", f"must be non-zero, got {list(stats['std'])}")
    interp = f.choice("interpolation", ("bicubic", "bilinear", "nearest"), "bicubic")
    return PreprocessSpec(tuple(size), interp, crop, stats["mean"], stats["std"])  # type: ignore[arg-type]


@dataclass(frozen=True)
class Manifest:
    """Everything a consumer needs to run a bundle's artifacts correctly."""

    labels: tuple[str, ...]
    preprocessing: PreprocessSpec
    input: InputSpec  # the float NCHW model input
    output: OutputSpec = field(default_factory=ClassificationOutput)
    task: str = "classification"
    provenance: Provenance = field(default_factory=Provenance)
    data: DataRef = field(default_factory=DataRef)
    reference: Reference = field(default_factory=Reference)
    artifacts: tuple[Artifact, ...] = ()
    schema_version: int = SCHEMA_VERSION

    @property
    def spec(self) -> PreprocessSpec:
        return self.preprocessing

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "task": self.task,
            "labels": list(self.labels),
            "preprocessing": self.preprocessing.to_dict(),
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "provenance": self.provenance.to_dict(),
            "data": self.data.to_dict(),
            "reference": self.reference.to_dict(),
            "artifacts": [a.to_dict() for a in self.artifacts],
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = MANIFEST_NAME) -> Manifest:
        """Validate and parse a manifest; one FtedgeError naming the first bad field."""
        f = Fields(d, f"{where}: ")
        version = f.integer("schema_version")
        if version is None or version < 1:
            raise f.fail("schema_version", f"must be a positive int, got {version!r}")
        if version > SCHEMA_VERSION:
            raise FtedgeError(
                f"{where} has schema_version {version}; this ftedge reads up to "
                f"{SCHEMA_VERSION}: upgrade ftedge"
            )
        task = TASKS[f.choice("task", tuple(TASKS), "classification")]
        return cls(
            labels=f.strings("labels"),
            preprocessing=preprocessing_from_fields(f.sub("preprocessing")),
            input=InputSpec.from_fields(f.sub("input")),
            output=task.output.from_fields(f.sub("output", {})),
            task=task.name,
            provenance=Provenance.from_fields(f.sub("provenance", {})),
            data=DataRef.from_fields(f.sub("data", {})),
            reference=Reference.from_fields(f.sub("reference", {})),
            artifacts=tuple(
                Artifact.from_fields(Fields(a, f"{where}: artifacts[{i}]"), task.output)
                for i, a in enumerate(f.array("artifacts", []))
            ),
            schema_version=version,
        )

    def save(self, bundle_dir: str | os.PathLike[str]) -> Path:
        path = Path(bundle_dir) / MANIFEST_NAME
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path

    @classmethod
    def load(cls, bundle_dir: str | os.PathLike[str]) -> Manifest:
        """Read ``bundle_dir/manifest.json`` (or a manifest path), with one-line errors.

        Besides the field checks of ``from_dict``, every path the manifest names must resolve
        (symlinks followed) inside the bundle folder."""
        p = Path(bundle_dir)
        path = p if p.is_file() else p / MANIFEST_NAME
        if not path.is_file():
            raise FtedgeError(f"not a bundle: {path} does not exist (run 'ftedge export' first)")
        d = read_json(path, "manifest")
        if not isinstance(d, dict) or "schema_version" not in d:
            raise FtedgeError(f"{path} is not an ftedge manifest (no schema_version)")
        manifest = cls.from_dict(d, str(path))
        manifest.check_paths(path.parent)
        return manifest

    def check_paths(self, bundle_dir: Path) -> None:
        """Refuse any manifest path that resolves outside ``bundle_dir`` (e.g. via a symlink)."""
        for i, a in enumerate(self.artifacts):
            inside(bundle_dir, a.path, f"artifacts[{i}].path")
            for rel in a.files:
                inside(bundle_dir, rel, f"artifacts[{i}].files")
        inside(bundle_dir, self.reference.logits, "reference.logits")
        if self.reference.parity_inputs:
            inside(bundle_dir, self.reference.parity_inputs, "reference.parity_inputs")

    def find(self, fmt: str, precision: str, baked: bool = False) -> Artifact | None:
        for a in self.artifacts:
            if a.format == fmt and a.precision == precision and a.baked == baked:
                return a
        return None

    def with_artifact(self, art: Artifact) -> Manifest:
        """This manifest with ``art`` added, replacing the one of the same name (if any)."""
        kept = tuple(a for a in self.artifacts if a.name != art.name)
        return replace(self, artifacts=(*kept, art))

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
