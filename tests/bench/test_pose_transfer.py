"""EDN's evaluation (pose-transfer protocol): crop metrics on hand-made arrays, pose distance and missed
detections on hand-made keypoints, and the protocol end to end on a tiny pose2img model and store."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from bench.metrics import get_metric, list_metrics, metric_spec
from bench.metrics.crops import MIN_CROP, NO_BOX, body_box, body_boxes, crop_scores
from bench.metrics.pose_distance import body_as_coco18, pose_distance_from_keypoints
from plumbing.errors import AnimbenchError
from tests.bench import test_backends, test_lpips

weights_root, weights_env, rtpose_file = test_backends.weights_root, test_backends.weights_env, \
    test_backends.rtpose_file
random_alexnet, torch_home = test_lpips.random_alexnet, test_lpips.torch_home
pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W = 96, 128


def _groups(body: np.ndarray, face: np.ndarray | None = None, hands: np.ndarray | None = None) -> dict:
    """One frame's keypoint groups as the protocol passes them: {group: (1, J, 3)}."""
    n_face = np.zeros((70, 3)) if face is None else face
    hand = np.zeros((21, 3)) if hands is None else hands
    return {"body": body[None], "face": n_face[None], "hand_left": hand[None], "hand_right": np.zeros((1, 21, 3))}


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(a / 255.0, b / 255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0, channel_axis=-1)


def test_body_box_is_the_confident_points_box_with_the_stated_margin():
    body = np.zeros((25, 3))
    body[0], body[1] = (20, 10, 0.9), (80, 70, 0.5)
    body[2] = (127, 95, 0.04)  # not confident (<= 0.05): ignored
    hands = np.zeros((21, 3))
    hands[3] = (30, 75, 0.3)  # hands count: the box reaches y = 75
    # x 20..80, y 10..75; margin 0.1 * 65 = 6.5 -> [13.5, 86.5] x [3.5, 81.5]; pixels touched, end exclusive
    assert body_box(np.concatenate([body, hands]), H, W) == (3, 83, 13, 88)
    assert body_boxes(_groups(body, hands=hands), H, W).tolist() == [[3, 83, 13, 88]]
    # clipped to the frame
    body[1] = (126, 94, 1.0)
    assert body_box(body, H, W) == (0, 96, 9, 128)
    # one point: widened to MIN_CROP about it, shifted inside the frame
    one = np.zeros((18, 3))
    one[5] = (2, 50, 1.0)
    top, bottom, left, right = body_box(one, H, W)
    assert (bottom - top, right - left) == (MIN_CROP, MIN_CROP) and left == 0 and top <= 50 < bottom
    assert body_box(np.zeros((18, 3)), H, W) is None  # no confident point: no box
    far = np.zeros((18, 3))
    far[0] = (500, 500, 1.0)
    assert body_box(far, H, W) is None  # outside the frame


def test_ssim_body_is_one_on_identical_crops_and_skimage_on_a_perturbed_crop():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (1, H, W, 3), dtype=np.uint8)
    body = np.zeros((23, 3))
    body[0], body[1] = (30, 20, 1.0), (90, 70, 1.0)
    kp = _groups(body)
    (top, bottom, left, right), = body_boxes(kp, H, W).tolist()
    outside = gt.copy()
    outside[:, :top] = 255 - outside[:, :top]  # changes outside the box do not count
    metric = get_metric("ssim_body")
    same = metric(outside, gt, keypoints=kp)
    assert same.values.tolist() == [1.0] and same.fields["box"].tolist() == [[top, bottom, left, right]]
    pred = gt.copy()
    pred[0, 40:60, 50:70] = np.clip(pred[0, 40:60, 50:70].astype(int) + 60, 0, 255).astype(np.uint8)
    got = metric(pred, gt, keypoints=kp).values[0]
    expect = _skimage_ssim(pred[0, top:bottom, left:right], gt[0, top:bottom, left:right])
    assert got < 0.99 and got == pytest.approx(expect, abs=1e-12)


def test_ssim_face_uses_the_given_box_and_skips_frames_without_one():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-40, 40, gt.shape), 0, 255).astype(np.uint8)
    boxes = np.array([[10, 74, 20, 84], NO_BOX, [50, 114, 100, 164]])  # the third is clipped to [50:96, 100:128]
    scores = get_metric("ssim_face")(pred, gt, face_boxes=boxes)
    assert scores.skipped.tolist() == [False, True, True]  # clipped to 46x28: under MIN_CROP, skipped
    assert scores.n_valid == 1
    assert scores.values[0] == pytest.approx(_skimage_ssim(pred[0, 10:74, 20:84], gt[0, 10:74, 20:84]), abs=1e-12)
    with pytest.raises(AnimbenchError, match="2 boxes for 3 frames"):
        crop_scores(pred, gt, boxes[:2], lambda p, g: 0.0)


def test_lpips_crops_equal_lpips_on_the_cropped_frames(torch_home, random_alexnet):
    test_lpips._install(random_alexnet, torch_home)
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-50, 50, gt.shape), 0, 255).astype(np.uint8)
    full = get_metric("lpips", verify_hash=False)
    boxes = np.array([[8, 72, 16, 80], NO_BOX])
    face = get_metric("lpips_face", verify_hash=False)(pred, gt, face_boxes=boxes)
    assert face.skipped.tolist() == [False, True]
    assert face.values[0] == pytest.approx(full(pred[:1, 8:72, 16:80], gt[:1, 8:72, 16:80]).values[0], rel=1e-6)
    assert get_metric("lpips_face", verify_hash=False)(gt, gt, face_boxes=boxes).values[0] == pytest.approx(0,
                                                                                                          abs=1e-7)
    body = np.zeros((18, 3))
    body[0], body[1] = (30, 20, 1.0), (90, 70, 1.0)
    kp = {g: np.repeat(a, 2, axis=0) for g, a in _groups(body).items()}
    (t, b, lft, r), _ = body_boxes(kp, H, W).tolist()
    lp = get_metric("lpips_body", verify_hash=False)(pred, gt, keypoints=kp)
    np.testing.assert_allclose(lp.values, full(pred[:, t:b, lft:r], gt[:, t:b, lft:r]).values, rtol=1e-6)
    crop = get_metric("lpips_body", verify_hash=False).describe()["settings"]["crop"]
    assert "issue #3" in crop and "this crop rule is ours" in crop  # the paper released no evaluation code


def test_pose_distance_and_missed_detections_on_hand_made_keypoints():
    given = np.zeros((3, 4, 3))
    given[0] = [[10, 10, 1], [20, 20, 1], [30, 30, 0.01], [40, 40, 1]]  # point 2 is not confident: not given
    given[1] = [[10, 10, 1], [20, 20, 1], [0, 0, 0], [0, 0, 0]]
    given[2] = 0  # nothing given
    detected = -np.ones((3, 4, 2))
    detected[0] = [[13, 14], [20, 20], [30, 30], [-1, -1]]  # 5 px, 0 px; point 3 missed
    detected[1, 0] = (10, 10)  # point 1 missed
    out = pose_distance_from_keypoints(given, detected)
    assert out["distance"][:2].tolist() == [2.5, 0.0] and np.isnan(out["distance"][2])
    assert out["skipped"].tolist() == [False, False, True]
    assert out["missed"].tolist() == [1, 1, 0] and out["given"].tolist() == [3, 2, 0]
    assert out["matched"].tolist() == [2, 1, 0]
    with pytest.raises(AnimbenchError, match="do not pair up"):
        pose_distance_from_keypoints(given, detected[:, :3])


def test_input_bodies_map_to_the_detectors_coco18_joints():
    b25 = np.zeros((1, 25, 3))
    b25[0, :, 0] = np.arange(25)  # x = BODY_25 index
    coco = body_as_coco18(b25)[0, :, 0]
    assert coco.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]  # MidHip, feet dropped
    # BODY_23 is EDN's map_25_to_23 of BODY_25: the same physical joints come out
    m23 = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 22, 23, 12, 13, 14, 19, 20, 0, 15, 17, 16, 18]
    assert body_as_coco18(b25[:, m23]).tolist() == body_as_coco18(b25).tolist()
    assert body_as_coco18(np.ones((2, 18, 3))).shape == (2, 18, 3)
    with pytest.raises(AnimbenchError, match="J in"):
        body_as_coco18(np.ones((1, 17, 3)))


def test_pose_distance_metrics_use_rtpose_on_the_generated_frame(weights_env, rtpose_file):
    frames = np.random.default_rng(4).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    metric = get_metric("pose_distance_body", boxsize=32)  # 368 in OpenPose; small keeps CPU tests fast
    detected = metric.backend.keypoints(frames)
    given = np.concatenate([detected, np.ones((2, 18, 1))], axis=2)
    given[detected[..., 0] == -1] = 0
    given[..., :2] += [3.0, 4.0]  # every given joint 5 px from its detection
    given[0, 0] = (5, 5, 1.0) if detected[0, 0, 0] == -1 else given[0, 0]
    kp = {"body": given}
    scores = metric(frames, frames, keypoints=kp)
    expect = pose_distance_from_keypoints(given, detected)
    np.testing.assert_array_equal(scores.values, expect["distance"])
    np.testing.assert_allclose(scores.values[~scores.skipped], 5.0)
    missed = get_metric("missed_detections_body", boxsize=32)(frames, frames, keypoints=kp)
    assert missed.values.tolist() == expect["missed"].astype(float).tolist()
    d = metric.describe()
    assert d["settings"]["groups"] == ["body"] and "whole-body" in d["settings"]["groups_not_reported"]


def test_the_crop_and_pose_metrics_are_registered_with_their_inputs():
    names = {"ssim_body", "lpips_body", "ssim_face", "lpips_face", "pose_distance_body", "missed_detections_body"}
    assert names <= set(list_metrics())
    assert metric_spec("ssim_body").inputs == ("keypoints",) and metric_spec("lpips_face").inputs == ("face_boxes",)
    assert metric_spec("ssim").inputs == ()
