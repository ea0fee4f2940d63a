"""The official augmentations as a FramePairDataset transform: semantics, determinism, configs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import yaml

from methods.data import PairAugmentation, frame_shape, make_transform
from plumbing.errors import AnimbenchError
from prep.pairs import FramePairDataset
from tests.methods.tiny_store import make_store


def _pair(size=(64, 64)) -> np.ndarray:
    """Two different, left-right asymmetric frames, so every flip is recognisable."""
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (2, *size, 3), dtype=np.uint8)


def test_flip_is_time_or_horizontal_never_both():
    frames = _pair()
    aug = PairAugmentation((64, 64), {"flip_param": {"time_flip": True, "horizontal_flip": True}})
    kinds = Counter()
    for seed in range(400):
        out = aug(frames, np.random.default_rng(seed))
        if np.array_equal(out, frames):
            kinds["none"] += 1
        elif np.array_equal(out, frames[::-1]):
            kinds["time"] += 1
        elif np.array_equal(out, frames[:, :, ::-1]):
            kinds["horizontal"] += 1
        else:
            kinds["other"] += 1  # e.g. both flips combined: must never happen
    assert kinds["other"] == 0
    # official probabilities: time 0.5, else horizontal 0.5 -> 0.5 / 0.25 / 0.25
    assert 160 < kinds["time"] < 240 and 60 < kinds["horizontal"] < 140 and 60 < kinds["none"] < 140


def test_deterministic_given_rng_and_different_across_seeds():
    cfg = {"dataset_params": {"frame_shape": [64, 64, 3], "augmentation_params": {
        "flip_param": {"time_flip": True, "horizontal_flip": True}, "rotation_param": {"degrees": [-10, 10]},
        "resize_param": {"ratio": [0.9, 1.1]}, "crop_param": {"size": [64, 64]},
        "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1}}}}
    aug = make_transform(cfg)
    frames = _pair()
    a = aug(frames, np.random.default_rng(7))
    assert np.array_equal(a, aug(frames, np.random.default_rng(7)))
    assert not np.array_equal(a, aug(frames, np.random.default_rng(8)))
    assert a.shape == (2, 64, 64, 3) and a.dtype == np.uint8


def test_one_set_of_factors_per_clip():
    # identical frames stay identical: rotation angle, resize ratio, crop window and jitter factors are per clip
    frame = _pair()[:1]
    frames = np.concatenate([frame, frame])
    aug = PairAugmentation((64, 64), {"rotation_param": {"degrees": 10}, "resize_param": {"ratio": [0.9, 1.1]},
                                      "crop_param": {"size": [64, 64]}, "jitter_param": {"hue": 0.5,
                                                                                          "brightness": 0.3}})
    for seed in range(5):
        out = aug(frames, np.random.default_rng(seed))
        assert np.array_equal(out[0], out[1])
        assert not np.array_equal(out[0], frame[0])


def test_resizes_to_the_config_frame_size():
    aug = PairAugmentation((64, 64))
    out = aug(_pair((80, 96)), np.random.default_rng(0))
    assert out.shape == (2, 64, 64, 3) and out.dtype == np.uint8
    assert frame_shape({"dataset_params": {"image_shape": [128, 128, 3]}}) == (128, 128)


def test_crop_pads_small_frames_and_keeps_size():
    aug = PairAugmentation((64, 64), {"resize_param": {"ratio": [0.5, 0.5]}, "crop_param": {"size": [64, 64]}})
    out = aug(_pair(), np.random.default_rng(0))
    assert out.shape == (2, 64, 64, 3)
    # 32x32 content edge-padded to 64: the corners repeat the content's corners
    assert np.array_equal(out[:, 0, 0], out[:, 15, 15])


def test_config_errors():
    with pytest.raises(AnimbenchError, match="needs crop_param"):
        PairAugmentation((64, 64), {"resize_param": {"ratio": [0.9, 1.1]}})
    with pytest.raises(AnimbenchError, match="blur_param"):
        PairAugmentation((64, 64), {"blur_param": {}})
    with pytest.raises(AnimbenchError, match="flip_param.vertical_flip"):
        PairAugmentation((64, 64), {"flip_param": {"vertical_flip": True}})
    with pytest.raises(AnimbenchError, match="expected \\(64, 64\\)"):
        PairAugmentation((64, 64), {"crop_param": {"size": [32, 32]}})(_pair(), np.random.default_rng(0))


def test_every_official_config_builds(shared_dir):
    frames = _pair()
    for path in sorted((shared_dir / "data/official-configs").glob("*/*.yaml")):
        if path.parent.name not in ("fomm", "monkeynet"):
            continue
        cfg = yaml.safe_load(path.read_text())
        aug = make_transform(cfg)
        out = aug(frames, np.random.default_rng(0))
        assert out.shape[1:3] == frame_shape(cfg), path.name


def test_pair_dataset_with_transform_is_reproducible(tmp_path):
    store = make_store(tmp_path / "store", train=2, test=1, frames=5)
    aug = PairAugmentation((48, 48), {"flip_param": {"time_flip": True, "horizontal_flip": True},
                                      "jitter_param": {"hue": 0.2}})
    items = [FramePairDataset(store, "train", num_repeats=2, seed=3, transform=aug)[i] for i in range(4)]
    again = FramePairDataset(store, "train", num_repeats=2, seed=3, transform=aug)
    for i, item in enumerate(items):
        assert item["source"].shape == (3, 48, 48)
        assert (item["source"] == again[i]["source"]).all() and (item["driving"] == again[i]["driving"]).all()
