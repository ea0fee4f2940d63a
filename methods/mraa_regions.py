"""MRAA region maths (reference mraa-tpsmm.md §1.2, §1.4, §1.6, §1.8, §1.11): heatmap -> region parameters, the
PCA affine and its sign fix, region -> transform, and the animation modes.

Region parameters are dicts of tensors, K regions per image, coordinates on the heatmap's [-1, 1] grid ordered
(x, y):

    {"shift": (B, K, 2), "covar": (B, K, 2, 2), "affine": (B, K, 2, 2), "u": (B*K, 2, 2), "d": (B*K, 2, 2),
     "heatmap": (B, K, h, w)}

The affine of a region is U·diag(√S) from the SVD of its heatmap covariance, computed on the CPU as the official
code does (`torch.linalg.svd` gives the same U as the official `torch.svd`, §1.2): for a 2x2 PSD covariance
det(U) = -1, so the affine is a reflection of the region's principal axes scaled by their standard deviations.
Which way each axis points is LAPACK's choice; `revert_axis_swap` (multiply a source-to-driving matrix by the
sign of its [0, 0] entry) cancels the 180° flips between two frames, as the official code does in three places:
the flow predictor, the equivariance-affine loss and the AVD network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from methods.fomm_keypoints import hull_area
from methods.layers import make_coordinate_grid
from plumbing.errors import AnimbenchError


def region_moments(heatmap: Tensor) -> dict[str, Tensor]:
    """Softmax heatmaps (B, K, h, w) -> {"shift": mean (B, K, 2), "covar": covariance (B, K, 2, 2)} on their grid."""
    b, k, h, w = heatmap.shape
    grid = make_coordinate_grid((h, w), heatmap.dtype, heatmap.device).view(1, 1, h, w, 2)
    weights = heatmap.unsqueeze(-1)  # (B, K, h, w, 1)
    shift = (weights * grid).sum(dim=(2, 3))  # (B, K, 2)
    centred = grid - shift.view(b, k, 1, 1, 2)  # (B, K, h, w, 2)
    covar = (torch.matmul(centred.unsqueeze(-1), centred.unsqueeze(-2)) * weights.unsqueeze(-1)).sum(dim=(2, 3))
    return {"shift": shift, "covar": covar}


def pca_affine(covar: Tensor) -> dict[str, Tensor]:
    """Covariances (B, K, 2, 2) -> {"affine": U·diag(√S) (B, K, 2, 2), "u": U (B*K, 2, 2), "d": diag(√S) (B*K, 2, 2)}.

    The SVD runs on the CPU in the covariance's dtype (the official `.cpu()` round trip): LAPACK's gesdd fixes
    the signs of U, and a GPU solver would choose others. Singular values descend, so column 0 of U is the
    region's major axis."""
    shape = covar.shape
    flat = covar.reshape(-1, 2, 2)
    u, s, _ = torch.linalg.svd(flat.cpu())  # differentiable, as the official torch.svd(covar.cpu())
    u, s = u.to(covar.device), s.to(covar.device)
    d = torch.diag_embed(s**0.5)
    return {"affine": torch.matmul(u, d).view(shape), "u": u, "d": d}


def revert_axis_swap(matrix: Tensor) -> Tensor:
    """matrix (..., 2, 2) times the sign of its [0, 0] entry: cancels the SVD's 180° axis flips between frames
    (a zero entry zeroes the matrix, as the official code does; reflections are not corrected)."""
    return matrix * torch.sign(matrix[..., 0:1, 0:1])


def region_transform(source: Mapping[str, Tensor], driving: Mapping[str, Tensor], revert: bool = True) -> Tensor:
    """M_k = A_s,k · A_d,k⁻¹ (B, K, 2, 2), sign-fixed when `revert`: the linear part of T_k(z) = μ_s + M_k(z − μ_d)."""
    matrix = torch.matmul(source["affine"], torch.inverse(driving["affine"]))
    return revert_axis_swap(matrix) if revert else matrix


def region2gaussian(center: Tensor, covar: Tensor | float, spatial_size: Sequence[int]) -> Tensor:
    """Unnormalised Gaussians exp(-½ dᵀΣ⁻¹d), d = z − μ, on the [-1, 1] grid: centers (B, K, 2), covar (B, K, 2, 2)
    or an isotropic variance -> (B, K, h, w)."""
    h, w = int(spatial_size[0]), int(spatial_size[1])
    grid = make_coordinate_grid((h, w), center.dtype, center.device).view(1, 1, h, w, 2)
    d = grid - center.view(*center.shape[:2], 1, 1, 2)  # (B, K, h, w, 2)
    if isinstance(covar, (int, float)):
        return torch.exp(-0.5 * (d**2).sum(-1) / covar)
    inverse = torch.inverse(covar).view(*covar.shape[:2], 1, 1, 2, 2)
    under_exp = torch.matmul(torch.matmul(d.unsqueeze(-2), inverse), d.unsqueeze(-1))  # (B, K, h, w, 1, 1)
    return torch.exp(-0.5 * under_exp.view(*d.shape[:-1]))


def to_homogeneous(coordinates: Tensor) -> Tensor:
    """(..., 2) -> (..., 3) with a trailing 1."""
    return torch.cat([coordinates, torch.ones_like(coordinates[..., :1])], dim=-1)


def from_homogeneous(coordinates: Tensor) -> Tensor:
    """(..., 3) -> (..., 2): (x, y) divided by the third coordinate."""
    return coordinates[..., :2] / coordinates[..., 2:3]


def region_params_to_embedding(params: Mapping[str, Tensor]) -> Tensor:
    """{"shift" (B, K, 2), "affine" (B, K, 2, 2)} -> (B, 6K): per region [μx, μy, a00, a01, a10, a11]."""
    shift, affine = params["shift"], params["affine"]
    return torch.cat([shift, affine.reshape(*affine.shape[:2], 4)], dim=-1).reshape(shift.shape[0], -1)


def embedding_to_region_params(embedding: Tensor, num_regions: int) -> dict[str, Tensor]:
    """(B, 6K) -> {"shift": (B, K, 2), "affine": (B, K, 2, 2), "covar": A·Aᵀ (B, K, 2, 2)}."""
    emb = embedding.view(embedding.shape[0], num_regions, 6)
    affine = emb[:, :, 2:].reshape(emb.shape[0], num_regions, 2, 2)
    return {"shift": emb[:, :, :2], "affine": affine, "covar": torch.matmul(affine, affine.transpose(-1, -2))}


def movement_scale(source: Mapping[str, Tensor], driving_initial: Mapping[str, Tensor]) -> float:
    """√area(hull(μ_source)) / √area(hull(μ_driving,0)) of batch element 0, as the official relative mode."""
    try:
        return float(np.sqrt(hull_area(source["shift"][0])) / np.sqrt(hull_area(driving_initial["shift"][0])))
    except AnimbenchError:
        raise AnimbenchError("relative: the region centres of the source or of driving frame 0 are degenerate "
                             "(collinear or repeated), their hull has no area, and MRAA always scales relative "
                             "motion by it; animate with --absolute or --avd") from None


def relative_region_params(source: Mapping[str, Tensor], driving: Mapping[str, Tensor],
                           driving_initial: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """MRAA's relative mode (§1.11): μ = μ_s + s·(μ_d − μ_d0) with the hull scale s ALWAYS applied, A =
    (A_d·A_d0⁻¹)·A_s; every other entry (notably `covar`, which feeds the heatmaps) stays the driving frame's."""
    new = dict(driving)
    scale = movement_scale(source, driving_initial)
    new["shift"] = (driving["shift"] - driving_initial["shift"]) * scale + source["shift"]
    affine_diff = torch.matmul(driving["affine"], torch.inverse(driving_initial["affine"]))
    new["affine"] = torch.matmul(affine_diff, source["affine"])
    return new


def random_scale(params: Mapping[str, Tensor], scale: float, generator: torch.Generator | None = None
                 ) -> dict[str, Tensor]:
    """AVD training augmentation: θ = diag(u₁, u₂), u ~ U[1 − scale, 1 + scale] per sample and axis, applied as
    θ·μ and θ·A (B, K, ...) -> a new {"shift", "affine"} (noise drawn on the CPU, then moved)."""
    shift, affine = params["shift"], params["affine"]
    theta = torch.rand(shift.shape[0], 2, generator=generator) * (2 * scale) + (1 - scale)
    theta = torch.diag_embed(theta).unsqueeze(1).to(shift.device, shift.dtype)  # (B, 1, 2, 2)
    return {"shift": torch.matmul(theta, shift.unsqueeze(-1)).squeeze(-1), "affine": torch.matmul(theta, affine)}
