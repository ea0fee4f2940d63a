"""Pixel metrics: L1 as FOMM defines it, PSNR, and SSIM equal to scikit-image's Wang et al. settings."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.metrics import get_metric
from bench.metrics.pixel import PSNR_CAP_DB
from plumbing.errors import AnimbenchError


def _frames(seed: int, n: int = 3, h: int = 40, w: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    # pred: gt plus structured noise, so SSIM lands well inside (0, 1)
    noise = rng.normal(0, 25, (n, h, w, 3)) + np.linspace(-30, 30, w)[None, None, :, None]
    pred = np.clip(gt + noise, 0, 255).astype(np.uint8)
    return pred, gt


def test_l1_is_fomm_mean_abs_on_unit_range():
    pred, gt = _frames(0)
    scores = get_metric("l1")(pred, gt)
    expected = [np.abs(p.astype(np.float32) / 255 - g.astype(np.float32) / 255).mean() for p, g in zip(pred, gt, strict=True)]
    np.testing.assert_allclose(scores.values, expected, rtol=1e-6)
    assert scores.n_valid == 3


def test_psnr_matches_skimage_and_identical_frames_get_the_stated_cap():
    pred, gt = _frames(1)
    got = get_metric("psnr")(pred, gt).values
    expected = [peak_signal_noise_ratio(g / 255.0, p / 255.0, data_range=1.0) for p, g in zip(pred, gt, strict=True)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # identical frames (copy-source's frame 0, the oracle) are finite: the cap, not +inf as scikit-image gives
    assert (get_metric("psnr")(gt, gt).values == PSNR_CAP_DB).all() and np.isfinite(PSNR_CAP_DB)
    notes = get_metric("psnr").describe()["protocol_notes"]
    assert f"{PSNR_CAP_DB:g} dB" in notes and "mean squared error" in notes


@pytest.mark.parametrize("shape", [(2, 40, 48), (1, 11, 11), (2, 64, 33)])
def test_ssim_equals_skimage_wang_settings(shape):
    pred, gt = _frames(2, *shape)
    got = get_metric("ssim", chunk=1)(pred, gt).values
    expected = [
        structural_similarity(p / 255.0, g / 255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=1.0, channel_axis=-1)
        for p, g in zip(pred, gt, strict=True)
    ]
    np.testing.assert_allclose(got, expected, atol=1e-10)
    assert 0.05 < min(expected) and max(expected) < 0.95  # the comparison is not between trivial values


def test_ssim_of_identical_frames_is_one_and_small_frames_are_refused():
    _, gt = _frames(3)
    np.testing.assert_allclose(get_metric("ssim")(gt, gt).values, 1.0, atol=1e-12)
    with pytest.raises(AnimbenchError, match="smaller than the 11x11 window"):
        get_metric("ssim")(gt[:, :10], gt[:, :10])


def test_pixel_metrics_refuse_float_frames():
    pred, gt = _frames(4)
    for name in ("l1", "psnr", "ssim"):
        with pytest.raises(AnimbenchError, match="expected uint8 RGB"):
            get_metric(name)(pred / 255.0, gt)


def test_describe_states_the_protocol():
    d = get_metric("ssim").describe()
    assert d["settings"]["win_size"] == 11 and d["settings"]["sigma"] == 1.5
    assert d["settings"]["covariance"] == "population" and d["backend"].startswith("torch ")
    assert "frame-weighted" in get_metric("l1").describe()["protocol_notes"]
    with pytest.raises(TypeError):
        get_metric("ssim", window=7)


def test_l1_scores_float_predictions_as_fomm_does():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    pred = rng.random((3, 16, 16, 3), dtype=np.float32)
    expected = np.abs(pred.astype(np.float64) - gt / 255.0).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(get_metric("l1")(pred, gt).values, expected, rtol=1e-6)
    # the float output differs from its floor-quantised frames: the bench scores what FOMM scored
    quantised = np.floor(pred * 255).astype(np.uint8)
    assert not np.allclose(get_metric("l1")(quantised, gt).values, expected, rtol=1e-6)
    with pytest.raises(AnimbenchError, match=r"must lie in \[0, 1\]"):
        get_metric("l1")(pred * 2, gt)
    with pytest.raises(AnimbenchError, match="expected uint8"):
        get_metric("psnr")(pred, gt)  # float input only where the metric declares it
