"""Every prep recipe end to end on generated videos; frames equal what the official loader would produce."""

from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data
from skimage.transform import resize
from skimage.util import img_as_ubyte

from plumbing.errors import AnimbenchError
from prep import pipeline_cli
from prep.config import PrepConfig
from prep.decode import frame_range, read_image
from prep.pipeline import run_prep
from prep.recipes import fashion, folder, synthetic, taichi, vox
from prep.store import EncodeOptions, FrameStore, verify_store
from prep.synth import make_synthetic
from tests.prep import prep_helpers
from tests.prep.prep_helpers import (
    assert_scaled_alike,
    decode_all,
    decode_exact,
    make_video,
    pattern_frame,
    write_metadata,
)

ray_session = prep_helpers.ray_session  # the one local Ray session of the prep tests

# OpenCV's area filter stands in for scikit-image's resize(anti_aliasing=True) (Gaussian sigma (s-1)/2, then
# bilinear). Measured on real and generated images: at the downscale factors of the official crops (1x to 4x)
# the mean absolute difference is under 1.5 grey levels and PSNR above 38 dB; at 8x area averaging is
# sharper than the Gaussian and the mean difference grows to about 4 levels.
RESIZE_MEAN_TOL = 1.5
RESIZE_PSNR_MIN = 38.0


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def test_resize_tolerance_against_skimage():
    """The area filter matches scikit-image's anti-aliased resize within the stated tolerance."""
    face = skimage.data.astronaut()
    for crop, side in ((face, 256), (face[50:300, 120:370], 128), (face[40:400, 100:420], 256)):
        ref = img_as_ubyte(resize(crop, (side, side), anti_aliasing=True))
        ours = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        assert np.abs(ref.astype(int) - ours.astype(int)).mean() <= RESIZE_MEAN_TOL
        assert _psnr(ref, ours) >= RESIZE_PSNR_MIN


def test_frame_range_matches_the_official_rule():
    """Frame i is kept iff i * ref_fps lies in [start * fps, end * fps)."""
    for fps, ref_fps in ((25.0, 25.0), (25.0, 50.0), (30.0, 29.97), (29.97, 25.0), (59.94, 30.0)):
        for start, end in ((0, 10), (3, 17), (100, 164)):
            lo, hi = frame_range(start, end, fps, ref_fps)
            kept = [i for i in range(400) if start * fps <= i * ref_fps < end * fps]
            assert list(range(lo, hi)) == kept, (fps, ref_fps, start, end)


@pytest.fixture(scope="module")
def vox_raw(tmp_path_factory):
    """Two raw 128x96 videos and metadata at a 256x192 reference size (so boxes are rescaled by 1/2)."""
    root = tmp_path_factory.mktemp("vox")
    make_video(root / "raw" / "AAAA.mp4", 30, 128, 96, seed=1)
    make_video(root / "raw" / "BBBB.mp4", 24, 128, 96, seed=2)
    rows = [
        dict(video_id="AAAA", start=2, end=14, bbox="40-20-200-180", fps=25, width=256, height=192,
             partition="train", person_id="id10001"),
        # overlaps the first clip (the buffered path); full frame, stretched to a square as the official resize
        dict(video_id="AAAA", start=10, end=26, bbox="0-0-256-192", fps=25, width=256, height=192,
             partition="train", person_id="id10001"),
        # reference fps 50 on a 25 fps video: reference frames [0, 20) are source frames [0, 10)
        dict(video_id="BBBB", start=0, end=20, bbox="64-32-192-160", fps=50, width=256, height=192,
             partition="test", person_id="id10002"),
    ]
    write_metadata(root / "vox-metadata.csv", rows)
    return root, rows


@pytest.mark.parametrize("scaler", ["opencv", "ffmpeg"])
def test_vox_crop_equals_direct_crop(vox_raw, tmp_path, ray_session, scaler):
    """Each stored clip is the decoded frames cropped with the rescaled box and resized: with --scaler opencv
    exactly cv2.INTER_AREA of the RGB crop, with ffmpeg (cut and scaled in YUV) alike; with both, within the
    tolerance above of the official scikit-image resize. The references for ffmpeg convert frames exactly, as
    it does (decode_exact: whole-frame libswscale reads ~1 grey level darker)."""
    root, rows = vox_raw
    units = vox.plan(root / "raw", root / "vox-metadata.csv")
    summary = run_prep(units, tmp_path / "store", PrepConfig("vox", size=32, scaler=scaler), workers=2,
                       progress=False)
    assert summary.failures == [] and summary.videos == 3
    store = FrameStore(tmp_path / "store")
    assert verify_store(store.root) == []
    for row in rows:
        vid = f"{row['person_id']}#{row['video_id']}#{row['start']:06d}#{row['end']:06d}"
        info = store.info(vid)
        assert info["split"] == row["partition"] and info["person_id"] == row["person_id"]
        video = root / "raw" / f"{row['video_id']}.mp4"
        decoded = decode_all(video) if scaler == "opencv" else decode_exact(video)
        lo, hi = frame_range(row["start"], row["end"], 25.0, float(row["fps"]))
        left, top, right, bot = map(int, row["bbox"].split("-"))
        sx, sy = row["width"] / 128, row["height"] / 96
        box = (int(left / sx), int(top / sy), int(right / sx), int(bot / sy))
        assert list(info["crop_box"]) == list(box)
        got = store.read(vid)
        assert got.shape == (hi - lo, 32, 32, 3)
        for k, frame in enumerate(decoded[lo:hi]):
            crop = frame[box[1]:box[3], box[0]:box[2]]
            area = cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA)
            if scaler == "opencv":
                assert np.array_equal(got[k], area)
            else:
                assert_scaled_alike(got[k], area)
            ref = img_as_ubyte(resize(crop, (32, 32), anti_aliasing=True))
            assert np.abs(ref.astype(int) - got[k].astype(int)).mean() <= RESIZE_MEAN_TOL
            assert _psnr(ref, got[k]) >= RESIZE_PSNR_MIN
    timings = store.manifest["timings"]
    assert all(timings[f"{s}_s"] >= 0 for s in ("decode", "crop", "encode", "write")) and timings["decode_s"] > 0
    assert store.manifest["run"]["scaled_frames"] == {scaler: store.manifest["num_frames"]}


def test_taichi_ids_and_splits(vox_raw, tmp_path, ray_session):
    """taichi: ids `<video_id>#start#end`, no person id, split from `partition`, JPEG encoding honoured."""
    root, rows = vox_raw
    meta = write_metadata(tmp_path / "taichi-metadata.csv", rows, with_person=False)
    config = PrepConfig("taichi", size=48, encode=EncodeOptions("jpeg", 90))
    summary = run_prep(taichi.plan(root / "raw", meta), tmp_path / "store", config, workers=1, progress=False)
    store = FrameStore(tmp_path / "store")
    assert summary.videos == 3
    assert sorted(store.videos()) == ["AAAA#000002#000014", "AAAA#000010#000026", "BBBB#000000#000020"]
    assert store.videos("test") == ["BBBB#000000#000020"]
    assert pd.isna(store.info("AAAA#000002#000014")["person_id"])
    assert store.manifest["encoding"]["image_format"] == "jpeg"
    assert store.read("AAAA#000002#000014").shape == (12, 48, 48, 3)


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "faces"
    make_synthetic(out, kind="faces", num_videos=4, num_frames=12, width=128, height=96, seed=3)
    return out


def test_synthetic_same_store_whatever_the_worker_count(synth_set, tmp_path, ray_session):
    """The same inputs give identical frames, shard names and shard hashes with 1 or 2 workers."""
    units = synthetic.plan(synth_set)
    one = run_prep(units, tmp_path / "w1", PrepConfig("synthetic", size=64), workers=1, progress=False)
    two = run_prep(units, tmp_path / "w2", PrepConfig("synthetic", size=64), workers=2, progress=False)
    assert one.videos == 4 and one.failures == []
    assert one.manifest["content_hash"] == two.manifest["content_hash"]
    assert one.manifest["shards"] == two.manifest["shards"]
    store = FrameStore(tmp_path / "w1")
    assert set(store.videos_table["person_id"]) <= {"id00001", "id00002"}
    assert all(vid.count("#") == 3 for vid in store.videos())


def test_resume_of_a_store_made_before_the_scaler_option(synth_set, tmp_path, capsys, ray_session):
    """A store whose recorded settings predate --scaler was made by the RGB path: --resume asks for
    --scaler opencv (naming the setting and both values) and then has nothing to redo."""
    out = tmp_path / "store"
    args = ["synthetic", "--src", str(synth_set), "--out", str(out), "--workers", "1", "--size", "32",
            "--no-progress"]
    assert pipeline_cli.main([*args, "--scaler", "opencv"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run"]["scaled_frames"] == {"opencv": manifest["num_frames"]}
    del manifest["config"]["config"]["scaler"]  # as written before the option existed
    (out / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert pipeline_cli.main([*args, "--resume"]) == 2
    assert "(scaler: 'opencv' then, 'ffmpeg' now)" in capsys.readouterr().err
    assert pipeline_cli.main([*args, "--resume", "--scaler", "opencv"]) == 0
    assert "0 processed, 4 skipped" in capsys.readouterr().out


def test_overwrite_deletes_only_a_store(synth_set, tmp_path, capsys, ray_session):
    """`--out SRC --overwrite` (or any folder that is not a store): one line, exit 2, not a file touched; an
    earlier store is replaced."""
    before = sorted(p.relative_to(synth_set) for p in synth_set.rglob("*"))
    args = ["synthetic", "--src", str(synth_set), "--workers", "1", "--size", "32", "--no-progress", "--overwrite"]
    assert pipeline_cli.main([*args, "--out", str(synth_set)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "neither a frame store nor an unfinished prep output" in err
    assert sorted(p.relative_to(synth_set) for p in synth_set.rglob("*")) == before
    store = tmp_path / "store"
    assert pipeline_cli.main([*args, "--out", str(store)]) == 0
    assert pipeline_cli.main([*args, "--out", str(store)]) == 0  # a store is replaced


def test_cli_prep_resume_and_errors(synth_set, tmp_path, capsys, ray_session):
    """`animbench prep synthetic`: prints done / skipped / failed; a non-empty --out needs --resume or
    --overwrite; --resume skips finished videos and gives the same store."""
    out = tmp_path / "store"
    args = ["synthetic", "--src", str(synth_set), "--out", str(out), "--workers", "2", "--size", "64",
            "--no-progress"]
    assert pipeline_cli.main(args) == 0
    text = capsys.readouterr().out
    assert "4 processed, 0 skipped" in text and "done     4 video(s)" in text and "failed   0" in text
    first = json.loads((out / "manifest.json").read_text())
    assert pipeline_cli.main(args) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert pipeline_cli.main([*args, "--resume"]) == 0
    assert "0 processed, 4 skipped" in capsys.readouterr().out
    again = json.loads((out / "manifest.json").read_text())
    assert again["content_hash"] == first["content_hash"] and again["shards"] == first["shards"]
    assert pipeline_cli.main([*args[:-3], "--size", "32", "--resume", "--no-progress"]) == 2
    assert "different settings (size: 64 then, 32 now)" in capsys.readouterr().err


def _write_gif(path, frames):
    with av.open(str(path), "w") as c:
        s = c.add_stream("gif", rate=10)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "rgb8"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_folder_recipe_all_formats(tmp_path, ray_session):
    """mp4, gif, a png frame folder (FOMM layout), an RGBA strip named .jpg, crop boxes, train/test folders."""
    src = tmp_path / "src"
    make_video(src / "train" / "a.mp4", 20, 96, 64, seed=4)
    gif = [np.full((48, 64, 3), 0, np.uint8) for _ in range(6)]
    for i, f in enumerate(gif):
        f[:, i * 8:i * 8 + 16] = (255, 255, 255)
    _write_gif(src / "train" / "b.gif", gif)
    (src / "train" / "c.mp4").mkdir(parents=True)
    pngs = [pattern_frame(i, 64, 64, seed=5) for i in range(8)]
    for i, f in enumerate(pngs):
        cv2.imwrite(str(src / "train" / "c.mp4" / f"{i:07d}.png"), f[..., ::-1])
    strip = np.concatenate([pattern_frame(i, 32, 32, seed=6) for i in range(5)], axis=1)
    rgba = np.concatenate([strip[..., ::-1], np.full(strip.shape[:2] + (1,), 255, np.uint8)], -1)
    ok, buf = cv2.imencode(".png", rgba)
    (src / "train" / "d.jpg").write_bytes(buf.tobytes())  # PNG data under a .jpg name, as Monkey-Net ships
    make_video(src / "test" / "e.mp4", 12, 96, 64, seed=7)
    (src / "test" / "notes.txt").write_text("not media: ignored")
    (tmp_path / "boxes.csv").write_text("video_id,bbox\ne,10-6-74-58\n")

    units = folder.plan(src, boxes=tmp_path / "boxes.csv")
    assert [(u.clips[0].video_id, u.kind, u.clips[0].split) for u in units] == [
        ("a", "video", "train"), ("b", "video", "train"), ("c", "frames", "train"), ("d", "strip", "train"),
        ("e", "video", "test")]
    summary = run_prep(units, tmp_path / "store", PrepConfig("folder", size=0), workers=2, progress=False)
    assert summary.failures == []
    store = FrameStore(tmp_path / "store")
    assert np.array_equal(store.read("a"), decode_all(src / "train" / "a.mp4"))
    with av.open(str(src / "train" / "b.gif")) as c:  # gifs go to PyAV (decord cannot time them)
        gif_frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert gif_frames.shape == (6, 48, 64, 3) and np.array_equal(store.read("b"), gif_frames)
    assert np.array_equal(store.read("c"), np.stack(pngs))
    assert np.array_equal(store.read("d"), np.stack(np.split(strip, 5, axis=1)))
    assert np.array_equal(store.read("e"), decode_all(src / "test" / "e.mp4")[:, 6:58, 10:74])
    assert list(store.info("e")["crop_box"]) == [10, 6, 74, 58]
    assert store.splits() == ["test", "train"]


def test_folder_split_options(tmp_path):
    """A flat folder needs --split or --splits; the split file assigns splits and person ids."""
    make_video(tmp_path / "x.mp4", 4, 64, 64)
    make_video(tmp_path / "y.mp4", 4, 64, 64)
    with pytest.raises(AnimbenchError, match="no train/ or test/ subfolders"):
        folder.plan(tmp_path)
    assert {u.clips[0].split for u in folder.plan(tmp_path, split="all")} == {"all"}
    splits = tmp_path / "splits.csv"
    splits.write_text("video_id,split,person_id\nx,train,p1\ny,test,p2\n")
    got = {u.clips[0].video_id: (u.clips[0].split, u.clips[0].person_id) for u in folder.plan(tmp_path, splits=splits)}
    assert got == {"x": ("train", "p1"), "y": ("test", "p2")}
    splits.write_text("video_id,split\nx,train\n")
    with pytest.raises(AnimbenchError, match="no row for video 'y'"):
        folder.plan(tmp_path, splits=splits)


def test_fashion_pads_to_square(tmp_path, ray_session):
    """fashion: full frames padded (white) to a square, resized; a listed URL not on disk is a failure row."""
    make_video(tmp_path / "src" / "v1.mp4", 10, 64, 96, seed=8)  # portrait 64 wide x 96 high
    (tmp_path / "train.txt").write_text("v1.mp4\nhttps://example.invalid/fashion/v2.mp4\n")
    units = fashion.plan(tmp_path / "src", train_list=tmp_path / "train.txt")
    config = PrepConfig("fashion", size=48, pad=True, pad_value=255)
    summary = run_prep(units, tmp_path / "store", config, workers=2, progress=False)
    assert [(f["video_id"], f["stage"], f["error"]) for f in summary.failures] == [("v2", "input", "MissingFile")]
    assert "--download" in summary.failures[0]["message"]
    frames = FrameStore(tmp_path / "store").read("v1")
    assert frames.shape == (10, 48, 48, 3)
    assert (frames[:, :, :7] == 255).all() and (frames[:, :, -7:] == 255).all()  # 16 px side bars -> 8 at 48
    inner = cv2.resize(cv2.copyMakeBorder(decode_all(tmp_path / "src" / "v1.mp4")[0], 0, 0, 16, 16,
                                          cv2.BORDER_CONSTANT, value=(255, 255, 255)), (48, 48),
                       interpolation=cv2.INTER_AREA)
    assert np.array_equal(frames[0], inner)


def test_monkeynet_strips_import(shared_dir, tmp_path, ray_session):
    """Monkey-Net's action strips (RGBA PNG data named .jpg) import with frame count = width // height."""
    src = shared_dir / "data" / "monkeynet" / "actions"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    summary = run_prep(folder.plan(src), tmp_path / "store", PrepConfig("folder", size=0), workers=2,
                       progress=False)
    assert summary.failures == []
    store = FrameStore(tmp_path / "store")
    assert len(store.videos("train")) == 57 and len(store.videos("test")) == 15
    for split in ("train", "test"):
        for path in sorted((src / split).glob("*.jpg")):
            strip = read_image(path)
            assert store.num_frames(path.stem) == strip.shape[1] // 64
        first = sorted((src / split).glob("*.jpg"))[0]
        assert np.array_equal(store.read(first.stem, [1])[0], read_image(first)[:, 64:128])
    assert 51 <= store.videos_table["num_frames"].min() and store.videos_table["num_frames"].max() <= 146


def test_recipe_input_errors(tmp_path):
    """Bad inputs are one-line errors naming the file and field."""
    bad = tmp_path / "meta.csv"
    bad.write_text("video_id,start,end,bbox\nx,0,10,1-2-3-4\n")
    with pytest.raises(AnimbenchError, match="missing column"):
        vox.plan(tmp_path, bad)
    write_metadata(bad, [dict(video_id="x", start=5, end=5, bbox="1-2-30-40", fps=25, width=64, height=64,
                              partition="train", person_id="p")])
    with pytest.raises(AnimbenchError, match="line 2: frame range"):
        vox.plan(tmp_path, bad)
    with pytest.raises(AnimbenchError, match="--metadata"):
        vox.plan(tmp_path)
    with pytest.raises(AnimbenchError, match="synth.json is missing|expected `animbench synth` output"):
        synthetic.plan(tmp_path)
