"""TPSMM's motion maths: thin-plate splines, the dropout softmax, and the keypoint transforms of animation.

Keypoints are (B, K·5, 2) tensors in [-1, 1] ordered (x, y); points 5k..5k+4 form TPS group k (reference §2.2).
The TPS fit reproduces the official float32 operations in their order (§2.4, §2.10): kernel U(r) = r²·log(r² + 1e-9),
the ridge 0.01·I added to the WHOLE 8×8 system (so equal source and driving keypoints do not give the identity),
and `torch.inverse(L) @ Y` rather than a solve. Reordering those operations moves the output by more than 1e-4
(tests/methods/test_tpsmm.py measures it), so the order is part of the model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from methods.fomm_keypoints import hull_area
from methods.layers import make_coordinate_grid, warp

TPS_POINTS = 5  # control points per TPS (the official code's reshape to (B, K, 5, 2))
RIDGE = 0.01  # added to the whole 8x8 system, the zero block included (§2.4)
LOG_EPS = 1e-9


def tps_kernel(squared_distance: Tensor) -> Tensor:
    """U = r²·log(r² + 1e-9) from r² (equal to the classical 2·r²·log r up to the factor 2)."""
    return squared_distance * torch.log(squared_distance + LOG_EPS)


def tps_groups(kp: Tensor) -> Tensor:
    """(B, K·5, 2) keypoints -> (B, K, 5, 2) TPS groups (a tensor already grouped is returned as it is)."""
    return kp if kp.dim() == 4 else kp.view(kp.shape[0], -1, TPS_POINTS, 2)


def tps_system(kp_driving: Tensor, kp_source: Tensor) -> tuple[Tensor, Tensor]:
    """The regularised TPS systems of every group: control points p = driving, targets q = source.

    (B, K·5, 2) or (B, K, 5, 2) each -> L (B, K, 8, 8) = [[U(|p_i - p_j|), P], [Pᵀ, 0]] + 0.01·I and
    Y (B, K, 8, 2) = [q; 0].
    """
    p, q = tps_groups(kp_driving), tps_groups(kp_source)
    b = p.shape[0]
    k = p.shape[1]
    # as official: the Euclidean norm, then squared (not the sum of squares: the float rounding differs)
    kernel = torch.norm(p[:, :, :, None] - p[:, :, None, :], dim=4, p=2) ** 2
    kernel = tps_kernel(kernel)  # (B, K, 5, 5)
    ones = torch.ones(b, k, TPS_POINTS, 1, dtype=p.dtype, device=p.device)
    p_homogeneous = torch.cat([p, ones], 3)  # (B, K, 5, 3)
    bottom = torch.cat([p_homogeneous.permute(0, 1, 3, 2), p.new_zeros(b, k, 3, 3)], 3)  # (B, K, 3, 8)
    system = torch.cat([torch.cat([kernel, p_homogeneous], 3), bottom], 2)  # (B, K, 8, 8)
    system = system + torch.eye(system.shape[2], dtype=p.dtype, device=p.device).expand(system.shape) * RIDGE
    targets = torch.cat([q, q.new_zeros(b, k, 3, 2)], 2)  # (B, K, 8, 2)
    return system, targets


class KeypointTPS:
    """The K fitted thin-plate splines mapping driving coordinates to source coordinates (paper Eq. 2)."""

    def __init__(self, params: Tensor, kp_driving: Tensor):
        """params (B, K, 8, 2): the solution of tps_system (W rows 0..4, the affine rows 5..7); kp_driving the
        control points, (B, K·5, 2) or grouped (B, K, 5, 2)."""
        self.affine = params[:, :, TPS_POINTS:, :].permute(0, 1, 3, 2)  # (B, K, 2, 3) = [A | c]
        self.weights = params[:, :, :TPS_POINTS, :]  # (B, K, 5, 2)
        self.control_points = tps_groups(kp_driving)  # (B, K, 5, 2)

    @classmethod
    def fit(cls, kp_driving: Tensor, kp_source: Tensor) -> KeypointTPS:
        """The official fit: inverse(L) @ Y in the keypoints' dtype (float32), not a solve (§2.10)."""
        # one grouped view of the driving points feeds the kernel, P and the control points, as official: the
        # backward then sums their three gradients in one place, so the keypoint gradient is bit-identical too
        p = tps_groups(kp_driving)
        system, targets = tps_system(p, kp_source)
        return cls(torch.matmul(torch.inverse(system), targets), p)

    def warp_coordinates(self, coordinates: Tensor) -> Tensor:
        """T_k(z) = A·z + c + Σ_i W_i·U(|z - p_i|) for z (1, N, 2) -> (B, K, N, 2)."""
        b, k = self.weights.shape[:2]
        affine = torch.matmul(self.affine[:, :, :, :2], coordinates.permute(0, 2, 1)) + self.affine[:, :, :, 2:]
        offsets = coordinates.view(coordinates.shape[0], 1, 1, -1, 2) - self.control_points.view(b, k, -1, 1, 2)
        radial = tps_kernel((offsets**2).sum(-1))  # (B, K, 5, N)
        radial = torch.matmul(radial.permute(0, 1, 3, 2), self.weights)  # (B, K, N, 2)
        return affine.permute(0, 1, 3, 2) + radial

    def grids(self, size: tuple[int, int]) -> Tensor:
        """The K driving -> source sampling grids on an h×w image: (B, K, h, w, 2)."""
        h, w = size
        grid = make_coordinate_grid((h, w), self.weights.dtype, self.weights.device).view(1, h * w, 2)
        return self.warp_coordinates(grid).view(self.weights.shape[0], -1, h, w, 2)


class RandomTPS:
    """The equivariance augmentation (§2.4 'random'): θ = [I | 0] + N(0, σ_affine²) per sample, plus one scalar
    weight N(0, σ_tps²) per point of a points_tps² grid, added to both coordinates; kernel r²·log(r² + 1e-9) with
    the EUCLIDEAN r² (FOMM's augmentation uses the L1 distance). Noise drawn on the CPU, as the official code."""

    def __init__(self, batch_size: int, sigma_affine: float, sigma_tps: float, points_tps: int,
                 device: torch.device | str | None = None, generator: torch.Generator | None = None):
        noise = torch.normal(0.0, sigma_affine * torch.ones(batch_size, 2, 3), generator=generator)
        self.theta = (noise + torch.eye(2, 3).view(1, 2, 3)).to(device)  # (B, 2, 3)
        self.control_points = make_coordinate_grid((points_tps, points_tps)).view(1, -1, 2).to(device)
        self.control_params = torch.normal(0.0, sigma_tps * torch.ones(batch_size, 1, points_tps**2),
                                           generator=generator).to(device)  # (B, 1, P²)
        self.batch_size = batch_size

    def warp_coordinates(self, coordinates: Tensor) -> Tensor:
        """T(z) for z (B or 1, N, 2) -> (B, N, 2)."""
        theta = self.theta.to(coordinates.dtype).unsqueeze(1)  # (B, 1, 2, 3)
        transformed = torch.matmul(theta[:, :, :, :2], coordinates.unsqueeze(-1)) + theta[:, :, :, 2:]
        transformed = transformed.squeeze(-1)
        offsets = coordinates.view(coordinates.shape[0], -1, 1, 2) - self.control_points.to(coordinates.dtype).view(
            1, 1, -1, 2)
        radial = tps_kernel((offsets**2).sum(-1)) * self.control_params.to(coordinates.dtype)  # (B, N, P²)
        return transformed + radial.sum(dim=2).view(self.batch_size, coordinates.shape[1], 1)

    def transform_frame(self, frame: Tensor, align_corners: bool = True) -> Tensor:
        """The frame (B, C, H, W) resampled through T with reflection padding (the transformed driving frame)."""
        b, _, h, w = frame.shape
        grid = make_coordinate_grid((h, w), frame.dtype, frame.device).view(1, h * w, 2)
        grid = self.warp_coordinates(grid).view(self.batch_size, h, w, 2)
        return warp(frame, grid, align_corners, padding_mode="reflection")


def dropout_softmax(logits: Tensor, drop_probability: float, generator: torch.Generator | None = None) -> Tensor:
    """Paper Eq. 7-8: softmax over slots (dim 1) of (B, K+1, h, w) logits with each TPS slot dropped with
    probability P (one draw per sample and slot, on the CPU RNG as official, constant over space); slot 0 (the
    background) is never dropped. The official 1/(1-P) rescale happens after the exponentials, so it has no
    effect (§2.5) and is left out."""
    keep = torch.rand(logits.shape[0], logits.shape[1], generator=generator) < (1 - drop_probability)
    keep = keep.to(logits.dtype)
    keep[:, 0] = 1
    keep = keep.to(logits.device)[:, :, None, None]  # (B, K+1, 1, 1)
    shifted = logits - logits.max(1, keepdim=True).values
    exp = shifted.exp() * keep
    return exp / (exp.sum(dim=1, keepdim=True) + 1e-6)


def dropout_probability(epoch: int, dropout_epoch: int, startp: float, maxp: float, inc_epoch: int) -> float | None:
    """The TPS dropout P of a (0-based) training epoch, rising linearly from startp to maxp over inc_epoch
    epochs; None (no dropout) from dropout_epoch on (§2.11)."""
    if epoch >= dropout_epoch:
        return None
    return min(epoch / inc_epoch * maxp + startp, maxp)


def relative_keypoints(kp_source: Tensor, kp_driving: Tensor, kp_driving_initial: Tensor,
                       adapt_scale: bool = True) -> Tensor:
    """demo.py's relative mode: kp_source + s·(kp_driving - kp_driving_initial), s = sqrt(hull area of the
    source's 50 points) / sqrt(hull area of the initial driving points), from batch element 0 as official
    (the demo always adapts the scale; adapt_scale=False gives s = 1). (B, N, 2) each -> (B, N, 2)."""
    displacement = kp_driving - kp_driving_initial
    if adapt_scale:
        scale = np.sqrt(hull_area(kp_source[0])) / np.sqrt(hull_area(kp_driving_initial[0]))
        displacement = displacement * float(scale)
    return displacement + kp_source


def random_scale(kp: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """train_avd.py's augmentation: every keypoint of a sample multiplied by diag(u1, u2), u ~ U[1-scale,
    1+scale] per sample and axis (drawn on the CPU). (B, N, 2) -> (B, N, 2)."""
    theta = torch.rand(kp.shape[0], 2, generator=generator) * (2 * scale) + (1 - scale)
    theta = torch.diag_embed(theta).unsqueeze(1).to(kp.dtype).to(kp.device)  # (B, 1, 2, 2)
    return torch.matmul(theta, kp.unsqueeze(-1)).squeeze(-1)
