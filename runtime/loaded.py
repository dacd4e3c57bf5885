"""What every task's loaded model shares: the active runner, its artifact and bundle, and a
lifecycle (``close()``, or use it as a context manager)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from ftedge.runtime.manifest import Artifact, Manifest
from ftedge.runtime.runners.base import Runner

_T = TypeVar("_T", bound="LoadedModel")


class LoadedModel:
    """Base of ``Classifier`` and ``Detector`` (created by ``ftedge.runtime.load``)."""

    def __init__(
        self,
        runner: Runner,
        artifact: Artifact,
        manifest: Manifest,
        bundle_dir: Path,
        *,
        backend: str,
        fallbacks: Sequence[str] = (),
    ) -> None:
        self.runner = runner
        self.artifact = artifact
        self.manifest = manifest
        self.bundle_dir = bundle_dir
        self.backend = backend
        self.fallbacks = list(fallbacks)  # why better-ranked candidates were not used
        self.labels: list[str] = list(manifest.labels)

    @property
    def device(self) -> str:
        return self.runner.device

    def close(self) -> None:
        """Free the session, compiled model or engine."""
        self.runner.deactivate()

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
