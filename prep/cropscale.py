"""Decoded frames, and the step that turns one into a stored frame: crop a box, scale it to the stored size.

A decoder hands the worker a frame *handle*: `rgb()` converts the whole frame to RGB (what detection, poses
and masks need) and `crop_scale(box, size)` gives only the stored frame. For a frame PyAV decoded, crop_scale
never converts the whole frame: FFmpeg's libavfilter crops the box out of the frame in its own YUV (a pointer
move, no copy), scales it with libswscale's area filter to the stored size in full-chroma YUV 4:4:4 and only
those pixels are converted to RGB, with the matrix and range the frame is tagged with (as `rgb()` converts).
On 720p h264 that is ~0.4 ms a frame where converting the frame (~0.3-1 ms) and OpenCV's area resize of a
400-700 px crop (1-2 ms: a non-integer ratio takes OpenCV's slow path) took 1.5-3 ms, which made the resize,
not decoding, the cost of a prep worker (benchmarks/prep_throughput.py).

The two scalers agree to about one grey level (mean absolute difference 1.3 on synthetic h264 faces, whose
hard colour edges are the worst case: the 4:2:0 chroma is interpolated once in YUV instead of after a
nearest-neighbour upsampling to RGB); `--scaler opencv` keeps the RGB + cv2.INTER_AREA path of earlier stores.
Frames that are already RGB (decord, frame folders) always take that path.
"""

from __future__ import annotations

import functools
from typing import Protocol

import cv2
import numpy as np

SCALERS = ("ffmpeg", "opencv")
Box = tuple[int, int, int, int]  # left, top, right, bottom: a non-empty box inside the frame


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV's area filter to (width, height): the RGB path's resize (and the masks')."""
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class Frame(Protocol):
    """A decoded frame: its (width, height), the scaler its crop_scale uses (one of SCALERS), the whole frame as
    RGB, or a box of it scaled to a size as RGB."""

    size: tuple[int, int]
    scaler: str

    def rgb(self) -> np.ndarray: ...

    def crop_scale(self, box: Box, size: tuple[int, int]) -> np.ndarray: ...


class ArrayFrame:
    """A frame decoded to RGB already (decord, images): crop_scale crops and resizes with OpenCV's area filter."""

    scaler = "opencv"

    def __init__(self, array: np.ndarray) -> None:
        self._array = array
        self.size = (array.shape[1], array.shape[0])

    def rgb(self) -> np.ndarray:
        """The frame, H x W x 3 uint8 RGB."""
        return self._array

    def crop_scale(self, box: Box, size: tuple[int, int]) -> np.ndarray:
        """box of the frame, resized to size = (width, height): H x W x 3 uint8 RGB."""
        left, top, right, bottom = box
        crop = self._array[top:bottom, left:right]
        return np.ascontiguousarray(crop if crop.shape[1::-1] == size else area_resize(crop, size))


# 8-bit YUV formats libavfilter crops and scales to full-chroma YUV of the same range without a conversion,
# with their chroma subsampling (horizontal, vertical)
_YUV_444 = {"yuv420p": "yuv444p", "yuv422p": "yuv444p", "yuv444p": "yuv444p",
            "yuvj420p": "yuvj444p", "yuvj422p": "yuvj444p", "yuvj444p": "yuvj444p"}
_SUBSAMPLED = {"yuv420p": (1, 1), "yuv422p": (1, 0), "yuvj420p": (1, 1), "yuvj422p": (1, 0)}


def _chroma_position(fmt: str, left: int, top: int) -> str:
    """libswscale's input chroma position (1/256 luma pixel) for a box cut at (left, top). Uncut, libswscale
    puts a subsampled chroma sample at the centre of the luma pixels it covers (128); a box cut at an odd
    corner starts mid-sample (the crop's chroma planes start at left >> 1), so the sample sits a luma pixel
    earlier (-128). Left alone, such a box would be coloured one pixel off."""
    h, v = _SUBSAMPLED.get(fmt, (0, 0))
    return "".join(f":in_{axis}_chr_pos={128 - 256 * (at % 2)}" for axis, sub, at in (("h", h, left), ("v", v, top))
                   if sub)


class AVScaler:
    """libavfilter's buffer -> crop -> scale(area) -> format(yuv444p) -> buffersink, rebuilt only when the
    frame's size or format, the box or the size changes (once a clip). One per decoder."""

    def __init__(self, time_base) -> None:
        self._time_base = time_base
        self._key = None
        self._graph = None

    def __call__(self, frame, box: Box, size: tuple[int, int]) -> np.ndarray:
        import av.filter

        fmt = frame.format.name
        key = (frame.width, frame.height, fmt, box, size)
        if key != self._key:
            left, top, right, bottom = box
            graph = av.filter.Graph()
            chain = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                      time_base=self._time_base),
                     graph.add("crop", f"{right - left}:{bottom - top}:{left}:{top}:exact=1"),
                     graph.add("scale", f"{size[0]}:{size[1]}:flags=area{_chroma_position(fmt, left, top)}"),
                     graph.add("format", _YUV_444[fmt]),
                     graph.add("buffersink")]
            for a, b in zip(chain[:-1], chain[1:], strict=True):
                a.link_to(b)
            graph.configure()
            self._graph, self._key = graph, key
        tags = frame.colorspace, frame.color_range
        frame.colorspace, frame.color_range = 2, 0  # untagged through the graph: it scales, never converts
        try:
            self._graph.push(frame)
        finally:
            frame.colorspace, frame.color_range = tags
        out = self._graph.pull()  # full-chroma YUV: its Y, U, V planes, interleaved by cv2.merge (one copy)
        yuv = cv2.merge([np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width] for p in out.planes])
        return cv2.transform(yuv, yuv_to_rgb_matrix(*tags))


# Kr, Kb of the matrices libswscale knows, by AVColorSpace (1 BT.709, 4 FCC, 5/6 BT.601, 7 SMPTE 240M,
# 9/10 BT.2020); any other tag (2: unspecified) is BT.601, as in libswscale
_KR_KB = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}


@functools.lru_cache(maxsize=32)
def yuv_to_rgb_matrix(colorspace: int, color_range: int) -> np.ndarray:
    """The 3 x 4 affine map (for cv2.transform) from 8-bit Y, U, V to R, G, B of a frame tagged with this
    AVColorSpace and AVColorRange (2: full, JPEG; anything else: limited, MPEG): the conversion libswscale
    makes, in floating point (libswscale's fixed-point tables agree to within a grey level)."""
    kr, kb = _KR_KB.get(colorspace, (0.299, 0.114))
    kg = 1 - kr - kb
    y_scale, c_scale, y0 = (1.0, 1.0, 0.0) if color_range == 2 else (255 / 219, 255 / 224, 16.0)
    rows = np.array([[1, 0, 2 * (1 - kr)],
                     [1, -2 * (1 - kb) * kb / kg, -2 * (1 - kr) * kr / kg],
                     [1, 2 * (1 - kb), 0]])
    m = rows * np.array([y_scale, c_scale, c_scale])
    out = np.hstack([m, -(m @ np.array([y0, 128.0, 128.0]))[:, None]]).astype(np.float32)
    out.flags.writeable = False  # cached: shared by every caller
    return out


class AVFrame:
    """A frame PyAV decoded, still in its own pixel format; crop_scale goes through the decoder's AVScaler
    when the format is 8-bit YUV (else through the RGB path)."""

    def __init__(self, frame, scaler: AVScaler) -> None:
        self._frame = frame
        self._scaler = scaler
        self._rgb: np.ndarray | None = None
        self.size = (frame.width, frame.height)
        self.scaler = "ffmpeg" if frame.format.name in _YUV_444 else "opencv"

    def rgb(self) -> np.ndarray:
        """The whole frame, H x W x 3 uint8 RGB (converted once)."""
        if self._rgb is None:
            self._rgb = self._frame.to_ndarray(format="rgb24")
        return self._rgb

    def crop_scale(self, box: Box, size: tuple[int, int]) -> np.ndarray:
        """box of the frame scaled to size = (width, height) in YUV, then converted: H x W x 3 uint8 RGB."""
        if self.scaler == "opencv":
            return ArrayFrame(self.rgb()).crop_scale(box, size)
        return self._scaler(self._frame, box, size)
