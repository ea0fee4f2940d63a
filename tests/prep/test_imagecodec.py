"""Frame codecs: every lossless encoder's bytes decode pixel-exact in the readers users have, the same pixels give
the same bytes, the manifest records encoder and version, and bad options are one-line errors."""

from __future__ import annotations

import importlib.metadata
import io

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from plumbing.errors import AnimbenchError
from prep.imagecodec import EncodeOptions, decode_image, encode_image
from prep.store import FrameStore, FrameStoreWriter

LOSSLESS_PNG = [EncodeOptions(), EncodeOptions("png", png_compression=0), EncodeOptions("png", png_compression=1)]
LOSSLESS_JXL = [EncodeOptions("jxl"), EncodeOptions("jxl", jxl_effort=3)]


def _frames() -> list[np.ndarray]:
    """A natural photo crop, noise, a smooth gradient, and odd sizes (SIMD tails, 1-pixel rows and columns)."""
    from skimage import data

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:61, 0:83]
    smooth = np.stack([xx * 3, yy * 4, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)
    return [
        np.ascontiguousarray(data.astronaut()[100:356, 120:376]),
        rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
        smooth,
        rng.integers(0, 256, (1, 17, 3), dtype=np.uint8),
        rng.integers(0, 256, (19, 1, 3), dtype=np.uint8),
    ]


FRAMES = _frames()


def _cv2(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def _pil(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("options", LOSSLESS_PNG, ids=lambda o: f"png-{o.png_encoder}-{o.png_compression}")
def test_png_decodes_pixel_exact_in_opencv_pillow_imageio_and_ours(options):
    for frame in FRAMES:
        data = encode_image(frame, options)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        for name, read in (("cv2", _cv2), ("pil", _pil), ("imageio", lambda d: iio.imread(d, extension=".png")),
                           ("animbench", decode_image)):
            np.testing.assert_array_equal(read(data), frame, err_msg=f"{name} on {frame.shape}")


@pytest.mark.parametrize("options", LOSSLESS_JXL, ids=lambda o: f"jxl-e{o.jxl_effort}")
def test_jxl_is_lossless_in_imagecodecs_and_in_pillow_with_the_plugin(options):
    for frame in FRAMES:
        data = encode_image(frame, options)
        np.testing.assert_array_equal(decode_image(data), frame)
    pytest.importorskip("pillow_jxl", reason="pillow-jxl-plugin not installed: Pillow/imageio cannot open JPEG XL")
    for frame in FRAMES:
        data = encode_image(frame, options)
        np.testing.assert_array_equal(_pil(data), frame)
        np.testing.assert_array_equal(iio.imread(data, plugin="pillow"), frame)


@pytest.mark.parametrize("options", LOSSLESS_PNG + LOSSLESS_JXL + [EncodeOptions("jpeg", 90)],
                         ids=lambda o: str(sorted(o.as_dict().items())))
def test_same_pixels_give_the_same_bytes(options):
    frame = FRAMES[0]
    view = np.asarray(np.concatenate([frame, frame], axis=1)[:, : frame.shape[1]])  # non-contiguous strides
    first = encode_image(frame, options)
    assert encode_image(frame.copy(), options) == first
    assert encode_image(view, options) == first


def test_manifest_records_encoder_and_version():
    import imagecodecs

    fpng_version = importlib.metadata.version("fpng")
    assert EncodeOptions().as_dict() == {"image_format": "png", "png_encoder": f"fpng {fpng_version}"}
    zlib = EncodeOptions("png", png_compression=0).as_dict()
    assert zlib["png_encoder"] == f"opencv {cv2.__version__} zlib" and zlib["png_compression"] == 0
    jxl = EncodeOptions("jxl", jxl_effort=2).as_dict()
    assert jxl["jxl_effort"] == 2 and jxl["jxl_encoder"].startswith(f"imagecodecs {imagecodecs.__version__} (libjxl")
    assert EncodeOptions("jpeg", 80).as_dict() == {"image_format": "jpeg", "jpeg_quality": 80}


@pytest.mark.parametrize("kwargs, match", [
    ({"image_format": "webp"}, "image format 'webp': expected one of png, jpeg, jxl"),
    ({"image_format": "jxl", "jxl_effort": 0}, "jxl effort 0: expected 1..9"),
    ({"png_compression": 10}, "png compression 10: expected 0..9"),
    ({"image_format": "jpeg", "jpeg_quality": 0}, "jpeg quality 0: expected 1..100"),
])
def test_bad_options_are_one_line_errors(kwargs, match):
    with pytest.raises(AnimbenchError, match=match) as e:
        EncodeOptions(**kwargs)
    assert "\n" not in str(e.value)


def test_bad_frames_and_corrupt_bytes_are_errors():
    with pytest.raises(AnimbenchError, match="expected uint8 HxWx3 RGB"):
        encode_image(np.zeros((4, 4, 4), np.uint8), EncodeOptions())
    with pytest.raises(AnimbenchError, match="expected uint8 HxWx3 RGB"):
        encode_image(np.zeros((4, 4, 3), np.float32), EncodeOptions("jxl"))
    for options in (EncodeOptions(), EncodeOptions("jxl")):
        data = encode_image(FRAMES[1], options)
        with pytest.raises(AnimbenchError, match="corrupt image bytes"):
            decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("options", [EncodeOptions(), EncodeOptions("jxl")], ids=["png", "jxl"])
def test_a_store_in_each_lossless_format_reads_back_exact_and_records_its_encoder(tmp_path, options):
    rng = np.random.default_rng(1)
    videos = {f"v{i}": rng.integers(0, 256, (4, 24, 32, 3), dtype=np.uint8) for i in range(2)}
    with FrameStoreWriter(tmp_path / "s", {"recipe": "test"}, encode=options) as w:
        for vid, frames in videos.items():
            w.add_video(vid, frames, split="train")
    store = FrameStore(tmp_path / "s")
    assert store.manifest["encoding"] == options.as_dict()
    for vid, frames in videos.items():
        np.testing.assert_array_equal(store.read(vid), frames)
