"""LPIPS: the lpips package's numbers, with the trunk loaded from the manifest and nothing downloaded."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
import torchvision

from bench.metrics import get_metric
from plumbing.errors import AnimbenchError

TRUNK = "alexnet-owt-7be5be79.pth"


@pytest.fixture(scope="module")
def random_alexnet(tmp_path_factory) -> Path:
    """A seeded random torchvision AlexNet state_dict (classifier kept tiny on disk), made once."""
    torch.manual_seed(0)
    state = torchvision.models.alexnet().state_dict()
    for key in [k for k in state if k.startswith("classifier.")]:
        # LPIPS never uses the classifier; a stride-0 tensor saves as one element yet loads into any shape
        state[key] = torch.zeros(1).expand(state[key].shape)
    path = tmp_path_factory.mktemp("alexnet") / TRUNK
    torch.save(state, path)
    return path


def _install(src: Path, checkpoints: Path) -> None:
    checkpoints.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, checkpoints / TRUNK)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _frames(seed: int, n: int = 3, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    pred = np.clip(gt + rng.normal(0, 40, gt.shape), 0, 255).astype(np.uint8)
    return pred, gt


def test_missing_trunk_names_the_file_and_folder(torch_home):
    with pytest.raises(AnimbenchError, match=f"missing weight file {TRUNK}: place it in {torch_home}"):
        get_metric("lpips")


def test_lpips_equals_the_lpips_package_on_the_same_weights(torch_home, random_alexnet):
    _install(random_alexnet, torch_home)
    # the default is strict: a file whose sha256 does not start with the hash in its name is refused
    with pytest.raises(AnimbenchError, match="does not start with 7be5be79"):
        get_metric("lpips")
    metric = get_metric("lpips", verify_hash=False, batch_size=2)

    pred, gt = _frames(0)
    got = metric(pred, gt).values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # lpips' own loading path: torchvision finds the same file in $TORCH_HOME/hub/checkpoints
        reference = lpips.LPIPS(net="alex", verbose=False)
    unit = [torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255 for a in (pred, gt)]
    with torch.no_grad():
        # lpips' own [0,1] -> [-1,1] conversion (normalize=True)
        expected = reference(*unit, normalize=True).reshape(-1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert got.min() > 0 and np.allclose(metric(gt, gt).values, 0, atol=1e-7)

    d = metric.describe()
    assert d["settings"]["trunk_hash_verified"] is False and d["settings"]["net"] == "alex"
    assert d["weights"][0]["name"] == TRUNK and len(d["weights"][0]["sha256"]) == 64
    assert d["heads"]["path"].endswith("v0.1/alex.pth") and len(d["heads"]["sha256"]) == 64


def test_lpips_asserts_its_input_range(torch_home, random_alexnet):
    _install(random_alexnet, torch_home)
    metric = get_metric("lpips", verify_hash=False)
    x = torch.rand(1, 3, 32, 32)  # [0,1]: fine; [0,255] is the classic mistake
    with pytest.raises(AnimbenchError, match=r"pred values span .* expected \[-1, 1\]"):
        metric.distance(x * 255, x)
    with pytest.raises(AnimbenchError, match="expected uint8 RGB"):
        metric(np.zeros((1, 32, 32, 3), np.float32), np.zeros((1, 32, 32, 3), np.float32))


def test_a_wrong_file_under_the_trunk_name_is_a_user_error(torch_home):
    torch_home.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(1)}, torch_home / TRUNK)
    with pytest.raises(AnimbenchError, match=r"not a torchvision alex state_dict \(features.0.weight: \(1,\), expected \(64, 3, 11, 11\)\)"):
        get_metric("lpips", verify_hash=False)


def test_an_unreadable_trunk_file_is_a_user_error(torch_home):
    torch_home.mkdir(parents=True)
    (torch_home / TRUNK).write_bytes(b"<html>rate limited</html>")
    with pytest.raises(AnimbenchError, match=f"{TRUNK}: cannot be read as a state_dict"):
        get_metric("lpips", verify_hash=False)
