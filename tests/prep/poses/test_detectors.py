"""Pose detector backends: missing weights are one-line errors naming the file and its folder; DWPose's ONNX
loading and SimCC decoding (on a tiny model with the real one's input / output names and shapes); rtpose's
decode with confidences; a detector inside the prep worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from plumbing.errors import AnimbenchError
from prep.config import PrepConfig
from prep.poses.detectors import (
    DW_INPUT,
    WB_TO_BODY25,
    DWPoseDetector,
    RtPoseDetector,
    check_pose_detector,
    make_pose_detector,
    wholebody_to_openpose,
)
from prep.recipes import Clip, Unit
from prep.store import FrameStore, finalize_store
from prep.worker import UnitProcessor


@pytest.mark.parametrize("name, file", [("rtpose", "pose_model.pth"), ("dwpose", "dw-ll_ucoco_384.onnx")])
def test_missing_weights_are_one_line_errors(tmp_path, monkeypatch, name, file):
    monkeypatch.setenv("ANIMBENCH_WEIGHTS", str(tmp_path / "weights"))
    for call in (lambda: check_pose_detector(name), lambda: make_pose_detector(name)):
        with pytest.raises(AnimbenchError) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg and f"missing weight file {file}" in msg and str(tmp_path / "weights") in msg
    with pytest.raises(AnimbenchError, match="expected a folder of OpenPose outputs"):
        check_pose_detector("openpose25")


class _TinySimCC(torch.nn.Module):
    """(1, 3, 384, 288) -> simcc_x (1, 133, 576), simcc_y (1, 133, 768): fixed peaks, the input's mean added."""

    def __init__(self, peaks_x: np.ndarray, peaks_y: np.ndarray, heights: np.ndarray) -> None:
        super().__init__()
        x, y = torch.zeros(133, 576), torch.zeros(133, 768)
        x[torch.arange(133), torch.as_tensor(peaks_x)] = torch.as_tensor(heights, dtype=torch.float32)
        y[torch.arange(133), torch.as_tensor(peaks_y)] = torch.as_tensor(heights, dtype=torch.float32)
        self.register_buffer("x", x[None])
        self.register_buffer("y", y[None])

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bias = image.mean() * 0.0
        return self.x + bias, self.y + bias


@pytest.fixture(scope="module")
def dw_model(tmp_path_factory):
    rng = np.random.default_rng(0)
    peaks_x, peaks_y = rng.integers(0, 576, 133), rng.integers(0, 768, 133)
    heights = rng.uniform(0.5, 1.0, 133)
    heights[[7, 60]] = 0.1  # below DWPose's 0.3: left elbow and face point 37 (right eye contour) undetected
    path = tmp_path_factory.mktemp("weights") / "dw-ll_ucoco_384.onnx"
    torch.onnx.export(_TinySimCC(peaks_x, peaks_y, heights), torch.zeros(1, 3, 384, 288), str(path),
                      input_names=["input"], output_names=["simcc_x", "simcc_y"], dynamo=False)
    return path, peaks_x, peaks_y, heights


def test_dwpose_loads_the_onnx_file_and_decodes_simcc(dw_model, monkeypatch):
    path, peaks_x, peaks_y, heights = dw_model
    monkeypatch.setenv("ANIMBENCH_WEIGHTS", str(path.parent))
    detector = make_pose_detector("dwpose")
    frame = np.full((100, 200, 3), 128, np.uint8)  # W 200, H 100
    pose = detector.pose(frame)
    # by hand: the box (0, 0, 200, 100) grown 1.25x -> 250 x 125, widened to 3:4 height -> 250 x 333.33
    bw, bh = 250.0, 250.0 / 0.75
    x = peaks_x / 2.0 / DW_INPUT[0] * bw + 100 - bw / 2
    y = peaks_y / 2.0 / DW_INPUT[1] * bh + 50 - bh / 2
    assert pose.body_format == "BODY_25"
    for j, wb in enumerate(WB_TO_BODY25):
        if wb is None or wb == 7:
            continue
        np.testing.assert_allclose(pose.body[j], (x[wb], y[wb], heights[wb]), rtol=1e-5, atol=1e-3)
    assert (pose.body[6] == 0).all()  # COCO 7 (left elbow) scored 0.1: undetected
    np.testing.assert_allclose(pose.body[1, :2], (x[[5, 6]].mean(), y[[5, 6]].mean()), atol=1e-3)  # neck
    np.testing.assert_allclose(pose.body[8, 2], heights[[11, 12]].min(), rtol=1e-6)  # mid-hip score
    np.testing.assert_allclose(pose.face[:68, 0], np.where(heights[23:91] >= 0.3, x[23:91], 0), atol=1e-3)
    assert (pose.face[68] == 0).all()  # the right pupil needs all six right-eye points (36-41)
    np.testing.assert_allclose(pose.face[69, :2], (x[65:71].mean(), y[65:71].mean()), atol=1e-3)  # left pupil
    np.testing.assert_allclose(pose.hand_left[:, 0], x[91:112], atol=1e-3)
    np.testing.assert_allclose(pose.hand_right[:, 1], y[112:133], atol=1e-3)


def test_dwpose_refuses_a_model_of_the_wrong_shape(tmp_path):
    path = tmp_path / "dw-ll_ucoco_384.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 3, 1), torch.zeros(1, 3, 256, 192), str(path), input_names=["input"],
                      output_names=["out"], dynamo=False)
    with pytest.raises(AnimbenchError, match="expected one input .N, 3, 384, 288. and outputs simcc_x, simcc_y"):
        DWPoseDetector(path)
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(AnimbenchError, match="not a loadable ONNX model"):
        DWPoseDetector(tmp_path / "junk.onnx")


def test_wholebody_mapping_pupils_and_threshold():
    points = np.arange(266, dtype=np.float32).reshape(133, 2)
    scores = np.ones(133, np.float32)
    pose = wholebody_to_openpose(points, scores)
    np.testing.assert_array_equal(pose.face[68, :2], points[23 + 36:23 + 42].mean(0))
    np.testing.assert_array_equal(pose.body[[0, 2, 5, 11, 14, 19, 24], :2], points[[0, 6, 5, 16, 15, 17, 22]])
    scores[0] = 0.29
    assert (wholebody_to_openpose(points, scores).body[0] == 0).all()


def test_rtpose_detector_gives_joints_with_their_heatmap_confidence(tmp_path, monkeypatch):
    from prep.poses.rtpose import RtPoseNet, joints_from_heatmaps

    torch.manual_seed(0)
    state = RtPoseNet().state_dict()
    state["model6_2.12.weight"] *= 10  # so that peaks pass thre1 = 0.1
    (tmp_path / "w").mkdir()
    torch.save(state, tmp_path / "w" / "pose_model.pth")
    monkeypatch.setenv("ANIMBENCH_WEIGHTS", str(tmp_path / "w"))
    detector = RtPoseDetector(boxsize=32)
    frame = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    pose = detector.pose(frame)
    heat = detector.net.heatmaps(frame)
    joints = joints_from_heatmaps(heat)
    assert pose.body_format == "COCO_18"
    found = joints[:, 0] >= 0
    assert found.any()
    np.testing.assert_array_equal(pose.body[found, :2], joints[found])
    np.testing.assert_allclose(pose.body[found, 2], [heat[int(y), int(x), j] for j, (x, y) in enumerate(joints)
                                                     if x >= 0], rtol=1e-6)
    assert (pose.body[~found] == 0).all()


def test_a_detector_in_the_prep_worker(dw_model, tmp_path, monkeypatch):
    """The worker runs the detector on every stored frame; the rows reach the store (no Ray: one unit
    in-process)."""
    path = dw_model[0]
    monkeypatch.setenv("ANIMBENCH_WEIGHTS", str(path.parent))
    import cv2

    src = tmp_path / "frames" / "v1"
    src.mkdir(parents=True)
    for t in range(3):
        cv2.imwrite(str(src / f"{t}.png"), np.full((48, 64, 3), 60 * t, np.uint8))
    unit = Unit(key="folder/v1", source=str(src), kind="frames", clips=(Clip(video_id="v1", split="train"),))
    config = PrepConfig("folder", size=32, poses="dwpose")
    root = tmp_path / "store"
    result = UnitProcessor(config).run(unit, root / "frames" / "v1.parquet")
    assert result["failures"] == [] and result["timings"]["poses_s"] > 0
    finalize_store(root, result["videos"], config={}, encode=config.encode, poses={"source": "dwpose"})
    store = FrameStore(root)
    poses = store.poses("v1")
    assert sorted(poses) == [0, 1, 2] and store.pose_info["body_format"] == "BODY_25"
    expected = DWPoseDetector().pose(store.read("v1", [1])[0])  # on the stored 32x32 frame
    assert poses[1] == expected


def test_the_detectors_weight_files_are_in_the_manifest():
    from plumbing import weights
    from prep.poses.detectors import DETECTORS, WEIGHT_FILES

    w = weights.get("dw-ll_ucoco_384.onnx")
    assert w.folder == "animbench" and Path(w.path()).name == "dw-ll_ucoco_384.onnx"
    for name in DETECTORS:
        assert f"prep:poses-{name}" in weights.get(WEIGHT_FILES[name]).users
