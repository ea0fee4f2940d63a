"""`animbench prep ... --masks synthetic|DIR` and `--crop latentpose`: each stored frame's mask is cut exactly
as its frame was; the latent-pose crop is the library's, per frame, with its box kept."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from animbench.cli import main as cli_main
from prep.latentpose_crop import crop_frame, crop_frame_mask
from prep.store import FrameStore, verify_store
from prep.synth import make_synthetic
from tests.prep.prep_helpers import ray_session  # noqa: F401 - the session fixture

needs_dlib = pytest.mark.skipif(importlib.util.find_spec("dlib") is None, reason="dlib not installed")


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faces") / "synth"
    make_synthetic(out, kind="faces", num_videos=2, num_frames=6, width=96, height=64, seed=7)
    return out


def _prep(*args: str) -> int:
    return cli_main(["prep", *args, "--workers", "1", "--no-progress"])


def _truth(faces: Path, store: FrameStore):
    """(store video id, synth.json entry, full-frame ground-truth masks of the stored frames) per video."""
    for video in json.loads((faces / "synth.json").read_text())["videos"]:
        [vid] = [v for v in store.videos() if video["video_id"] in v]
        yield vid, video, np.load(faces / video["masks"])[video["start"]:video["end"]]


def test_synthetic_masks_after_crop_and_resize(faces, tmp_path, ray_session):  # noqa: F811
    out = tmp_path / "store"
    assert _prep("synthetic", "--src", str(faces), "--out", str(out), "--size", "40", "--masks", "synthetic") == 0
    store = FrameStore(out)
    assert store.mask_info["source"] == "synthetic" and verify_store(out) == []
    for vid, video, truth in _truth(faces, store):
        left, top, right, bot = video["bbox"]  # the metadata box, inside the frame: crop, then area resize
        masks = store.masks(vid)
        assert sorted(masks) == list(range(len(truth)))
        for k, mask in masks.items():
            expected = cv2.resize(truth[k][top:bot, left:right], (40, 40), interpolation=cv2.INTER_AREA)
            np.testing.assert_array_equal(mask, expected.astype(np.float32) / 255)
        # neither empty nor full: the person covers part of each crop
        assert 0.05 < np.mean([m.mean() for m in masks.values()]) < 0.95


@needs_dlib
def test_synthetic_masks_follow_the_latentpose_crop(faces, tmp_path, ray_session):  # noqa: F811
    out = tmp_path / "store"
    assert _prep("synthetic", "--src", str(faces), "--out", str(out), "--size", "64", "--masks", "synthetic",
                 "--crop", "latentpose", "--detector", "dlib") == 0
    store = FrameStore(out)
    assert store.manifest["crop_boxes"]["detector"] == "dlib" and verify_store(out) == []
    for vid, _, truth in _truth(faces, store):
        boxes = store.crop_boxes(vid)
        assert boxes.shape == (len(truth), 4) and store.info(vid)["crop_box"] is None
        assert store.read(vid).shape == (len(truth), 64, 64, 3)
        for k, mask in store.masks(vid).items():
            expected = crop_frame_mask(np.ascontiguousarray(truth[k]), tuple(boxes[k]), 64)
            np.testing.assert_array_equal(mask, expected.astype(np.float32) / 255)


@needs_dlib
def test_latentpose_crop_of_a_real_image_is_the_library_crop(tmp_path, ray_session):  # noqa: F811
    """The astronaut (and its mirror image) as two frames of a folder video: each stored frame is exactly
    crop_frame's crop with the same detector, and its box is kept."""
    from prep.detect import make_detector

    image = skimage.data.astronaut()
    frames = [image, np.ascontiguousarray(image[:, ::-1])]
    folder = tmp_path / "src" / "train" / "astro"
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), frame[..., ::-1])
    out = tmp_path / "store"
    assert _prep("folder", "--src", str(tmp_path / "src"), "--out", str(out), "--crop", "latentpose",
                 "--detector", "dlib") == 0
    store = FrameStore(out)
    detector = make_detector("dlib")
    stored, boxes = store.read("astro"), store.crop_boxes("astro")
    assert stored.shape == (2, 256, 256, 3)  # the folder recipe keeps source sizes; the crop is 256 px
    for k, frame in enumerate(frames):
        crop, box = crop_frame(frame, detector)
        np.testing.assert_array_equal(stored[k], crop)
        np.testing.assert_array_equal(boxes[k], np.asarray(box, np.float32))
    assert store.manifest["crop_boxes"]["videos"]["astro"]["ratio"] == 1.0


def _folder_set(tmp_path: Path, sizes: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for vid, n in sizes.items():
        d = tmp_path / "src" / "train" / vid
        d.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(d / f"{i:03d}.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    return tmp_path / "src"


def test_mask_files_fill_the_table(tmp_path, ray_session):  # noqa: F811
    """DIR/<video id>/ one PNG per stored frame: grey PNGs as they are, colour PNGs by their green channel,
    another size resized to the frame; a video whose file count or mask aspect ratio differs fails alone (stage
    masks)."""
    src = _folder_set(tmp_path, {"good": 3, "short": 3, "wrong": 2})
    rng = np.random.default_rng(1)
    written = []
    for i in range(3):
        grey = rng.integers(0, 256, (24, 32), dtype=np.uint8)
        written.append(grey)
        (tmp_path / "masks" / "good").mkdir(parents=True, exist_ok=True)
        if i == 1:  # colour: the green channel is the mask
            colour = np.stack([np.zeros_like(grey), grey, np.full_like(grey, 99)], -1)
            cv2.imwrite(str(tmp_path / "masks" / "good" / f"{i}.png"), colour)
        else:
            cv2.imwrite(str(tmp_path / "masks" / "good" / f"{i}.png"), grey)
    (tmp_path / "masks" / "short").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "masks" / "short" / f"{i}.png"), np.zeros((48, 64), np.uint8))
    (tmp_path / "masks" / "wrong").mkdir()  # square masks for 32x24 frames: another picture's, not resized
    for i in range(2):
        cv2.imwrite(str(tmp_path / "masks" / "wrong" / f"{i}.png"), np.zeros((24, 24), np.uint8))
    out = tmp_path / "store"
    assert _prep("folder", "--src", str(src), "--out", str(out), "--masks", str(tmp_path / "masks")) == 0
    store = FrameStore(out)
    assert store.videos() == ["good"] and store.mask_info["source"] == f"files:{(tmp_path / 'masks').resolve()}"
    for k, mask in store.masks("good").items():
        np.testing.assert_array_equal(mask, written[k].astype(np.float32) / 255)
    short, wrong = store.failures().sort_values("video_id").to_dict("records")
    assert short["video_id"] == "short" and short["stage"] == "masks" and "2 mask files" in short["message"]
    assert wrong["video_id"] == "wrong" and wrong["stage"] == "masks" and "not one of another aspect" in wrong["message"]
    assert verify_store(out) == []


def test_missing_mask_folder_is_one_line_before_any_work(tmp_path, capsys):
    src = _folder_set(tmp_path, {"vid": 2})
    (tmp_path / "masks").mkdir()
    code = _prep("folder", "--src", str(src), "--out", str(tmp_path / "store"), "--masks", str(tmp_path / "masks"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and f"no mask folder {tmp_path / 'masks' / 'vid'}" in err
    assert not (tmp_path / "store").exists()
