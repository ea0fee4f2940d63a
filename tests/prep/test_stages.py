"""The worker's stages: errors come back as values, and the timer gives each stage its own time."""

from __future__ import annotations

import argparse
import time

import numpy as np

from prep.config import PrepConfig
from prep.recipes import Clip, Unit, recipes
from prep.stages import StageTimer, crop_pad_resize, fetch


def test_timer_nested_stage_time_is_not_the_outer_stage_time():
    """An encode block that pulls decoded frames: decode's seconds are decode's, not encode's too."""
    timer = StageTimer()
    with timer("encode"):
        time.sleep(0.01)
        with timer("decode"):
            time.sleep(0.2)
        time.sleep(0.01)
    s = timer.seconds
    assert s["decode"] >= 0.2
    assert 0.02 <= s["encode"] < 0.2  # counting decode in too would make it >= 0.22
    assert set(timer.as_dict()) == {"download_s", "decode_s", "detect_s", "crop_s", "poses_s", "masks_s", "encode_s",
                                        "write_s"}


def test_crop_pad_resize_returns_an_empty_crop_as_an_error():
    frame = np.zeros((40, 60, 3), np.uint8)
    config = PrepConfig("folder", size=16)
    out, error = crop_pad_resize(frame, Clip("v", "train", bbox=(10, 5, 50, 35)), config, None)
    assert error is None and out.shape == (16, 16, 3)
    out, error = crop_pad_resize(frame, Clip("v", "train", bbox=(70, 5, 90, 35)), config, None)
    assert out is None and "is empty on a 60x40 frame" in error


def test_fetch_reports_a_missing_source_as_failure_rows(tmp_path):
    unit = Unit(key="k", source=str(tmp_path / "nope.mp4"), clips=(Clip("a", "train"), Clip("b", "test")),
                url="https://example.invalid/x")
    path, failures = fetch(unit, PrepConfig("vox"))
    assert path is None
    assert [(f["video_id"], f["stage"], f["error"]) for f in failures] == [("a", "input", "MissingFile"),
                                                                          ("b", "input", "MissingFile")]
    assert "pass --download" in failures[0]["message"]


def test_every_recipe_module_owns_its_arguments():
    """A recipe is one file: found without a list, it adds, plans from and configures from its own flags."""
    found = recipes()
    assert {"vox", "taichi", "fashion", "folder", "synthetic"} <= set(found)
    for name, module in found.items():
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        for attr in ("NAME", "HELP", "DEFAULTS", "plan", "plan_from_args", "config_from_args"):
            assert hasattr(module, attr), f"recipe {name} lacks {attr}"
