"""The --poses readers of `animbench animate pose2img` (methods/pose_inputs.py) on inputs a user gets wrong."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from methods.pose_inputs import label_items
from plumbing.errors import AnimbenchError


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
