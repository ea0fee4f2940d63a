"""`animbench prep ... --poses`: the keypoints land in the stored frame's pixels (the frame's crop / pad / resize
applied), from the synthetic ground truth or from OpenPose folders; skipped and mismatched frames are recorded."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from animbench.cli import main as cli_main
from plumbing.errors import AnimbenchError
from prep.config import PrepConfig
from prep.pipeline import run_prep
from prep.recipes import Clip, folder
from prep.stages import crop_pad_resize, stored_affine
from prep.store import FrameStore, verify_store
from prep.synth import make_synthetic
from tests.prep.prep_helpers import ray_session  # noqa: F401 - the session fixture


@pytest.mark.parametrize("bbox, pad, size, border", [
    ((10, 5, 90, 60), False, 48, None),  # non-square crop resized to a square: two scales
    ((10, 5, 90, 60), True, 48, None),  # padded to a square first
    ((-20, -10, 60, 50), False, 32, None),  # a box leaving the frame, clamped
    ((-20, -10, 60, 50), False, 32, "pad-constant"),  # ... or padded
    (None, False, 0, None),  # full frame, size kept
])
def test_the_point_transform_follows_the_pixels(bbox, pad, size, border):
    """A small blob drawn in the source frame ends where stored_affine puts its centre (area-weighted centroid
    in the stored frame; well inside 0.5 px)."""
    h, w = 70, 100
    clip = Clip(video_id="v", split="train", bbox=bbox)
    config = PrepConfig("folder", size=size, pad=pad)
    sx, sy, dx, dy = stored_affine(w, h, clip, config, border)
    for x, y in [(35.0, 30.0), (50.5, 22.25), (20.0, 40.0)]:
        yy, xx = np.mgrid[0:h, 0:w]
        blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0**2))
        frame = np.repeat((blob * 250).astype(np.float32)[..., None], 3, 2)
        out, err = crop_pad_resize(frame, clip, config, border)
        assert err is None
        mass = out[..., 0].astype(np.float64)
        oy, ox = np.mgrid[0:out.shape[0], 0:out.shape[1]]
        cx, cy = (mass * ox).sum() / mass.sum(), (mass * oy).sum() / mass.sum()
        assert abs(cx - (x * sx + dx)) < 0.15 and abs(cy - (y * sy + dy)) < 0.15, (cx, cy, x * sx + dx, y * sy + dy)


@pytest.fixture(scope="module")
def bodies(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bodies") / "synth"
    make_synthetic(out, kind="bodies", num_videos=2, num_frames=6, width=96, height=64, seed=5)
    return out


def test_synthetic_ground_truth_after_crop_and_resize(bodies, tmp_path, ray_session):  # noqa: F811
    out = tmp_path / "store"
    code = cli_main(["prep", "synthetic", "--src", str(bodies), "--out", str(out), "--workers", "1", "--size", "40",
                     "--poses", "synthetic", "--no-progress"])
    assert code == 0
    store = FrameStore(out)
    info = store.pose_info
    assert info["body_format"] == "COCO_18" and info["source"] == "synthetic" and verify_store(out) == []
    meta = json.loads((bodies / "synth.json").read_text())
    for video in meta["videos"]:
        [vid] = [v for v in store.videos() if video["video_id"] in v]
        truth = np.load(bodies / video["keypoints"])[video["start"]:video["end"]]
        left, top, right, bot = video["bbox"]
        # by hand: pixel centres at integers, the crop resized to 40x40
        ex = (truth[..., 0] - left + 0.5) * 40 / (right - left) - 0.5
        ey = (truth[..., 1] - top + 0.5) * 40 / (bot - top) - 0.5
        inside = (truth[..., 0] >= -0.5) & (truth[..., 0] < 95.5) & (truth[..., 1] >= -0.5) & (truth[..., 1] < 63.5)
        poses = store.poses(vid)
        assert sorted(poses) == list(range(len(truth)))
        for k, pose in poses.items():
            seen = pose.body[:, 2] > 0
            np.testing.assert_array_equal(seen, inside[k])
            assert np.abs(pose.body[seen, 0] - ex[k][seen]).max() < 0.5
            assert np.abs(pose.body[seen, 1] - ey[k][seen]).max() < 0.5
            assert not pose.face.any() and not pose.hand_left.any()
    # --resume of the finished store rebuilds its work state, poses included: the same store comes out
    before = store.manifest
    assert cli_main(["prep", "synthetic", "--src", str(bodies), "--out", str(out), "--workers", "1", "--size", "40",
                     "--poses", "synthetic", "--no-progress", "--resume"]) == 0
    after = FrameStore(out).manifest
    assert after["content_hash"] == before["content_hash"] and after["poses"] == before["poses"]


def _json_frame(path: Path, people: list[np.ndarray]) -> None:
    path.write_text(json.dumps({"version": 1.3, "people": [
        {"pose_keypoints_2d": p.reshape(-1).tolist(), "face_keypoints_2d": [], "hand_left_keypoints_2d": [],
         "hand_right_keypoints_2d": []} for p in people]}))


def _footage(root: Path, names: list[str], frames: int) -> None:
    """Frame folders (48x32 png) under root/train/<name>/."""
    for n, name in enumerate(names):
        d = root / "train" / name
        d.mkdir(parents=True)
        for t in range(frames):
            img = np.full((32, 48, 3), 40 * n + 5 * t, np.uint8)
            cv2.imwrite(str(d / f"{t:04d}.png"), img)


def _body(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = np.concatenate([rng.uniform(0, 47, (25, 1)), rng.uniform(0, 31, (25, 1)), rng.uniform(0.2, 1, (25, 1))], 1)
    pts[3] = 0  # an undetected joint
    return pts.astype(np.float32)


def test_openpose_json_folders_fill_the_table_and_record_skipped_frames(tmp_path, ray_session):  # noqa: F811
    src, poses = tmp_path / "footage", tmp_path / "openpose"
    _footage(src, ["clipA", "clipB"], 4)
    bodies = {}
    for name in ("clipA", "clipB"):
        (poses / name).mkdir(parents=True)
        for t in range(4):
            bodies[name, t] = _body(10 * len(name) + t + (name == "clipB") * 100)
            people = [bodies[name, t]] if (name, t) != ("clipA", 2) else [bodies[name, t], _body(7)]
            _json_frame(poses / name / f"frame_{t:03d}_keypoints.json", people)  # underscores in the name
    config = PrepConfig("folder", size=32, poses=str(poses))
    summary = run_prep(folder.plan(src), tmp_path / "store", config, workers=1, progress=False)
    assert summary.failures == []
    store = FrameStore(tmp_path / "store")
    info = store.pose_info
    assert info["body_format"] == "BODY_25" and info["source"] == f"openpose:{poses.resolve()}"
    assert list(info["skipped"]) == ["clipA"] and list(info["skipped"]["clipA"]) == ["2"]
    assert "people" in info["skipped"]["clipA"]["2"]
    a = store.poses("clipA")
    assert sorted(a) == [0, 1, 3] and sorted(store.poses("clipB")) == [0, 1, 2, 3]
    # 48x32 frames resized to 32x32: x scaled by 2/3 (pixel centres at integers), y unchanged
    raw = bodies["clipA", 3]
    seen = raw[:, 2] > 0
    np.testing.assert_allclose(a[3].body[seen, 0], (raw[seen, 0] + 0.5) * 32 / 48 - 0.5, atol=1e-4)
    np.testing.assert_allclose(a[3].body[seen, 1], raw[seen, 1], atol=1e-4)
    np.testing.assert_array_equal(a[3].body[~seen], 0)


def test_openpose_folder_errors(tmp_path, ray_session, capsys):  # noqa: F811
    src, poses = tmp_path / "footage", tmp_path / "openpose"
    _footage(src, ["clipA", "clipB"], 4)
    for name, count in (("clipA", 4), ("clipB", 3)):  # clipB misses a file
        (poses / name).mkdir(parents=True)
        for t in range(count):
            _json_frame(poses / name / f"f{t}_keypoints.json", [_body(t)])
    summary = run_prep(folder.plan(src), tmp_path / "store", PrepConfig("folder", poses=str(poses)), workers=1,
                       progress=False)
    [failure] = summary.failures
    assert (failure["video_id"], failure["stage"], failure["error"]) == ("clipB", "poses", "PoseCountMismatch")
    assert "has 3 pose files, the video has 4 frames" in failure["message"]
    store = FrameStore(tmp_path / "store")
    assert store.videos() == ["clipA"] and len(store.poses("clipA")) == 4 and verify_store(tmp_path / "store") == []
    # a video without a pose folder: one line before any work, exit 2
    (poses / "clipB").rename(tmp_path / "elsewhere")
    code = cli_main(["prep", "folder", "--src", str(src), "--out", str(tmp_path / "s2"), "--poses", str(poses),
                     "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "no pose folder for video 'clipB'" in err
    assert err.count(str(poses / "clipB")) == 1  # the id and the source's stem are one name: said once
    with pytest.raises(AnimbenchError, match="nor one of synthetic, rtpose, dwpose"):
        run_prep(folder.plan(src), tmp_path / "s3", PrepConfig("folder", poses=str(tmp_path / "nope")),
                 progress=False)


def test_synthetic_poses_of_a_faces_set_are_refused_before_any_work(tmp_path, capsys):
    faces = tmp_path / "faces"
    make_synthetic(faces, kind="faces", num_videos=1, num_frames=3, width=64, height=64, seed=1)
    out = tmp_path / "store"
    assert cli_main(["prep", "synthetic", "--src", str(faces), "--out", str(out), "--poses", "synthetic",
                     "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "expected (frames, 18, 2)" in err and "synth --kind bodies" in err
    assert not out.exists()
