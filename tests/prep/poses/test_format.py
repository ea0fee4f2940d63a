"""The keypoint types: shapes validated, formats by joint count, EDN's BODY_25 -> BODY_23 map, transforms."""

import numpy as np
import pytest

from plumbing.errors import AnimbenchError
from prep.poses.format import BODY_FORMATS, PoseFrame, body_format_of, empty_pose, map_25_to_23


def test_body_format_by_joint_count():
    assert {n: body_format_of(n) for n in (18, 23, 25)} == {18: "COCO_18", 23: "BODY_23", 25: "BODY_25"}
    with pytest.raises(AnimbenchError, match="24 joints"):
        body_format_of(24)
    for name, count in BODY_FORMATS.items():
        pose = empty_pose(name)
        assert pose.body.shape == (count, 3) and pose.body.dtype == np.float32 and pose.body_format == name


def test_bad_shapes_are_one_line_errors():
    pose = empty_pose("COCO_18")
    with pytest.raises(AnimbenchError, match=r"face: shape \(69, 3\)"):
        PoseFrame(pose.body, np.zeros((69, 3)), pose.hand_left, pose.hand_right)
    with pytest.raises(AnimbenchError, match="expected one of"):
        empty_pose("BODY_99")


def test_map_25_to_23_moves_the_nose_and_drops_the_heels():
    body = np.zeros((25, 3), np.float32)
    body[:, 0] = np.arange(25)  # x = BODY_25 index
    body[:, 2] = 1
    pose = map_25_to_23(PoseFrame(body, np.zeros((70, 3)), np.zeros((21, 3)), np.zeros((21, 3))))
    assert pose.body_format == "BODY_23"
    assert pose.body[18, 0] == 0  # nose (BODY_25 0) lands at 18
    assert pose.body[0, 0] == 1  # neck first
    assert pose.body[11, 0] == 22 and pose.body[12, 0] == 23  # right big/small toe
    assert 21 not in pose.body[:, 0] and 24 not in pose.body[:, 0]  # heels gone


def test_transformed_moves_detected_points_only():
    pose = empty_pose("BODY_23")
    body = pose.body.copy()
    body[3] = (10, 20, 0.5)
    moved = PoseFrame(body, pose.face, pose.hand_left, pose.hand_right).transformed(2.0, 1.0, -3.0)
    np.testing.assert_array_equal(moved.body[3], [21, 37, 0.5])
    np.testing.assert_array_equal(moved.body[0], [0, 0, 0])  # undetected stays (0, 0, 0)
