"""ftedge.export: build-time steps that turn a trained checkpoint into a verified bundle.

The package itself is callable, so the Python API reads like the command line::

    import ftedge
    result = ftedge.export("runs/latest", formats="onnx,openvino", max_accuracy_drop=0.5)

``ftedge.export(...)`` is ``ftedge.export.bundle.export_bundle(...)``: see its docstring for
every option and its default.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftedge.export.bundle import ExportResult


class _CallablePackage(types.ModuleType):
    # ``ftedge.export`` must be both this package (``import ftedge.export.bundle``) and the
    # ``ftedge.export(...)`` function; Python sets the package as the attribute of ``ftedge`` on
    # import, so the package is what has to be callable.
    def __call__(self, source: Any = "runs/latest", **options: Any) -> ExportResult:
        from ftedge.export.bundle import export_bundle

        return export_bundle(source, **options)


sys.modules[__name__].__class__ = _CallablePackage
