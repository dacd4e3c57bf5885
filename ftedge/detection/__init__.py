"""Object detection data (YOLO / COCO / Pascal VOC folders, the built-in tree crowns) and COCO
metrics. Torch-free; Pillow and pycocotools are imported only when used."""

from ftedge.detection.default import materialise_default_detection_data
from ftedge.detection.loader import detect_format, load_detection_data
from ftedge.detection.metrics import (
    DetectionMetrics,
    PrecisionRecallCurve,
    evaluate_detections,
    precision_recall_curve,
)
from ftedge.detection.types import AnnotationReport, DetectionDataset, DetectionSample

__all__ = [
    "AnnotationReport",
    "DetectionDataset",
    "DetectionMetrics",
    "DetectionSample",
    "PrecisionRecallCurve",
    "detect_format",
    "evaluate_detections",
    "load_detection_data",
    "materialise_default_detection_data",
    "precision_recall_curve",
]
