"""Detection data: YOLO / COCO / VOC folders written here, repairs counted, clear errors, and the
built-in tree-crown tiles (split by region, materialised atomically, read back unchanged)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ftedge.detection import (
    AnnotationReport,
    detect_format,
    load_detection_data,
    materialise_default_detection_data,
)
from ftedge.detection.default import STAMP, asset_sha256, load_tree_tiles, read_stamp
from ftedge.detection.images import image_size, open_rgb
from ftedge.errors import FtedgeError


def _image(path: Path, w: int = 80, h: int = 60, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _by_name(ds) -> dict[str, object]:
    return {Path(s.path).name: s for n in ("train", "val", "test") for s in ds.split(n)}


# -- YOLO -------------------------------------------------------------------------------------
def _yolo_pool(root: Path, n: int = 10) -> Path:
    _write(root / "data.yaml", "names: [cat, dog]\n")
    for i in range(n):
        _image(root / "images" / f"{i}.png", seed=i)
        if i > 0:  # image 0 has no label file: a background image
            _write(root / "labels" / f"{i}.txt", f"{i % 2} 0.5 0.5 0.25 0.5\n")
    return root


def test_yolo_pool_is_split_by_image_reproducibly_with_pixel_boxes(tmp_path):
    root = _yolo_pool(tmp_path / "y")
    ds = load_detection_data(root, val_fraction=0.2, test_fraction=0.2, seed=1)
    again = load_detection_data(root, val_fraction=0.2, test_fraction=0.2, seed=1)
    other = load_detection_data(root, val_fraction=0.2, test_fraction=0.2, seed=2)
    assert ds.source_format == "yolo" and ds.split_method == "random"
    assert ds.class_names == ("cat", "dog")
    assert [len(ds.split(n)) for n in ("train", "val", "test")] == [6, 2, 2]
    assert ds.to_dict() == again.to_dict() and ds.to_dict() != other.to_dict()
    names = [Path(s.path).name for n in ("train", "val", "test") for s in ds.split(n)]
    assert sorted(names) == sorted(f"{i}.png" for i in range(10))
    s3 = _by_name(ds)["3.png"]
    assert (s3.width, s3.height) == (80, 60)
    np.testing.assert_allclose(s3.boxes, [[30, 15, 50, 45]])  # cx .5 cy .5 w .25 h .5 of 80x60
    assert s3.boxes.dtype == np.float32 and s3.labels.dtype == np.int64 and s3.labels[0] == 1
    assert _by_name(ds)["0.png"].num_boxes == 0 and ds.report.background_images == 1


def test_yolo_presplit_folders_with_a_names_mapping(tmp_path):
    root = tmp_path / "y"
    _write(root / "dataset.yaml", "names:\n  0: car\n  1: person\n")
    for split, n in (("train", 3), ("valid", 2), ("test", 1)):
        for i in range(n):
            _image(root / "images" / split / f"{split}{i}.jpg")
            _write(root / "labels" / split / f"{split}{i}.txt", "1 0.5 0.5 0.2 0.2\n")
    ds = load_detection_data(root)
    assert ds.split_method == "predefined" and ds.class_names == ("car", "person")
    assert [len(ds.split(n)) for n in ("train", "val", "test")] == [3, 2, 1]
    assert all(Path(s.path).name.startswith("valid") for s in ds.val)


def test_yolo_yaml_split_entries_folder_and_list_missing_test_is_drawn(tmp_path):
    root = tmp_path / "y"
    _write(root / "data.yaml", "path: .\ntrain: imgs/a\nval: val.txt\nnames: [tree]\n")
    for i in range(6):
        _image(root / "imgs" / "a" / f"{i}.png")
        _write(root / "imgs" / "a" / f"{i}.txt", "0 0.5 0.5 0.5 0.5\n")
    for i in range(2):
        _image(root / "other" / "images" / f"v{i}.png")
        _write(root / "other" / "labels" / f"v{i}.txt", "0 0.5 0.5 0.5 0.5\n")
    _write(root / "val.txt", "other/images/v0.png\nother/images/v1.png\n")
    ds = load_detection_data(root, test_fraction=0.2)
    assert ds.split_method == "mixed"
    assert sorted(Path(s.path).name for s in ds.val) == ["v0.png", "v1.png"]
    assert len(ds.train) + len(ds.test) == 6 and len(ds.test) == 1
    assert all(s.num_boxes == 1 for s in ds.train)  # no images/ folder: labels beside


def test_bad_boxes_are_repaired_counted_and_warned_once(tmp_path):
    root = _yolo_pool(tmp_path / "y", n=6)
    _write(root / "labels" / "1.txt", "0 0.9 0.5 0.4 0.2\n1 0.5 0.5 0 0.3\n0 1.5 1.5 0.1 0.1\n")
    (root / "images" / "5.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning) as caught:
        ds = load_detection_data(root, val_fraction=0.2, test_fraction=0.2)
    assert len(caught) == 1
    r = ds.report
    assert (r.clipped, r.zero_area_dropped, r.unreadable_images) == (1, 2, ("images/5.png",))
    assert r.background_images == 1
    s1 = _by_name(ds)["1.png"]
    np.testing.assert_allclose(s1.boxes, [[56, 24, 80, 36]])  # x2 = 88 clipped to the width 80
    assert "1 box(es) clipped" in r.summary() and "images/5.png" in r.summary()
    assert json.loads(json.dumps(r.to_dict()))["zero_area_dropped"] == 2
    assert "5.png" not in _by_name(ds)


def test_unknown_class_id_is_an_error_or_dropped_on_request(tmp_path):
    root = _yolo_pool(tmp_path / "y", n=5)
    _write(root / "labels" / "2.txt", "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(FtedgeError, match=r"2\.txt line 2: class id 7 is not in the names"):
        load_detection_data(root)
    with pytest.warns(UserWarning, match="unknown classes"):
        ds = load_detection_data(root, unknown_classes="drop")
    assert ds.report.unknown_class_dropped == 1 and _by_name(ds)["2.png"].num_boxes == 1


@pytest.mark.parametrize(
    ("line", "match"),
    [("0 0.5 0.5 0.2", "line 3: expected 'class cx cy w h'"), ("a 0.5 0.5 0.2 0.2", "line 3")],
)
def test_malformed_yolo_line_names_file_and_line(tmp_path, line, match):
    root = _yolo_pool(tmp_path / "y", n=4)
    _write(root / "labels" / "1.txt", f"0 0.5 0.5 0.2 0.2\n\n{line}\n")
    with pytest.raises(FtedgeError, match=match) as e:
        load_detection_data(root)
    assert "1.txt" in str(e.value) and "\n" not in str(e.value)


def test_yolo_polygon_lines_become_their_bounding_box(tmp_path):
    root = _yolo_pool(tmp_path / "y", n=4)
    _write(root / "labels" / "1.txt", "0 0.1 0.2 0.5 0.1 0.4 0.6\n")
    s1 = _by_name(load_detection_data(root))["1.png"]
    np.testing.assert_allclose(s1.boxes, [[8, 6, 40, 36]], atol=1e-4)


# -- COCO -------------------------------------------------------------------------------------
def _coco(root: Path, name: str, images: list[str], anns: list[dict], cats=None) -> None:
    cats = cats or [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
    imgs = [
        {"id": 100 + i, "file_name": f, "width": 80, "height": 60} for i, f in enumerate(images)
    ]
    for i, a in enumerate(anns):
        a.setdefault("id", i + 1)
    body = {"images": imgs, "annotations": anns, "categories": cats}
    _write(root / "annotations" / name, json.dumps(body))
    for f in images:
        _image(root / "images" / f)


def test_coco_noncontiguous_categories_xywh_crowd_and_splits(tmp_path):
    root = tmp_path / "c"
    anns = [
        {"image_id": 100, "category_id": 7, "bbox": [10, 5, 20, 30]},
        {"image_id": 100, "category_id": 3, "bbox": [0, 0, 8, 8]},
        {"image_id": 101, "category_id": 3, "bbox": [0, 0, 80, 60], "iscrowd": 1},
        {"image_id": 102, "category_id": 7, "bbox": [1, 1, 5, 5]},
        {"image_id": 103, "category_id": 3, "bbox": [1, 1, 5, 5]},
    ]
    _coco(root, "instances_train.json", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], anns)
    _coco(
        root,
        "instances_val.json",
        ["e.jpg"],
        [{"image_id": 100, "category_id": 3, "bbox": [2, 2, 9, 9]}],
    )
    ds = load_detection_data(root, test_fraction=0.25)
    assert ds.source_format == "coco" and ds.split_method == "mixed"
    assert ds.class_names == ("cat", "dog")  # ids 3, 7 -> 0, 1
    a = _by_name(ds)["a.jpg"]
    np.testing.assert_allclose(a.boxes, [[10, 5, 30, 35], [0, 0, 8, 8]])
    assert a.labels.tolist() == [1, 0]
    assert _by_name(ds)["b.jpg"].num_boxes == 0  # only a crowd region: background
    assert ds.report.crowd_ignored == 1 and ds.report.background_images == 1
    assert [Path(s.path).name for s in ds.val] == ["e.jpg"]
    assert len(ds.test) == 1


def test_coco_errors_name_the_file_and_field(tmp_path):
    root = tmp_path / "c"
    _coco(root, "data.json", ["a.jpg"], [{"image_id": 100, "category_id": 5, "bbox": [1, 1, 5, 5]}])
    with pytest.raises(FtedgeError, match=r"data\.json: annotation 1: category_id 5 is not in"):
        load_detection_data(root)
    _coco(root, "data.json", ["a.jpg"], [{"image_id": 100, "category_id": 3, "bbox": [1, 1]}])
    with pytest.raises(FtedgeError, match=r"data\.json: annotation 1: bbox must be 4 numbers"):
        load_detection_data(root)
    _write(root / "annotations" / "data.json", "{not json")
    with pytest.raises(FtedgeError, match=r"data\.json is not valid JSON"):
        load_detection_data(root)


def test_coco_missing_image_is_counted_as_unreadable(tmp_path):
    root = tmp_path / "c"
    anns = [{"image_id": 100 + i, "category_id": 3, "bbox": [1, 1, 9, 9]} for i in range(5)]
    _coco(root, "all.json", [f"{i}.jpg" for i in range(5)], anns)
    (root / "images" / "4.jpg").unlink()
    with pytest.warns(UserWarning, match="1 unreadable image"):
        ds = load_detection_data(root, val_fraction=0.25, test_fraction=0.25)
    assert ds.report.unreadable_images == ("images/4.jpg",)
    assert sum(len(ds.split(n)) for n in ("train", "val", "test")) == 4


def test_coco_2017_layout_finds_images_in_their_split_folders(tmp_path):
    root = tmp_path / "c"
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        anns = [{"image_id": 100 + i, "category_id": 7, "bbox": [1, 1, 9, 9]} for i in range(n)]
        _coco(root, f"instances_{split}2017.json", [f"{i:03d}.jpg" for i in range(n)], anns)
        # Every split has a 000.jpg: each JSON must find the one in its own folder.
        (root / "images").rename(root / f"{split}2017")
    ds = load_detection_data(root)
    assert ds.split_method == "predefined"
    for split in ("train", "val", "test"):
        assert all(Path(s.path).parent.name == f"{split}2017" for s in ds.split(split))
    assert len(ds.train) == 3 and not ds.report.unreadable_images


# -- Pascal VOC -------------------------------------------------------------------------------
def _voc_xml(filename: str, objects: list[tuple[str, tuple]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    return f"<annotation><filename>{filename}</filename>{objs}</annotation>"


def test_voc_standard_layout_sorted_names_and_image_sets(tmp_path):
    root = tmp_path / "v"
    for i in range(4):
        _image(root / "JPEGImages" / f"{i}.jpg")
        objs = [("zebra", (1, 2, 30, 40)), ("ant", (5, 5, 10, 10))] if i else []
        _write(root / "Annotations" / f"{i}.xml", _voc_xml(f"{i}.jpg", objs))
    _write(root / "ImageSets" / "Main" / "trainval.txt", "0\n1\n")
    _write(root / "ImageSets" / "Main" / "test.txt", "2\n3\n")
    ds = load_detection_data(root, val_fraction=0.5)
    assert ds.source_format == "voc" and ds.class_names == ("ant", "zebra")
    assert ds.split_method == "mixed"
    assert sorted(Path(s.path).name for s in ds.test) == ["2.jpg", "3.jpg"]
    s = _by_name(ds)["3.jpg"]
    np.testing.assert_allclose(s.boxes, [[1, 2, 30, 40], [5, 5, 10, 10]])
    assert s.labels.tolist() == [1, 0]


def test_voc_xml_beside_images_with_a_labels_file(tmp_path):
    root = tmp_path / "v"
    for i in range(5):
        # The XML names a .tif that is not there: the image with the XML's stem is used.
        _image(root / f"site_{i}.png")
        _write(root / f"site_{i}.xml", _voc_xml(f"site_{i}.tif", [("Tree", (0, 0, 9, 9))]))
    _write(root / "labels.txt", "Background\nTree\n")
    ds = load_detection_data(root, val_fraction=0.2, test_fraction=0.2)
    assert ds.class_names == ("Background", "Tree")
    assert all(s.labels.tolist() == [1] for s in _by_name(ds).values())
    _write(root / "site_0.xml", _voc_xml("site_0.png", [("Bush", (0, 0, 9, 9))]))
    with pytest.raises(FtedgeError, match=r"site_0\.xml: class 'Bush' is not in .*labels\.txt"):
        load_detection_data(root)


def test_voc_inverted_box_is_dropped_as_zero_area(tmp_path):
    root = tmp_path / "v"
    for i in range(3):
        _image(root / f"{i}.png")
        _write(
            root / f"{i}.xml", _voc_xml(f"{i}.png", [("t", (1, 1, 9, 9)), ("t", (30, 5, 10, 20))])
        )
    with pytest.warns(UserWarning, match="3 zero-area box"):
        ds = load_detection_data(root, val_fraction=0.34, test_fraction=0.34)
    assert ds.report.zero_area_dropped == 3
    assert all(s.boxes.tolist() == [[1, 1, 9, 9]] for s in _by_name(ds).values())


def test_voc_malformed_files(tmp_path):
    root = tmp_path / "v"
    _image(root / "a.png")
    _write(root / "a.xml", "<annotation><object><name>x</name></object></annotation>")
    with pytest.raises(FtedgeError, match=r"a\.xml: object 1 \(x\) has no <bndbox>"):
        load_detection_data(root)
    _write(root / "a.xml", _voc_xml("a.png", [("x", (1, "?", 3, 4))]))
    with pytest.raises(FtedgeError, match=r"a\.xml: object 1 \(x\): <bndbox> needs numeric"):
        load_detection_data(root)
    _write(root / "a.xml", "<annotation><object>")
    with pytest.raises(FtedgeError, match=r"a\.xml is not valid XML"):
        load_detection_data(root)


# -- format detection and unusable folders ----------------------------------------------------
def test_format_detection_none_or_ambiguous(tmp_path):
    _image(tmp_path / "plain" / "a.png")
    with pytest.raises(FtedgeError, match="no detection annotations"):
        load_detection_data(tmp_path / "plain")
    both = _yolo_pool(tmp_path / "both", n=3)
    _write(both / "annotations" / "x.json", "{}")
    with pytest.raises(FtedgeError, match=r"several formats \(yolo, coco\)"):
        detect_format(both)
    with pytest.raises(FtedgeError, match="does not exist"):
        load_detection_data(tmp_path / "nowhere")


def test_no_images_or_no_boxes_are_errors(tmp_path):
    root = tmp_path / "y"
    _write(root / "data.yaml", "names: [a]\n")
    (root / "labels").mkdir()
    with pytest.raises(FtedgeError, match="no images"):
        load_detection_data(root)
    for i in range(4):
        _image(root / "images" / f"{i}.png")
    with pytest.raises(FtedgeError, match="no boxes"):
        load_detection_data(root)


def test_verify_decodes_images_to_catch_truncated_files(tmp_path):
    root = _yolo_pool(tmp_path / "y", n=5)
    jpg = _image(root / "images" / "big.jpg", 300, 200)
    _write(root / "labels" / "big.txt", "0 0.5 0.5 0.2 0.2\n")
    jpg.write_bytes(jpg.read_bytes()[:2000])  # the header survives, the pixels do not
    assert not load_detection_data(root).report.unreadable_images
    with pytest.warns(UserWarning, match="unreadable"):
        ds = load_detection_data(root, verify=True)
    assert ds.report.unreadable_images == ("images/big.jpg",)


# -- EXIF orientation -------------------------------------------------------------------------
def test_exif_rotated_jpeg_is_measured_and_opened_as_displayed(tmp_path):
    path = tmp_path / "y" / "images" / "rot.jpg"
    path.parent.mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 80 x 60, displayed rotated by 90 degrees: 60 x 80
    Image.new("RGB", (80, 60), (200, 10, 10)).save(path, exif=exif.tobytes())
    assert image_size(path) == (60, 80)
    assert open_rgb(path).size == (60, 80)
    _write(tmp_path / "y" / "data.yaml", "names: [a]\n")
    _write(tmp_path / "y" / "labels" / "rot.txt", "0 0.5 0.5 1 1\n")
    for i in range(3):
        _image(tmp_path / "y" / "images" / f"{i}.png")
    s = _by_name(load_detection_data(tmp_path / "y", val_fraction=0.25, test_fraction=0.25))
    np.testing.assert_allclose(s["rot.jpg"].boxes, [[0, 0, 60, 80]])


def test_annotation_report_adds_and_summarises():
    r = AnnotationReport(clipped=2) + AnnotationReport(unreadable_images=("x.jpg",))
    assert r.clipped == 2 and r.has_problems
    assert (
        r.summary()
        == "2 box(es) clipped to the image; 1 unreadable image(s) skipped (first: x.jpg)"
    )
    assert AnnotationReport(background_images=3).has_problems is False


# -- the built-in tree-crown tiles ------------------------------------------------------------
def test_builtin_tiles_splits_never_share_source_pixels():
    t = load_tree_tiles()
    assert t.class_names == ("tree",) and t.tile_size == 256
    assert set(t.split) == {"train", "val", "test"}
    first = Image.open(__import__("io").BytesIO(t.jpeg[0]))
    assert first.format == "JPEG" and first.size == (256, 256)
    size = t.tile_size
    split, off = np.array(t.split), t.offset
    # Every pair of tiles from one source image but different splits is pixel-disjoint.
    apart = (np.abs(off[:, None] - off[None]) >= size).any(axis=2)
    other = (split[:, None] != split[None]) & (t.source[:, None] == t.source[None])
    assert not (other & ~apart).any()
    # Train tiles overlap each other (cut every 64 px from the train regions); val/test do not
    # repeat pixels that much.
    counts = t.counts()
    assert counts["train"]["images"] > 10 * counts["test"]["images"]
    for boxes in t.boxes:
        assert boxes.shape[1:] == (4,) and (boxes >= 0).all() and (boxes <= size).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
    assert all(counts[s]["images"] > 0 and counts[s]["boxes"] > 0 for s in counts)
    assert all(len(b) == len(lab) for b, lab in zip(t.boxes, t.labels, strict=True))


def test_tiles_keep_boxes_half_inside_clipped():
    from ftedge.detection.tiling import band_rects, boxes_in_tile, grid, tile_offsets

    boxes = np.array([[10, 10, 50, 50], [240, 0, 280, 40], [250, 0, 290, 40], [-5, 0, 5, 4]])
    kept, keep = boxes_in_tile(boxes.astype(np.float32), 0, 0, 256)
    # whole: kept; 16 of 40 px inside: dropped; 6 of 40: dropped; half inside: kept, clipped
    assert keep.tolist() == [True, False, False, True]
    np.testing.assert_allclose(kept, [[10, 10, 50, 50], [0, 0, 5, 4]])
    kept, keep = boxes_in_tile(boxes.astype(np.float32), 100, 0, 256)  # shifted tile
    assert keep.tolist() == [False, True, True, False]
    np.testing.assert_allclose(kept, [[140, 0, 180, 40], [150, 0, 190, 40]])
    assert grid(0, 400) == [0, 144] and grid(0, 400, step=64) == [0, 72, 144]
    assert grid(0, 100) == [0]  # shorter than a tile: one tile
    rects = band_rects(1249, 1035)  # cut across the longer side, 64 px between bands
    assert rects == {
        "train": (0, 0, 609, 1035),
        "val": (673, 0, 256, 1035),
        "test": (993, 0, 256, 1035),
    }
    assert tile_offsets((0, 0, 400, 400), step=64)[:3] == [(0, 0), (0, 72), (0, 144)]


def test_builtin_data_materialises_once_and_round_trips(tmp_path):
    dest = tmp_path / "cache" / "trees"
    assert materialise_default_detection_data(dest) == dest
    stamp = read_stamp(dest)
    assert stamp is not None and stamp["asset_sha256"] == asset_sha256()
    assert [p.name for p in dest.parent.iterdir()] == ["trees"]  # no temp folder left behind
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the built-in data needs no repairs
        ds = load_detection_data(dest)
    assert ds.split_method == "predefined" and ds.class_names == ("tree",)
    assert ds.counts() == stamp["counts"] == load_tree_tiles().counts()
    t = load_tree_tiles()
    want = {
        f"{t.source_names[t.source[i]]}_{x:04d}_{y:04d}.jpg": (t.split[i], t.boxes[i])
        for i, (x, y) in enumerate(t.offset.tolist())
    }
    for split in ("train", "val", "test"):
        for s in ds.split(split):
            w_split, w_boxes = want.pop(Path(s.path).name)
            assert w_split == split
            np.testing.assert_allclose(s.boxes, w_boxes, atol=1e-3)
    assert not want
    # A second call reuses the complete copy; a stale stamp makes it rebuild.
    marker = dest / "images" / "mine.txt"
    marker.write_text("x")
    materialise_default_detection_data(dest)
    assert marker.exists()
    (dest / STAMP).write_text(json.dumps({"asset_sha256": "0" * 64}))
    materialise_default_detection_data(dest)
    assert not marker.exists() and read_stamp(dest)["asset_sha256"] == asset_sha256()
    assert [p.name for p in dest.parent.iterdir()] == ["trees"]
    # Another train-tile step is another data set: rebuilt, with its own stamp.
    materialise_default_detection_data(dest, train_step=256)
    sparse = load_tree_tiles(256).counts()
    assert read_stamp(dest)["train_step"] == 256 and read_stamp(dest)["counts"] == sparse
    assert len(list((dest / "images" / "train").iterdir())) == sparse["train"]["images"] == 61


def test_builtin_data_default_location(tmp_path, monkeypatch):
    monkeypatch.setenv("FTEDGE_HOME", str(tmp_path / "home"))
    path = materialise_default_detection_data()
    assert path == tmp_path / "home" / "datasets" / "deepforest-trees"
    assert (path / "LICENSE.txt").read_text().startswith("trees.npz holds")
