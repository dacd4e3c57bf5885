"""Image folders: layouts, stratified splits, corrupt files, clear errors; the default set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ftedge.data import scan_image_folder
from ftedge.errors import FtedgeError


def _make_folder(root: Path, counts: dict[str, int], size=(20, 16)) -> Path:
    rng = np.random.default_rng(0)
    for c, n in counts.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.jpg")
    return root


def test_single_folder_is_split_stratified_and_reproducibly(tmp_path):
    root = _make_folder(tmp_path / "d", {"a": 20, "b": 40})
    s1 = scan_image_folder(root, val_fraction=0.2, test_fraction=0.2, seed=3)
    s2 = scan_image_folder(root, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert s1.to_dict() == s2.to_dict()
    assert s1.classes == ["a", "b"]
    for split, want in (("val", {0: 4, 1: 8}), ("test", {0: 4, 1: 8})):
        labels = [s.label for s in s1.split(split)]
        assert {k: labels.count(k) for k in set(labels)} == want
    all_paths = [s.path for n in ("train", "val", "test") for s in s1.split(n)]
    assert len(all_paths) == len(set(all_paths)) == 60


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    root = _make_folder(tmp_path / "d", {"a": 5, "b": 5})
    good = (root / "a" / "0.jpg").read_bytes()
    (root / "a" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "b" / "garbage.png").write_bytes(b"not an image at all")
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        s = scan_image_folder(root)
    assert sorted(s.skipped) == ["a/truncated.jpg", "b/garbage.png"]
    assert sum(len(s.split(n)) for n in ("train", "val", "test")) == 10


def test_presplit_layout_and_missing_val_drawn_from_train(tmp_path):
    _make_folder(tmp_path / "d" / "train", {"x": 10, "y": 10})
    _make_folder(tmp_path / "d" / "test", {"x": 2, "y": 3})
    s = scan_image_folder(tmp_path / "d", val_fraction=0.2)
    assert len(s.test) == 5 and all(p.path.startswith("test/") for p in s.test)
    assert len(s.val) == 4 and len(s.train) == 16


@pytest.mark.parametrize(
    "counts, message",
    [
        ({"only": 5}, "only one class"),
        ({"a": 5, "b": 0}, "no readable images: b"),
        ({}, "no class folders"),
        ({"a": 5, "b": 2}, "fewer than 3 images"),
    ],
)
def test_unusable_folders_are_clear_errors(tmp_path, counts, message):
    root = tmp_path / "d"
    root.mkdir()
    _make_folder(root, counts)
    with pytest.raises(FtedgeError, match=message):
        scan_image_folder(root)


def test_missing_folder(tmp_path):
    with pytest.raises(FtedgeError, match="does not exist"):
        scan_image_folder(tmp_path / "nope")


def test_default_dataset_is_a_stratified_real_image_folder(default_data):
    s = scan_image_folder(default_data)
    assert len(s.classes) == 10
    assert (len(s.train), len(s.val), len(s.test)) == (2000, 500, 1000)
    for split, per_class in (("train", 200), ("val", 50), ("test", 100)):
        labels = [x.label for x in s.split(split)]
        assert all(labels.count(c) == per_class for c in range(10))
    with Image.open(s.abspath(s.train[0])) as im:
        assert im.size == (28, 28) and im.mode == "L"
    # Disjoint: file names are the index in Fashion-MNIST's official training file.
    names = [Path(x.path).name for n in ("train", "val", "test") for x in s.split(n)]
    assert len(set(names)) == 3500
    assert (default_data / "LICENSE.txt").read_text().count("MIT License") == 1
    umask = os.umask(0)
    os.umask(umask)
    assert default_data.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
