"""Backbones (timm, torchvision, local files, offline EfficientNet-Lite) and classifier heads."""

from ftedge.models.classifier import FtedgeClassifier, HeadSpec, build_classifier
from ftedge.models.registry import BackboneSource, create_backbone, resolve_backbone

__all__ = [
    "BackboneSource",
    "FtedgeClassifier",
    "HeadSpec",
    "build_classifier",
    "create_backbone",
    "resolve_backbone",
]
