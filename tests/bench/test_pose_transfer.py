"""EDN's evaluation (pose-transfer protocol): crop metrics on hand-made arrays, pose distance and missed
detections on hand-made keypoints, and the protocol end to end on a tiny pose2img model and store."""

from __future__ import annotations

from functools import partialmethod
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.metrics import structural_similarity

from animbench.cli import main
from bench import protocols
from bench import results as R
from bench.metrics import get_metric, list_metrics, metric_spec
from bench.metrics.crops import MIN_CROP, NO_BOX, LPIPSBody, body_box, body_boxes, crop_scores
from bench.metrics.pixel import ssim
from bench.metrics.pose_distance import (
    MissedDetectionsBody,
    PoseDistanceBody,
    body_as_coco18,
    detected_groups,
    pose_distance_from_keypoints,
)
from bench.pose_transfer import target_geometry
from bench.runner import MethodSpec, run_bench
from methods.infer import quantise
from methods.infer_pose import store_pose_frames
from methods.registry import load_model
from plumbing.errors import AnimbenchError
from prep.poses.detectors import make_pose_detector
from prep.poses.format import PoseFrame
from prep.poses.render import letterbox
from prep.store import FrameStore, FrameStoreWriter
from prep.synth_body import BodySubject, sample_body_look, sample_body_motion
from prep.synth_draw import background
from tests.bench import test_backends, test_lpips
from tests.prep.poses.test_detectors import dw_model  # noqa: F401 - the tiny DWPose ONNX fixture

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
    boxes = np.array([[10, 74, 20, 84], NO_BOX, [50, 114, 118, 182]])  # the third is clipped to [50:96, 118:128]
    scores = get_metric("ssim_face")(pred, gt, face_boxes=boxes)
    assert scores.skipped.tolist() == [False, True, True]  # clipped to 46x10: under the 11 px window, skipped
    assert scores.n_valid == 1
    assert scores.values[0] == pytest.approx(_skimage_ssim(pred[0, 10:74, 20:84], gt[0, 10:74, 20:84]), abs=1e-12)
    small = get_metric("ssim_face")(pred, gt, face_boxes=np.array([[0, 16, 0, 16]] * 3))  # a tiny config's box
    assert small.n_valid == 3 and small.values[1] == pytest.approx(_skimage_ssim(pred[1, :16, :16], gt[1, :16, :16]))
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


# --- the protocol end to end: a tiny pose2img model on a tiny synthetic bodies store with poses ----------------
REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "pose2img-tiny.yaml"
SIDE, FRAMES = 64, 5


def _synthetic_pose(kp: np.ndarray) -> PoseFrame:
    """The synthetic set's 18 OpenPose-COCO joints (frame pixels) as a pose; joints off the frame not given."""
    inside = ((kp >= -0.5) & (kp < SIDE - 0.5)).all(axis=1)
    body = np.concatenate([kp, inside[:, None]], axis=1).astype(np.float32)
    body[~inside] = 0
    zeros = np.zeros
    return PoseFrame(body, zeros((70, 3), np.float32), zeros((21, 3), np.float32), zeros((21, 3), np.float32))


@pytest.fixture(scope="module")
def body_store(tmp_path_factory) -> FrameStore:
    """Three synthetic bodies (one train, two test videos) with their ground-truth poses; frame 2 of body1 has
    no pose."""
    root = tmp_path_factory.mktemp("bodies") / "store"
    rng = np.random.default_rng(0)
    with FrameStoreWriter(root, {"recipe": "tests.pose_transfer"}, poses_source="synthetic") as writer:
        for v, split in enumerate(["train", "test", "test"]):
            subject = BodySubject(sample_body_look(rng), sample_body_motion(rng, SIDE, SIDE, FRAMES / 25), SIDE, SIDE,
                                  25.0, background(rng, SIDE, SIDE))
            geometries = [subject.geometry(t) for t in range(FRAMES)]
            poses = {t: _synthetic_pose(g["kp"]) for t, g in enumerate(geometries) if (v, t) != (1, 2)}
            writer.add_video(f"body{v}", np.stack([subject.render(g) for g in geometries]), poses=poses, split=split,
                             fps=25.0)
    return FrameStore(root)


@pytest.fixture(scope="module")
def checkpoint(body_store, tmp_path_factory) -> Path:
    """Two training steps of the tiny global stage on the store: a real run's checkpoint."""
    from methods.train import train

    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    with torch_threads(1):
        summary = train("pose2img", body_store, TINY, run, max_steps=2, batch_size=2, progress=False, device="cpu",
                        amp="off")
    assert summary["status"] == "complete"
    return run / "last-checkpoint.pth.tar"


class torch_threads:  # noqa: N801 - a context manager used like a function
    def __init__(self, n: int) -> None:
        self.n, self.before = n, torch.get_num_threads()

    def __enter__(self) -> None:
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)


METRICS = ["ssim", "ssim_body", "ssim_face", "lpips_body", "pose_distance_body", "missed_detections_body"]


@pytest.fixture(scope="module")
def pose_runs(body_store, checkpoint, tmp_path_factory, weights_root, rtpose_file, random_alexnet):
    """The same bench twice (pose-transfer, one worker), with test-made rtpose and AlexNet weights."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ANIMBENCH_WEIGHTS", str(weights_root / "animbench"))
    mp.setenv("TORCH_HOME", str(weights_root / "torch"))
    test_lpips._install(random_alexnet, weights_root / "torch" / "hub" / "checkpoints")
    mp.setattr(LPIPSBody, "__init__", partialmethod(LPIPSBody.__init__, verify_hash=False))
    for cls in (PoseDistanceBody, MissedDetectionsBody):  # rtpose at 368 px takes seconds a frame on one CPU
        mp.setattr(cls, "__init__", partialmethod(cls.__init__, boxsize=32))
    spec = MethodSpec("pose2img", str(checkpoint), str(TINY))
    runs = []
    try:
        with torch_threads(1):
            for name in ("a", "b"):
                out = tmp_path_factory.mktemp("bench") / name
                run_bench([spec], body_store.root, "pose-transfer", METRICS, out, workers=1, n_boot=50,
                          progress=False, device="cpu")
                runs.append(R.Results(out))
    finally:
        mp.undo()
    return runs


def test_pose_transfer_scores_every_posed_frame_with_provenance(body_store, pose_runs):
    res = pose_runs[0]
    f = res.frames()
    assert set(f["video_id"]) == {"body1", "body2"}  # the test split only
    for metric in METRICS:
        rows = f[f["metric"] == metric]
        assert rows[rows["video_id"] == "body1"]["frame_index"].tolist() == [0, 1, 3, 4]  # frame 2 has no pose
        assert rows[rows["video_id"] == "body2"]["frame_index"].tolist() == list(range(FRAMES))
    assert set(f["source_frame"]) == {protocols.NO_SOURCE_FRAME}
    for table in (f, res.videos(), res.aggregates()):
        for col in R.PROVENANCE_COLUMNS:
            assert table[col].notna().all(), col
            assert col == "config_path" or (table[col].astype(str) != "").all(), col
        assert set(table["protocol"]) == {"pose-transfer"} and set(table["store_fingerprint"]) == {
            body_store.fingerprint}
    valid = f[~f["skipped"]]
    ssim_body = valid[valid["metric"] == "ssim_body"]["value"]
    assert len(ssim_body) == 9 and ssim_body.between(-1, 1).all()
    assert set(f[f["metric"] == "pose_distance_body"]["metric_weights_sha256"]) != {"none"}
    assert run_describe(res, "pose_distance_body")["settings"]["detector"].startswith("rtpose (pose_model.pth)")
    run = res.manifest["run"]
    assert run["protocol"]["name"] == "pose-transfer" and "pose_target" in run["protocol"]["keypoint_mapping"]
    assert "input" in run["metrics"]["ssim_body"]["describe"] and "issue #3" in run["metrics"]["ssim_body"][
        "describe"]["protocol_notes"]
    assert res.sample_frames("pose2img", "body1") and not res.sample_frames("_source", "body1")


def run_describe(res: R.Results, metric: str) -> dict:
    return res.manifest["run"]["metrics"][metric]["describe"]


def test_the_same_model_on_the_same_store_gives_the_same_numbers(pose_runs):
    a, b = (r.frames() for r in pose_runs)
    pd.testing.assert_series_equal(a["value"], b["value"])
    pd.testing.assert_frame_equal(pose_runs[0].aggregates(), pose_runs[1].aggregates())


def test_bench_numbers_equal_the_generation_path_scored_directly(body_store, checkpoint, pose_runs):
    """One model, one number: store_pose_frames + quantise + the ssim function give the bench's rows."""
    model, _ = load_model("pose2img", checkpoint=checkpoint, config=TINY)
    with torch_threads(1):
        records = list(store_pose_frames(model, body_store, "body2"))
    pred = quantise(np.stack([r["prediction"] for r in records]))
    target = np.stack([np.rint(r["target"] * 255.0) for r in records]).astype(np.uint8)
    f = pose_runs[0].frames()
    rows = f[(f["video_id"] == "body2") & (f["metric"] == "ssim")]["value"].to_numpy()
    np.testing.assert_array_equal(rows, ssim(pred, target))
    assert pred.shape[1:3] == (64, 64)


def test_keypoints_map_to_prediction_pixels_through_the_methods_geometry(checkpoint):
    model, _ = load_model("pose2img", checkpoint=checkpoint, config=TINY)
    # a 96x64 frame is letterboxed into the 128x128 canvas (scale 4/3, centred vertically), then halved to 64x64
    (kx, bx), (ky, by) = target_geometry(model.pose_target, (64, 96))
    scale, dx, dy = letterbox((96, 64), (128, 128))
    k = 64 / 128  # canvas -> label (= generator) size; pixel centres: x' = (x_canvas + 0.5) * k - 0.5
    assert kx == pytest.approx(scale * k, abs=2e-3) and bx == pytest.approx((dx + 0.5) * k - 0.5, abs=0.1)
    assert ky == pytest.approx(scale * k, abs=2e-3) and by == pytest.approx((dy + 0.5) * k - 0.5, abs=0.1)


def test_method_and_protocol_must_match_and_the_store_must_have_poses(body_store, checkpoint, tmp_path):
    pose_method = MethodSpec("pose2img", str(checkpoint), str(TINY))
    with pytest.raises(AnimbenchError, match="method pose2img is driven by poses and cannot run under the "
                                             "reconstruction protocol"):
        run_bench([pose_method], body_store.root, "reconstruction", ["ssim"], tmp_path / "a", workers=1)
    with pytest.raises(AnimbenchError, match="method copy-source is driven by video and cannot run under the "
                                             "pose-transfer protocol"):
        run_bench([MethodSpec("copy-source")], body_store.root, "pose-transfer", ["ssim"], tmp_path / "b", workers=1)
    with pytest.raises(AnimbenchError, match="ssim_body: need the input poses"):
        run_bench([MethodSpec("copy-source")], body_store.root, "reconstruction", ["ssim_body"], tmp_path / "c",
                  workers=1)
    bare = tmp_path / "bare"
    with FrameStoreWriter(bare, {"recipe": "test"}) as w:
        w.add_video("v0", body_store.read("body1"), split="test")
    with pytest.raises(AnimbenchError, match="has no poses"):
        run_bench([pose_method], bare, "pose-transfer", ["ssim"], tmp_path / "d", workers=1)
    assert not any((tmp_path / n).exists() for n in "abcd")
    code = main(["bench", "--methods", f"pose2img={checkpoint}@{TINY}", "--store", str(body_store.root),
                 "--protocol", "animation", "--metrics", "fid", "--out", str(tmp_path / "e"), "--workers", "1"])
    assert code == 2


def test_whole_body_pose_distance_per_group_with_dwpose(dw_model, monkeypatch):  # noqa: F811
    """DWPose (a tiny ONNX model with the real one's inputs and outputs: fixed points, two below its 0.3
    threshold) on the generated frames: every given point 5 px from its detection; undetected points missed."""
    monkeypatch.setenv("ANIMBENCH_WEIGHTS", str(dw_model[0].parent))
    frames = np.zeros((2, 64, 48, 3), np.uint8)
    detected = make_pose_detector("dwpose").pose(frames[0])
    given = {}
    for group in ("body", "face", "hand_left", "hand_right"):
        pts = np.array(getattr(detected, group), np.float64)
        pts[pts[:, 2] == 0] = (10.0, 10.0, 0.0)  # undetected: given anyway, so missed
        pts[:, :2] += (3.0, 4.0)
        pts[:, 2] = 1.0
        given[group] = np.repeat(pts[None], 2, axis=0)
    found = detected_groups([detected])
    for name, parts in (("pose_distance_dwpose_body", ["body"]), ("pose_distance_dwpose_face", ["face"]),
                        ("pose_distance_dwpose_hands", ["hand_left", "hand_right"]),
                        ("pose_distance_dwpose", ["body", "face", "hand_left", "hand_right"])):
        scores = get_metric(name)(frames, frames, keypoints=given)
        np.testing.assert_allclose(scores.values, 5.0)
        missed = sum(int((found[g][0] == -1).all(-1).sum()) for g in parts)
        assert scores.fields["missed"].tolist() == [missed, missed], name
    assert found["body"][0, 6].tolist() == [-1, -1]  # COCO L-elbow: the tiny model scores it below 0.3
    total = get_metric("missed_detections_dwpose")(frames, frames, keypoints=given)
    # the left elbow, face point 37 and the right pupil (scored by the lowest of the right eye contour, 37 included)
    assert total.values.tolist() == [3.0, 3.0] and total.fields["given"].tolist() == [18 + 70 + 42] * 2
    d = get_metric("pose_distance_dwpose_face").describe()
    assert d["settings"]["group"] == "face" and d["weights"][0]["name"] == "dw-ll_ucoco_384.onnx"
