"""Monkey-Net keypoint geometry: Gaussians with covariance <-> heatmaps, and transfer-mode normalisation.

Keypoint dicts hold 'mean' (B, T, K, 2) in [-1, 1] ordered (x, y) and 'var' (B, T, K, 2, 2), time on axis 1.

Transfer mode follows `transfer_params.normalization_params` of the official configs:
- move_location (relative): mean_new = mean_src + m * (mean_drv_t - mean_drv_0); False keeps the driving means.
- movement_mult: m = sqrt(hull area of the source keypoints) / sqrt(hull area of driving frame 0), else m = 1.
- adapt_variance: var_new = var_drv_t @ inv(var_drv_0) @ var_src, symmetrised, eigenvalues <= 0 set to 1e-6.
- clip_mean: clamp the means to [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from methods.fomm_keypoints import hull_area
from methods.layers import make_coordinate_grid
from plumbing.errors import AnimbenchError

Keypoints = dict[str, torch.Tensor]
HEATMAP_EPS = 1e-7  # added to the softmax heatmap so the covariance of a collapsed heatmap is not NaN
EIGENVALUE_FLOOR = 1e-6


def inverse_2x2(m: torch.Tensor) -> torch.Tensor:
    """Analytic inverse of (..., 2, 2) matrices (the official torch.gesv no longer exists)."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = (a * d - b * c).unsqueeze(-1)
    return (torch.stack([d, -b, -c, a], dim=-1) / det).view(m.shape)


def smallest_singular(m: torch.Tensor) -> torch.Tensor:
    """Smallest singular value of (..., 2, 2) matrices in closed form, shape (..., 1, 1)."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    s1 = a**2 + b**2 + c**2 + d**2
    s2 = torch.sqrt((a**2 + b**2 - c**2 - d**2) ** 2 + 4 * (a * c + b * d) ** 2)
    return torch.sqrt((s1 - s2) / 2)[..., None, None]


def kp2gaussian(kp: Keypoints, spatial_size: tuple[int, int], kp_variance: str | float) -> torch.Tensor:
    """Unnormalised Gaussian per keypoint, exp(-1/2 d^T var^-1 d): (B, D, K, H, W)."""
    mean = kp["mean"]
    lead = mean.shape[:-1]
    h, w = spatial_size
    grid = make_coordinate_grid((h, w), mean.dtype, mean.device).view((1,) * len(lead) + (h, w, 2))
    mean_sub = grid - mean.view(lead + (1, 1, 2))
    if kp_variance == "matrix":
        inv_var = inverse_2x2(kp["var"]).view(lead + (1, 1, 2, 2))
        # d^T inv_var d written out: batched 2x2 matmuls are several times slower on CPU
        x, y = mean_sub[..., 0], mean_sub[..., 1]
        row_x = x * inv_var[..., 0, 0] + y * inv_var[..., 1, 0]
        row_y = x * inv_var[..., 0, 1] + y * inv_var[..., 1, 1]
        return torch.exp(-0.5 * (row_x * x + row_y * y))
    if kp_variance == "single":
        return torch.exp(-0.5 * (mean_sub**2).sum(-1) / kp["var"])
    return torch.exp(-0.5 * (mean_sub**2).sum(-1) / kp_variance)


def gaussian2kp(heatmap: torch.Tensor, kp_variance: str | float, clip_variance: float | None) -> Keypoints:
    """Mean (and covariance) of softmax heatmaps (B, K, D, H, W) -> keypoints with time on axis 1."""
    h, w = heatmap.shape[3:]
    heatmap = heatmap.unsqueeze(-1) + HEATMAP_EPS
    grid = make_coordinate_grid((h, w), heatmap.dtype, heatmap.device).view(1, 1, 1, h, w, 2)
    mean = (heatmap * grid).sum(dim=(3, 4))  # (B, K, D, 2)
    kp = {"mean": mean.permute(0, 2, 1, 3)}
    if kp_variance == "matrix":
        mean_sub = grid - mean.unsqueeze(-2).unsqueeze(-2)
        var = mean_sub.unsqueeze(-1) * mean_sub.unsqueeze(-2) * heatmap.unsqueeze(-1)  # outer products
        var = var.sum(dim=(3, 4)).permute(0, 2, 1, 3, 4)  # (B, D, K, 2, 2)
        if clip_variance:
            # rescale so the smallest singular value is at least clip_variance (keeps heatmaps invertible)
            sg = smallest_singular(var)
            var = torch.clamp(sg, min=clip_variance) * var / sg
        kp["var"] = var
    elif kp_variance == "single":
        mean_sub = grid - mean.unsqueeze(-2).unsqueeze(-2)
        var = (mean_sub**2 * heatmap).sum(dim=(3, 4)).mean(dim=-1, keepdim=True).unsqueeze(-1)
        kp["var"] = var.permute(0, 2, 1, 3, 4)  # (B, D, K, 1, 1)
    return kp


def kp_displacement(kp_driving: Keypoints, kp_source: Keypoints, add_bg: bool) -> torch.Tensor:
    """kp_source - kp_driving means, (B, D, K + bg, 2), with a zero background displacement first when add_bg."""
    displacement = kp_source["mean"] - kp_driving["mean"]
    if add_bg:
        displacement = torch.cat(
            [displacement.new_zeros(displacement.shape[:2] + (1, 2)), displacement], dim=2
        )
    return displacement


def symmetrise_positive(var: torch.Tensor) -> torch.Tensor:
    """(..., 2, 2) -> the symmetric part with eigenvalues <= 0 replaced by 1e-6 (computed in float64)."""
    var64 = var.double()
    eigenvalues, eigenvectors = torch.linalg.eigh((var64 + var64.transpose(-1, -2)) / 2)
    eigenvalues = torch.where(eigenvalues <= 0, torch.full_like(eigenvalues, EIGENVALUE_FLOOR), eigenvalues)
    return (eigenvectors @ torch.diag_embed(eigenvalues) @ eigenvectors.transpose(-1, -2)).to(var.dtype)


def normalize_kp(
    kp_driving: dict[str, torch.Tensor],
    kp_source: dict[str, torch.Tensor],
    move_location: bool = False,
    movement_mult: bool = False,
    adapt_variance: bool = False,
    clip_mean: bool = False,
) -> dict[str, torch.Tensor]:
    """Driving keypoints of a whole video (frame 0 is the reference) mapped onto the source, per the flags."""
    kp_new = dict(kp_driving)
    if move_location:
        movement = kp_driving["mean"] - kp_driving["mean"][:, :1]
        if movement_mult:
            # one scale per batch element (the official code used element 0 for the whole batch; B is 1 there)
            scale = [
                np.sqrt(hull_area(kp_source["mean"][b, 0])) / np.sqrt(hull_area(kp_driving["mean"][b, 0]))
                for b in range(movement.shape[0])
            ]
            movement = movement * torch.tensor(scale, dtype=movement.dtype, device=movement.device).view(
                -1, 1, 1, 1
            )
        kp_new["mean"] = movement + kp_source["mean"]
    if clip_mean:
        # the official code only reaches this with move_location (it reads an unset variable otherwise)
        kp_new["mean"] = kp_new["mean"].clamp(-1, 1)
    if adapt_variance:
        if "var" not in kp_driving or kp_driving["var"].shape[-2:] != (2, 2):
            raise AnimbenchError(
                "transfer_params.normalization_params.adapt_variance needs kp_variance: 'matrix'"
            )
        var = kp_driving["var"] @ inverse_2x2(kp_driving["var"][:, :1]) @ kp_source["var"]
        kp_new["var"] = symmetrise_positive(var)
    return kp_new
