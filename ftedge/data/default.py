"""The embedded default dataset: a 3,500-image stratified sample of Fashion-MNIST (MIT).

``ftedge train`` without ``--data`` writes it out once as an ordinary image folder
(``<cache>/fashion-mnist-sample/{train,val,test}/<class>/*.png``) that the user can open, and
trains on that folder like on any other.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from ftedge.files import mkdtemp_beside

ASSET = "fashion_mnist_sample.npz"
NAME = "fashion-mnist-sample"


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip), as the official Fashion-MNIST files are stored, as a uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def cache_root() -> Path:
    """``$FTEDGE_HOME`` or ``$XDG_CACHE_HOME/ftedge`` or ``~/.cache/ftedge``."""
    if os.environ.get("FTEDGE_HOME"):
        return Path(os.environ["FTEDGE_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ftedge"


def load_arrays() -> dict[str, np.ndarray]:
    """The vendored arrays: ``{split}_images`` (N, 28, 28) uint8, ``{split}_labels``, classes."""
    asset = resources.files("ftedge.data").joinpath("assets", ASSET)
    with asset.open("rb") as f, np.load(f) as z:
        return {k: z[k] for k in z.files}


def materialize_default(dest: str | Path | None = None) -> Path:
    """Write the default dataset as an image folder (once) and return its path."""
    dest = Path(dest) if dest is not None else cache_root() / "datasets" / NAME
    if (dest / ".complete").is_file():
        return dest
    print(f"writing the built-in dataset to {dest}", file=sys.stderr)
    arrays = load_arrays()
    classes = [str(c) for c in arrays["classes"]]
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the destination and rename at the end: a killed run never leaves half a set.
    tmp = mkdtemp_beside(dest)
    try:
        for split in ("train", "val", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            src_index = arrays[f"{split}_source_index"]
            for c in classes:
                (tmp / split / c).mkdir(parents=True)
            for img, y, i in zip(images, labels, src_index, strict=True):
                Image.fromarray(img, "L").save(tmp / split / classes[int(y)] / f"{int(i):05d}.png")
        (tmp / "LICENSE.txt").write_text(
            resources.files("ftedge.data")
            .joinpath("assets", "FASHION_MNIST_LICENSE.txt")
            .read_text()
        )
        (tmp / ".complete").write_text("ok\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
