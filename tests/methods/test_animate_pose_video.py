"""`animbench animate METHOD --poses VIDEO --pose-backend rtpose|dwpose`: every decoded frame goes through the
detector (a test-made DWPose ONNX whose keypoints move with the frame's brightness), is rendered with the model's
pose_condition at the video's size, and --normalize-to works on those poses; missing weights and wrong flags are
one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from animbench.cli import main
from methods.checkpoints import save_checkpoint
from methods.infer import write_animation
from prep.decode import open_source
from prep.poses.detectors import DW_INPUT, DWPoseDetector, dw_preprocess
from tests.methods.test_pose_driven import NAME, TinyPose, _config, _direct, tiny_pose  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("one_torch_thread")

W, H = 64, 32
LEVELS = [0] + list(range(40, 200, 4))  # a black frame (nobody there), then a person walking towards us
HEAD, ANKLE = (0, 3, 4), (15, 16)  # COCO-WholeBody nose and ears; ankles


class _Moving(torch.nn.Module):
    """(1, 3, 384, 288) -> simcc_x (1, 133, 576), simcc_y (1, 133, 768): every point's peak moves down linearly
    with the input's mean; scores drop below DWPose's 0.3 on a dark input."""

    def __init__(self, base_x: np.ndarray, base_y: np.ndarray, slope_y: float, dark: float) -> None:
        super().__init__()
        self.register_buffer("base_x", torch.as_tensor(base_x, dtype=torch.float32)[:, None])
        self.register_buffer("base_y", torch.as_tensor(base_y, dtype=torch.float32)[:, None])
        self.register_buffer("bins_x", torch.arange(576, dtype=torch.float32)[None])
        self.register_buffer("bins_y", torch.arange(768, dtype=torch.float32)[None])
        self.slope_y, self.dark = slope_y, dark

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = image.mean()
        height = 0.9 - 10.0 * torch.relu(self.dark - m)
        x = height - 0.001 * (self.bins_x - self.base_x).abs()
        y = height - 0.001 * (self.bins_y - (self.base_y + self.slope_y * m)).abs()
        return x[None], y[None]


def _input_mean(level: int) -> float:
    blob, _, _ = dw_preprocess(np.full((H, W, 3), level, np.uint8), (0.0, 0.0, float(W), float(H)))
    return float(blob.mean())


@pytest.fixture(scope="module")
def moving_dwpose(tmp_path_factory) -> Path:
    """dw-ll_ucoco_384.onnx made here: a standing figure (head 8 px above the ankles) whose rows go from
    y = 4..12 at the first lit frame to 16..24 at the last."""
    # frame pixels per SimCC bin for a 64x32 frame (the box grown 1.25x, then widened to 3:4)
    bw = W * 1.25
    bh = bw * DW_INPUT[1] / DW_INPUT[0]
    to_bin_x = lambda x: (x - W / 2 + bw / 2) / bw * DW_INPUT[0] * 2  # noqa: E731
    to_bin_y = lambda y: (y - H / 2 + bh / 2) / bh * DW_INPUT[1] * 2  # noqa: E731
    lo, hi = _input_mean(LEVELS[1]), _input_mean(LEVELS[-1])
    slope = (to_bin_y(16) - to_bin_y(4)) / (hi - lo)
    base_x = np.full(133, to_bin_x(30.0))
    base_x[[3, 15]], base_x[[4, 16]] = to_bin_x(28.0), to_bin_x(32.0)  # left ear / ankle, right ear / ankle
    base_y = np.full(133, to_bin_y(8.0))
    base_y[list(HEAD)], base_y[list(ANKLE)] = to_bin_y(4.0), to_bin_y(12.0)
    base_y -= slope * lo
    path = tmp_path_factory.mktemp("weights") / "dw-ll_ucoco_384.onnx"
    dark = (_input_mean(0) + lo) / 2
    torch.onnx.export(_Moving(base_x, base_y, slope, dark), torch.zeros(1, 3, 384, 288), str(path),
                      input_names=["input"], output_names=["simcc_x", "simcc_y"], dynamo=False)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    frames = [np.full((H, W, 3), level / 255.0, np.float32) for level in LEVELS]
    return write_animation(frames, tmp_path_factory.mktemp("video") / "walk.mp4", fps=10.0)


@pytest.fixture()
def setup(tiny_pose, moving_dwpose, tmp_path, monkeypatch):  # noqa: F811 - the imported fixture
    monkeypatch.setenv("ANIMBENCH_WEIGHTS", str(moving_dwpose.parent))
    torch.manual_seed(5)
    model = TinyPose("base").eval()
    return model, save_checkpoint(tmp_path / "m.pth.tar", model, None, epoch=0), _config(tmp_path)


def _detected(video: Path) -> list:
    detector, source = DWPoseDetector(), open_source(video, "video", backend="pyav")
    try:
        return [detector.pose(frame) for _, frame in source.frames()]
    finally:
        source.close()


def test_animate_a_video_through_dwpose(setup, video, tmp_path):
    model, ckpt, cfg = setup
    poses = _detected(video)
    assert poses[0] is None and all(p is not None for p in poses[1:])  # the black frame has nobody
    assert poses[-1].body[0, 1] - poses[1].body[0, 1] == pytest.approx(12.0, abs=0.5)  # the figure moved down
    out = tmp_path / "v.npy"
    assert main(["animate", NAME, "--checkpoint", str(ckpt), "--config", str(cfg), "--poses", str(video),
                 "--pose-backend", "dwpose", "--out", str(out), "--no-progress"]) == 0
    labels = [model.pose_condition(p, (W, H))[0] for p in poses[1:]]
    assert np.array_equal(np.load(out), _direct(model, labels, None))
    record = json.loads((tmp_path / "v.npy.json").read_text())
    assert record["poses"]["kind"] == "video" and record["poses"]["pose_backend"] == "dwpose"
    assert record["poses"]["frame_size"] == [W, H] and record["fps"] == 10.0
    assert record["poses"]["skipped"] == {"0000000": "no person detected by dwpose"}
    assert record["frames"][0] == "0000001" and len(record["frames"]) == len(LEVELS) - 1
    assert record["poses"]["detector_weights"]["path"].endswith("dw-ll_ucoco_384.onnx")


def test_a_video_normalized_to_a_target(setup, video, tmp_path):
    from prep.poses.normalize import fit_norm_params, normalize_poses
    from tests.methods.test_pose_driven import _standing, _write_openpose

    model, ckpt, cfg = setup
    target = [_standing(t, 12.0, 1) for t in range(40)]
    tgt_dir = _write_openpose(tmp_path / "tgt", target)
    out = tmp_path / "norm.npy"
    assert main(["animate", NAME, "--checkpoint", str(ckpt), "--config", str(cfg), "--poses", str(video),
                 "--pose-backend", "dwpose", "--normalize-to", str(tgt_dir), "--out", str(out),
                 "--no-progress"]) == 0
    source = _detected(video)[1:]
    params = fit_norm_params(target, source)
    moved = [p for p in normalize_poses(source, params, frame_size=(W, H)) if p is not None]
    labels = [model.pose_condition(p, (W, H))[0] for p in moved]
    assert np.array_equal(np.load(out), _direct(model, labels, None))
    record = json.loads((tmp_path / "norm.npy.json").read_text())["normalization"]
    assert record["params"] == pytest.approx({k: float(v) for k, v in vars(params).items()})
    assert params.s_close > 1.2  # the target (12 px) is taller than the figure (8 px)


def test_video_errors_are_one_line(setup, video, tmp_path, capsys, monkeypatch):
    _, ckpt, cfg = setup
    base = ["animate", NAME, "--checkpoint", str(ckpt), "--config", str(cfg), "--out", str(tmp_path / "o.npy"),
            "--no-progress"]
    (tmp_path / "not_a_video.mp4").write_bytes(b"garbage")
    cases = [
        (["--poses", str(video)], "is a video: pass --pose-backend rtpose|dwpose"),
        (["--poses", str(video), "--pose-backend", "openpose"], "(got 'openpose')"),
        (["--poses", str(tmp_path / "labels"), "--pose-backend", "dwpose"],
         "--pose-backend: only for a video, but --poses"),
        (["--poses", str(video), "--pose-backend", "dwpose", "--frame-size", "64x32"], "--frame-size: only for"),
        (["--poses", str(tmp_path / "not_a_video.mp4"), "--pose-backend", "dwpose"], "cannot be decoded as a video"),
        (["--poses", str(video), "--pose-backend", "rtpose"],
         f"missing weight file pose_model.pth: place it in {tmp_path / 'no-weights'}"),
    ]
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "labels" / "0000000.png"), np.zeros((H, W, 3), np.uint8))
    for args, message in cases:
        if "rtpose" in args:
            monkeypatch.setenv("ANIMBENCH_WEIGHTS", str(tmp_path / "no-weights"))
        assert main(base + args) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o.npy").exists()
    assert main(["animate", "fomm", "--source", "a.png", "--driving", str(video), "--pose-backend", "dwpose",
                 "--out", str(tmp_path / "f.npy")]) == 2
    assert "--pose-backend is for pose-driven families" in capsys.readouterr().err
