"""Latent-pose augmentations: the shift moves pose input, target and mask alike; pixel-wise ops and scale touch
the pose input only; seeded; the JPEG op uses imgaug's compression-to-quality mapping."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from methods.latent_pose_augment import (
    PIXELWISE,
    PoseAugmentation,
    jpeg,
    jpeg_quality,
    scale_about_centre,
    shift_image,
    shift_mask,
)
from plumbing.errors import AnimbenchError

SIZE = 96


def _face() -> tuple[np.ndarray, np.ndarray]:
    """A real image (uint8 (96, 96, 3)) and a soft mask of a bright square on it (float32 (96, 96))."""
    image = np.ascontiguousarray(skimage.data.astronaut()[60:252:2, 150:342:2])
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[30:60, 40:70] = 1.0
    return image, mask


def _centroid(weights: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[:weights.shape[0], :weights.shape[1]]
    return np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()


def _shifted_runs(augment: PoseAugmentation, image, mask, seeds=range(40)):
    return [(seed, augment(image, image.copy(), mask, np.random.default_rng(seed))) for seed in seeds]


def test_shift_moves_pose_input_target_and_mask_identically():
    """Shift only: the same translation, within +-5 % of the side, on all three; content moves by (tx, ty)."""
    image, mask = _face()
    blob = np.zeros_like(image)
    blob[30:60, 40:70] = 255
    runs = _shifted_runs(PoseAugmentation(pixelwise=False, scale=False), blob, mask)
    shifted = [r for _, r in runs if r.shift is not None]
    assert 5 < len(shifted) < 35  # Sometimes(0.5)
    for r in shifted:
        tx, ty = r.shift
        assert abs(tx) <= 0.05 * SIZE and abs(ty) <= 0.05 * SIZE
        assert np.array_equal(r.pose_input, r.target)
        assert np.array_equal(r.target, shift_image(blob, tx, ty))
        assert np.array_equal(r.mask, shift_mask(mask, tx, ty))
        moved = np.array([tx, ty])
        assert np.allclose(_centroid(r.target[..., 0].astype(float)) - _centroid(blob[..., 0].astype(float)), moved,
                           atol=0.05)
        assert np.allclose(_centroid(r.mask) - _centroid(mask), moved, atol=0.05)
        assert r.mask.dtype == np.float32 and 0.0 <= r.mask.min() and r.mask.max() <= 1.0
    for r in (r for _, r in runs if r.shift is None):
        assert np.array_equal(r.target, blob) and np.array_equal(r.mask, mask) and r.ops == ()


def test_pixelwise_and_scale_touch_the_pose_input_only():
    """With every op on, target and mask are exactly the input moved by the shift (or untouched without one),
    while the pose input alone carries the pixel-wise ops and the scale."""
    image, mask = _face()
    runs = _shifted_runs(PoseAugmentation(), image, mask)
    changed = 0
    for _, r in runs:
        if r.shift is None:
            assert np.array_equal(r.target, image) and np.array_equal(r.mask, mask)
        else:
            assert np.array_equal(r.target, shift_image(image, *r.shift))
            assert np.array_equal(r.mask, shift_mask(mask, *r.shift))
        if set(r.ops) - {"shift"}:
            changed += not np.array_equal(r.pose_input, r.target)
    assert changed >= 20
    names = {op for _, r in runs for op in r.ops}
    assert "scale" in names and len(names - {"scale", "shift"}) >= 8


def test_scale_is_about_the_centre_and_only_on_request():
    """Scale 1 is the identity; a dot at offset d from the centre pixel moves to 1.2 d (x) and 0.8 d (y)."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[20:24, 70:74] = 255  # centroid (71.5, 21.5); centre pixel (47.5, 47.5)
    assert np.array_equal(scale_about_centre(image, 1.0, 1.0), image)
    out = scale_about_centre(image, 1.2, 0.8)
    expected = np.array([47.5 + 1.2 * 24, 47.5 + 0.8 * -26])
    assert np.allclose(_centroid(out[..., 0].astype(float)), expected, atol=0.1)


def test_seeded_determinism():
    """The same seed gives the same triplet and ops; different seeds give different pose inputs."""
    image, mask = _face()
    augment = PoseAugmentation()
    a = augment(image, image.copy(), mask, np.random.default_rng(7))
    b = augment(image, image.copy(), mask, np.random.default_rng(7))
    assert a.ops == b.ops and a.shift == b.shift
    assert all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3], strict=True))
    poses = {augment(image, image.copy(), mask, np.random.default_rng(s)).pose_input.tobytes() for s in range(8)}
    assert len(poses) >= 6
    for op in PIXELWISE:  # every op is a pure function of (image, rng)
        assert np.array_equal(op(image, np.random.default_rng(3)), op(image, np.random.default_rng(3))), op.__name__


def test_jpeg_uses_imgaugs_quality_mapping():
    """compression U(70, 99) means quality 31..3 (imgaug's mapping); the op is Pillow's round trip at the quality
    of the compression it draws."""
    assert (jpeg_quality(70.0), jpeg_quality(99.0)) == (31, 3)
    image, _ = _face()
    rng = np.random.default_rng(0)
    quality = jpeg_quality(np.random.default_rng(0).uniform(70.0, 99.0))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    assert np.array_equal(jpeg(image, rng), np.asarray(Image.open(buffer).convert("RGB")))


def test_bad_inputs_are_one_clear_error():
    """Float images or mismatched sizes raise AnimbenchError naming the field."""
    image, mask = _face()
    with pytest.raises(AnimbenchError, match="pose_input"):
        PoseAugmentation()(image.astype(np.float32), image, mask, np.random.default_rng(0))
    with pytest.raises(AnimbenchError, match="mask"):
        PoseAugmentation()(image, image, mask[:50], np.random.default_rng(0))
