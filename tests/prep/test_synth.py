"""`animbench synth`: real, decodable, byte-reproducible videos, vox metadata and ground-truth keypoints."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import av
import decord
import numpy as np
import pandas as pd
import pytest

from plumbing.errors import AnimbenchError
from prep import cli as prep_cli
from prep import synth
from prep.synth import crop_box, make_synthetic, read_synth, split_identities

SMALL = {"num_videos": 4, "num_frames": 12, "width": 160, "height": 120, "seed": 3}
VOX_HEADER = "video_id,start,end,bbox,fps,width,height,partition,person_id"


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=["faces", "bodies"])
def made(request, tmp_path_factory) -> tuple[str, Path, dict]:
    out = tmp_path_factory.mktemp(request.param) / "synth"
    summary = make_synthetic(out, kind=request.param, **SMALL)
    return request.param, out, summary


def test_same_arguments_give_byte_identical_files(made, tmp_path):
    kind, out, _ = made
    make_synthetic(tmp_path / "again", kind=kind, **SMALL)
    first, second = _hashes(out), _hashes(tmp_path / "again")
    per_video = 3 if kind == "faces" else 2  # video, keypoints (and the foreground masks of faces)
    assert len(first) == per_video * SMALL["num_videos"] + 2
    assert first == second
    assert read_synth(out)["files"] == {k: v for k, v in first.items() if k != "synth.json"}


def test_another_seed_gives_other_videos(made, tmp_path):
    kind, out, _ = made
    make_synthetic(tmp_path / "other", kind=kind, **{**SMALL, "seed": 4})
    assert not set(_hashes(out).values()) & set(_hashes(tmp_path / "other").values())


def test_videos_decode_with_decord_and_pyav(made):
    _, out, _ = made
    paths = sorted((out / "videos").glob("*.mp4"))
    assert len(paths) == SMALL["num_videos"]
    for path in paths:
        vr = decord.VideoReader(str(path))
        assert len(vr) == SMALL["num_frames"]
        assert vr[0].shape == (SMALL["height"], SMALL["width"], 3)
        assert vr.get_avg_fps() == pytest.approx(25.0)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert len(frames) == SMALL["num_frames"]
        # both decoders see the same picture, and it is not blank
        assert np.abs(frames[5].astype(int) - vr[5].asnumpy()).mean() < 1.0
        assert frames[5].std() > 10


def test_metadata_is_the_vox_format(made):
    _, out, _ = made
    assert (out / "metadata.csv").read_text().splitlines()[0] == VOX_HEADER
    df = pd.read_csv(out / "metadata.csv")
    assert list(df.columns) == VOX_HEADER.split(",")
    assert len(df) == SMALL["num_videos"] and df.video_id.is_unique
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{10}", v) for v in df.video_id)
    assert all((out / "videos" / f"{v}.mp4").is_file() for v in df.video_id)
    assert set(df.partition) <= {"train", "test"}
    assert all(re.fullmatch(r"id\d{5}", p) for p in df.person_id)
    assert (df.fps == 25).all()
    assert (df.width == SMALL["width"]).all() and (df.height == SMALL["height"]).all()
    assert (df.end == SMALL["num_frames"]).all() and (df.start >= 0).all() and (df.start > 0).any()
    for box in df.bbox:
        left, top, right, bot = map(int, box.split("-"))
        assert 0 <= left < right <= SMALL["width"] and 0 <= top < bot <= SMALL["height"]


def test_keypoints_lie_inside_the_crop_box(made):
    kind, out, _ = made
    df = pd.read_csv(out / "metadata.csv")
    k = 68 if kind == "faces" else 18
    assert read_synth(out)["keypoints"]["shape"] == [SMALL["num_frames"], k, 2]
    for row in df.itertuples():
        kp = np.load(out / "keypoints" / f"{row.video_id}.npy")
        assert kp.dtype == np.float32 and kp.shape == (SMALL["num_frames"], k, 2)
        left, top, right, bot = map(int, row.bbox.split("-"))
        clip = kp[row.start:row.end]
        assert (clip[..., 0] >= left).all() and (clip[..., 0] <= right).all()
        assert (clip[..., 1] >= top).all() and (clip[..., 1] <= bot).all()
        # the subject moves: keypoints differ between the first and the last frame
        assert np.abs(kp[-1] - kp[0]).max() > 1.0


def _distance_to_segment(colours: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    d = c2 - c1
    t = np.clip((colours - c1) @ d / max(float(d @ d), 1e-9), 0, 1)
    return np.linalg.norm(colours - (c1 + t[:, None] * d), axis=1)


def test_keypoints_sit_on_the_drawn_subject(made):
    """The cheek (faces) shows skin and the thighs (bodies) the trousers' colours in the decoded video."""
    kind, out, _ = made
    manifest = read_synth(out)
    looks = {p["person_id"]: p["look"] for p in manifest["identities"]}
    for v in manifest["videos"]:
        kp = np.load(out / v["keypoints"])
        frames = decord.VideoReader(str(out / v["video"])).get_batch(list(range(len(kp)))).asnumpy()
        look = looks[v["person_id"]]
        if kind == "faces":
            probes, (c1, c2) = [(kp[:, 2] + kp[:, 31]) / 2], [np.array(look["skin"])] * 2
        else:
            probes = [(kp[:, 8] + kp[:, 9]) / 2, (kp[:, 11] + kp[:, 12]) / 2]  # mid-thighs
            c1, c2 = np.array(look["pants"])
        for probe in probes:
            xy = np.round(probe).astype(int)
            colours = frames[np.arange(len(kp)), xy[:, 1], xy[:, 0]].astype(float)
            assert np.median(_distance_to_segment(colours, c1, c2)) < 35


def test_split_is_by_identity(made):
    _, out, summary = made
    df = pd.read_csv(out / "metadata.csv")
    per_person = df.groupby("person_id").partition.nunique()
    assert (per_person == 1).all()
    assert df.person_id.nunique() == SMALL["num_videos"] // 2
    assert set(df[df.partition == "test"].person_id) == set(summary["test_identities"])
    assert len(summary["test_identities"]) == 1 and (df.partition == "train").any()


def test_held_out_videos_split_each_identity_by_footage(tmp_path):
    # a subject-specific method (pose2img) is scored on held-out footage of the person it was trained on
    summary = make_synthetic(tmp_path / "one", kind="bodies", num_videos=5, num_frames=4, identities=2, width=64,
                             height=64, seed=0, held_out_videos=1)
    df = pd.read_csv(tmp_path / "one" / "metadata.csv")
    assert df.partition.tolist() == ["train", "train", "train", "test", "test"]
    assert df.groupby("person_id").partition.apply(lambda p: p.iloc[-1]).eq("test").all()
    assert summary["partitions"] == {"train": 3, "test": 2} and summary["test_identities"] == []
    for bad in (2, -1, True):
        with pytest.raises(AnimbenchError, match="held-out videos"):
            make_synthetic(tmp_path / f"bad{bad}", kind="bodies", num_videos=5, num_frames=4, identities=2,
                           width=64, height=64, held_out_videos=bad)


def test_split_identities_rules():
    rng = np.random.default_rng(0)
    assert split_identities(1, 0.5, rng) == ["train"]
    assert split_identities(4, 0.0, rng).count("test") == 0
    assert split_identities(2, 0.1, rng).count("test") == 1
    assert split_identities(3, 0.9, rng).count("test") == 2
    again = [split_identities(10, 0.25, np.random.default_rng(1)) for _ in range(2)]
    assert again[0] == again[1] and again[0].count("test") == 2


def test_crop_box_contains_the_extent_grown_towards_a_square():
    box = crop_box(np.array([100.0, 50.0]), np.array([140.0, 130.0]), 320, 240)
    left, top, right, bot = box
    assert left <= 100 and top <= 50 and right >= 140 and bot >= 130
    assert abs((right - left) - (bot - top)) <= 2
    assert crop_box(np.array([2.0, 2.0]), np.array([300.0, 230.0]), 320, 240) == (0, 0, 320, 240)


@pytest.mark.parametrize("bad", [
    {"num_videos": 0}, {"num_frames": 1}, {"width": 63}, {"width": 100 + 1}, {"height": 32}, {"fps": 0},
    {"test_fraction": 1.0}, {"test_fraction": -0.1}, {"identities": 0}, {"identities": 5}, {"seed": -1},
    {"kind": "cats"}, {"num_videos": 2.5},
])
def test_bad_arguments_raise(tmp_path, bad):
    with pytest.raises(AnimbenchError):
        make_synthetic(tmp_path / "out", **{**SMALL, **bad})
    assert not (tmp_path / "out").exists()


def test_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(AnimbenchError, match="not made by"):
        make_synthetic(tmp_path, **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_overwrites_only_its_own_previous_output(tmp_path):
    out = tmp_path / "s"
    make_synthetic(out, **{**SMALL, "num_videos": 3, "num_frames": 4})
    (out / "README.txt").write_text("kept")
    make_synthetic(out, **{**SMALL, "num_videos": 2, "num_frames": 4, "seed": 9})
    assert len(list((out / "videos").glob("*.mp4"))) == 2 and len(list((out / "keypoints").glob("*"))) == 2
    assert read_synth(out)["arguments"]["seed"] == 9 and (out / "README.txt").read_text() == "kept"


def test_an_interrupted_run_never_looks_complete(tmp_path, monkeypatch):
    out = tmp_path / "s"
    make_synthetic(out, **{**SMALL, "num_frames": 4})
    calls = []

    def failing_write(path, frames, *args):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(path, frames, *args)

    real_write = synth._write_mp4
    monkeypatch.setattr(synth, "_write_mp4", failing_write)
    with pytest.raises(OSError):
        make_synthetic(out, **{**SMALL, "num_frames": 4, "seed": 5})
    assert not (out / "synth.json").exists() and not (out / "metadata.csv").exists()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    with pytest.raises(AnimbenchError, match="not found"):
        read_synth(out)
    monkeypatch.undo()
    make_synthetic(out, **{**SMALL, "num_frames": 4, "seed": 5})  # a rerun finishes the partial folder
    assert read_synth(out)["arguments"]["seed"] == 5 and not (out / synth.PARTIAL_MARKER).exists()


def test_cli_prints_a_json_summary(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    prep_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", "--kind", "bodies", "--videos", "2", "--frames", "3", "--width", "96",
                              "--height", "64", "--out", str(tmp_path / "s")])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["videos"] == 2 and summary["identities"] == 1
    assert summary["partitions"] == {"train": 2, "test": 0}
