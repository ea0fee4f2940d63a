"""The --poses readers of `animbench animate pose2img` (methods/pose_inputs.py) on inputs a user gets wrong."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from methods.pose_inputs import find_face_box_folder, label_items, normalized
from plumbing.errors import AnimbenchError
from prep.poses import normalize
from tests.prep.poses.helpers import standing, write_json


def _png(path, w, h):
    Image.fromarray(np.full((h, w, 3), 255, np.uint8)).save(path)


def test_label_maps_of_different_sizes_are_one_line_error_naming_the_file(tmp_path):
    _png(tmp_path / "a.png", 64, 64)
    _png(tmp_path / "b.png", 64, 64)
    _png(tmp_path / "c.png", 128, 64)
    with pytest.raises(AnimbenchError) as info:
        list(label_items(tmp_path, None, need_boxes=False))
    message = str(info.value)
    assert "c.png" in message and "128x64" in message and "64x64" in message and "\n" not in message


def test_label_maps_of_one_size_are_read_in_name_order(tmp_path):
    for name in ("b", "a", "c"):
        _png(tmp_path / f"{name}.png", 32, 16)
    items = list(label_items(tmp_path, None, need_boxes=False))
    assert [i.name for i in items] == ["a", "b", "c"] and items[0].label.shape == (16, 32, 3)


def test_a_face_box_outside_its_label_map_names_the_file(tmp_path):
    labels, boxes = tmp_path / "labels", tmp_path / "labels_facetexts128"
    labels.mkdir()
    boxes.mkdir()
    for name, box in (("a", "0 16 0 16"), ("b", "40 56 60 76")):  # b: x 60..76 in a 64 px wide map
        _png(labels / f"{name}.png", 64, 64)
        (boxes / f"{name}.txt").write_text(box)
    items = label_items(labels, boxes, need_boxes=True)
    assert next(items).face_box == (0, 16, 0, 16)
    with pytest.raises(AnimbenchError) as info:
        next(items)
    message = str(info.value)
    assert "b.txt" in message and "outside the 64x64 label map" in message and "\n" not in message


def test_normalize_to_with_fewer_frames_than_the_median_window_says_so(tmp_path, monkeypatch):
    target = tmp_path / "target"
    target.mkdir()
    write_json(target / "t_keypoints.json", standing(700, 250))
    monkeypatch.setattr(normalize, "fit_norm_params",
                        lambda *a, **k: normalize.NormParams(1.0, 1.0, 700.0, 590.0, 700.0, 590.0))
    poses = [standing(700, 250) for _ in range(5)]
    with pytest.raises(AnimbenchError) as info:
        normalized([f"f{i}" for i in range(5)], poses, target, (1920, 1080))
    message = str(info.value)
    assert "5 source frames" in message and "median smoothing over 7 frames" in message and "\n" not in message


def test_face_boxes_found_beside_pose_normalize_output_are_named_plainly(tmp_path):
    (tmp_path / "transfer" / "test_label").mkdir(parents=True)
    (tmp_path / "transfer" / "test_facetexts128").mkdir()
    found = find_face_box_folder(tmp_path / "transfer" / "test_label", None)
    assert str(found) == str(tmp_path / "transfer" / "test_facetexts128")  # no "test_label/.." in records
