"""Frame sources: decoder backends for video files (PyAV first, decord as the fallback), folders of frame
images (FOMM's png layout) and Monkey-Net's stacked strips, behind one small interface.

Both video backends decode only the range asked for, from the key frame before it. PyAV comes first because its
memory stays bounded (a worker peaks at ~220 MB on 1- and 5-minute 720p sources: benchmarks/prep_memory.py):
decord's decoder thread runs ahead of a slow reader into an unbounded queue (a worker peaked at 1.2-1.9 GB on
a 1-minute 720p source, and a slow reader of a 5-minute one reached 2.4 GB after 2,000 frames, still growing),
and decord can deadlock (decord #373).

Every source yields `(index, frame)` for a half-open range of frame indices: `frames()` as RGB uint8 HxWx3,
`decoded()` as handles (prep/cropscale.py) that convert to RGB only what the caller asks for, the whole frame
or a box scaled to the stored size (the prep worker's path: a PyAV frame is cropped and scaled in YUV).
Decoding runs single-threaded: the pipeline parallelises across videos, and one thread per decoder keeps the
frames identical whatever the worker count.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from plumbing.errors import AnimbenchError
from prep.cropscale import ArrayFrame, AVFrame, AVScaler, Frame

VIDEO_EXTENSIONS = (".mp4", ".gif", ".mov", ".avi", ".mkv", ".webm", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
BACKENDS = ("auto", "decord", "pyav")


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
    _ended_at: int | None = None  # frames in the video, once a range has run into its end
    seek_mode = "direct"  # how a range's first frame is reached: frames read by index here; decoders say theirs

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, RGB frame) for start <= index < stop (to the end when stop is None).

        Raises DecodeStopped when a bounded range cannot be completed or decoding fails midway; at the end of
        the stream its count is the video's length when known (a range starting past the end reports that).
        """
        for index, frame in self.decoded(start, stop):
            yield index, frame.rgb()

    def decoded(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, Frame]]:
        """As frames(), with each frame as a handle (prep.cropscale.Frame) that converts to RGB only what is
        asked of it: the whole frame, or a box scaled to the stored size."""
        expected = start
        self._ended_at = None
        try:
            for index, frame in self._iter(start, stop):
                expected = index + 1
                yield index, frame
        except DecodeStopped:
            raise
        except Exception as exc:  # a decoder error midway: report how far decoding got
            raise DecodeStopped(expected, exc) from exc
        if stop is not None and expected < stop:
            ended = self._ended_at
            raise DecodeStopped(expected if ended is None else min(expected, ended))

    def _iter(self, start: int, stop: int | None) -> Iterator[tuple[int, Frame]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the decoder."""


class DecordSource(FrameSource):
    """decord.VideoReader, one thread, read frame by frame with `next()`.

    decord decodes only the clip: opening indexes every packet's pts and key flag (for mp4 from the moov
    index, in milliseconds), and `seek_accurate` goes to the key frame at or before the frame asked for, unless
    decoding on from the current frame is shorter, then decodes forward to it. `next()` rather than
    `get_batch`: reading 400 720p frames in 32-frame batches took about twice the CPU and 3-6x the peak memory
    of `next()` (a fresh batch array and its page faults every call). Either way decord's decoder thread runs
    ahead of a slow reader into an unbounded queue (see the module's docstring), so 'auto' prefers PyAV.
    """

    backend = "decord"
    seek_mode = "keyframe (decord)"

    def __init__(self, path: str) -> None:
        import decord

        self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())
        self._next = 0  # the frame next() returns

    def _iter(self, start: int, stop: int | None) -> Iterator[tuple[int, Frame]]:
        end = self.num_frames if stop is None else min(stop, self.num_frames)
        if stop is None or stop > self.num_frames:  # the range runs into the end of the video
            self._ended_at = self.num_frames
        if start >= end:
            return
        if start != self._next:
            self._next = -1  # unknown until the seek returns
            self._reader.seek_accurate(start)
        for index in range(start, end):
            frame = self._reader.next().asnumpy()
            self._next = index + 1
            yield index, ArrayFrame(frame)

    def close(self) -> None:
        """Drop the reader (decord frees its buffers on deletion)."""
        self._reader = None


class _OffGrid(Exception):
    """A decoded frame whose pts is not where constant-rate seeking expects it (the message says why)."""


class PyAVSource(FrameSource):
    """PyAV; robust where decord fails (gif, broken indexes). A range that starts after frame 0 seeks to the key
    frame before it and decodes forward, numbering frames by pts: exact for constant-frame-rate video, where
    frame i has pts start_time + i / fps. Video that is variable-rate (average rate != base rate), lacks
    timestamps, or whose decoded pts leave that grid decodes sequentially from frame 0 instead, as before
    seeking existed; `seek_mode` records which ("keyframe", or "sequential (why)")."""

    backend = "pyav"

    def __init__(self, path: str) -> None:
        import av

        self._path = path
        self._container = av.open(path)
        if not self._container.streams.video:
            self._container.close()
            raise AnimbenchError(f"{path}: no video stream")
        self._stream = self._open_stream()
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.num_frames = int(stream.frames) or None
        self._fresh = True  # nothing demuxed yet: a range from frame 0 needs no seek
        self._t0 = stream.start_time
        self._ticks = None  # stream time-base ticks per frame, as a Fraction
        base, tb = stream.base_rate, stream.time_base
        if not (base and tb and self._t0 is not None and stream.average_rate):
            self.seek_mode = "sequential (no frame rate, time base or start time to seek by)"
        elif abs(stream.average_rate / base - 1) > 1e-3:
            self.seek_mode = f"sequential (variable frame rate: average {stream.average_rate} != base {base})"
        else:
            self.seek_mode = "keyframe"
            self._ticks = 1 / (Fraction(base) * Fraction(tb))

    def _open_stream(self):
        stream = self._container.streams.video[0]
        stream.thread_count = 1
        self._scaler = AVScaler(stream.time_base)
        return stream

    def _index(self, frame) -> int:
        """The frame's index from its pts; _OffGrid when it is not (within a quarter frame) on the rate's grid."""
        if frame.pts is None:
            raise _OffGrid("a decoded frame has no pts")
        position = (frame.pts - self._t0) / self._ticks
        index = round(position)
        if abs(position - index) > Fraction(1, 4) or index < 0:
            raise _OffGrid(f"pts {frame.pts} is frame {float(position):.2f} at {float(1 / self._ticks)} ticks/frame")
        return index

    def _decoded(self, start: int) -> Iterator:
        """Frames decoded from the demuxer's position. Packets of frames before `start` skip non-reference
        frames (no frame refers to them, so frames from `start` on are unchanged; a GOP's pre-roll costs about a
        third less); the last packet's frame number is kept as the video's end."""
        context = self._stream.codec_context
        first_pts = self._t0 + (start - Fraction(1, 2)) * self._ticks
        try:
            for packet in self._container.demux(self._stream):
                if packet.pts is not None:
                    self._last_packet = max(self._last_packet, round((packet.pts - self._t0) / self._ticks))
                context.skip_frame = "NONREF" if packet.pts is not None and packet.pts < first_pts else "DEFAULT"
                yield from context.decode(packet)
        finally:
            context.skip_frame = "DEFAULT"

    def _seeking(self, start: int, stop: int | None) -> Iterator[tuple[int, Frame]]:
        """Seek to the key frame at or before `start`, decode forward; frames from `start` must be consecutive."""
        back = 0
        while True:  # a demuxer that lands after `start` (it may seek by dts) is asked again, further back
            target = self._t0 + int((start - back) * self._ticks)
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            self._fresh, self._last_packet = False, -1
            frames = self._decoded(start)
            first = next(frames, None)
            if first is None:  # nothing after the key frame: the range starts after the end
                self._ended_at = self._last_packet + 1 if self._last_packet >= 0 else None
                return
            index = self._index(first)
            if index <= start:
                break
            if start - back <= 0:
                raise _OffGrid(f"seeking to frame 0 lands on frame {index}")
            back = min(start, max(1, 2 * back))
        expected = start
        for frame in itertools.chain([first], frames):
            index = self._index(frame)
            if index < start and expected == start:
                continue  # the pre-roll from the key frame
            if index != expected:
                raise _OffGrid(f"frame {expected} expected, pts gives frame {index}")
            expected += 1
            if stop is not None and index >= stop:
                return
            yield index, AVFrame(frame, self._scaler)
        if self._last_packet >= 0:  # the stream's last frame, also when the range starts after it
            self._ended_at = max(self._last_packet + 1, expected if expected > start else 0)

    def _sequential(self, start: int, stop: int | None) -> Iterator[tuple[int, Frame]]:
        """Decode from the first frame, numbering frames as they come."""
        if not self._fresh:  # reopen rather than seek to 0: the first frames are exactly where decoding starts
            import av

            self._container.close()
            self._container = av.open(self._path)
            self._stream = self._open_stream()
        self._fresh = False
        count = 0
        for count, frame in enumerate(self._container.decode(self._stream), 1):
            index = count - 1
            if stop is not None and index >= stop:
                return
            if index >= start:
                yield index, AVFrame(frame, self._scaler)
        self._ended_at = count

    def _iter(self, start: int, stop: int | None) -> Iterator[tuple[int, Frame]]:
        if start > 0 and self.seek_mode == "keyframe":
            try:
                for index, frame in self._seeking(start, stop):
                    start = index + 1
                    yield index, frame
                return
            except _OffGrid as why:  # this file breaks the constant-rate assumption: number frames by count
                self.seek_mode = f"sequential ({why})"
        yield from self._sequential(start, stop)

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

    def _iter(self, start: int, stop: int | None) -> Iterator[tuple[int, Frame]]:
        end = self.num_frames if stop is None else min(stop, self.num_frames)
        for index in range(start, end):
            yield index, ArrayFrame(read_image(self._files[index]))


class StripSource(FrameSource):
    """A stacked strip H x (T*W): frames side by side; T = floor(strip width / W), as Monkey-Net splits them."""

    backend = "strip"

    def __init__(self, path: str, frame_width: int | None = None) -> None:
        self._strip = read_image(path)
        self.frame_width = int(frame_width or self._strip.shape[0])
        self.num_frames = self._strip.shape[1] // self.frame_width

    def _iter(self, start: int, stop: int | None) -> Iterator[tuple[int, Frame]]:
        end = self.num_frames if stop is None else min(stop, self.num_frames)
        w = self.frame_width
        for index in range(start, end):
            yield index, ArrayFrame(np.ascontiguousarray(self._strip[:, index * w:(index + 1) * w]))


def open_source(path: str | os.PathLike, kind: str = "video", backend: str = "auto",
                frame_width: int | None = None) -> FrameSource:
    """Open a video file ('video'), a frame folder ('frames') or a strip image ('strip').

    backend 'auto' opens PyAV and falls back to decord when PyAV cannot open the file (PyAV's error is raised
    when neither can).
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
    if backend == "decord":
        return DecordSource(path)
    if backend == "pyav" or path.lower().endswith(".gif"):  # decord cannot time gifs
        return PyAVSource(path)
    try:
        return PyAVSource(path)
    except Exception as first:  # noqa: BLE001 - any PyAV failure means: try the other decoder
        try:
            return DecordSource(path)
        except Exception as second:  # noqa: BLE001 - PyAV's error is the one that names the problem
            first.add_note(f"decord also failed: {type(second).__name__}: {str(second).strip()[:200]}")
            raise first from None


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
