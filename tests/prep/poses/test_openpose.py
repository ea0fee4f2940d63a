"""Reading OpenPose output: EDN's per-frame .yml files and OpenPose JSON; several people skip the frame."""

import shutil

import cv2
import numpy as np
import pytest

from plumbing.errors import AnimbenchError
from prep.poses.openpose import read_openpose_file, read_openpose_folder, skip_reason
from tests.prep.poses.helpers import edn_sample, write_json

PARTS = ("pose", "face", "hand_left", "hand_right")


def test_sample_yml_matches_opencv(shared_dir):
    keypoints = edn_sample(shared_dir) / "train" / "keypoints"
    folder = read_openpose_folder(keypoints)
    assert list(folder.frames) == ["frame020001", "frame020005", "frame020009"] and folder.skipped == {}
    pose = folder.frames["frame020005"]
    assert pose.body_format == "BODY_23"
    for part, got in zip(PARTS, (pose.body, pose.face, pose.hand_left, pose.hand_right), strict=True):
        storage = cv2.FileStorage(str(keypoints / f"frame020005_{part}.yml"), cv2.FILE_STORAGE_READ)
        want = storage.getNode(f"{part}_0").mat().reshape(-1, 3)
        np.testing.assert_array_equal(got, want)


def test_names_with_underscores_and_json(shared_dir, tmp_path):
    keypoints = edn_sample(shared_dir) / "train" / "keypoints"
    for part in PARTS:
        shutil.copy(keypoints / f"frame020001_{part}.yml", tmp_path / f"my_clip_0001_{part}.yml")
    pose = read_openpose_file(tmp_path / "my_clip_0001_pose.yml")
    write_json(tmp_path / "my_clip_0002_keypoints.json", pose)
    folder = read_openpose_folder(tmp_path)
    assert list(folder.frames) == ["my_clip_0001", "my_clip_0002"]
    assert folder.frames["my_clip_0002"] == pose


def test_several_people_skip_the_frame(shared_dir, tmp_path):
    keypoints = edn_sample(shared_dir) / "train" / "keypoints"
    pose = read_openpose_file(keypoints / "frame020001_pose.yml")
    write_json(tmp_path / "a_keypoints.json", pose, pose)
    write_json(tmp_path / "b_keypoints.json")
    write_json(tmp_path / "c_keypoints.json", pose)
    # a two-person yml, as OpenCV writes a (2, 23, 3) matrix
    storage = cv2.FileStorage(str(tmp_path / "d_pose.yml"), cv2.FILE_STORAGE_WRITE)
    storage.write("pose_0", np.stack([pose.body, pose.body]))
    storage.release()
    folder = read_openpose_folder(tmp_path)
    assert list(folder.frames) == ["c"]
    assert folder.skipped["a"].startswith("2 people detected")
    assert folder.skipped["d"].startswith("2 people detected")
    assert folder.skipped["b"].startswith("no person detected")
    assert read_openpose_file(tmp_path / "a_keypoints.json") is None
    assert "official code skips" in skip_reason(tmp_path / "a_keypoints.json")


@pytest.mark.parametrize("name, text, expected", [
    ("x_pose.yml", "%YAML:1.0\npose_0: !!opencv-nd-matrix\n   sizes: [ 1, 2, 3 ]\n   dt: f\n"
     "   data: [ 1., 2., 3.,\n       4., oops, 6. ]\n", r"x_pose.yml: line 5: pose_0.data: 'oops' is not"),
    ("x_pose.yml", "%YAML:1.0\npose_0: !!opencv-nd-matrix\n   sizes: [ 1, 23, 3 ]\n   dt: f\n"
     "   data: [ 1., 2., 3. ]\n", r"x_pose.yml: line 5: pose_0.data: 3 values, expected 69"),
    ("x_pose.yml", "not yaml\n", r"x_pose.yml: line 1: expected the OpenCV header"),
    ("x_keypoints.json", "{\"people\": [", r"x_keypoints.json: not valid JSON"),
    ("x_keypoints.json", "{\"people\": [{\"pose_keypoints_2d\": [1, \"a\"]}]}",
     r"x_keypoints.json: people\[0\].pose_keypoints_2d: expected a list of numbers"),
    ("x_keypoints.json", "{\"people\": [{\"pose_keypoints_2d\": " + str([1.0] * 69) + ", \"face_keypoints_2d\": [1, 2]}]}",
     r"x_keypoints.json: face: 2 values, expected 210"),
])
def test_malformed_files_are_one_line_errors(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    with pytest.raises(AnimbenchError, match=expected) as info:
        read_openpose_folder(tmp_path)
    assert "\n" not in str(info.value)


def test_folder_without_keypoints_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(AnimbenchError, match="no <name>_pose.yml"):
        read_openpose_folder(tmp_path)
    with pytest.raises(AnimbenchError, match="not a folder"):
        read_openpose_folder(tmp_path / "missing")
