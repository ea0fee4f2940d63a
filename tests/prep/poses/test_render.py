"""EDN's label maps and face boxes: the shipped edn-sample maps, boxes and training images reproduced."""

import numpy as np
import pytest
from PIL import Image

from plumbing.errors import AnimbenchError
from prep.poses.format import PoseFrame, empty_pose
from prep.poses.openpose import read_openpose_file, read_openpose_folder
from prep.poses.render import face_box, fit_frame, letterbox, render_canvas, render_label
from tests.prep.poses.helpers import edn_sample, write_json

FRAMES = ("frame020001", "frame020005", "frame020009")


def _png(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_sample_label_maps_and_face_boxes(shared_dir):
    train = edn_sample(shared_dir) / "train"
    poses = read_openpose_folder(train / "keypoints").frames
    diffs = []
    for name in FRAMES:
        label = render_label(poses[name])
        assert label.shape == (512, 1024, 3) and label.dtype == np.uint8
        diffs.append(np.abs(label - _png(train / "train_label" / f"{name}.png")))
        box = face_box(poses[name])
        assert " ".join(map(str, box)) == (train / "train_facetexts128" / f"{name}.txt").read_text().strip()
    diff = np.stack(diffs)
    assert diff.mean() < 0.5 / 255  # the bar
    # measured: 2.5e-5 mean. frame020005/009 are equal pixel for pixel; frame020001 has one hand limb whose
    # angle is -44.99999 degrees in the file's doubles and -45.00001 in float32 (int() truncates differently)
    assert diff.mean() < 1e-4 and (diff[1:] == 0).all()


def test_sample_training_images(shared_dir):
    train = edn_sample(shared_dir) / "train"
    for name in FRAMES:
        frame = np.asarray(Image.open(train / "original_frames" / f"{name}.jpg").convert("RGB"))
        image = fit_frame(frame)
        assert image.shape == (512, 1024, 3)
        assert np.abs(image - _png(train / "train_img" / f"{name}.png")).max() <= 1  # jpeg decoder rounding


def test_json_and_yml_render_the_same(shared_dir, tmp_path):
    keypoints = edn_sample(shared_dir) / "train" / "keypoints"
    from_yml = read_openpose_file(keypoints / "frame020005_pose.yml")
    from_json = read_openpose_file(write_json(tmp_path / "frame020005_keypoints.json", from_yml))
    np.testing.assert_array_equal(render_label(from_json), render_label(from_yml))
    assert face_box(from_json) == face_box(from_yml)


def test_letterbox_as_scale_resize():
    assert letterbox((1920, 1080), (1920, 1080)) is None
    assert letterbox((960, 540), (1920, 1080)) == (2.0, 0.0, 0.0)
    # portrait 1080x1920 (W x H): fit the height (1080/1920), centre horizontally
    assert letterbox((1080, 1920), (1920, 1080)) == (0.5625, (1920 - 0.5625 * 1080) / 2, 0.0)
    # wide 2000x500: fit the width (0.96), centre vertically
    assert letterbox((2000, 500), (1920, 1080)) == (0.96, 0.0, (1080 - 0.96 * 500) / 2)


def test_half_size_frame_renders_as_full_size(shared_dir):
    pose = read_openpose_file(edn_sample(shared_dir) / "train" / "keypoints" / "frame020009_pose.yml")
    half = pose.transformed(0.5, 0.0, 0.0)  # exact in binary: x2 on the canvas gives the same points back
    np.testing.assert_array_equal(render_label(half, frame_size=(960, 540)), render_label(pose))
    assert face_box(half, frame_size=(960, 540)) == face_box(pose)


def test_face_box_edges_and_missing_head():
    pose = empty_pose("BODY_23")
    body = pose.body.copy()
    body[18] = (10, 10, 0.9)  # nose in the top-left corner
    # x: [0, int(80*1024/1920)=42] -> +43 -> [-43, 85] -> clamped [0, 128]; y likewise
    assert face_box(PoseFrame(body, pose.face, pose.hand_left, pose.hand_right)) == (0, 128, 0, 128)
    body[18] = (1900, 1070, 0.9)  # bottom-right: clamped to the far edges
    assert face_box(PoseFrame(body, pose.face, pose.hand_left, pose.hand_right)) == (384, 512, 896, 1024)
    body[18] = (0, 0, 0)
    body[20] = (900, 300, 0.5)  # only the right ear: its position is the centre
    body_r = PoseFrame(body, pose.face, pose.hand_left, pose.hand_right)
    # x: [int(830*0.5333)=442, int(970*0.5333)=517] (75) -> maxx 517+26=543, minx 415
    # y: [int(230*0.4741)=109, int(370*0.4741)=175] (66) -> maxy 175+31=206, miny 78
    assert face_box(body_r) == (78, 206, 415, 543)
    assert face_box(pose) is None
    with pytest.raises(AnimbenchError, match="face box 128 px does not fit the 64x32 label map"):
        face_box(pose, out_size=(64, 32), canvas_size=(128, 64))
    assert face_box(body_r, frame_size=(128, 64), out_size=(64, 32), canvas_size=(128, 64), box=16) is not None


@pytest.mark.parametrize("body_format, joint, bgr", [
    ("COCO_18", 0, (255, 0, 0)), ("BODY_23", 13, (25, 25, 128)), ("BODY_25", 0, (255, 0, 85)),
])
def test_each_format_has_its_palette(body_format, joint, bgr):
    pose = empty_pose(body_format)
    body = pose.body.copy()
    body[joint] = (100.7, 50.2, 0.9)
    canvas = render_canvas(PoseFrame(body, pose.face, pose.hand_left, pose.hand_right))
    assert tuple(canvas[50, 100]) == bgr and tuple(canvas[50, 109]) == (255, 255, 255)  # radius 8


def test_face_needs_mean_confidence_and_hands_the_strict_threshold():
    pose = empty_pose("BODY_23")
    face = pose.face.copy()
    face[:, :2] = (500, 400)
    face[:, 2] = 0.2  # mean exactly 0.2: drawn (the rule is mean < 0.2 -> skipped)
    hand = pose.hand_left.copy()
    hand[:, :2] = (800, 600)
    hand[:, 2] = 0.05  # not > 0.05: nothing drawn
    canvas = render_canvas(PoseFrame(pose.body, face, hand, pose.hand_right))
    assert tuple(canvas[400, 500]) == (0, 0, 0) and (canvas[600, 800] == 255).all()
    face[:, 2] = 0.19
    assert (render_canvas(PoseFrame(pose.body, face, hand, pose.hand_right)) == 255).all()
