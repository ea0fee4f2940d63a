"""Frame sources: decoder backends for video files (decord first, PyAV as the fallback), folders of frame
images (FOMM's png layout) and Monkey-Net's stacked strips, behind one small interface.

Every source yields `(index, frame)` for a half-open range of frame indices, frames as RGB uint8 HxWx3.
Decoding runs single-threaded: the pipeline parallelises across videos, and one thread per decoder keeps the
frames identical whatever the worker count.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from plumbing.errors import AnimbenchError

VIDEO_EXTENSIONS = (".mp4", ".gif", ".mov", ".avi", ".mkv", ".webm", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
BACKENDS = ("auto", "decord", "pyav")
_DECORD_CHUNK = 32  # frames per get_batch call: sequential within a chunk, bounded memory


class DecodeStopped(Exception):
    """Decoding ended before the range asked for: at `count` frames, by an error (`cause`) or end of stream."""

    def __init__(self, count: int, cause: BaseException | None = None) -> None:
        self.count = count
        self.cause = cause
        what = f"{type(cause).__name__}: {str(cause).strip()[:300]}" if cause else "end of stream"
        super().__init__(f"decoding stopped after {count} frames ({what})")


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Grey -> RGB, RGBA -> RGB (alpha dropped, as FOMM's reader does), uint16 -> uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One image file as RGB uint8 (format from the content, not the name: Monkey-Net's .jpg hold PNG data)."""
    data = np.fromfile(str(path), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise AnimbenchError(f"{path}: not a readable image")
    return to_rgb(image)


class FrameSource:
    """A decodable sequence of frames; subclasses fill fps / num_frames / size and implement `_iter`."""

    backend = "none"
    fps: float | None = None  # None for frame folders and strips
    num_frames: int | None = None  # as reported by the container; may be wrong for broken files

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, RGB frame) for start <= index < stop (to the end when stop is None).

        Raises DecodeStopped when a bounded range cannot be completed or decoding fails midway.
        """
        expected = start
        try:
            for index, frame in self._iter(start, stop):
                expected = index + 1
                yield index, frame
        except DecodeStopped:
            raise
        except Exception as exc:  # a decoder error midway: report how far decoding got
            raise DecodeStopped(expected, exc) from exc
        if stop is not None and expected < stop:
            raise DecodeStopped(expected)

    def _iter(self, start: int, stop: int | None) -> Iterator[tuple[int, np.ndarray]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the decoder."""


class DecordSource(FrameSource):
    """decord.VideoReader, one thread, sorted contiguous get_batch chunks (unsorted batches are slow)."""

    backend = "decord"

    def __init__(self, path: str) -> None:
        import decord

        self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())

    def _iter(self, start: int, stop: int | None) -> Iterator[tuple[int, np.ndarray]]:
        end = self.num_frames if stop is None else min(stop, self.num_frames)
        for lo in range(start, end, _DECORD_CHUNK):
            hi = min(end, lo + _DECORD_CHUNK)
            batch = self._reader.get_batch(list(range(lo, hi))).asnumpy()
            for k in range(hi - lo):
                yield lo + k, batch[k]

    def close(self) -> None:
        """Drop the reader (decord frees its buffers on deletion)."""
        self._reader = None


class PyAVSource(FrameSource):
    """PyAV: sequential decode from the first frame; robust where decord fails (gif, broken indexes)."""

    backend = "pyav"

    def __init__(self, path: str) -> None:
        import av

        self._container = av.open(path)
        if not self._container.streams.video:
            self._container.close()
            raise AnimbenchError(f"{path}: no video stream")
        stream = self._container.streams.video[0]
        stream.thread_count = 1
        self._stream = stream
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.num_frames = int(stream.frames) or None

    def _iter(self, start: int, stop: int | None) -> Iterator[tuple[int, np.ndarray]]:
        for index, frame in enumerate(self._container.decode(self._stream)):
            if stop is not None and index >= stop:
                return
            if index >= start:
                yield index, frame.to_ndarray(format="rgb24")

    def close(self) -> None:
        """Close the container."""
        self._container.close()


class FolderSource(FrameSource):
    """A folder of frame images sorted by name ('%07d.png' from the official scripts)."""

    backend = "images"

    def __init__(self, path: str) -> None:
        self._files = sorted(p for p in Path(path).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self._files:
            raise AnimbenchError(f"{path}: frame folder holds no .png/.jpg files")
        self.num_frames = len(self._files)

    def _iter(self, start: int, stop: int | None) -> Iterator[tuple[int, np.ndarray]]:
        end = self.num_frames if stop is None else min(stop, self.num_frames)
        for index in range(start, end):
            yield index, read_image(self._files[index])


class StripSource(FrameSource):
    """A stacked strip H x (T*W): frames side by side; T = floor(strip width / W), as Monkey-Net splits them."""

    backend = "strip"

    def __init__(self, path: str, frame_width: int | None = None) -> None:
        self._strip = read_image(path)
        self.frame_width = int(frame_width or self._strip.shape[0])
        self.num_frames = self._strip.shape[1] // self.frame_width

    def _iter(self, start: int, stop: int | None) -> Iterator[tuple[int, np.ndarray]]:
        end = self.num_frames if stop is None else min(stop, self.num_frames)
        w = self.frame_width
        for index in range(start, end):
            yield index, np.ascontiguousarray(self._strip[:, index * w:(index + 1) * w])


def open_source(path: str | os.PathLike, kind: str = "video", backend: str = "auto",
                frame_width: int | None = None) -> FrameSource:
    """Open a video file ('video'), a frame folder ('frames') or a strip image ('strip').

    backend 'auto' tries decord and falls back to PyAV when decord cannot open the file.
    """
    path = str(path)
    if kind == "frames":
        return FolderSource(path)
    if kind == "strip":
        return StripSource(path, frame_width)
    if kind != "video":
        raise AnimbenchError(f"{path}: unknown source kind {kind!r} (expected video, frames or strip)")
    if backend not in BACKENDS:
        raise AnimbenchError(f"decoder {backend!r}: expected one of {', '.join(BACKENDS)}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if backend == "pyav" or (backend == "auto" and path.lower().endswith(".gif")):  # decord cannot time gifs
        return PyAVSource(path)
    if backend == "decord":
        return DecordSource(path)
    try:
        return DecordSource(path)
    except Exception as first:  # noqa: BLE001 - any decord failure means: try the robust decoder
        try:
            return PyAVSource(path)
        except Exception as second:
            second.add_note(f"decord also failed: {type(first).__name__}: {str(first).strip()[:200]}")
            raise second from first


def frame_range(start: int | None, end: int | None, fps: float | None, ref_fps: float | None
                ) -> tuple[int, int | None]:
    """Source frames [lo, hi) of a clip given at the reference fps, as load_videos.py selects them:
    frame i is kept if i * ref_fps lies in [start * fps, end * fps)."""
    if ref_fps is None or fps is None or ref_fps == fps:
        return (start or 0), end

    def first_at_or_after(t: int) -> int:
        # the smallest i with i * ref_fps >= t * fps, using the same float comparison as the official loader
        i = max(0, math.ceil(t * fps / ref_fps) - 1)
        while i * ref_fps < t * fps:
            i += 1
        return i

    lo = first_at_or_after(start) if start else 0
    hi = first_at_or_after(end) if end is not None else None
    return lo, hi
