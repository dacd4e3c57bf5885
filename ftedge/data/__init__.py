"""Image-folder datasets (torch-free scanning) and the embedded default dataset."""

from ftedge.data.folders import IMAGE_EXTENSIONS, DatasetSplits, Sample, scan_image_folder

__all__ = ["IMAGE_EXTENSIONS", "DatasetSplits", "Sample", "scan_image_folder"]
