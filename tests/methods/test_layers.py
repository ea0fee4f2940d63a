"""Shared 2-D layers: coordinate grid convention, anti-alias kernels, hourglass widths, warping, Gaussians."""

from __future__ import annotations

import math

import pytest
import torch

from methods.layers import AntiAliasInterpolation2d, Hourglass, kp2gaussian, make_coordinate_grid, warp


def test_coordinate_grid_is_xy_with_corners_at_pixel_centres():
    grid = make_coordinate_grid((3, 5))
    assert grid.shape == (3, 5, 2)
    assert grid[0, 0].tolist() == [-1.0, -1.0]
    assert grid[0, 4].tolist() == [1.0, -1.0]  # last dim is (x, y): x runs along the width
    assert grid[2, 0].tolist() == [-1.0, 1.0]
    assert grid[1, 2].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("scale,size", [(0.5, 5), (0.25, 13), (0.125, 29)])
def test_anti_alias_kernel_sizes_and_normalisation(scale, size):
    down = AntiAliasInterpolation2d(3, scale)
    assert down.weight.shape == (3, 1, size, size)
    assert torch.allclose(down.weight.sum(dim=(1, 2, 3)), torch.ones(3))
    x = torch.rand(2, 3, 64, 64)
    out = down(x)
    step = int(1 / scale)
    assert out.shape == (2, 3, 64 // step, 64 // step)
    # a constant image stays constant away from the zero-padded border
    flat = down(torch.full((1, 3, 64, 64), 0.7))
    inner = flat[..., size // step + 1 : -(size // step + 1), size // step + 1 : -(size // step + 1)]
    assert torch.allclose(inner, torch.full_like(inner, 0.7), atol=1e-6)


def test_anti_alias_identity_at_scale_one():
    x = torch.rand(1, 3, 8, 8)
    assert AntiAliasInterpolation2d(3, 1).forward(x) is x


def test_hourglass_widths_match_the_official_kp_detector():
    hourglass = Hourglass(block_expansion=32, in_features=3, num_blocks=5, max_features=1024)
    assert [b.conv.out_channels for b in hourglass.encoder.down_blocks] == [64, 128, 256, 512, 1024]
    assert [b.conv.in_channels for b in hourglass.decoder.up_blocks] == [1024, 1024, 512, 256, 128]
    assert hourglass.out_filters == 35


def test_hourglass_concatenates_upsampled_before_skip():
    torch.manual_seed(0)
    hourglass = Hourglass(block_expansion=4, in_features=3, num_blocks=2, max_features=16).eval()
    x = torch.rand(1, 3, 8, 8)
    out = hourglass(x)
    assert out.shape == (1, 4 + 3, 8, 8)
    assert torch.equal(out[:, -3:], x)  # the raw input is the last skip, so the last 3 channels


def test_identity_grid_warp_reproduces_the_image_only_with_align_corners():
    x = torch.rand(2, 3, 16, 16)
    grid = make_coordinate_grid((16, 16)).expand(2, 16, 16, 2)
    assert torch.allclose(warp(x, grid, align_corners=True), x, atol=1e-5)
    # torch >= 1.3's default convention shifts by half a pixel: the official weights were not trained with it
    assert (warp(x, grid, align_corners=False) - x).abs().mean() > 0.05


def test_kp2gaussian_peaks_at_the_keypoint():
    kp = torch.tensor([[[0.0, 0.0], [1.0, -1.0]]])  # (B=1, K=2, (x, y))
    heat = kp2gaussian(kp, (5, 5), kp_variance=0.01)
    assert heat.shape == (1, 2, 5, 5)
    assert heat[0, 0, 2, 2] == 1.0 and heat[0, 1, 0, 4] == 1.0
    # one pixel away on a 5-px grid is 0.5 in grid units
    assert math.isclose(heat[0, 0, 2, 3].item(), math.exp(-0.5 * 0.25 / 0.01), rel_tol=1e-5)
