"""The numpy + Pillow preprocessing equals the training eval transform (torchvision) exactly.

Real images only: scikit-image photos written to disk as JPEG and PNG and read back, the
grayscale Fashion-MNIST PNGs of the default dataset, and crops of odd sizes / aspect ratios.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ftedge.errors import FtedgeError
from ftedge.runtime.preprocess import (
    PreprocessSpec,
    check_frame,
    load_uint8_crop,
    preprocess,
    preprocess_file,
    resize_crop,
    to_pil,
)

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

SPECS = {
    "bicubic-224-0.875-half": PreprocessSpec((3, 224, 224), "bicubic", 0.875, *HALF),
    "bilinear-224-0.875-imagenet": PreprocessSpec((3, 224, 224), "bilinear", 0.875, *IMAGENET),
    "bicubic-128-1.0-imagenet": PreprocessSpec((3, 128, 128), "bicubic", 1.0, *IMAGENET),
    "bilinear-64-1.0-half": PreprocessSpec((3, 64, 64), "bilinear", 1.0, *HALF),
    "bicubic-64-0.875-imagenet": PreprocessSpec((3, 64, 64), "bicubic", 0.875, *IMAGENET),
    "bilinear-96x128-0.9-half": PreprocessSpec((3, 96, 128), "bilinear", 0.9, *HALF),
}


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """scikit-image photos on disk: whole, and cropped to odd sizes/aspect ratios, JPEG + PNG."""
    from skimage import data

    out = tmp_path_factory.mktemp("photos")
    photos = {"chelsea": data.chelsea(), "coffee": data.coffee(), "astronaut": data.astronaut()}
    files: list[Path] = []
    for name, rgb in photos.items():
        h, w = rgb.shape[:2]
        variants = {
            "full": rgb,
            "tall": rgb[: h - 1, : w // 3 + 7],  # portrait, odd width
            "wide": rgb[h // 3 : h // 3 + 37, :],  # 37 px high strip: upsampled by the resize
            "tiny": rgb[101:120, 50:73],  # 19 x 23: smaller than every crop
        }
        for vname, arr in variants.items():
            for ext in (".jpg", ".png"):
                p = out / f"{name}-{vname}{ext}"
                Image.fromarray(np.ascontiguousarray(arr)).save(p, quality=90)
                files.append(p)
    return files


@pytest.fixture(scope="module")
def fashion_files(default_data: Path) -> list[Path]:
    """Grayscale 28 x 28 PNGs from the built-in Fashion-MNIST sample, one per class."""
    files = sorted(p for d in sorted((default_data / "test").iterdir()) for p in [min(d.iterdir())])
    assert len(files) == 10
    with Image.open(files[0]) as im:
        assert im.mode == "L"
    return files


def _torch_reference(path: Path, spec: PreprocessSpec) -> np.ndarray:
    from ftedge.data.transforms import eval_transform

    with Image.open(path) as im:
        return eval_transform(spec)(im).numpy()


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert a.dtype == b.dtype == np.float32
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_numpy_preprocessing_equals_training_transform_on_photos(
    spec_name: str, photo_files: list[Path]
) -> None:
    spec = SPECS[spec_name]
    worst = 0.0
    for path in photo_files:
        ref = _torch_reference(path, spec)
        assert ref.shape == (3, spec.height, spec.width)
        # Three runtime entry points: a file, an RGB frame, and the same frame as BGR.
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        for ours in (
            preprocess_file(str(path), spec),
            preprocess(rgb, spec, "rgb"),
            preprocess(np.ascontiguousarray(rgb[:, :, ::-1]), spec, "bgr"),
        ):
            worst = max(worst, _max_diff(ours, ref))
    assert worst <= 1e-6, f"{spec_name}: max abs diff {worst}"


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_numpy_preprocessing_equals_training_transform_on_grayscale_pngs(
    spec_name: str, fashion_files: list[Path]
) -> None:
    spec = SPECS[spec_name]
    for path in fashion_files:
        ref = _torch_reference(path, spec)
        with Image.open(path) as im:
            gray = np.asarray(im)  # HW uint8
        assert gray.ndim == 2
        for ours in (
            preprocess_file(str(path), spec),
            preprocess(gray, spec),  # HW
            preprocess(gray[:, :, None], spec),  # HW1
            preprocess(np.repeat(gray[:, :, None], 3, axis=2), spec, "bgr"),  # what cv2 reads
        ):
            assert _max_diff(ours, ref) <= 1e-6, path


def test_preprocessing_is_bit_exact_for_the_default_specs(photo_files: list[Path]) -> None:
    """Stronger than 1e-6: the default Lite0 spec (224 px) and the built-in 128 px spec."""
    for spec in (
        PreprocessSpec(),
        PreprocessSpec((3, 128, 128), "bicubic", 0.875, *HALF),
    ):
        for path in photo_files:
            np.testing.assert_array_equal(
                preprocess_file(str(path), spec), _torch_reference(path, spec)
            )


def test_uint8_crop_is_the_resized_crop_before_normalisation(photo_files: list[Path]) -> None:
    """Baked-preprocessing artifacts get the uint8 crop; normalising it must give the same input."""
    from ftedge.runtime.preprocess import normalize

    spec = SPECS["bilinear-224-0.875-imagenet"]
    for path in photo_files[:6]:
        crop = load_uint8_crop(str(path), spec)
        assert crop.dtype == np.uint8 and crop.shape == (spec.height, spec.width, 3)
        assert _max_diff(normalize(crop, spec), _torch_reference(path, spec)) <= 1e-6


def test_rgba_frame_drops_alpha_like_training(photo_files: list[Path], tmp_path: Path) -> None:
    spec = SPECS["bicubic-64-0.875-imagenet"]
    with Image.open(photo_files[0]) as im:
        rgba = im.convert("RGBA")
    arr = np.array(rgba)
    arr[..., 3] = np.arange(arr.shape[1], dtype=np.uint8)[None, :]  # varying alpha
    p = tmp_path / "rgba.png"
    Image.fromarray(arr, "RGBA").save(p)
    assert _max_diff(preprocess(arr, spec), _torch_reference(p, spec)) <= 1e-6


def test_resize_crop_geometry() -> None:
    spec = PreprocessSpec((3, 64, 64), "bilinear", 0.875)
    assert spec.resize_size == 73
    out = resize_crop(to_pil(np.zeros((30, 300, 3), np.uint8)), spec)
    assert out.shape == (64, 64, 3)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 2), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((3, 8, 8, 3), np.uint8), "HWC"),
        (np.zeros((0, 8, 3), np.uint8), "HWC"),
        ([[1, 2], [3, 4]], "numpy"),
    ],
)
def test_bad_frames_raise_clear_errors(bad: object, match: str) -> None:
    with pytest.raises(FtedgeError, match=match):
        check_frame(bad)


def test_uint8_batch_puts_crops_in_the_models_order_and_layout():
    from ftedge.runtime.preprocess import uint8_batch

    crops = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)  # RGB
    nchw = uint8_batch(crops, "bgr", "NCHW")
    assert nchw.shape == (2, 3, 4, 5) and nchw.flags.c_contiguous
    np.testing.assert_array_equal(nchw[1, 0], crops[1, :, :, 2])  # blue plane first
    nhwc = uint8_batch(crops, "rgb", "NHWC")
    assert nhwc.flags.c_contiguous
    np.testing.assert_array_equal(nhwc, crops)
    np.testing.assert_array_equal(uint8_batch(crops, "bgr", "NHWC"), crops[..., ::-1])
