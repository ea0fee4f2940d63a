"""The frame store: round trips, row-group reads, manifest and hash checks, crash safety, export."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from animbench.cli import main as cli_main
from plumbing.errors import AnimbenchError
from prep.export import export_mp4, export_png_layout, import_png_layout
from prep.pairs import FramePairDataset
from prep.store import EncodeOptions, FrameStore, FrameStoreWriter, verify_store


def _video(seed: int, n: int = 20, h: int = 24, w: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _write(root: Path, videos: dict[str, np.ndarray], **kwargs) -> dict:
    with FrameStoreWriter(root, {"recipe": "test"}, **kwargs) as w:
        for i, (vid, frames) in enumerate(videos.items()):
            w.add_video(vid, frames, split="train" if i % 3 else "test", person_id=f"p{i % 2}", fps=25.0)
    return json.loads((root / "manifest.json").read_text())


@pytest.fixture()
def videos() -> dict[str, np.ndarray]:
    return {f"v{i}": _video(i, n=10 + 7 * i) for i in range(5)}


def test_png_round_trip_is_pixel_exact(tmp_path, videos):
    _write(tmp_path / "s", videos, shard_frames=40)
    store = FrameStore(tmp_path / "s")
    assert len(store.manifest["shards"]) > 1  # several shards, videos never split across them
    for vid, frames in videos.items():
        np.testing.assert_array_equal(store.read(vid), frames)
        np.testing.assert_array_equal(store.read(vid, [3, 0, 3]), frames[[3, 0, 3]])
        np.testing.assert_array_equal(np.stack(list(store.iter_frames(vid, chunk=4))), frames)


def test_frames_are_contiguous_and_ordered_in_plain_parquet(tmp_path, videos):
    _write(tmp_path / "s", videos)
    frames = pd.read_parquet(tmp_path / "s" / "frames")
    videos_table = pd.read_parquet(tmp_path / "s" / "videos.parquet")
    assert len(frames) == sum(len(v) for v in videos.values()) == videos_table["num_frames"].sum()
    for vid, group in frames.groupby("video_id", sort=False):
        assert list(group["frame_index"]) == list(range(len(videos[vid])))
        assert np.all(np.diff(group.index) == 1)  # contiguous rows


def test_duckdb_reads_the_store(tmp_path, videos):
    duckdb = pytest.importorskip("duckdb")
    _write(tmp_path / "s", videos)
    con = duckdb.connect()
    n = con.execute(f"select count(*) from read_parquet('{tmp_path}/s/frames/*.parquet')").fetchall()[0][0]
    assert n == sum(len(v) for v in videos.values())


def test_jpeg_option_is_recorded_and_close(tmp_path, videos):
    yy, xx = np.mgrid[0:48, 0:64]
    smooth = {f"v{i}": np.stack([np.stack([xx * 3 + t, yy * 4, (xx + yy + 5 * i) * 2], -1) for t in range(6)])
              .clip(0, 255).astype(np.uint8) for i in range(3)}
    manifest = _write(tmp_path / "s", smooth, encode=EncodeOptions("jpeg", jpeg_quality=95))
    assert manifest["encoding"] == {"image_format": "jpeg", "jpeg_quality": 95}
    store = FrameStore(tmp_path / "s")
    err = np.abs(store.read("v1").astype(int) - smooth["v1"].astype(int)).mean()
    assert 0 < err < 2


def test_reading_one_frame_touches_one_row_group(tmp_path):
    _write(tmp_path / "s", {"long": _video(1, n=200, h=64, w=64)}, row_group_size=16)
    shard = tmp_path / "s" / "frames" / "shard-00000.parquet"
    md = pq.ParquetFile(shard).metadata
    assert md.num_row_groups == 13
    store = FrameStore(tmp_path / "s")
    store.read("long", [137])
    assert store.stats.row_groups_read == 1
    assert store.stats.bytes_read == md.row_group(137 // 16).total_byte_size
    assert store.stats.bytes_read < shard.stat().st_size / 10


def test_missing_manifest_does_not_open_and_verify_fails(tmp_path, videos, capsys):
    _write(tmp_path / "s", videos)
    (tmp_path / "s" / "manifest.json").unlink()
    with pytest.raises(AnimbenchError, match="manifest.json is missing"):
        FrameStore(tmp_path / "s")
    assert cli_main(["store", "verify", str(tmp_path / "s")]) == 1
    assert "manifest.json is missing" in capsys.readouterr().out
    assert cli_main(["store", "info", str(tmp_path / "s")]) == 2


def test_shard_hash_mismatch_is_named(tmp_path, videos, capsys):
    _write(tmp_path / "s", videos, shard_frames=40)
    shard = sorted((tmp_path / "s" / "frames").glob("*.parquet"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify_store(tmp_path / "s")
    assert len(problems) == 1 and shard.name in problems[0]
    assert cli_main(["store", "verify", str(tmp_path / "s")]) == 1
    assert f"shard {shard.name}" in capsys.readouterr().out


def test_verify_passes_on_intact_store(tmp_path, videos):
    _write(tmp_path / "s", videos)
    assert verify_store(tmp_path / "s") == []
    assert cli_main(["store", "verify", str(tmp_path / "s")]) == 0


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from prep.store import FrameStoreWriter

    def frames():
        rng = np.random.default_rng(0)
        for i in range(10_000):
            if i == 40:
                print("flushed", flush=True)
            yield rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            if i >= 40:
                time.sleep(0.01)

    w = FrameStoreWriter(sys.argv[1], {}, row_group_size=8)
    w.add_video("done", np.zeros((5, 16, 16, 3), np.uint8), split="train")
    w.add_video("endless", frames(), split="train")
    w.close()
    """
)


def test_writer_killed_mid_shard_leaves_nothing_complete(tmp_path):
    root = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "flushed"
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (root / "manifest.json").exists()
    assert not list((root / "frames").glob("*.parquet"))  # only a hidden temporary shard remains
    with pytest.raises(AnimbenchError, match="incomplete"):
        FrameStore(root)
    assert verify_store(root)
    # a new writer refuses to silently mix with the debris, and replaces it on request
    with pytest.raises(AnimbenchError, match="not empty"):
        FrameStoreWriter(root)
    _write(root, {"v": _video(0)}, overwrite=True)
    assert FrameStore(root).videos() == ["v"]


def test_overwrite_replaces_a_store_but_never_another_folder(tmp_path):
    """--overwrite replaces an earlier store (or a killed writer's frames/); a folder of anything else is
    refused in one line and left as it was."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(AnimbenchError, match="not a frame store .* --overwrite will not delete it"):
        FrameStoreWriter(mine, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "years of work"
    _write(tmp_path / "store", {"a": _video(1)})
    _write(tmp_path / "store", {"b": _video(2)}, overwrite=True)
    assert FrameStore(tmp_path / "store").videos() == ["b"]


def test_bad_frames_are_rejected_with_the_video_named(tmp_path):
    with pytest.raises(AnimbenchError, match="video 'bad' frame 1"):
        with FrameStoreWriter(tmp_path / "s") as w:
            w.add_video("bad", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)])
    assert not (tmp_path / "s" / "manifest.json").exists()


def test_pair_sampler_gives_sorted_pairs_from_one_video(tmp_path, videos):
    # frames carry their own (video, index) in their pixels so the test can see what was read
    tagged = {}
    for v, (vid, frames) in enumerate(videos.items()):
        f = np.zeros_like(frames)
        f[..., 0] = v
        f[..., 1] = np.arange(len(frames))[:, None, None]
        tagged[vid] = f
    _write(tmp_path / "s", tagged)
    ds = FramePairDataset(tmp_path / "s", "train", num_repeats=25, seed=3)
    assert len(ds) == 25 * len(ds.items)
    same = 0
    for i in range(len(ds)):
        item = ds[i]
        src, drv = (item["source"] * 255).round().long(), (item["driving"] * 255).round().long()
        assert src.shape == (3, 24, 32)
        vid_index = list(videos).index(item["video_id"])
        assert src[0].unique().tolist() == [vid_index] == drv[0].unique().tolist()
        s, d = int(src[1, 0, 0]), int(drv[1, 0, 0])
        assert s <= d and [s, d] == item["frame_indices"].tolist()
        same += s == d
    assert same > 0  # drawn with replacement: identical frames happen
    again = FramePairDataset(tmp_path / "s", "train", num_repeats=25, seed=3)
    assert [again.sample(i) for i in range(5)][0][0] == ds.sample(0)[0]
    ds.set_epoch(1)
    assert any(ds.sample(i)[1].tolist() != again.sample(i)[1].tolist() for i in range(10))


def test_identity_sampling_draws_videos_of_one_person(tmp_path, videos):
    _write(tmp_path / "s", videos)
    ds = FramePairDataset(tmp_path / "s", "train", id_sampling=True, num_repeats=10)
    table = ds.store.videos_table.set_index("video_id")
    assert ds.items == sorted(table[table["split"] == "train"]["person_id"].unique())
    seen = {p: set() for p in ds.items}
    for i in range(len(ds)):
        vid, _ = ds.sample(i)
        seen[ds.items[i % len(ds.items)]].add(vid)
        assert table.loc[vid, "person_id"] == ds.items[i % len(ds.items)]
    assert any(len(s) > 1 for s in seen.values())


def test_export_png_layout_and_back_is_pixel_exact(tmp_path, videos):
    _write(tmp_path / "s", videos)
    assert cli_main(["store", "export", str(tmp_path / "s"), "--out", str(tmp_path / "fomm")]) == 0
    folders = sorted(p.relative_to(tmp_path / "fomm").as_posix() for p in (tmp_path / "fomm").glob("*/*"))
    assert "train/v1.mp4" in folders and "test/v0.mp4" in folders
    assert sorted(p.name for p in (tmp_path / "fomm" / "test" / "v0.mp4").iterdir())[:2] == ["0000000.png",
                                                                                            "0000001.png"]
    from skimage.io import imread  # the way FOMM reads them

    np.testing.assert_array_equal(imread(tmp_path / "fomm" / "train" / "v1.mp4" / "0000004.png"), videos["v1"][4])
    import_png_layout(tmp_path / "fomm", tmp_path / "back")
    back = FrameStore(tmp_path / "back")
    assert sorted(back.videos()) == sorted(videos)
    for vid, frames in videos.items():
        np.testing.assert_array_equal(back.read(vid), frames)
    assert back.fingerprint == FrameStore(tmp_path / "s").fingerprint


def test_export_mp4_decodes_with_all_frames(tmp_path, videos):
    import decord

    _write(tmp_path / "s", videos)
    assert export_png_layout(tmp_path / "s", tmp_path / "p", splits=["test"]) == 2
    assert export_mp4(tmp_path / "s", tmp_path / "m", splits=["train"]) == 3
    reader = decord.VideoReader(str(tmp_path / "m" / "train" / "v1.mp4"))
    assert len(reader) == len(videos["v1"]) and reader[0].shape == (24, 32, 3)
    with pytest.raises(AnimbenchError, match="no split"):
        export_mp4(tmp_path / "s", tmp_path / "m", splits=["val"])


def test_png_encoder_and_zlib_level_are_recorded_and_lossless(tmp_path, videos):
    zlib = _write(tmp_path / "zlib", videos, encode=EncodeOptions("png", png_compression=0))
    default = _write(tmp_path / "default", videos)
    assert zlib["encoding"]["png_compression"] == 0 and "png_compression" not in default["encoding"]
    assert default["encoding"]["png_encoder"].startswith("fpng ")
    for name in ("zlib", "default"):
        np.testing.assert_array_equal(FrameStore(tmp_path / name).read("v2"), videos["v2"])
    with pytest.raises(AnimbenchError, match="png compression 12"):
        EncodeOptions("png", png_compression=12)
