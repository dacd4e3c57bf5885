"""ftedge: fine-tune, quantize, verify and benchmark image classifiers for edge devices.

This module imports nothing heavy: ``import ftedge`` (and ``ftedge --help``) must stay fast, and
``ftedge.runtime`` must work on a Jetson with numpy and one inference backend only.
"""

__version__ = "0.1.0"

from ftedge.errors import FtedgeError

__all__ = ["FtedgeError", "__version__"]
