"""The latent-pose crop of Neural Head Reenactment with Latent Pose Descriptors (Burkov et al., CVPR 2020) and
its driving loader's treatment of images that already are such crops (../shared/reference/edn-latentpose.md
§2.2-2.3; official `utils/crop_as_in_dataset.py --crop-style latentpose` and `dataloaders/voxceleb2_segmentation_
nolandmarks.py`). Pure functions over numpy arrays; nothing here reads the store or knows about methods.

The crop, in the official order:

1. frames longer than 1152 px on their long side are downscaled (bilinear, one ratio for both axes) so that side
   is 1152; detection and crop both happen on that copy (`downscale_for_detection`);
2. the largest face box wins (area, first on ties); no face gives the box (0, 0, 200, 200) (`largest_box`);
3. the box is made square (its longer side) and scaled by 1.8 about its centre; left/top are floored,
   right/bottom ceiled, the bottom moved so the window is exactly square, then right/bottom made exclusive by
   adding 1 (so the window is one pixel wider than the rounded box) (`latentpose_window`);
4. where the window leaves the image the missing pixels are filled by reflect-101 padding, then blurred and
   faded (`pad_to_window`): a Gaussian blur with sigma = 0.016 x window height blends in with weight
   clip(3m + 1, 0, 1) and the per-channel median colour with weight clip(m, 0, 1), where m = 1 - (distance into
   the image from the window edge) / (padding width), the larger of the horizontal and vertical m. So the padded
   band is fully blurred and fades to the median at the window edge, and the blur also reaches a third of the
   padding width into the real image. A window fully inside the image is a plain slice (no blur);
5. resize to 256 x 256: bicubic when 256 exceeds the *detected box's* height (not the window's: an official
   quirk, so a 150 px face in a 271 px window is shrunk with bicubic), area otherwise.

Channel order does not matter to any step (the official script runs it on cv2's BGR frames).

Foreground masks get the same window with the official loader's mask variant of step 4 (`pad_to_window(...,
mask=True)`, from `crop_with_padding(..., segmentation=True)`): the sides and the bottom are padded by
replicating the edge, the top with zeros (nothing is above a head), the same blur is applied, and the fade goes
to 0 and only horizontally (m of the left/right padding alone). Masks are resized with OpenCV's default
bilinear filter, as the loader resizes them (`latentpose_crop_mask`, `crop_frame_mask`, `load_cropped_mask`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from plumbing.errors import AnimbenchError

Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels (prep.detect's convention)
LATENTPOSE_SCALE = 1.8
LATENTPOSE_SIZE = 256
DETECT_MAX_SIDE = 1152
NO_FACE_BOX: Box = (0.0, 0.0, 200.0, 200.0)  # the official fallback when the detector finds nothing


def downscale_for_detection(image: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> np.ndarray:
    """(H, W, C) -> (h, w, C) with max(h, w) = max_side when the image is larger (cv2 bilinear, one ratio);
    smaller images come back unchanged. The crop is then taken from this copy, as officially."""
    if max(image.shape[:2]) <= max_side:
        return image
    ratio = max_side / max(image.shape[:2])
    return cv2.resize(image, dsize=None, fx=ratio, fy=ratio)


def largest_box(boxes: Sequence[Sequence[float]]) -> Box:
    """The largest box by area (the first of equal ones); NO_FACE_BOX when there is none."""
    if len(boxes) == 0:
        return NO_FACE_BOX
    best = max(range(len(boxes)),
               key=lambda i: (abs(boxes[i][2] - boxes[i][0]) * abs(boxes[i][1] - boxes[i][3]), -i))
    return tuple(float(v) for v in boxes[best][:4])  # type: ignore[return-value]


def latentpose_window(box: Sequence[float], scale: float = LATENTPOSE_SCALE) -> tuple[int, int, int, int]:
    """The crop window (left, top, right, bottom), right/bottom exclusive, of a face box: square, x scale."""
    left, top, right, bottom = (float(v) for v in box[:4])
    cx, cy = (left + right) * 0.5, (top + bottom) * 0.5
    half = max(bottom - top, right - left) / 2 * scale
    x0, y0 = math.floor(cx - half), math.floor(cy - half)
    x1, y1 = math.ceil(cx + half), math.ceil(cy + half)
    y1 += (x1 - x0) - (y1 - y0)  # exactly square after rounding
    return x0, y0, x1 + 1, y1 + 1


def pad_to_window(image: np.ndarray, top: int, left: int, bottom: int, right: int, mask: bool = False
                  ) -> np.ndarray:
    """uint8 (H, W[, C]) -> uint8 (bottom - top, right - left[, C]): the window, its part outside the image
    filled by reflect-101 padding that is blurred and faded to the median colour (module docstring, step 4).
    mask=True: a (H, W) foreground mask, padded by replicating the sides and bottom and with zeros on top,
    blurred the same way and faded horizontally to 0 (the official loader's segmentation variant)."""
    if image.dtype != np.uint8:
        raise AnimbenchError(f"latent-pose crop: image dtype {image.dtype}, expected uint8")
    if mask and image.ndim != 2:
        raise AnimbenchError(f"latent-pose crop: a mask must be (H, W), got shape {image.shape}")
    h_img, w_img = image.shape[:2]
    t_in, b_in = max(0, top), min(bottom, h_img)
    l_in, r_in = max(0, left), min(right, w_img)
    if t_in >= b_in or l_in >= r_in:
        raise AnimbenchError(f"latent-pose crop: window (l {left}, t {top}, r {right}, b {bottom}) does not "
                             f"overlap the {w_img}x{h_img} image")
    inside = image[t_in:b_in, l_in:r_in]
    pad_t, pad_b, pad_l, pad_r = t_in - top, bottom - b_in, l_in - left, right - r_in
    if pad_t + pad_b + pad_l + pad_r == 0:
        return inside
    if mask:
        padded = cv2.copyMakeBorder(inside, 0, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
        padded = cv2.copyMakeBorder(padded, pad_t, 0, 0, 0, cv2.BORDER_CONSTANT, value=0)
    else:
        padded = cv2.copyMakeBorder(inside, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REFLECT101)

    # m: 1 at the window edge, 0 at the image edge, negative inside the image (float32, as officially)
    h, w = padded.shape[:2]
    y, x = map(np.float32, np.ogrid[:h, :w])
    inf_x, inf_y = np.full_like(x, np.inf), np.full_like(y, np.inf)
    m_l = x / pad_l if pad_l else inf_x
    m_r = (w - 1 - x) / pad_r if pad_r else inf_x
    m_t = y / pad_t if pad_t else inf_y
    m_b = (h - 1 - y) / pad_b if pad_b else inf_y
    m_horizontal = 1.0 - np.minimum(m_l, m_r)
    m = np.maximum(m_horizontal, 1.0 - np.minimum(m_t, m_b))

    blurred = cv2.GaussianBlur(padded, (0, 0), h * 0.016)  # on uint8, as officially (reflect-101 border)
    out = padded.astype(np.float32) / 255.0
    blurred = blurred.astype(np.float32) / 255.0
    if out.ndim == 2:
        out, blurred = out[..., None], blurred[..., None]
    out += (blurred - out) * np.clip(m[..., None] * 3.0 + 1.0, 0.0, 1.0)
    if mask:  # fade to 0, horizontally only
        out -= out * np.clip(np.broadcast_to(m_horizontal, (h, w))[..., None], 0.0, 1.0)
    else:
        out += (np.median(out, axis=(0, 1)) - out) * np.clip(m[..., None], 0.0, 1.0)
    out *= 255.0
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out.reshape(padded.shape)


def latentpose_crop(image: np.ndarray, box: Sequence[float], size: int = LATENTPOSE_SIZE) -> np.ndarray:
    """uint8 (H, W, 3) and a face box -> uint8 (size, size, 3): the latent-pose crop (steps 3-5)."""
    left, top, right, bottom = latentpose_window(box)
    window = pad_to_window(image, top, left, bottom, right)
    face_height = float(box[3]) - float(box[1])
    interpolation = cv2.INTER_CUBIC if size > face_height else cv2.INTER_AREA
    return cv2.resize(window, (size, size), interpolation=interpolation)


def latentpose_crop_mask(mask: np.ndarray, box: Sequence[float], size: int = LATENTPOSE_SIZE) -> np.ndarray:
    """uint8 (H, W) foreground mask and the face box of its frame -> uint8 (size, size): the image's window with
    the mask variant of the padding, resized bilinear (cv2's default, as the official loader resizes masks)."""
    left, top, right, bottom = latentpose_window(box)
    window = pad_to_window(mask, top, left, bottom, right, mask=True)
    return cv2.resize(window, (size, size))


def crop_frame_mask(mask: np.ndarray, box: Sequence[float], size: int = LATENTPOSE_SIZE) -> np.ndarray:
    """A full-frame uint8 (H, W) mask -> uint8 (size, size), cut as `crop_frame` cut its frame (`box` is the
    box crop_frame returned: it is in the pixels of the frame downscaled for detection, as the mask is here)."""
    return latentpose_crop_mask(downscale_for_detection(mask), box, size)


def crop_frame(image: np.ndarray, detector, size: int = LATENTPOSE_SIZE) -> tuple[np.ndarray, Box]:
    """uint8 RGB (H, W, 3) -> (uint8 (size, size, 3), the box used, in the downscaled frame's pixels): the
    whole official procedure with one of prep.detect's detectors (`make_detector('s3fd')` is the official one)."""
    small = downscale_for_detection(image)
    box = largest_box(detector(small))
    return latentpose_crop(small, box, size), box


def load_cropped(image_bgr: np.ndarray, size: int = LATENTPOSE_SIZE) -> np.ndarray:
    """uint8 BGR (H, W, 3) as cv2.imread gives it -> float32 RGB (size, size, 3) in [0, 1]: what the official
    driving loader does to an image that already is a latent-pose crop (`--no-crop`).

    It takes the whole image as the face window ([0, 1]^2, scaled by the image *height* on both axes, so a
    non-square image is cut to H + 1 columns), strips the one-pixel border (VoxCeleb2.1's grey frame), re-pads
    the window (top/left 1 px, bottom/right 2 px for a square image) with `pad_to_window`, resizes the
    (H + 1)-px window to `size` (bicubic when size > H + 1, area otherwise: area for 256-px crops) and divides
    by 255."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8 or min(image_bgr.shape[:2]) < 3:
        raise AnimbenchError(f"latent-pose driver image: shape {image_bgr.shape} {image_bgr.dtype}, expected "
                             "uint8 (H >= 3, W >= 3, 3)")
    height = image_bgr.shape[0]
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    # window (0, 0, H + 1, H + 1) in the frame, i.e. (-1, -1, H, H) once the border row/column is stripped
    window = pad_to_window(rgb[1:-1, 1:-1], -1, -1, height, height)
    interpolation = cv2.INTER_CUBIC if size > height + 1 else cv2.INTER_AREA
    resized = cv2.resize(window, (size, size), interpolation=interpolation)
    return resized.astype(np.float32) / 255.0


def read_cropped(path, size: int = LATENTPOSE_SIZE) -> np.ndarray:
    """An image file that already is a latent-pose crop -> float32 RGB (size, size, 3) (`load_cropped`)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise AnimbenchError(f"{path}: not a readable image (expected a latent-pose crop, .jpg or .png)")
    return load_cropped(image, size)


def load_cropped_mask(mask: np.ndarray, size: int = LATENTPOSE_SIZE) -> np.ndarray:
    """uint8 (H, W) mask of an image that already is a latent-pose crop -> float32 (size, size) in [0, 1]: what
    the official loader does to its segmentation (`load_cropped`'s window, the mask variant of the padding,
    bilinear resize, / 255)."""
    if mask.ndim != 2 or mask.dtype != np.uint8 or min(mask.shape) < 3:
        raise AnimbenchError(f"latent-pose mask: shape {mask.shape} {mask.dtype}, expected uint8 (H >= 3, W >= 3)")
    height = mask.shape[0]
    window = pad_to_window(mask[1:-1, 1:-1], -1, -1, height, height, mask=True)
    return cv2.resize(window, (size, size)).astype(np.float32) / 255.0
