"""Test helpers for the pose module: the edn-sample folder and OpenPose JSON written from a pose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prep.poses.format import PoseFrame, empty_pose


def edn_sample(shared_dir: Path) -> Path:
    """../shared/data/edn-sample (skips when the shared folder lacks it)."""
    root = shared_dir / "data" / "edn-sample"
    if not (root / "train" / "keypoints").is_dir():
        pytest.skip(f"edn-sample not found at {root}")
    return root


def person_json(pose: PoseFrame) -> dict:
    """One OpenPose JSON person entry from a pose."""
    return {
        "pose_keypoints_2d": pose.body.reshape(-1).tolist(),
        "face_keypoints_2d": pose.face.reshape(-1).tolist(),
        "hand_left_keypoints_2d": pose.hand_left.reshape(-1).tolist(),
        "hand_right_keypoints_2d": pose.hand_right.reshape(-1).tolist(),
    }


def write_json(path: Path, *poses: PoseFrame) -> Path:
    """`<name>_keypoints.json` with one person per pose, as OpenPose writes it."""
    path.write_text(json.dumps({"version": 1.3, "people": [person_json(p) for p in poses]}))
    return path


def standing(toe: float, height: float, x: float = 960.0, left_ear: bool = True) -> PoseFrame:
    """BODY_23: nose `height` px straight above the ankles' midpoint, both ankles on row `toe`."""
    pose = empty_pose("BODY_23")
    body = pose.body.copy()
    body[18] = (x, toe - height, 0.9)  # nose
    body[10] = (x - 10, toe, 0.8)  # right ankle
    body[15] = (x + 10, toe, 0.8)  # left ankle
    if left_ear:
        body[22] = (x + 5, toe - height, 0.7)
    return PoseFrame(body, pose.face, pose.hand_left, pose.hand_right)
