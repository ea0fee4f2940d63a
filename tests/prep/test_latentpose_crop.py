"""The latent-pose crop (window rule, padding blur and fade, resize rule) and the `--no-crop` driver loader."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
import skimage.data

from plumbing.errors import AnimbenchError
from prep.latentpose_crop import (
    NO_FACE_BOX,
    crop_frame,
    crop_frame_mask,
    downscale_for_detection,
    largest_box,
    latentpose_crop,
    latentpose_crop_mask,
    latentpose_window,
    load_cropped,
    load_cropped_mask,
    pad_to_window,
    read_cropped,
)

# The astronaut's face, as dlib's HOG detector boxes it (left, top, right, bottom).
ASTRONAUT_FACE = (179.0, 83.0, 266.0, 170.0)
# By hand: side max(87, 87) = 87, centre (222.5, 126.5), half-side 87 / 2 * 1.8 = 78.3:
# left 144.2 -> 144, right 300.8 -> 301, top 48.2 -> 48, bottom 204.8 -> 205; square already (157);
# exclusive right/bottom +1 -> columns 144..301, rows 48..205: a 158 px window inside the 512 px image.
ASTRONAUT_WINDOW = (144, 48, 302, 206)


def test_astronaut_crop_matches_hand_computed_window():
    """The crop of a hand-set face box is the hand-computed 158 px window, resized bicubic (256 > 87) to 256."""
    image = skimage.data.astronaut()
    assert latentpose_window(ASTRONAUT_FACE) == ASTRONAUT_WINDOW
    crop = latentpose_crop(image, ASTRONAUT_FACE)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    expected = cv2.resize(image[48:206, 144:302], (256, 256), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(crop, expected)


@pytest.mark.skipif(importlib.util.find_spec("dlib") is None, reason="dlib not installed")
def test_crop_frame_with_a_real_detector():
    """With dlib (offline), the whole procedure finds the astronaut's face and gives the same crop."""
    from prep.detect import make_detector

    image = skimage.data.astronaut()
    crop, box = crop_frame(image, make_detector("dlib"))
    assert box == ASTRONAUT_FACE
    assert np.array_equal(crop, latentpose_crop(image, ASTRONAUT_FACE))


def test_window_rounding_and_squaring():
    """Fractional, non-square box: floor/ceil give 126 x 127, the bottom is moved up to make it square."""
    # side 69.5 (height), half-side 62.55, centre (30.125, 55.5):
    # left -32.425 -> -33, right 92.675 -> 93 (126); top -7.05 -> -8, bottom 118.05 -> 119 (127) -> 118; +1
    assert latentpose_window((10.25, 20.75, 50.0, 90.25)) == (-33, -8, 94, 119)


def test_largest_box_and_fallbacks():
    """The largest box wins (the first of equal ones); no face -> (0, 0, 200, 200); big frames -> 1152 px."""
    boxes = [(0, 0, 10, 10, 0.9), (5, 5, 45, 25, 0.5), (50, 50, 70, 90, 0.99), (100, 100, 140, 120, 0.7)]
    assert largest_box(boxes) == (5.0, 5.0, 45.0, 25.0)
    assert largest_box([]) == NO_FACE_BOX == (0.0, 0.0, 200.0, 200.0)
    assert downscale_for_detection(np.zeros((1000, 2304, 3), np.uint8)).shape == (500, 1152, 3)
    small = np.zeros((720, 1152, 3), np.uint8)
    assert downscale_for_detection(small) is small


def _stripes(h: int, w: int) -> np.ndarray:
    """uint8 (h, w, 3): 2-px vertical stripes of two colours (high frequency, so blur is measurable)."""
    image = np.empty((h, w, 3), np.uint8)
    image[:] = (200, 40, 90)
    image[:, (np.arange(w) // 2) % 2 == 1] = (20, 160, 230)
    return image


def test_padding_is_blurred_and_faded_to_the_median():
    """A window 30 px past the left edge: the band is blurred, fades to one colour at the window edge, the blur
    reaches 10 px (a third of the padding) into the image, and the rest is the image untouched."""
    image = _stripes(120, 120)
    out = pad_to_window(image, top=10, left=-30, bottom=100, right=60)
    assert out.shape == (90, 90, 3) and out.dtype == np.uint8
    # beyond 4/3 of the padding width (x >= 40) the weights are zero: exactly the source pixels
    assert np.array_equal(out[:, 40:], image[10:100, 10:60])
    # the first image column (x = 30) is fully blurred: neighbouring stripes pulled together
    source_contrast = np.ptp(image[50, 10:16].astype(int), axis=0).max()
    assert np.ptp(out[45, 30:36].astype(int), axis=0).max() < source_contrast / 2
    # the window edge is one flat colour (the median), and colours approach it towards the edge
    assert (out[:, 0] == out[0, 0]).all()
    dist = np.abs(out.astype(int) - out[0, 0].astype(int)).mean(axis=(0, 2))
    bands = [dist[x:x + 10].mean() for x in (40, 30, 20, 10, 0)]  # image, blur-only, then the fading band
    assert bands == sorted(bands, reverse=True) and bands[-1] < 1.0


def test_corner_padding_and_inside_window():
    """Padding on two sides fades both; a window inside the image is a plain slice (no blur)."""
    image = _stripes(64, 64)
    out = pad_to_window(image, top=-12, left=-12, bottom=40, right=40)
    assert out.shape == (52, 52, 3)
    assert (out[0] == out[0, 0]).all() and (out[:, 0] == out[0, 0]).all()
    assert np.array_equal(out[16:, 16:], image[4:40, 4:40])
    assert np.array_equal(pad_to_window(image, 3, 5, 40, 50), image[3:40, 5:50])
    with pytest.raises(AnimbenchError, match="does not overlap"):
        pad_to_window(image, 70, 70, 90, 90)


def test_resize_rule_follows_the_face_box_height():
    """Bicubic whenever 256 exceeds the *face box* height, even when the window is larger than 256."""
    image = _stripes(600, 600)
    face = (200.0, 200.0, 350.0, 350.0)  # 150 px face -> 271 px window, shrunk with bicubic (official quirk)
    left, top, right, bottom = latentpose_window(face)
    assert right - left == 271
    expected = cv2.resize(image[top:bottom, left:right], (256, 256), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(latentpose_crop(image, face), expected)
    face = (100.0, 100.0, 400.0, 400.0)  # 300 px face -> area
    left, top, right, bottom = latentpose_window(face)
    window = pad_to_window(image, top, left, bottom, right)
    assert np.array_equal(latentpose_crop(image, face), cv2.resize(window, (256, 256), interpolation=cv2.INTER_AREA))


def _driver_bgr() -> np.ndarray:
    """A hand-made 8x8 BGR 'crop': a saturated blue 1-px border; inside B 5, G 50, R = 10 row + col."""
    image = np.empty((8, 8, 3), np.uint8)
    rows, cols = np.mgrid[:8, :8]
    image[..., 0], image[..., 1], image[..., 2] = 5, 50, 10 * rows + cols
    image[0, :], image[-1, :], image[:, 0], image[:, -1] = (250, 0, 0), (250, 0, 0), (250, 0, 0), (250, 0, 0)
    return image


def test_no_crop_loader_strips_border_repads_and_scales():
    """`--no-crop`: BGR -> RGB, the border is gone, the 9 px window keeps the unblurred centre, values / 255."""
    image = _driver_bgr()
    out = load_cropped(image, size=9)  # window H + 1 = 9 px: no resize at size 9
    assert out.shape == (9, 9, 3) and out.dtype == np.float32
    # the blue border never reaches the output: G and B are the interior's constants everywhere
    assert np.allclose(out[..., 1], 50 / 255) and np.allclose(out[..., 2], 5 / 255)
    # padding top/left 1, bottom/right 2: rows and columns 2..5 carry no blur and map to the same frame pixels
    assert np.array_equal(out[2:6, 2:6, 0], image[2:6, 2:6, 2].astype(np.float32) / 255)
    # the outermost padded row/column is the median colour
    assert np.allclose(out[0, :, 0], out[0, 0, 0]) and np.allclose(out[:, -1, 0], out[0, 0, 0])
    full = load_cropped(image)
    assert full.shape == (256, 256, 3) and 0.0 <= full.min() and full.max() <= 1.0


def test_read_cropped_reads_bgr_files(tmp_path):
    """A PNG on disk gives what load_cropped gives its cv2 array; an unreadable file is one clear error."""
    image = _driver_bgr()
    cv2.imwrite(str(tmp_path / "0.png"), image)
    assert np.array_equal(read_cropped(tmp_path / "0.png", size=9), load_cropped(image, size=9))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(AnimbenchError, match="bad.jpg: not a readable image"):
        read_cropped(tmp_path / "bad.jpg")


def test_mask_padding_replicates_sides_zero_on_top_and_fades_horizontally():
    """The loader's segmentation variant on an all-foreground mask, window 30 px past the left edge and 20 px
    above the top: the left band fades linearly to 0 at the window edge (x / 30 of full), the top band is 0
    (blurred), the bottom band replicates the mask, the rest is untouched."""
    mask = np.full((100, 100), 255, np.uint8)
    out = pad_to_window(mask, top=-20, left=-30, bottom=120, right=60, mask=True)
    assert out.shape == (140, 90) and out.dtype == np.uint8
    # far from the top band, the blur of a constant is the constant, so the fade is exact: 255 x / 30
    for x in (0, 6, 15, 24, 29):
        assert abs(int(out[90, x]) - round(255 * x / 30)) <= 1, (x, out[90, x])
    assert out[0].max() <= 1 and out[5, 40:].max() < 40  # zero padding on top, blurred a few pixels down
    assert (out[-5:, 40:] == 255).all()  # replicated below: no fade vertically
    assert (out[40:, 40:] == 255).all()  # the image, beyond the blur's reach
    with pytest.raises(AnimbenchError, match="a mask must be"):
        pad_to_window(np.zeros((10, 10, 3), np.uint8), -2, -2, 8, 8, mask=True)


def test_mask_crop_follows_the_image_window():
    """A mask that marks the image's window cuts like the image: same window, bilinear resize to 256; the
    frame-level function downscales with the frame (here a 2304 px frame, halved before detection)."""
    image = skimage.data.astronaut()
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[48:206, 144:302] = 255  # exactly ASTRONAUT_WINDOW
    crop = latentpose_crop_mask(mask, ASTRONAUT_FACE)
    assert crop.shape == (256, 256) and (crop == 255).all()  # inside the image: no padding, no blur
    expected = cv2.resize(mask[48:206, 144:302], (256, 256))
    assert np.array_equal(crop, expected)
    big = cv2.resize(mask, (2304, 2304), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(crop_frame_mask(big, ASTRONAUT_FACE), latentpose_crop_mask(
        cv2.resize(big, dsize=None, fx=0.5, fy=0.5), ASTRONAUT_FACE))


def test_no_crop_mask_loader():
    """`load_cropped_mask`: border stripped, the 9 px window re-padded (zero on top, replicated elsewhere and
    faded horizontally), bilinear, / 255."""
    mask = np.full((8, 8), 200, np.uint8)
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = 7  # the grey border never reaches the output
    out = load_cropped_mask(mask, size=9)
    assert out.shape == (9, 9) and out.dtype == np.float32
    assert np.allclose(out[:, 0], 0) and np.allclose(out[:, -1], 0)  # faded to 0 at both side edges
    assert out[0].max() < out[4].max()  # zero padding on top
    assert np.allclose(out[4, 3:5], 200 / 255, atol=0.02)
