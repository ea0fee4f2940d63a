"""Decoding only the clip: both backends seek to the key frame before a range and give exactly the frames that
decoding from frame 0 gives, on h264 with several GOPs and B-frames; past-the-end ranges stop as before; a
variable-frame-rate video falls back to decoding from frame 0 (recorded); the worker streams every clip and
seeks between far ones."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from prep.config import PrepConfig
from prep.decode import DecodeStopped, open_source
from prep.recipes import Clip, Unit
from prep.worker import SEEK_GAP, UnitProcessor, _lanes, _runs
from tests.prep.prep_helpers import pattern_frame

BACKENDS = ("decord", "pyav")
GOP = 25


def gop_video(path, num_frames: int, gop: int = GOP, width: int = 64, height: int = 48,
              pts_steps: list[int] | None = None):
    """An h264 mp4 with a key frame every `gop` frames and 2 B-frames (some of them references); with
    `pts_steps` (milliseconds between frames, cycled) its frame rate is variable."""
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2:b-pyramid=normal"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "x264-params": params})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if pts_steps:
            stream.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(pattern_frame(i, width, height), format="rgb24")
            if pts_steps:
                frame.pts, frame.time_base = t, Fraction(1, 1000)
                t += pts_steps[i % len(pts_steps)]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """130 frames: 6 GOPs (key frames at 0, 25, ..., 125), B-frames between."""
    path = gop_video(tmp_path_factory.mktemp("gop") / "gop.mp4", 130)
    with av.open(str(path)) as c:
        kinds = {int(f.pict_type) for f in c.decode(video=0)}
    assert {1, 2, 3} <= kinds, kinds  # AVPictureType I, P and B: the test is about B-frames too
    return path


def sequential(path, backend: str) -> np.ndarray:
    """Every frame, decoding from frame 0 (one range from 0, no seek)."""
    source = open_source(path, backend=backend)
    try:
        return np.stack([f for _, f in source.frames(0, None)])
    finally:
        source.close()


RANGES = [(60, 72), (25, 30), (24, 26), (1, 5), (124, 130), (99, 101), (0, 3), (126, 127), (50, 51)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeking_gives_the_frames_of_decoding_from_zero(video, backend):
    """Clips on, just before and just after key frames, at the start and the end, forwards and backwards on one
    open source and each on a fresh one: the same indices and pixels as decoding from frame 0."""
    ref = sequential(video, backend)
    assert len(ref) == 130
    source = open_source(video, backend=backend)
    for lo, hi in RANGES:
        got = list(source.frames(lo, hi))
        assert [i for i, _ in got] == list(range(lo, hi)), (lo, hi)
        assert all(np.array_equal(f, ref[i]) for i, f in got), (backend, lo, hi)
    assert source.seek_mode.startswith("keyframe"), source.seek_mode
    source.close()
    for lo, hi in RANGES[:3]:
        fresh = open_source(video, backend=backend)
        assert all(np.array_equal(f, ref[i]) for i, f in fresh.frames(lo, hi))
        fresh.close()


def test_both_backends_agree_on_every_frame(video):
    """Seeking changes no pixel between the backends either (both bundle FFmpeg's h264 decoder)."""
    a, b = open_source(video, backend="decord"), open_source(video, backend="pyav")
    for lo, hi in ((40, 60), (101, 130)):
        assert all(np.array_equal(x[1], y[1]) for x, y in zip(a.frames(lo, hi), b.frames(lo, hi), strict=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ranges_past_the_end_stop_with_the_video_length(video, backend):
    """A range starting past the end yields nothing and reports the video's 130 frames; one running past the
    end yields the frames there are, then stops at 130."""
    source = open_source(video, backend=backend)
    with pytest.raises(DecodeStopped) as stop:
        list(source.frames(400, 410))
    assert stop.value.count == 130 and stop.value.cause is None
    got = []
    with pytest.raises(DecodeStopped) as stop:
        got.extend(i for i, _ in source.frames(120, 140))
    assert got == list(range(120, 130)) and stop.value.count == 130
    assert [i for i, _ in source.frames(127, None)] == [127, 128, 129]
    source.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_frame_rate_decodes_from_frame_zero(tmp_path, backend):
    """PyAV numbers frames by pts only on a constant-rate grid: a VFR video decodes from frame 0 instead (the
    source says so); decord numbers frames by its pts index. Either way the frames equal sequential decode."""
    path = gop_video(tmp_path / "vfr.mp4", 60, gop=10, pts_steps=[40, 40, 100])
    ref = sequential(path, backend)
    source = open_source(path, backend=backend)
    if backend == "pyav":
        assert source.seek_mode.startswith("sequential (variable frame rate"), source.seek_mode
    for lo, hi in ((33, 40), (5, 12), (58, 60)):
        got = list(source.frames(lo, hi))
        assert [i for i, _ in got] == list(range(lo, hi))
        assert all(np.array_equal(f, ref[i]) for i, f in got), (lo, hi)
    source.close()


def _clip(name: str, start: int | None, end: int | None) -> Clip:
    return Clip(video_id=name, split="train", start=start, end=end)


def test_clips_stream_in_lanes_and_runs():
    """Overlapping clips go to separate lanes (each streams; nothing is buffered); within a lane, a clip
    starting more than SEEK_GAP frames after the previous one ends starts a new run (a seek)."""
    spans = {"a": (0, 10), "b": (5, 20), "c": (10, 30), "d": (30 + SEEK_GAP, 600), "e": (2000, 2010),
             "f": (2005, None), "g": (9000, 9010)}
    plan = [(_clip(k, lo, hi), lo, hi) for k, (lo, hi) in spans.items()]
    lanes = _lanes(plan)
    assert [[c.video_id for c, _, _ in lane] for lane in lanes] == [["a", "c", "d", "e", "g"], ["b", "f"]]
    assert [[[c.video_id for c, _, _ in run] for run in _runs(lane)] for lane in lanes] == [
        [["a", "c", "d"], ["e"], ["g"]], [["b"], ["f"]]]
    assert _lanes([]) == [] and _runs([]) == []


def _stored(shard) -> dict[str, list[np.ndarray]]:
    table = pq.read_table(shard).to_pylist()
    out: dict[str, list[np.ndarray]] = {}
    for row in sorted(table, key=lambda r: (r["video_id"], r["frame_index"])):
        image = cv2.imdecode(np.frombuffer(row["image"]["bytes"], np.uint8), cv2.IMREAD_COLOR)
        out.setdefault(row["video_id"], []).append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_unit_with_far_apart_clips_stores_the_exact_frames(tmp_path, backend):
    """A unit whose clips lie more than SEEK_GAP frames apart (decoded as separate runs, seeking to each) and
    overlap within a run stores exactly the source frames of every clip; one starting past the end is a failure
    row with the video's length."""
    n = SEEK_GAP + 90
    path = gop_video(tmp_path / "long.mp4", n, width=32, height=24)
    ref = sequential(path, backend)
    spans = {"early": (3, 9), "late": (SEEK_GAP + 40, SEEK_GAP + 52), "overlap": (SEEK_GAP + 45, SEEK_GAP + 60),
             "tail": (n - 6, n), "gone": (n + 400, n + 410)}
    unit = Unit(key="u", source=str(path), clips=tuple(_clip(k, lo, hi) for k, (lo, hi) in spans.items()))
    config = PrepConfig("vox", size=0, decoder=backend)
    result = UnitProcessor(config).run(unit, tmp_path / "shard.parquet")
    assert [f["video_id"] for f in result["failures"]] == ["gone"]
    assert f"({n} frames)" in result["failures"][0]["message"]
    stored = _stored(tmp_path / "shard.parquet")
    assert sorted(stored) == ["early", "late", "overlap", "tail"]
    for name, frames in stored.items():
        lo, hi = spans[name]
        assert len(frames) == hi - lo, name
        assert all(np.array_equal(f, ref[lo + k]) for k, f in enumerate(frames)), name
    # decoding from the first clip to the last would yield n - 3 frames per attempt (the failure makes two)
    assert result["decoded"] < 2 * (n - SEEK_GAP)
    assert result["seek"].startswith("keyframe")
