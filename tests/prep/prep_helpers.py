"""Helpers for the prep pipeline tests: one local Ray session for all of them, tiny generated videos."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
from pathlib import Path

import av
import numpy as np
import pytest

_SESSION: dict[str, object] = {}


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray shared by every prep test (starting Ray costs seconds); yields its address. It offers 4
    logical CPUs (on any machine) so that a test can have workers blocked on purpose and others working."""
    import ray

    if "address" not in _SESSION:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        temp = tempfile.mkdtemp(prefix="abt-ray-", dir="/tmp")  # short: Ray puts unix sockets in it
        ray.init(num_cpus=4, include_dashboard=False, _temp_dir=temp, logging_level=logging.ERROR,
                 log_to_driver=False)
        _SESSION.update(address=ray.get_runtime_context().gcs_address, temp=temp)
    yield str(_SESSION["address"])
    if ray.is_initialized() and _SESSION.get("temp"):
        ray.shutdown()
        shutil.rmtree(str(_SESSION.pop("temp")), ignore_errors=True)
        _SESSION.clear()


def pattern_frame(i: int, w: int, h: int, seed: int = 0) -> np.ndarray:
    """A frame with smooth gradients, texture and a moving square: distinct per frame, compresses well."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6.28, 3)
    img = np.stack([127 + 100 * np.sin(x / (7 + c) + y / (11 + c) + phase[c] + 0.3 * i) for c in range(3)], -1)
    s = max(4, min(w, h) // 5)
    cx, cy = (5 + 3 * i + seed * 7) % max(1, w - s), (4 + 2 * i + seed * 3) % max(1, h - s)
    img[cy:cy + s, cx:cx + s] = (255, 40, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_video(path: str | os.PathLike, num_frames: int = 20, width: int = 96, height: int = 64, fps: int = 25,
               seed: int = 0, frames: list[np.ndarray] | None = None, faststart: bool = False) -> Path:
    """An h264 mp4 (PyAV) of pattern frames, or of the frames given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if frames is not None:
        height, width = frames[0].shape[:2]
        num_frames = len(frames)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "16", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.thread_count = 1
        for i in range(num_frames):
            frame = frames[i] if frames is not None else pattern_frame(i, width, height, seed)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_metadata(path: str | os.PathLike, rows: list[dict], with_person: bool = True) -> Path:
    """A vox/taichi-format metadata csv."""
    cols = ["video_id", "start", "end", "bbox", "fps", "width", "height", "partition"]
    if with_person:
        cols.append("person_id")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: r[c] for c in cols})
    return Path(path)


def decode_all(path: str | os.PathLike) -> np.ndarray:
    """Every frame of a video with decord, one thread (the reference the pipeline must reproduce)."""
    import decord

    vr = decord.VideoReader(str(path), num_threads=1)
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def decode_exact(path: str | os.PathLike) -> np.ndarray:
    """Every frame of a 4:2:0 BT.601 video converted to RGB by OpenCV (exact to within rounding). The
    converter libswscale uses for whole frames (PyAV's to_ndarray, decord, imageio) reads ~1.15 grey levels
    darker; `--scaler ffmpeg` converts exactly, so its references come from here."""
    import cv2

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            y, u, v = (np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width] for p in frame.planes)
            i420 = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(-1, frame.width)
            frames.append(cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420))
    return np.stack(frames)


def yuv_area_reference(path: str | os.PathLike, index: int, box: tuple[int, int, int, int],
                       size: tuple[int, int]) -> np.ndarray:
    """What `--scaler ffmpeg` stores for frame `index` of a 4:2:0 video, by another route: the box (even
    corners) cut out of the decoded Y, U and V planes with numpy, scaled by libswscale's area filter to full-chroma
    YUV, converted to RGB with the frame's tags (the conversion is checked against libswscale's apart)."""
    import cv2

    from prep.cropscale import yuv_to_rgb_matrix

    left, top, right, bottom = box
    assert all(v % 2 == 0 for v in box), "the numpy route cuts whole chroma samples: even corners only"
    with av.open(str(path)) as container:
        frame = next(f for i, f in enumerate(container.decode(video=0)) if i == index)
    y, u, v = (np.frombuffer(p, np.uint8).reshape(p.height, p.line_size) for p in frame.planes)
    planes = [y[top:bottom, left:right], u[top // 2:bottom // 2, left // 2:right // 2],
              v[top // 2:bottom // 2, left // 2:right // 2]]
    i420 = np.concatenate([p.ravel() for p in planes]).reshape(-1, right - left)
    cut = av.VideoFrame.from_ndarray(i420, format="yuv420p")
    cut.colorspace, cut.color_range = frame.colorspace, frame.color_range
    yuv = cut.reformat(size[0], size[1], "yuv444p", interpolation="AREA").to_ndarray()
    return cv2.transform(np.ascontiguousarray(yuv.transpose(1, 2, 0)),
                         yuv_to_rgb_matrix(frame.colorspace, frame.color_range))


def assert_scaled_alike(got: np.ndarray, want: np.ndarray, mean: float = 1.5, p99: float = 8) -> None:
    """The two scalers (ffmpeg: crop and area-scale in YUV; opencv: RGB + INTER_AREA) agree about as well as
    two anti-aliased resizes do: a grey level on average, a few at the 99th percentile (chroma at colour edges)."""
    diff = np.abs(got.astype(int) - want.astype(int))
    assert got.shape == want.shape and diff.mean() <= mean and np.percentile(diff, 99) <= p99, (
        f"mean {diff.mean():.3f}, p99 {np.percentile(diff, 99)}")


def flip_frame_byte(root: Path, video_id: str, index: int) -> Path:
    """Flip one byte in the middle of one stored frame's encoded bytes inside its shard (stored raw), as a disk
    fault would; return the shard."""
    from prep.store import FrameStore

    data = FrameStore(root).read_encoded(video_id, [index])[0]
    [shard] = (root / "frames").glob("*.parquet")
    raw = bytearray(shard.read_bytes())
    at = raw.find(data)
    assert at >= 0 and raw.find(data, at + 1) < 0
    raw[at + len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(raw))
    return shard
