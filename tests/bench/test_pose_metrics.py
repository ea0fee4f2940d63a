"""Keypoint metrics against hand-computed values: AKD (L1 per coordinate in legacy), body AKD over joints in both
frames, MKR, LPD pose error, skipped frames; and pose-evaluation's body-joint decode on hand-made heatmaps."""

from __future__ import annotations

import numpy as np
import pytest

from bench.backends.rtpose import flip_average, joints_from_heatmaps, network_input, upsample_maps
from bench.metrics import get_metric, list_metrics
from bench.metrics.pose import (
    akd_body_from_keypoints,
    akd_from_keypoints,
    fit_scale_shift,
    mkr_from_keypoints,
    pose_error_from_landmarks,
)
from bench.metrics.registry import FrameScores
from plumbing.errors import AnimbenchError
from tests.bench import test_backends

# session fixtures shared with the backend tests: random weights saved under the standard names
weights_root, weights_env = test_backends.weights_root, test_backends.weights_env
pytestmark = pytest.mark.usefixtures("one_torch_thread")
rtpose_file, fan_files = test_backends.rtpose_file, test_backends.fan_files


def test_akd_face_is_l1_per_coordinate_in_legacy_and_euclidean_in_clean():
    gt = np.array([[0.0, 0.0], [10.0, 10.0]])
    gen = np.array([[3.0, 4.0], [10.0, 10.0]])
    values, skipped = akd_from_keypoints([gt], [gen], "legacy")
    assert values.tolist() == [(3 + 4 + 0 + 0) / 4] and skipped.tolist() == [False]
    values, _ = akd_from_keypoints([gt], [gen], "clean")
    assert values.tolist() == [(5 + 0) / 2]


def test_akd_skips_and_counts_frames_without_a_detection():
    gt = np.zeros((68, 2))
    kp_gt = [gt, gt, None, gt]
    kp_gen = [gt + 1, None, gt, gt + [2, 0]]
    values, skipped = akd_from_keypoints(kp_gt, kp_gen, "legacy")
    assert skipped.tolist() == [False, True, True, False]
    np.testing.assert_array_equal(values[[0, 3]], [1.0, 1.0])
    scores = FrameScores(values, skipped)
    assert scores.n_valid == 2 and scores.mean() == 1.0  # mean over the frames that remain, as cmp_kp
    # (N,K,2) arrays with NaN rows are the same input as None entries
    arr = np.stack([gt, gt, np.full((68, 2), np.nan), gt])
    np.testing.assert_array_equal(akd_from_keypoints(arr, kp_gen)[1], skipped)
    with pytest.raises(AnimbenchError, match="variant"):
        akd_from_keypoints(kp_gt, kp_gen, "paper")


def _body(**joints) -> np.ndarray:
    kp = -np.ones((18, 2))
    for j, xy in joints.items():
        kp[int(j[1:])] = xy
    return kp


def test_body_akd_uses_joints_present_in_both_and_mkr_counts_gt_joints_missing():
    gt = np.stack([_body(j0=(10, 10), j1=(20, 20)), _body(j0=(5, 5)), _body(), _body(j3=(1, 1), j4=(2, 2))])
    gen = np.stack([_body(j0=(13, 14), j2=(5, 5)), _body(j1=(5, 5)), _body(j0=(1, 1)), _body(j3=(1, 4), j4=(6, 2))])
    values, skipped = akd_body_from_keypoints(gt, gen, "legacy")
    assert skipped.tolist() == [False, True, True, False]  # frame 1: no common joint; frame 2: no GT joint
    np.testing.assert_allclose(values[[0, 3]], [(3 + 4) / 2, (0 + 3 + 4 + 0) / 4])
    values, _ = akd_body_from_keypoints(gt, gen, "clean")
    np.testing.assert_allclose(values[[0, 3]], [5.0, (3 + 4) / 2])
    mkr, mkr_skipped = mkr_from_keypoints(gt, gen)
    assert mkr_skipped.tolist() == [False, False, True, False]
    np.testing.assert_allclose(mkr[[0, 1, 3]], [1 / 2, 1.0, 0.0])


def test_pose_error_normalises_by_the_gt_inter_ocular_distance():
    gt = np.zeros((68, 2))
    gt[36], gt[45] = (0, 0), (10, 0)
    values, skipped = pose_error_from_landmarks([gt, gt], [gt + [3, 4], None])
    assert skipped.tolist() == [False, True]
    assert values[0] == pytest.approx(5 / 10)
    # LPD's second variant fits scale and shift first: a scaled, shifted copy has no error left
    gen = 2.0 * gt + [7, -3]
    assert pose_error_from_landmarks([gt], [gen], fit=True)[0][0] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(fit_scale_shift(gen, gt), gt, atol=1e-12)
    # a degenerate GT (eyes on one point) is clamped at 1e-2
    flat = np.zeros((68, 2))
    assert pose_error_from_landmarks([flat], [flat + [0, 1e-3]])[0][0] == pytest.approx(0.1)


# --- body-joint decode (pose-evaluation extract_body_pose on rtpose outputs) ------------------------------
def test_decode_last_raster_peak_wins_threshold_and_refinement():
    heat = np.zeros((30, 30, 19))
    heat[5, 7, 0], heat[20, 3, 0] = 0.9, 0.3  # two nose peaks: the lower (later in raster order) wins
    heat[12, 12, 1] = 0.1  # neck: not above thre1 = 0.1
    # L-elbow: the last peak (10,10) moves to the higher non-peak value 2 px up-left inside its 5x5 patch
    heat[10, 10, 6], heat[8, 8, 6], heat[7, 8, 6], heat[6, 8, 6] = 0.5, 0.8, 0.85, 0.9
    heat[0, 29, 17] = 0.4  # L-ear at the corner: borders are handled
    joints = joints_from_heatmaps(heat)
    assert joints[0].tolist() == [3, 20]
    assert joints[1].tolist() == [-1, -1]
    assert joints[6].tolist() == [8, 8]
    assert joints[17].tolist() == [29, 0]
    assert (joints[[2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]] == -1).all()
    # a plateau gives two peaks; the later (3,4) wins, and its 5x5 refinement takes the patch's first maximum
    plateau = np.zeros((9, 9, 19))
    plateau[4, 2:4, 2] = 0.7
    assert joints_from_heatmaps(plateau)[2].tolist() == [2, 4]


def test_flip_average_swaps_left_and_right_joints():
    h, w = 6, 8
    heat = np.zeros((h, w, 19))
    heat[4, 3, 5] = 1.0  # L-shoulder at (3,4)
    flipped = np.zeros((h, w, 19))
    flipped[4, w - 1 - 3, 2] = 1.0  # in the mirrored image the net sees a R-shoulder at (W-1-3, 4)
    avg = flip_average(heat, flipped)
    assert avg[4, 3, 5] == 1.0 and avg[..., 2].max() == 0.0
    flipped[1, 0, 18] = 1.0  # background stays background, mirrored
    assert flip_average(heat, flipped)[1, w - 1, 18] == 0.5


def test_network_input_scales_the_short_side_pads_to_8_and_normalises():
    bgr = np.zeros((50, 77, 3), np.uint8)
    x, real_hw = network_input(bgr, 368)
    assert real_hw == (368, 567) and x.shape == (3, 368, 568)
    assert x.dtype == np.float32 and np.all(x == -0.5)  # 0/256 - 0.5, padding included
    maps = np.random.default_rng(0).random((46, 71, 19)).astype(np.float32)
    assert upsample_maps(maps, real_hw, (50, 77)).shape == (50, 77, 19)


def test_pose_metrics_are_registered():
    assert {"akd_face", "akd_face_dlib", "akd_body", "mkr", "pose_error"} <= set(list_metrics())
    with pytest.raises(AnimbenchError, match="variant"):
        get_metric("akd_face_dlib", variant="paper")


def test_body_metrics_through_the_registry(weights_env, rtpose_file):
    frames = np.random.default_rng(4).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    akd = get_metric("akd_body", variant="clean", boxsize=32)  # 368 in the papers; small keeps CPU tests fast
    joints = akd.backend.keypoints(frames)
    assert (joints != -1).all(-1).any(1).all()  # these weights find joints in both frames
    same = akd(frames[:1], frames[:1])
    assert same.n_valid == 1 and same.values[0] == 0 and same.fields["mkr"][0] == 0
    other = akd(frames[::-1].copy(), frames)
    expect, _ = akd_body_from_keypoints(joints, joints[::-1], "clean")
    np.testing.assert_array_equal(other.values, expect)
    np.testing.assert_array_equal(other.fields["mkr"], mkr_from_keypoints(joints, joints[::-1])[0])
    info = akd.describe()
    assert info["variant"] == "clean" and info["settings"]["boxsize"] == 32


def test_face_metrics_skip_frames_without_a_face(weights_env, fan_files):
    metric = get_metric("akd_face", detector="dlib", verify_hash=False)
    blank = np.full((2, 64, 64, 3), 128, np.uint8)
    scores = metric(blank, blank)
    assert scores.skipped.all() and scores.fields["gt_missing"].all() and scores.fields["gen_missing"].all()
    assert [w["name"] for w in metric.describe()["weights"]] == ["2DFAN4-11f355bf06.pth.tar"]
    with pytest.raises(AnimbenchError, match="does not start with 11f355bf06"):
        get_metric("pose_error", detector="dlib")
