"""The keypoint types: one person's OpenPose body, face and hands in one frame, in that frame's pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plumbing.errors import AnimbenchError

BODY_FORMATS = {"COCO_18": 18, "BODY_23": 23, "BODY_25": 25}
FACE_POINTS, HAND_POINTS = 70, 21

# EDN's map_25_to_23: BODY_23 joint i is BODY_25 joint MAP_25_TO_23[i] (heels dropped, nose moved to 18).
MAP_25_TO_23 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 22, 23, 12, 13, 14, 19, 20, 0, 15, 17, 16, 18)


def _points(value: object, count: int | None, field: str) -> np.ndarray:
    """Any array-like -> float32 (N, 3); N == count when count is given."""
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 3 or (count is not None and arr.shape[0] != count):
        want = f"({count}, 3)" if count is not None else "(J, 3)"
        raise AnimbenchError(f"PoseFrame.{field}: shape {arr.shape}, expected {want} (x, y, confidence)")
    return arr


@dataclass(frozen=True)
class PoseFrame:
    """One person's keypoints; every array is (N, 3) float32 x, y, confidence in the frame's pixels.

    Undetected points are (0, 0, 0), as OpenPose writes them.
    """

    body: np.ndarray  # (J, 3), J in 18 / 23 / 25
    face: np.ndarray  # (70, 3)
    hand_left: np.ndarray  # (21, 3)
    hand_right: np.ndarray  # (21, 3)

    def __post_init__(self) -> None:
        body = _points(self.body, None, "body")
        body_format_of(body.shape[0])
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "face", _points(self.face, FACE_POINTS, "face"))
        object.__setattr__(self, "hand_left", _points(self.hand_left, HAND_POINTS, "hand_left"))
        object.__setattr__(self, "hand_right", _points(self.hand_right, HAND_POINTS, "hand_right"))

    @property
    def body_format(self) -> str:
        """"COCO_18", "BODY_23" or "BODY_25", from the number of body joints."""
        return body_format_of(self.body.shape[0])

    def transformed(self, scale: float, dx: float, dy: float) -> PoseFrame:
        """x*scale+dx, y*scale+dy for every point with confidence > 0; confidences and missing points kept."""

        def move(points: np.ndarray) -> np.ndarray:
            out = points.copy()
            seen = out[:, 2] > 0
            out[seen, 0] = points[seen, 0] * scale + dx
            out[seen, 1] = points[seen, 1] * scale + dy
            return out

        return PoseFrame(move(self.body), move(self.face), move(self.hand_left), move(self.hand_right))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PoseFrame):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in ("body", "face", "hand_left", "hand_right")
        )

    __hash__ = None  # arrays are mutable; a pose is not a dict key


def body_format_of(num_joints: int) -> str:
    """Body format name from the number of joints (EDN chooses by keypoint-array length)."""
    for name, count in BODY_FORMATS.items():
        if count == num_joints:
            return name
    raise AnimbenchError(f"body keypoints: {num_joints} joints, expected 18 (COCO), 23 (BODY_23) or 25 (BODY_25)")


def map_25_to_23(pose: PoseFrame) -> PoseFrame:
    """BODY_25 -> BODY_23 as EDN's map_25_to_23 (face and hands unchanged); other formats pass through."""
    if pose.body_format != "BODY_25":
        return pose
    return PoseFrame(pose.body[list(MAP_25_TO_23)], pose.face, pose.hand_left, pose.hand_right)


def empty_pose(body_format: str) -> PoseFrame:
    """A pose with every point undetected (all zeros)."""
    if body_format not in BODY_FORMATS:
        raise AnimbenchError(f"body format {body_format!r}: expected one of {', '.join(BODY_FORMATS)}")
    zeros = np.zeros
    return PoseFrame(
        zeros((BODY_FORMATS[body_format], 3), np.float32),
        zeros((FACE_POINTS, 3), np.float32),
        zeros((HAND_POINTS, 3), np.float32),
        zeros((HAND_POINTS, 3), np.float32),
    )
