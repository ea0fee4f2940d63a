"""Frame handles and the two scalers: PyAV frames cropped and area-scaled in YUV (libavfilter), RGB frames with
OpenCV; the stored frame's box, geometry and colour matrix."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from prep.cropscale import ArrayFrame, AVFrame, AVScaler, yuv_to_rgb_matrix
from prep.decode import open_source
from tests.prep.prep_helpers import (
    assert_scaled_alike,
    decode_exact,
    make_video,
    pattern_frame,
    yuv_area_reference,
)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("cropscale") / "v.mp4", num_frames=6, width=160, height=120)


def _decoded(path, start=0, stop=None):
    source = open_source(path, backend="pyav")
    try:
        return list(source.decoded(start, stop))
    finally:
        source.close()


def test_pyav_frames_are_cut_and_scaled_in_yuv_as_swscale_does(video):
    """An even box: exactly libswscale's area filter of the box cut from the Y, U, V planes (another route)."""
    frames = _decoded(video)
    for box, size in (((20, 10, 120, 110), (64, 64)), ((0, 0, 160, 120), (48, 36)), ((40, 20, 80, 60), (96, 96))):
        for index in (0, 5):
            got = frames[index][1].crop_scale(box, size)
            assert got.shape == (size[1], size[0], 3) and got.dtype == np.uint8
            assert np.array_equal(got, yuv_area_reference(video, index, box, size))


def test_boxes_change_from_frame_to_frame(video):
    """Clips of one run have their own boxes: the scaler rebuilds its graph, each frame gets its box."""
    boxes = [(20, 10, 120, 110), (40, 20, 80, 60), (20, 10, 120, 110), (0, 0, 160, 120)]
    for (index, frame), box in zip(_decoded(video, 0, 4), boxes, strict=True):
        assert np.array_equal(frame.crop_scale(box, (32, 32)), yuv_area_reference(video, index, box, (32, 32)))


def test_an_odd_box_is_where_the_rgb_crop_is(video):
    """Odd corners (chroma cut mid-sample): alike the RGB path's crop of the exactly converted frame, and
    better matched there than one pixel off in any direction (no half-pixel shift)."""
    rgb = decode_exact(video)[2]
    got = _decoded(video, 2, 3)[0][1].crop_scale((21, 13, 121, 105), (50, 46))

    def diff(dx, dy):
        ref = cv2.resize(rgb[13 + dy:105 + dy, 21 + dx:121 + dx], (50, 46), interpolation=cv2.INTER_AREA)
        return np.abs(got.astype(int) - ref).mean()

    assert_scaled_alike(got, cv2.resize(rgb[13:105, 21:121], (50, 46), interpolation=cv2.INTER_AREA), p99=12)
    assert all(diff(0, 0) < diff(dx, dy) for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)))


def test_rgb_frames_take_the_opencv_path():
    """decord / image frames: crop, then cv2.INTER_AREA; a box of the stored size is copied as it is."""
    image = pattern_frame(3, 90, 70)
    frame = ArrayFrame(image)
    assert frame.size == (90, 70) and frame.scaler == "opencv"
    assert np.array_equal(frame.crop_scale((5, 7, 65, 67), (32, 32)),
                          cv2.resize(image[7:67, 5:65], (32, 32), interpolation=cv2.INTER_AREA))
    assert np.array_equal(frame.crop_scale((5, 7, 37, 39), (32, 32)), image[7:39, 5:37])


def _yuv_frame(rgb: np.ndarray, colorspace: int, color_range: int, fmt: str) -> av.VideoFrame:
    """rgb converted to YUV with the matrix and range of the tags it is given (AVCOL_SPC, AVCOL_RANGE)."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format=fmt, dst_colorspace=colorspace if colorspace != 2 else None,
        dst_color_range=color_range if color_range else None)
    frame.colorspace, frame.color_range = colorspace, color_range
    return frame


@pytest.mark.parametrize(("colorspace", "color_range", "fmt"), [(2, 0, "yuv420p"), (1, 1, "yuv420p"),
                                                                 (2, 2, "yuvj420p"), (5, 1, "yuv444p")])
def test_the_frame_tags_choose_the_matrix(colorspace, color_range, fmt):
    """BT.709 / BT.601 / full-range (yuvj) frames: the stored pixels come back to the RGB the video was made
    from, with the matrix and range the frame is tagged with (a wrong matrix is off by tens of grey levels)."""
    rgb = cv2.GaussianBlur(pattern_frame(1, 64, 48), (5, 5), 0)  # 4:2:0 keeps smooth colour
    frame = AVFrame(_yuv_frame(rgb, colorspace, color_range, fmt), AVScaler(Fraction(1, 25)))
    assert frame.scaler == "ffmpeg"
    got = frame.crop_scale((0, 0, 64, 48), (64, 48))
    assert_scaled_alike(got, rgb, p99=12)  # the pattern's red square has sharp colour edges
    wrong = _yuv_frame(rgb, colorspace, color_range, fmt)
    wrong.colorspace = 1 if colorspace != 1 else 5
    assert np.abs(AVFrame(wrong, AVScaler(Fraction(1, 25))).crop_scale((0, 0, 64, 48), (64, 48)).astype(int)
                  - got).max() > 10


def test_other_pixel_formats_go_through_rgb():
    """A frame that is not 8-bit YUV (e.g. a gif's palette frames, rgb24) is converted whole, then OpenCV."""
    frame = AVFrame(av.VideoFrame.from_ndarray(pattern_frame(2, 64, 48), format="rgb24"), AVScaler(Fraction(1, 25)))
    assert frame.scaler == "opencv"
    assert np.array_equal(frame.crop_scale((8, 4, 56, 44), (24, 20)),
                          cv2.resize(frame.rgb()[4:44, 8:56], (24, 20), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("colorspace", [1, 2, 4, 5, 6, 7, 9])
@pytest.mark.parametrize("color_range", [0, 1, 2])
def test_the_conversion_is_libswscales(colorspace, color_range):
    """The stored pixels' YUV -> RGB equals libswscale's for every matrix and range it knows, to a grey level,
    over legal values (libswscale's fixed point wraps on a few limited-range values above white: 0 for 255)."""
    rng = np.random.default_rng(colorspace)
    if color_range == 2:
        yuv = rng.integers(0, 256, (3, 32, 48), dtype=np.uint8)
    else:
        yuv = np.concatenate([rng.integers(16, 236, (1, 32, 48)), rng.integers(16, 241, (2, 32, 48))]).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(yuv, format="yuv444p")
    frame.colorspace, frame.color_range = colorspace, color_range
    want = frame.to_ndarray(format="rgb24").astype(int)
    got = cv2.transform(np.ascontiguousarray(yuv.transpose(1, 2, 0)), yuv_to_rgb_matrix(colorspace, color_range))
    assert np.abs(got - want).max() <= 1


def test_one_box_across_backward_seeks(video):
    """Clips of one video that share a box reuse the scaler's graph across seeks, timestamps going backwards."""
    source = open_source(video, backend="pyav")
    try:
        for start, stop in ((4, 6), (0, 2), (3, 5)):
            for index, frame in source.decoded(start, stop):
                box = (20, 10, 120, 110)
                assert np.array_equal(frame.crop_scale(box, (40, 40)), yuv_area_reference(video, index, box, (40, 40)))
    finally:
        source.close()
