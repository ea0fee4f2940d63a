"""The frame store's keypoints table: plain pyarrow reads it, FrameStore.poses returns it, the manifest records its
format, the fingerprint covers it, and `store verify` / every read catch a damaged pose file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from animbench.cli import main as cli_main
from plumbing.errors import AnimbenchError
from prep.poses.format import PoseFrame
from prep.store import FrameStore, FrameStoreWriter, content_hash, verify_store


def _frames(n: int = 6, h: int = 24, w: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([xx * 5 + t, yy * 7, (xx + yy) * 3 + t], -1) for t in range(n)]).astype(np.uint8)


def _pose(seed: int, joints: int = 25) -> PoseFrame:
    rng = np.random.default_rng(seed)

    def part(n):
        pts = np.concatenate([rng.uniform(0, 24, (n, 2)), rng.uniform(0.1, 1, (n, 1))], 1).astype(np.float32)
        pts[rng.random(n) < 0.2] = 0  # some points undetected
        return pts

    body = part(joints)
    body[0] = (40.0, 3.0, 0.9)  # right of the 32-px frame: kept, counted as outside
    return PoseFrame(body, part(70), part(21), part(21))


def _store(root: Path, poses: dict[int, PoseFrame] | None = None) -> Path:
    source = None if poses is None else "test"
    with FrameStoreWriter(root, {"recipe": "test"}, poses_source=source) as w:
        if poses is None:
            w.add_video("a", _frames(), split="train")
            w.add_video("b", _frames(4), split="test")
        else:
            w.add_video("a", _frames(), split="train", poses=poses, pose_skipped={1: "2 people detected"})
            w.add_video("b", _frames(4), split="test", poses={})
    return root


POSES = {0: _pose(0), 2: _pose(2), 3: _pose(3), 5: _pose(5)}


def test_poses_round_trip_through_plain_pyarrow_and_the_reader(tmp_path):
    root = _store(tmp_path / "s", POSES)
    store = FrameStore(root)
    got = store.poses("a")
    assert sorted(got) == [0, 2, 3, 5] and store.poses("b") == {}
    for i, pose in POSES.items():
        assert got[i] == pose and got[i].body_format == "BODY_25"
    # plain pyarrow: one table over the poses folder, fixed-size lists of x, y, confidence
    table = pq.read_table(root / "poses")
    assert table.column_names == ["video_id", "frame_index", "body", "face", "hand_left", "hand_right", "outside"]
    assert table.num_rows == 4
    body = np.stack(table["body"].to_numpy(zero_copy_only=False)).reshape(4, 25, 3)
    face = np.stack(table["face"].to_numpy(zero_copy_only=False)).reshape(4, 70, 3)
    np.testing.assert_array_equal(body[1], POSES[2].body)
    np.testing.assert_array_equal(face[3], POSES[5].face)
    # the outside column counts confident points outside the 32x24 stored frame (the joint at x=40 at least)
    for k, i in enumerate(table["frame_index"].to_pylist()):
        pts = np.concatenate([POSES[i].body, POSES[i].face, POSES[i].hand_left, POSES[i].hand_right])
        pts = pts[pts[:, 2] > 0]
        out = (pts[:, 0] < -0.5) | (pts[:, 0] >= 31.5) | (pts[:, 1] < -0.5) | (pts[:, 1] >= 23.5)
        assert table["outside"][k].as_py() == out.sum() >= 1


def test_the_manifest_records_the_format_and_the_fingerprint_covers_poses(tmp_path):
    root = _store(tmp_path / "s", POSES)
    info = FrameStore(root).pose_info
    assert info["body_format"] == "BODY_25" and info["source"] == "test"
    assert info["coordinates"] == "store frame pixels" and "outside" in info
    assert info["skipped"] == {"a": {"1": "2 people detected"}} and info["num_frames"] == 4
    assert [s["name"] for s in info["shards"]] == ["shard-00000.parquet"]
    # a store without poses: no section, and its fingerprint is the frames-only hash it always was
    plain = FrameStore(_store(tmp_path / "plain"))
    assert plain.pose_info is None
    assert plain.fingerprint == content_hash(plain.videos_table.to_dict("records"))
    with pytest.raises(AnimbenchError, match="has no poses"):
        plain.poses("a")
    # same frames, different poses -> different fingerprints
    other = dict(POSES)
    other[3] = _pose(99)
    assert FrameStore(_store(tmp_path / "o", other)).fingerprint != FrameStore(root).fingerprint != plain.fingerprint
    assert verify_store(root) == []


def test_verify_and_reads_catch_a_flipped_byte_in_the_pose_table(tmp_path, capsys):
    root = _store(tmp_path / "s", POSES)
    [path] = (root / "poses").glob("*.parquet")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0x10  # inside the column data
    path.write_bytes(bytes(raw))
    problems = verify_store(root)
    assert problems == [f"poses {path.name}: sha256 differs from the manifest"]
    assert cli_main(["store", "verify", str(root)]) == 1
    assert "FAIL poses" in capsys.readouterr().out
    with pytest.raises(AnimbenchError, match=r"video 'a'.*(do not match|cannot read).*damaged") as err:
        FrameStore(root).poses("a")
    assert "\n" not in str(err.value)


def test_one_store_one_body_format(tmp_path):
    coco = _pose(1, joints=18)
    with pytest.raises(AnimbenchError, match="one store, one format"):
        with FrameStoreWriter(tmp_path / "s", poses_source="test") as w:
            w.add_video("a", _frames(), split="train", poses={0: POSES[0], 1: coco})
    with pytest.raises(AnimbenchError, match="frame 9 outside its 6 frames"):
        with FrameStoreWriter(tmp_path / "t", poses_source="test") as w:
            w.add_video("a", _frames(), split="train", poses={9: POSES[0]})
    assert not (tmp_path / "t" / "manifest.json").exists()  # the aborted store never looks complete
