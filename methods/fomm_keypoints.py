"""FOMM keypoint maths for animation: how driving keypoints become the keypoints the generator is given (reference §3.1)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError
from torch import Tensor

from plumbing.errors import AnimbenchError


def hull_area(points: Tensor) -> float:
    """Area of the convex hull of (K, 2) points (scipy's `.volume` is the area in 2-D)."""
    try:
        return float(ConvexHull(points.detach().cpu().double().numpy()).volume)
    except QhullError:
        raise AnimbenchError(
            "adapt_scale: the keypoints are degenerate (collinear or repeated), their convex hull has no area; "
            "animate without adapt_scale"
        ) from None


def movement_scale(kp_source: dict, kp_driving_initial: dict) -> Tensor:
    """sqrt(hull area of source kps) / sqrt(hull area of initial driving kps), per batch element: (B,)."""
    source, initial = kp_source["value"], kp_driving_initial["value"]
    if initial.shape[0] == 1 and source.shape[0] > 1:
        initial = initial.expand_as(source)
    scales = [np.sqrt(hull_area(s)) / np.sqrt(hull_area(d)) for s, d in zip(source, initial, strict=True)]
    return torch.tensor(scales, dtype=source.dtype, device=source.device)


def normalize_kp(
    kp_source: dict,
    kp_driving: dict,
    kp_driving_initial: dict,
    adapt_movement_scale: bool = False,
    use_relative_movement: bool = False,
    use_relative_jacobian: bool = False,
) -> dict:
    """Driving keypoints as given (absolute), or source + scaled driving displacement since frame 0 (relative).

    relative: value = kp_source + s · (kp_driving − kp_driving_initial), s = sqrt(area ratio) with
    adapt_movement_scale else 1; with use_relative_jacobian, J = (J_d · J_d0⁻¹) · J_s. The official code takes
    the hull of batch element 0 only; here each element uses its own (the same when the source repeats).
    """
    kp_new = dict(kp_driving)
    if not use_relative_movement:
        return kp_new
    with torch.autocast(kp_driving["value"].device.type, enabled=False):  # 2x2 inverses stay float32
        displacement = kp_driving["value"] - kp_driving_initial["value"]
        if adapt_movement_scale:
            displacement = displacement * movement_scale(kp_source, kp_driving_initial).view(-1, 1, 1)
        kp_new["value"] = displacement + kp_source["value"]
        if use_relative_jacobian and "jacobian" in kp_driving:
            jacobian_diff = torch.matmul(kp_driving["jacobian"], torch.inverse(kp_driving_initial["jacobian"]))
            kp_new["jacobian"] = torch.matmul(jacobian_diff, kp_source["jacobian"])
    return kp_new
