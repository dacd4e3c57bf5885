"""ftedge.runtime: the torch-free runtime (numpy + one backend) for camera apps and Jetsons.

    from ftedge.runtime import load
    clf = load("bundles/latest")
    print(clf.classify(frame, topk=3, color="bgr"))

``load``, ``Classifier`` and ``Prediction`` are imported lazily (PEP 562) so that
``import ftedge.runtime`` stays cheap and never imports torch or any backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftedge.runtime.classifier import Classifier, Prediction, load

__all__ = ["Classifier", "Prediction", "load"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ftedge.runtime import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'ftedge.runtime' has no attribute {name!r}")
