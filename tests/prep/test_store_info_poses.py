"""`animbench store info` tells a user whether a store has poses, which, from where, and what was skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from animbench.cli import main
from prep.poses.format import PoseFrame
from prep.store import FrameStoreWriter


def _frames(n: int, h: int = 16, w: int = 24) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _pose(x: float) -> PoseFrame:
    body = np.zeros((18, 3), np.float32)
    body[:3] = [(x, 4.0, 0.9), (5.0, 6.0, 0.8), (7.0, 9.0, 0.7)]
    return PoseFrame(body, np.zeros((70, 3), np.float32), np.zeros((21, 3), np.float32),
                     np.zeros((21, 3), np.float32))


def _store(root: Path, with_poses: bool) -> Path:
    with FrameStoreWriter(root, {"recipe": "test"}, poses_source="rtpose" if with_poses else None) as w:
        if with_poses:
            w.add_video("a", _frames(5), split="train", poses={0: _pose(3), 1: _pose(30), 3: _pose(4)},
                        pose_skipped={2: "no person detected", 4: "no person detected"})
            w.add_video("b", _frames(3), split="test", poses={})
        else:
            w.add_video("a", _frames(5), split="train")
    return root


def _poses_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("poses "))


def test_info_prints_the_pose_section(tmp_path, capsys):
    root = _store(tmp_path / "s", with_poses=True)
    assert main(["store", "info", str(root)]) == 0
    line = _poses_line(capsys.readouterr().out)
    assert line.split(None, 1)[1] == ("COCO_18 from rtpose: 3 frames with poses in 1 of 2 videos, 2 skipped "
                                      "(e.g. a frame 2: no person detected), 1 confident points outside their "
                                      "frame")


def test_info_of_a_store_without_poses_has_no_pose_line(tmp_path, capsys):
    root = _store(tmp_path / "s", with_poses=False)
    assert main(["store", "info", str(root)]) == 0
    out = capsys.readouterr().out
    assert "frames       5" in out and not any(line.startswith("poses") for line in out.splitlines())


def test_info_prints_the_mask_section(tmp_path, capsys):
    root = tmp_path / "m"
    facts = {"source": "DIR", "backend": "mask files", "weights": {"file": "universal_trained.pth", "sha256": "ab" * 32}}
    with FrameStoreWriter(root, {"recipe": "test"}, masks=facts) as w:
        w.add_video("a", _frames(4), split="train", masks=[np.full((16, 24), 255, np.uint8)] * 4)
        w.add_video("b", _frames(2), split="test", masks=[np.zeros((16, 24), np.uint8)] * 2)
    assert main(["store", "info", str(root)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("masks "))
    assert line == ("masks        from DIR: 6 frames with masks in 2 of 2 videos "
                    "(weights universal_trained.pth, sha256 abababababab)")
    assert main(["store", "info", str(_store(tmp_path / "p", with_poses=False))]) == 0
    assert "masks " not in capsys.readouterr().out
