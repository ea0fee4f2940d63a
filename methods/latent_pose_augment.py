"""The pose-input augmentations of latent-pose reenactment (Burkov et al. 2020; official
`dataloaders/common/augmentation.py`, written for imgaug 0.4; ../shared/reference/edn-latentpose.md §2.6).

The pose encoder sees an augmented copy of the target frame so that it cannot carry identity:

- pixel-wise: `SomeOf((0, 5))` of the eleven ops below, in random order;
- scale: `Sometimes(0.5, Affine(scale x, y ~ U(0.8, 1.2) independently))`, bilinear, reflect-101 border;
- the pixel-wise group and the scale run in random order (`Sequential(random_order=True)`); both touch the
  pose input only;
- shift: `Sometimes(0.5, Affine(translate x, y ~ U(-5 %, +5 %) of the width/height))`, drawn once and applied
  to the pose input (after the above) and to the target (bilinear, reflect-101), and to the mask with imgaug's
  heatmap rules (bicubic, zero outside, clipped to [0, 1]). The K identity frames are never augmented.

imgaug is unmaintained, and torchvision v2 cannot match it: its affine has no reflect border, its sharpness,
contrast, saturation, blur-on-uint8, noise and elastic ops are defined differently, and its one matching op, JPEG
(bit-identical to Pillow's round trip on the astronaut at qualities 3, 17, 31), rests on image codecs that
torchvision 0.29 deprecates. imgaug itself is a thin layer over OpenCV and Pillow, so each op here calls the
OpenCV or Pillow primitive imgaug calls, with imgaug 0.4's parameters, kernels, border modes and uint8 rounding
(its contrast and multiply LUTs truncate, so ours do). No new dependency (albumentations is not needed). Ranges:

| op | imgaug 0.4 | here |
|---|---|---|
| OneOf blur | GaussianBlur σ U(0, 1) (no-op below 1e-3; kernel max(5, int(3.3σ)) odd); AverageBlur k U{1, 2, 3}; MedianBlur k U{1, 2, 3} (even k -> k + 1) | same (cv2.GaussianBlur / blur / medianBlur) |
| Sharpen | α U(0, 1), lightness U(1, 1.5); kernel (1-α)·identity + α·[[-1,-1,-1],[-1,8+L,-1],[-1,-1,-1]] | same (cv2.filter2D) |
| Emboss | α U(0, 1), strength U(0, 0.5); kernel (1-α)·identity + α·[[-1-s,-s,0],[-s,1,s],[0,s,1+s]] | same |
| edge blend | BlendAlphaSimplexNoise(EdgeDetect α U(0, 0.15)): a blob mask from simplex noise (grid side U{2..16}, upscaled nearest/linear/cubic p .05/.6/.35, 1-3 iterations by max, sigmoid with threshold N(0, 5)) | **differs**: the same mask recipe over uniform *value* noise instead of OpenSimplex noise (opensimplex is not a dependency); the edge image and its α range are imgaug's |
| AdditiveGaussianNoise | σ U(0, 12.75) per image, one noise value per pixel shared by the channels | same (rounded to the nearest grey level) |
| Add | value U(-10, 10) per image, per channel for half the images, rounded to an integer | same |
| AddToSaturation | integer U{-20..20} added to S of cv2 HSV (hue 0-179), clipped | same |
| JpegCompression | compression U(70, 99) -> quality round(1 + 99·(1 - c/101)) = 3..31 (strong!) | same (Pillow) |
| Multiply | U(0.5, 1.5) per image | same (LUT: truncated) |
| OneOf contrast | LinearContrast α U(0.75, 1.25) about 127; SigmoidContrast gain U(3, 11), cutoff 0.5 | same (LUTs: truncated) |
| Sometimes(0.5) elastic | ElasticTransformation α U(0.5, 3.5) px, σ 0.15 (displacements ~ U(-1, 1) per pixel, blurred by σ: almost independent), bicubic, zero outside | same (cv2.remap) |

Randomness comes only from the numpy Generator passed in; the draws do not follow imgaug's random streams, so
a seed gives the same *distribution* as the official code, not the same images. Inputs are uint8 images (the
official code casts its [0, 1] tensors with `(x * 255).astype(uint8)`, which is exact for x = v / 255; a masked
target `image * mask` is truncated by that cast, see `official_uint8`) and a float mask in [0, 1].
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from plumbing.errors import AnimbenchError

_IDENTITY3 = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32)


class Augmented(NamedTuple):
    """One augmented triplet and what was applied: the chosen op names in order (`elastic` even when its own
    50 % coin left the image as it was) and the shift (tx, ty) in pixels, or None."""

    pose_input: np.ndarray  # uint8 (H, W, 3)
    target: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray  # float32, the input mask's shape, in [0, 1]
    ops: tuple[str, ...]
    shift: tuple[float, float] | None


def official_uint8(image01: np.ndarray) -> np.ndarray:
    """float [0, 1] (H, W, 3) -> uint8 by the official cast `(x * 255).astype(uint8)` (truncation)."""
    return (np.asarray(image01, np.float32) * np.float32(255.0)).astype(np.uint8)


# --- pixel-wise ops: uint8 (H, W, 3) -> uint8 (H, W, 3) --------------------------------------------------------

def _lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a per-value table (256,) or per-channel tables (256, C), clipped and truncated like imgaug's LUTs."""
    table = np.clip(table, 0, 255).astype(np.uint8)
    if table.ndim == 1:
        return table[image]
    return np.stack([table[:, c][image[..., c]] for c in range(image.shape[2])], axis=-1)


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 1e-3:
        return image
    ksize = 3.3 * sigma if sigma < 3.0 else (2.9 * sigma if sigma < 5.0 else 2.6 * sigma)
    ksize = int(max(ksize, 5))
    ksize += 1 - ksize % 2
    return cv2.GaussianBlur(image, (ksize, ksize), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """OneOf: Gaussian σ U(0, 1), average k U{1, 2, 3}, median k U{1, 2, 3} (even k -> k + 1)."""
    kind = int(rng.integers(3))
    if kind == 0:
        return _gaussian_blur(image, float(rng.uniform(0.0, 1.0)))
    k = int(rng.integers(1, 4))
    if kind == 1:
        return image if k == 1 else cv2.blur(image, (k, k))
    k += 1 - k % 2
    return image if k == 1 else cv2.medianBlur(image, k)


def _convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(image, -1, kernel.astype(np.float32))  # reflect-101 border, saturating, as imgaug


def sharpen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sharpen: α U(0, 1), lightness U(1, 1.5)."""
    alpha, lightness = rng.uniform(0.0, 1.0), rng.uniform(1.0, 1.5)
    effect = np.array([[-1, -1, -1], [-1, 8 + lightness, -1], [-1, -1, -1]], np.float32)
    return _convolve(image, (1 - alpha) * _IDENTITY3 + alpha * effect)


def emboss(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Emboss: α U(0, 1), strength U(0, 0.5)."""
    alpha, s = rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.5)
    effect = np.array([[-1 - s, -s, 0], [-s, 1, s], [0, s, 1 + s]], np.float32)
    return _convolve(image, (1 - alpha) * _IDENTITY3 + alpha * effect)


def _noise_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """float32 (H, W) in [0, 1]: imgaug's simplex-alpha mask recipe over uniform value noise."""
    methods = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC)
    mask = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(1, 4))):  # iterations, aggregated by max
        side = int(rng.integers(2, 17))
        small_h = side if height >= width else max(1, int(round(side * height / width)))
        small_w = side if width >= height else max(1, int(round(side * width / height)))
        small = rng.uniform(0.0, 1.0, (small_h, small_w)).astype(np.float32)
        up = cv2.resize(small, (width, height), interpolation=methods[rng.choice(3, p=[0.05, 0.6, 0.35])])
        mask = np.maximum(mask, np.clip(up, 0.0, 1.0))
    threshold = rng.normal(0.0, 5.0)
    return (1.0 / (1.0 + np.exp(-(mask * 20.0 - 10.0 - threshold)))).astype(np.float32)


def edge_blend(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """EdgeDetect α U(0, 0.15), alpha-blended into the image through a blobby noise mask."""
    alpha = rng.uniform(0.0, 0.15)
    effect = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
    edges = _convolve(image, (1 - alpha) * _IDENTITY3 + alpha * effect).astype(np.float32)
    mask = _noise_mask(image.shape[0], image.shape[1], rng)[..., None]
    return np.clip(np.round(mask * edges + (1 - mask) * image), 0, 255).astype(np.uint8)


def gaussian_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """AdditiveGaussianNoise: σ U(0, 0.05·255) per image; one value per pixel for all channels."""
    scale = rng.uniform(0.0, 0.05 * 255)
    noise = rng.normal(0.0, scale, image.shape[:2] + (1,))
    return np.clip(np.round(image + noise), 0, 255).astype(np.uint8)


def add(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add U(-10, 10), rounded to an integer: one value per image, or per channel for half the images."""
    per_channel = rng.random() < 0.5
    values = rng.uniform(-10.0, 10.0, image.shape[2]) if per_channel else np.full(image.shape[2], rng.uniform(-10, 10))
    return _lut(image, np.arange(256, dtype=np.int16)[:, None] + np.round(values).astype(np.int16)[None, :])


def add_to_saturation(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """AddToSaturation: an integer U{-20..20} added to S in cv2's HSV, clipped to 0..255."""
    value = int(rng.integers(-20, 21))
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = np.clip(hsv[..., 1].astype(np.int16) + value, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def jpeg_quality(compression: float) -> int:
    """imgaug's compression (0..100, higher = stronger) -> the PIL/libjpeg quality it encodes with."""
    return int(np.clip(np.round(1 + 99 * (1.0 - compression / 101)), 1, 100))


def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JpegCompression: compression U(70, 99), i.e. quality round(1 + 99 (1 - c / 101)) in 3..31; a Pillow
    save/load round trip, as imgaug does it."""
    from PIL import Image

    quality = jpeg_quality(rng.uniform(70.0, 99.0))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB")).copy()


def multiply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiply U(0.5, 1.5), one factor per image."""
    return _lut(image, np.arange(256, dtype=np.float32) * np.float32(rng.uniform(0.5, 1.5)))


def contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """OneOf: LinearContrast α U(0.75, 1.25) about 127; SigmoidContrast gain U(3, 11), cutoff 0.5."""
    if rng.integers(2) == 0:
        alpha = np.float32(rng.uniform(0.75, 1.25))
        return _lut(image, 127 + alpha * (np.arange(256, dtype=np.float32) - 127))
    gain = np.float32(rng.uniform(3.0, 11.0))
    v = np.linspace(0, 1.0, num=256, dtype=np.float32)
    return _lut(image, 255 * 1 / (1 + np.exp(gain * (np.float32(0.5) - v))))


def elastic(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sometimes(0.5) ElasticTransformation: α U(0.5, 3.5) px, σ 0.15, bicubic, zero outside."""
    if rng.random() >= 0.5:
        return image
    alpha = rng.uniform(0.5, 3.5)
    h, w = image.shape[:2]
    dx, dy = (_gaussian_blur(rng.uniform(-1.0, 1.0, (h, w)).astype(np.float32), 0.15) * alpha for _ in range(2))
    ys, xs = np.mgrid[:h, :w].astype(np.float32)
    return cv2.remap(image, xs + dx, ys + dy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


PIXELWISE = (blur, sharpen, emboss, edge_blend, gaussian_noise, add, add_to_saturation, jpeg, multiply, contrast,
             elastic)


# --- geometry --------------------------------------------------------------------------------------------------

def _warp(image: np.ndarray, matrix: np.ndarray, order: int, border: int) -> np.ndarray:
    h, w = image.shape[:2]
    out = cv2.warpAffine(np.ascontiguousarray(image), matrix, (w, h), flags=order, borderMode=border, borderValue=0)
    return out.reshape(image.shape)


def scale_about_centre(image: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Scale about the centre pixel ((W - 1) / 2, (H - 1) / 2), bilinear, reflect-101 (imgaug's Affine)."""
    h, w = image.shape[:2]
    cx, cy = w / 2.0 - 0.5, h / 2.0 - 0.5
    matrix = np.array([[sx, 0, cx - sx * cx], [0, sy, cy - sy * cy]], np.float64)
    return _warp(image, matrix, cv2.INTER_LINEAR, cv2.BORDER_REFLECT_101)


def shift_image(image: np.ndarray, tx: float, ty: float) -> np.ndarray:
    """Move the content by (tx, ty) px, bilinear, reflect-101 (the pose input and the target)."""
    return _warp(image, np.array([[1, 0, tx], [0, 1, ty]], np.float64), cv2.INTER_LINEAR, cv2.BORDER_REFLECT_101)


def shift_mask(mask: np.ndarray, tx: float, ty: float) -> np.ndarray:
    """Move a float mask by (tx, ty) px as imgaug moves heatmaps: bicubic, zero outside, clipped to [0, 1]."""
    moved = _warp(mask.astype(np.float32), np.array([[1, 0, tx], [0, 1, ty]], np.float64), cv2.INTER_CUBIC,
                  cv2.BORDER_CONSTANT)
    return np.clip(moved, 0.0, 1.0)


# --- the pipeline ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoseAugmentation:
    """`augment(pose_input, target, mask, rng) -> Augmented`; the three switches are the official
    `use_pixelwise_augs`, `use_affine_scale`, `use_affine_shift` (all on in the official configs)."""

    pixelwise: bool = True
    scale: bool = True
    shift: bool = True

    def __call__(self, pose_input: np.ndarray, target: np.ndarray, mask: np.ndarray,
                 rng: np.random.Generator) -> Augmented:
        """Augment one (pose input, target, mask) triplet; see the module docstring for what touches what."""
        for name, arr in (("pose_input", pose_input), ("target", target)):
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
                raise AnimbenchError(f"latent_pose augmentation: {name} {arr.shape} {arr.dtype}, "
                                     "expected uint8 (H, W, 3)")
        if target.shape != pose_input.shape or mask.shape[:2] != pose_input.shape[:2]:
            raise AnimbenchError(f"latent_pose augmentation: pose_input {pose_input.shape}, target {target.shape}, "
                                 f"mask {mask.shape}: expected the same H, W")
        ops: list[str] = []
        steps = [s for s, on in (("pixelwise", self.pixelwise), ("scale", self.scale)) if on]
        for step in rng.permutation(steps) if steps else ():
            if step == "pixelwise":
                chosen = rng.choice(len(PIXELWISE), size=int(rng.integers(0, 6)), replace=False)
                for k in rng.permutation(chosen):
                    pose_input = PIXELWISE[k](pose_input, rng)
                    ops.append(PIXELWISE[k].__name__)
            elif rng.random() < 0.5:
                sx, sy = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)
                pose_input = scale_about_centre(pose_input, sx, sy)
                ops.append("scale")
        shift = None
        mask = mask.astype(np.float32)
        if self.shift and rng.random() < 0.5:
            h, w = pose_input.shape[:2]
            shift = (float(rng.uniform(-0.05, 0.05) * w), float(rng.uniform(-0.05, 0.05) * h))
            pose_input = shift_image(pose_input, *shift)
            target = shift_image(target, *shift)
            mask = shift_mask(mask, *shift)
            ops.append("shift")
        return Augmented(np.ascontiguousarray(pose_input), target, mask, tuple(ops), shift)
