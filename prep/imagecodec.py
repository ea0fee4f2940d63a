"""Encode and decode single frames; the encode options the frame store records live here, beside the code that
applies them.

Formats (`EncodeOptions.image_format`):
- "png" (default): ordinary lossless PNG written by fpng (SIMD Up filter + a fast deflate): ~15x faster to
  encode than zlib level 1 on 256x256 video frames for ~1.2x the bytes (`benchmarks/png_encoders.py`). With
  an explicit `png_compression` level the frames are written by OpenCV's zlib instead (the encoder before
  fpng). Either output opens pixel-exact in every PNG reader (OpenCV, Pillow, imageio, browsers).
- "jpeg": lossy, with a quality (OpenCV / libjpeg-turbo).
- "jxl": lossless JPEG XL via imagecodecs (libjxl), effort 1 by default: ~0.7x the bytes of zlib-1 PNG and ~5x
  faster to encode, but slower to decode than fpng PNG, and fewer readers open it: imagecodecs (so
  `decode_image` here), Pillow only with the `pillow-jxl-plugin` package imported (`import pillow_jxl`),
  imageio through that Pillow plugin; the OpenCV wheels on PyPI do not read it.

Output is deterministic (same pixels and options -> same bytes): fpng's SIMD and scalar paths compute the same
filter and checksums, and libjxl runs single-threaded here. The manifest records the encoder and its version.
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from plumbing.errors import AnimbenchError

cv2.setNumThreads(1)

FORMATS = ("png", "jpeg", "jxl")
JXL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")  # bare codestream, ISO BMFF container


@dataclass
class EncodeOptions:
    """How frames are encoded: lossless PNG (default, fpng; zlib at `png_compression` when that is given),
    JPEG with a quality, or lossless JPEG XL with an effort (1 fastest .. 9 smallest)."""

    image_format: str = "png"
    jpeg_quality: int = 95
    png_compression: int | None = None
    jxl_effort: int = 1

    def __post_init__(self) -> None:
        if self.image_format not in FORMATS:
            raise AnimbenchError(f"image format {self.image_format!r}: expected one of {', '.join(FORMATS)}")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise AnimbenchError(f"jpeg quality {self.jpeg_quality}: expected 1..100")
        if self.png_compression is not None and not 0 <= int(self.png_compression) <= 9:
            raise AnimbenchError(f"png compression {self.png_compression}: expected 0..9 (or none for fpng)")
        if not 1 <= int(self.jxl_effort) <= 9:
            raise AnimbenchError(f"jxl effort {self.jxl_effort}: expected 1..9")

    @property
    def png_encoder(self) -> str:
        """'fpng' (default) or 'zlib' (OpenCV, when a png_compression level is given)."""
        return "fpng" if self.png_compression is None else "zlib"

    def as_dict(self) -> dict[str, Any]:
        """The options as recorded in the manifest, with the encoder that applies them and its version."""
        d: dict[str, Any] = {"image_format": self.image_format}
        if self.image_format == "jpeg":
            d["jpeg_quality"] = int(self.jpeg_quality)
        elif self.image_format == "jxl":
            d["jxl_effort"] = int(self.jxl_effort)
            d["jxl_encoder"] = _jxl_version()
        elif self.png_encoder == "fpng":
            d["png_encoder"] = f"fpng {importlib.metadata.version('fpng')}"
        else:
            d["png_encoder"] = f"opencv {cv2.__version__} zlib"
            d["png_compression"] = int(self.png_compression)
            d["png_strategy"] = "rle"
        return d


def encode_image(rgb: np.ndarray, options: EncodeOptions) -> bytes:
    """Encode an RGB uint8 HxWx3 frame; deterministic for the same pixels and options."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise AnimbenchError(f"cannot encode a {rgb.dtype} {rgb.shape} frame: expected uint8 HxWx3 RGB")
    if options.image_format == "png" and options.png_encoder == "fpng":
        return _fpng().fpng_ext.encode_ndarray(np.ascontiguousarray(rgb))
    if options.image_format == "jxl":
        return bytes(_imagecodecs().jpegxl_encode(np.ascontiguousarray(rgb), lossless=True,
                                                   effort=int(options.jxl_effort), numthreads=1))
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    if options.image_format == "png":
        # RLE strategy: ~20% faster to encode and slightly smaller than the default filter on video frames
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, int(options.png_compression),
                                             cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(options.jpeg_quality)])
    if not ok:
        raise AnimbenchError(f"could not encode a {rgb.shape} frame as {options.image_format}")
    return buf.tobytes()


# OpenCV >= 4.10 decodes straight to RGB; older versions need a channel flip (a copy).
_RGB_FLAG = getattr(cv2, "IMREAD_COLOR_RGB", None)


def decode_image(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG/JPEG XL bytes to an RGB uint8 HxWx3 array."""
    if bytes(data[:12]).startswith(JXL_SIGNATURES):
        try:
            img = _imagecodecs().jpegxl_decode(data, numthreads=1)
        except Exception as e:  # imagecodecs raises its own error types per codec
            why = (str(e).splitlines() or [type(e).__name__])[0]
            raise AnimbenchError(f"could not decode a stored JPEG XL frame (corrupt image bytes: {why})") from e
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise AnimbenchError(f"stored JPEG XL frame is {img.dtype} {img.shape}: expected uint8 HxWx3 RGB")
        return img
    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, _RGB_FLAG if _RGB_FLAG is not None else cv2.IMREAD_COLOR)
    if img is None:
        raise AnimbenchError("could not decode a stored frame (corrupt image bytes)")
    return img if _RGB_FLAG is not None else np.ascontiguousarray(img[..., ::-1])


# Imported on first use: readers of PNG/JPEG stores never load them. Both are declared dependencies.
@functools.cache
def _fpng():
    import fpng

    return fpng


@functools.cache
def _imagecodecs():
    import imagecodecs

    return imagecodecs


@functools.cache
def _jxl_version() -> str:
    ic = _imagecodecs()
    return f"imagecodecs {ic.__version__} ({ic.jpegxl_version()})"
