"""ftedge: fine-tune, quantize, verify and benchmark image models for edge devices.

    import ftedge
    run = ftedge.train(epochs=10)          # see docs/api.md
    bundle = ftedge.export(run.run_dir)
    report = ftedge.benchmark(bundle.bundle_dir)
    clf = ftedge.runtime.load(bundle.bundle_dir)

This module imports nothing heavy: ``import ftedge`` (and ``ftedge --help``) must stay fast, and
``ftedge.runtime`` must work on a Jetson with numpy and one inference backend only. The API
functions are imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ftedge.errors import FtedgeError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ftedge.api import benchmark, train

__all__ = ["FtedgeError", "__version__", "benchmark", "export", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "benchmark"):
        from ftedge import api

        return getattr(api, name)
    if name == "export":  # the package is callable: ftedge.export(...) == export_bundle(...)
        import importlib

        return importlib.import_module("ftedge.export")
    raise AttributeError(f"module 'ftedge' has no attribute {name!r}")
