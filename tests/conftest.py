"""Shared fixtures: CUDA skip marker, RNG restore, and small real runs/bundles on disk."""

from __future__ import annotations

import random

import numpy as np
import pytest


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Tests may seed RNGs freely: the global state is put back afterwards (torchvision style)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        import torch

        torch_state = torch.get_rng_state()
    except ImportError:
        torch_state = None
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    if torch_state is not None:
        import torch

        torch.set_rng_state(torch_state)


@pytest.fixture(scope="session")
def default_data(tmp_path_factory: pytest.TempPathFactory):
    """The built-in Fashion-MNIST sample materialised as an image folder."""
    from ftedge.data.default import materialize_default

    return materialize_default(tmp_path_factory.mktemp("data") / "fashion-mnist-sample")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory, default_data):
    """A 3-class, 20/8/8-per-class subset of the default data (fast to train on)."""
    from tests.helpers import subset_image_folder

    return subset_image_folder(
        default_data,
        tmp_path_factory.mktemp("small") / "data",
        classes=["trouser", "bag", "sneaker"],
        per_split={"train": 20, "val": 8, "test": 8},
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, small_data):
    """A real trained run directory: Lite0 (offline weights) at 64 px on ``small_data``."""
    from tests.helpers import make_tiny_run

    return make_tiny_run(small_data, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def shapes_run(tmp_path_factory: pytest.TempPathFactory):
    """A tiny detector trained on synthetic coloured shapes (YOLO folder, 128 px, 3 classes)."""
    import ftedge
    from tests.detect_helpers import write_yolo_shapes

    root = write_yolo_shapes(
        tmp_path_factory.mktemp("shapes"), {"train": 120, "val": 30, "test": 40}
    )
    out = tmp_path_factory.mktemp("runs")
    return ftedge.train(root, task="detect", image_size=128, epochs=40, out=str(out), name="shapes")


@pytest.fixture(scope="session")
def shapes_bundle(shapes_run, tmp_path_factory: pytest.TempPathFactory):
    """``shapes_run`` exported (ONNX + OpenVINO FP32, verified): an ``ExportResult``."""
    import ftedge

    out = tmp_path_factory.mktemp("bundles") / "shapes"
    return ftedge.export(shapes_run.run_dir, out=out, formats="onnx,openvino", progress=False)
