"""What a bundle's model does: the task registry (``classification`` today).

A task decides the shape of a model's output spec in the manifest and the metric its artifacts
are verified with. ``Manifest.task`` names the task; the manifest's and each artifact's
``output`` is parsed by that task's ``OutputSpec`` class. See ``ftedge.runtime.manifest`` for
how a new task plugs in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, Protocol

from ftedge.runtime.schema_fields import Fields

OutputKind = Literal["logits", "probabilities"]
# The score threshold of detection bundles that do not record their own (chosen on val).
DEFAULT_CONF = 0.25


class OutputSpec(Protocol):
    """A task's description of a model output; parsed from and written to the manifest."""

    @property
    def name(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ClassificationOutput:
    """One (N, classes) tensor of logits or softmax probabilities."""

    name: str = "logits"
    kind: OutputKind = "logits"

    KINDS: ClassVar[tuple[OutputKind, ...]] = ("logits", "probabilities")

    @classmethod
    def from_fields(cls, f: Fields) -> ClassificationOutput:
        return cls(name=f.text("name", "logits"), kind=f.choice("kind", cls.KINDS, "logits"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DetectionOutput:
    """Decoded boxes (N, P, 4) xyxy in input pixels and per-class scores (N, P, K).

    The input is the frame letterboxed into a square (``ftedge.runtime.letterbox``): resized
    by one factor, placed top-left, the rest filled with ``fill`` (the colour that normalises
    to zero). Boxes map back to the frame by dividing by that factor. ``conf``: the score
    threshold ``Detector.detect`` uses by default, chosen on the val split at training time (best
    F1 at IoU 0.5); 0.25 in bundles that do not record one.
    """

    boxes: str = "boxes"
    scores: str = "scores"
    fill: tuple[int, int, int] = (127, 127, 127)
    conf: float = DEFAULT_CONF

    @property
    def name(self) -> str:
        return self.boxes

    @classmethod
    def from_fields(cls, f: Fields) -> DetectionOutput:
        fill = f.array("fill", [127, 127, 127])
        if len(fill) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in fill):
            raise f.fail("fill", f"must be three ints in 0..255, got {fill!r}")
        conf = f.number("conf", DEFAULT_CONF)
        if not 0.0 <= conf <= 1.0:
            raise f.fail("conf", f"must be in [0, 1], got {conf}")
        return cls(
            boxes=f.text("boxes", "boxes"),
            scores=f.text("scores", "scores"),
            fill=(fill[0], fill[1], fill[2]),
            conf=conf,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "boxes": self.boxes,
            "scores": self.scores,
            "fill": list(self.fill),
            "conf": self.conf,
        }


@dataclass(frozen=True)
class Gate:
    """The accuracy gate a reduced-precision artifact was held to, and its outcome.

    ``max_drop``: points of the task's metric (top-1 %, mAP points) the artifact may lose
    against the PyTorch reference; ``passed``: whether it stayed within it (the artifact is
    ``failed`` otherwise).
    """

    max_drop: float
    passed: bool

    @classmethod
    def from_fields(cls, f: Fields) -> Gate | None:
        if not f.raw:
            return None
        passed = f.get("passed")
        if not isinstance(passed, bool):
            raise f.fail("passed", f"must be true or false, got {passed!r}")
        return cls(max_drop=float(f.number("max_drop")), passed=passed)

    def to_dict(self) -> dict[str, Any]:
        return {"max_drop": self.max_drop, "passed": self.passed}


@dataclass(frozen=True)
class Task:
    """A task: the output spec its manifests carry and the metric its artifacts are held to."""

    name: str
    output: Any  # the OutputSpec class: has from_fields(Fields) and to_dict()
    metric: str  # what ``accuracy`` means for this task's artifacts


TASKS: dict[str, Task] = {
    "classification": Task("classification", ClassificationOutput, "top-1 accuracy"),
    "detection": Task("detection", DetectionOutput, "COCO mAP@[.5:.95]"),
}
