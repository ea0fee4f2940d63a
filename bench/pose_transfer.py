"""The pose-transfer protocol's generation and per-frame inputs (bench.protocols describes the protocol).

A pose-driven method generates each posed frame of a store video from its own pose through
methods.infer_pose.store_pose_frames (the one generation path). The metrics then need, besides the frames, the pose
each frame came from in the PREDICTION's pixels. The store holds poses in the stored frame's pixels and the method
brings frames to its generator by its own letterbox and resizes (pose_target); rather than re-deriving that
geometry per family, `target_geometry` measures it through pose_target itself: bright bands at known columns and
rows of a grey frame, whose centroids in the target give the per-axis scale and offset (resizes with symmetric
kernels keep a band's centroid; the bands lie inside the frame, away from any letterbox border).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plumbing.errors import AnimbenchError

Geometry = tuple[tuple[float, float], tuple[float, float]]  # ((kx, bx), (ky, by)): x' = kx * x + bx
BACKGROUND, BAND = 100, 200  # grey levels that no resize ringing pushes out of uint8
GROUPS = ("body", "face", "hand_left", "hand_right")
GEOMETRY_RULE = ("input keypoints (stored-frame pixels) mapped to the prediction's pixels by x' = kx x + bx, "
                 "y' = ky y + by, measured through the method's own pose_target: the centroids of bright bands at "
                 "1/4 and 3/4 of a grey frame of the stored size, in pixel-centre coordinates")


def target_geometry(pose_target: Callable[[np.ndarray], np.ndarray], frame_hw: tuple[int, int]) -> Geometry:
    """The per-axis affine ((kx, bx), (ky, by)) taking pixel-centre coordinates of a (H, W) stored frame to those
    of pose_target's output, measured with bands (module docstring)."""
    height, width = frame_hw
    if min(height, width) < 8:
        raise AnimbenchError(f"pose-transfer: stored frames {height}x{width} are too small to map keypoints")
    plain = np.full((height, width, 3), BACKGROUND, np.uint8)
    base = pose_target(plain).astype(np.float64).mean(axis=2)
    out = []
    for axis, n in ((1, width), (0, height)):
        band = max(2, n // 8)
        pairs = []
        for centre in (n // 4, (3 * n) // 4):
            start = centre - band // 2
            frame = plain.copy()
            index = (slice(None), slice(start, start + band)) if axis == 1 else slice(start, start + band)
            frame[index] = BAND
            diff = pose_target(frame).astype(np.float64).mean(axis=2) - base
            profile = diff.sum(axis=1 - axis)  # along x: summed over rows; along y: over columns
            if profile.sum() <= 0:
                raise AnimbenchError("pose-transfer: the method's pose_target loses a band of the frame, so the "
                                     "keypoints cannot be mapped to its pixels")
            pairs.append((start + (band - 1) / 2.0, float((np.arange(len(profile)) * profile).sum() / profile.sum())))
        (s0, t0), (s1, t1) = pairs
        k = (t1 - t0) / (s1 - s0)
        out.append((k, t0 - k * s0))
    return out[0], out[1]


def keypoint_groups(poses: Sequence[Any], geometry: Geometry) -> dict[str, np.ndarray]:
    """PoseFrames (stored-frame pixels) -> {group: (N, J, 3) float64} in the prediction's pixels (confidence kept;
    points with confidence 0 stay at 0, 0)."""
    (kx, bx), (ky, by) = geometry
    out = {}
    for group in GROUPS:
        shapes = {np.shape(getattr(p, group)) for p in poses}
        if len(shapes) > 1:
            raise AnimbenchError(f"pose-transfer: the poses of one video mix {group} shapes {sorted(shapes)}")
        pts = np.stack([np.asarray(getattr(p, group), np.float64) for p in poses]) if poses else np.zeros((0, 0, 3))
        given = pts[..., 2] > 0
        pts[..., 0] = np.where(given, kx * pts[..., 0] + bx, 0.0)
        pts[..., 1] = np.where(given, ky * pts[..., 1] + by, 0.0)
        out[group] = pts
    return out


def face_box_array(boxes: Sequence[tuple[int, int, int, int] | None]) -> np.ndarray:
    """Face boxes or None per frame -> (N, 4) int64, rows of -1 where a frame has none."""
    return np.array([(-1, -1, -1, -1) if b is None else tuple(int(v) for v in b) for b in boxes],
                    np.int64).reshape(-1, 4)


@dataclass
class PoseTransferVideo:
    """One store video generated from its own poses, with what the metrics compare."""

    indices: list[int]  # stored frame index of each generated frame
    target: np.ndarray  # uint8 (N, h, w, 3): the real frames at the generator's resolution
    prediction: np.ndarray  # float32 (N, h, w, 3) in [0, 1]
    inputs: dict[str, Any]  # the metrics' per-frame inputs (bench.metrics.registry.INPUTS)
    geometry: Geometry


def generate_video(model: Any, store: Any, video_id: str) -> PoseTransferVideo:
    """Generate every posed frame of a store video from its own pose (methods.infer_pose.store_pose_frames)."""
    from methods.infer_pose import store_pose_frames  # bench may import methods; kept off module import

    records = list(store_pose_frames(model, store, video_id))
    info = store.info(video_id)
    geometry = target_geometry(model.pose_target, (int(info["height"]), int(info["width"])))
    if not records:
        empty = np.zeros((0, 1, 1, 3))
        return PoseTransferVideo([], empty.astype(np.uint8), empty.astype(np.float32),
                                 {"keypoints": keypoint_groups([], geometry), "face_boxes": face_box_array([])},
                                 geometry)
    # the target came from uint8 frames / 255: rounding gives those frames back exactly
    target = np.stack([np.rint(np.asarray(r["target"], np.float64) * 255.0) for r in records]).astype(np.uint8)
    prediction = np.stack([r["prediction"] for r in records]).astype(np.float32)
    inputs = {"keypoints": keypoint_groups([r["pose"] for r in records], geometry),
              "face_boxes": face_box_array([r["face_box"] for r in records])}
    return PoseTransferVideo([int(r["index"]) for r in records], target, prediction, inputs, geometry)
