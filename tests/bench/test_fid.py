"""FID: pytorch-fid's network, preprocessing, statistics and distance, from uint8 frames, offline."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_fid import fid_score
from pytorch_fid import inception as pfid_inception

from bench.metrics import get_metric
from bench.metrics.fid import (
    FID_WEIGHTS,
    FeatureStats,
    StatsAccumulator,
    feature_statistics,
    frechet_distance,
    merge_moments,
)
from plumbing.errors import AnimbenchError


@pytest.fixture(scope="module")
def fid_torch_home(tmp_path_factory) -> Path:
    """A TORCH_HOME holding a seeded random FID-Inception state_dict under pytorch-fid's file name."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = pfid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=True)
    # the same block replacements as pytorch-fid's fid_inception_v3 (which would download its weights)
    blocks = {"Mixed_5b": pfid_inception.FIDInceptionA(192, pool_features=32),
              "Mixed_5c": pfid_inception.FIDInceptionA(256, pool_features=64),
              "Mixed_5d": pfid_inception.FIDInceptionA(288, pool_features=64),
              "Mixed_6b": pfid_inception.FIDInceptionC(768, channels_7x7=128),
              "Mixed_6c": pfid_inception.FIDInceptionC(768, channels_7x7=160),
              "Mixed_6d": pfid_inception.FIDInceptionC(768, channels_7x7=160),
              "Mixed_6e": pfid_inception.FIDInceptionC(768, channels_7x7=192),
              "Mixed_7b": pfid_inception.FIDInceptionE_1(1280), "Mixed_7c": pfid_inception.FIDInceptionE_2(2048)}
    for name, block in blocks.items():
        setattr(net, name, block)
    for mod in net.modules():
        if isinstance(mod, torch.nn.Conv2d):
            # torchvision's std-0.1 init makes pool3 features vanish (~1e-8); He init keeps them O(1)
            torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    home = tmp_path_factory.mktemp("torch")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(net.state_dict(), home / "hub" / "checkpoints" / FID_WEIGHTS)
    return home


@pytest.fixture
def with_weights(fid_torch_home, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(fid_torch_home))
    return fid_torch_home


def _frames(seed: int, n: int, h: int = 40, w: int = 48) -> np.ndarray:
    """Distinct smooth colour images (gradients plus a blob), so features differ between frames."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3), rng.uniform(0, 1, 3)
        cy, cx = rng.uniform(0.2, 0.8, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        img = c + a * yy[..., None] + b * xx[..., None] + 0.5 * blob[..., None] * rng.uniform(-1, 1, 3)
        out.append(np.clip(img * 255 + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8))
    return np.stack(out)


def _write_pngs(frames: np.ndarray, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
        paths.append(str(folder / f"{i:03d}.png"))
    return paths


def test_missing_inception_weights_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(AnimbenchError, match=f"missing weight file {FID_WEIGHTS}: place it in "
                                             f"{tmp_path / 'hub' / 'checkpoints'}"):
        get_metric("fid")


def test_pool3_statistics_equal_pytorch_fid_on_the_same_images(with_weights, tmp_path):
    frames = _frames(0, 2)  # Inception at 299x299 on CPU is slow: two images, one per batch
    with pytest.raises(AnimbenchError, match="!= expected 6726825d0af5f729"):
        get_metric("fid")  # strict by default: the test's random weights are not the published file
    metric = get_metric("fid", verify_hash=False, batch_size=1)
    ours = metric.statistics([frames[:1], frames[1:]])  # two batches through the one-pass accumulator

    # the network is pytorch-fid's own InceptionV3, built by it with the protocol's flags (building a second
    # copy costs seconds on CPU); the reference path is pytorch-fid's: PNG files -> PIL -> ToTensor -> stats
    model = metric.model
    assert isinstance(model, pfid_inception.InceptionV3) and model.output_blocks == [3]
    assert model.resize_input and model.normalize_input
    mu, sigma = fid_score.calculate_activation_statistics(_write_pngs(frames, tmp_path / "png"), model,
                                                          batch_size=1, dims=2048, device="cpu", num_workers=0)
    assert ours.n == 2 and ours.mu.shape == (2048,) and ours.sigma.shape == (2048, 2048)
    assert np.abs(sigma).max() > 1e-6  # features vary between images: the comparison is not between zeros
    np.testing.assert_allclose(ours.mu, mu, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.sigma, sigma, rtol=1e-5, atol=1e-9 * np.abs(sigma).max())


def test_fid_equals_pytorch_fid_at_64_dims(with_weights, tmp_path):
    # dims=64 (pytorch-fid's --dims 64) runs only the first block: the whole pipeline, quickly
    a, b = _frames(1, 10), _frames(2, 10)
    metric = get_metric("fid", verify_hash=False, dims=64)
    fid_ab = metric.distance(metric.statistics([a]), metric.statistics([b]))
    assert metric.model.output_blocks == [0]
    ref = [fid_score.calculate_activation_statistics(_write_pngs(x, tmp_path / name), metric.model, batch_size=10,
                                                     dims=64, device="cpu", num_workers=0)
           for name, x in (("a", a), ("b", b))]
    expected = fid_score.calculate_frechet_distance(*ref[0], *ref[1])
    assert fid_ab > 0
    assert fid_ab == pytest.approx(expected, rel=1e-5)
    assert metric.distance(metric.statistics([a]), metric.statistics([a])) == pytest.approx(0, abs=1e-6)
    d = metric.describe()
    assert d["settings"]["dims"] == 64 and d["settings"]["weights_hash_verified"] is False
    assert d["weights"][0]["name"] == FID_WEIGHTS and d["backend"].startswith("pytorch-fid ")


def test_reference_stats_are_cached_per_store_split_and_weights(with_weights, tmp_path):
    metric = get_metric("fid", verify_hash=False, dims=64)
    frames = _frames(3, 5)
    calls = []

    def batches():
        calls.append(1)
        return [frames[:3], frames[3:]]

    key = {"cache_dir": tmp_path / "cache", "store_fingerprint": "abc123", "image_size": (40, 48)}
    first = metric.reference_stats(batches, split="test", **key)
    again = metric.reference_stats(batches, split="test", **key)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.sigma, again.sigma)
    assert first.n == again.n == 5
    metric.reference_stats(batches, split="train", **key)
    assert len(calls) == 2
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2 and all(f.startswith("fid_ref_") and f.endswith(".npz") for f in files)


def test_one_pass_accumulator_equals_np_cov():
    rng = np.random.default_rng(0)
    feats = rng.normal(1000.0, 1.0, (37, 16))  # a large offset: centring must keep the covariance accurate
    acc = StatsAccumulator()
    for chunk in np.array_split(feats, [5, 6, 20]):
        acc.update(chunk)
    got, ref = acc.finalize(), feature_statistics(feats)
    np.testing.assert_allclose(got.mu, ref.mu, rtol=1e-12)
    np.testing.assert_allclose(got.sigma, np.cov(feats, rowvar=False), rtol=1e-9, atol=1e-12)
    with pytest.raises(AnimbenchError, match="at least 2 frames"):
        StatsAccumulator().finalize()


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_frechet_distance_equals_pytorch_fid(method):
    rng = np.random.default_rng(1)
    a = feature_statistics(rng.normal(0, 1, (300, 48)) @ rng.normal(0, 1, (48, 48)))
    b = feature_statistics(rng.normal(0.3, 1, (300, 48)) @ rng.normal(0, 1, (48, 48)))
    expected = fid_score.calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    assert frechet_distance(a, b, method=method) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a, method=method) == pytest.approx(0, abs=1e-6)


def test_stats_round_trip_and_bad_inputs(tmp_path):
    s = FeatureStats(np.arange(3.0), np.eye(3), 7)
    s.save(tmp_path / "s.npz", {"split": "test"})
    back, meta = FeatureStats.load(tmp_path / "s.npz")
    assert back.n == 7 and meta == {"split": "test"} and np.array_equal(back.sigma, np.eye(3))
    with pytest.raises(AnimbenchError, match="different dimension"):
        frechet_distance(s, FeatureStats(np.zeros(2), np.eye(2), 7))


def test_a_wrong_file_under_the_inception_name_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "hub" / "checkpoints" / FID_WEIGHTS)
    with pytest.raises(AnimbenchError, match="not pytorch-fid's FID-Inception state_dict") as err:
        get_metric("fid", verify_hash=False)
    assert "\n" not in str(err.value)


def test_chunk_moments_merge_to_the_pooled_covariance():
    x = np.random.default_rng(0).normal(size=(50, 4))
    parts = [(len(c), c.mean(0), (c - c.mean(0)).T @ (c - c.mean(0))) for c in np.split(x, [7, 8, 30])]
    n, mean, m2 = merge_moments(parts)
    assert n == 50 and np.allclose(mean, x.mean(0)) and np.allclose(m2 / 49, np.cov(x, rowvar=False))
