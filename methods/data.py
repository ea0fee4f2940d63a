"""The official training augmentations over uint8 frame pairs, as a `transform(frames, rng)` for FramePairDataset.

Order and semantics follow the official augmentation module (FOMM and Monkey-Net share it), reference §2.1:
flip -> rotation -> resize -> crop -> colour jitter, each applied identically to both frames:

- flip: time-reverse with p 0.5; otherwise horizontal flip with p 0.5 (never both, the official early return);
- rotation: one angle ~ U(degrees), bilinear, zero fill outside (skimage `rotate`);
- resize: one ratio ~ U(ratio), new size int(H*r) x int(W*r), nearest with anti-aliasing (skimage `resize`);
- crop: edge-pad to at least `size`, then one random window;
- colour jitter: one set of factors per clip (brightness, contrast, saturation ~ U(1-x, 1+x), hue ~ U(-h, h)),
  the transforms in a shuffled order, applied on PIL images (torchvision functional) as the official code does.

Frames are first resized to the config's frame size when the store's size differs. Rotation and resizing work
in float and round back to uint8 (the official code rounds the same way before its PIL colour jitter). All
randomness comes from the numpy Generator passed in, so a pair is a pure function of (seed, epoch, index).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from plumbing.errors import AnimbenchError

AUGMENTATIONS = ("flip_param", "rotation_param", "resize_param", "crop_param", "jitter_param")


def frame_shape(cfg: Mapping[str, Any]) -> tuple[int, int]:
    """(H, W) of a config's frames: FOMM `dataset_params.frame_shape`, Monkey-Net `image_shape` (64x64 default)."""
    params = cfg.get("dataset_params") or {}
    shape = params.get("frame_shape") or params.get("image_shape") or (64, 64, 3)
    if not isinstance(shape, Sequence) or len(shape) < 2 or not all(isinstance(s, int) and s > 0 for s in shape[:2]):
        raise AnimbenchError(f"dataset_params.frame_shape: expected [H, W, 3], got {shape!r}")
    return int(shape[0]), int(shape[1])


def resize_frames(frames: np.ndarray, size: tuple[int, int], order: int = 1) -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (T, h, w, 3) with skimage's anti-aliased resize (as the official demo)."""
    if frames.shape[1:3] == tuple(size):
        return frames
    from skimage.transform import resize

    out = [resize(f, size, order=order, preserve_range=True, mode="constant", anti_aliasing=True) for f in frames]
    return _to_uint8(np.stack(out))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _flip(frames: np.ndarray, rng: np.random.Generator, time_flip: bool = False,
          horizontal_flip: bool = False) -> np.ndarray:
    # two draws, as the official RandomFlip: a time flip returns early, so both flips never combine
    if rng.random() < 0.5 and time_flip:
        return frames[::-1]
    if rng.random() < 0.5 and horizontal_flip:
        return frames[:, :, ::-1]
    return frames


def _rotate(frames: np.ndarray, rng: np.random.Generator, degrees: float | Sequence[float]) -> np.ndarray:
    from skimage.transform import rotate

    low, high = (-degrees, degrees) if np.isscalar(degrees) else degrees
    angle = rng.uniform(low, high)
    return _to_uint8(np.stack([rotate(f.astype(np.float64), angle, preserve_range=True) for f in frames]))


def _resize_ratio(frames: np.ndarray, rng: np.random.Generator, ratio: Sequence[float] = (3 / 4, 4 / 3),
                  interpolation: str = "nearest") -> np.ndarray:
    factor = rng.uniform(ratio[0], ratio[1])
    h, w = frames.shape[1:3]
    return resize_frames(frames, (int(h * factor), int(w * factor)), order=1 if interpolation == "bilinear" else 0)


def _crop(frames: np.ndarray, rng: np.random.Generator, size: int | Sequence[int]) -> np.ndarray:
    h, w = (size, size) if np.isscalar(size) else size
    im_h, im_w = frames.shape[1:3]
    pad_h = (0, 0) if h < im_h else ((h - im_h) // 2, (h - im_h + 1) // 2)
    pad_w = (0, 0) if w < im_w else ((w - im_w) // 2, (w - im_w + 1) // 2)
    frames = np.pad(frames, ((0, 0), pad_h, pad_w, (0, 0)), mode="edge")
    im_h, im_w = frames.shape[1:3]
    x = 0 if w == im_w else int(rng.integers(0, im_w - w + 1))
    y = 0 if h == im_h else int(rng.integers(0, im_h - h + 1))
    return frames[:, y:y + h, x:x + w]


def _jitter(frames: np.ndarray, rng: np.random.Generator, brightness: float = 0, contrast: float = 0,
            saturation: float = 0, hue: float = 0) -> np.ndarray:
    import torchvision.transforms.functional as TF
    from PIL import Image

    ops = []
    # draw order as official get_params: brightness, contrast, saturation, hue; application order as its list
    b = rng.uniform(max(0.0, 1 - brightness), 1 + brightness) if brightness > 0 else None
    c = rng.uniform(max(0.0, 1 - contrast), 1 + contrast) if contrast > 0 else None
    s = rng.uniform(max(0.0, 1 - saturation), 1 + saturation) if saturation > 0 else None
    h = rng.uniform(-hue, hue) if hue > 0 else None
    if b is not None:
        ops.append(lambda img: TF.adjust_brightness(img, b))
    if s is not None:
        ops.append(lambda img: TF.adjust_saturation(img, s))
    if h is not None:
        ops.append(lambda img: TF.adjust_hue(img, h))
    if c is not None:
        ops.append(lambda img: TF.adjust_contrast(img, c))
    order = rng.permutation(len(ops))
    out = []
    for frame in frames:
        img = Image.fromarray(np.ascontiguousarray(frame))
        for k in order:
            img = ops[k](img)
        out.append(np.asarray(img, dtype=np.uint8))
    return np.stack(out)


_STEPS = {"flip_param": _flip, "rotation_param": _rotate, "resize_param": _resize_ratio, "crop_param": _crop,
          "jitter_param": _jitter}
_FIELDS = {"flip_param": {"time_flip", "horizontal_flip"}, "rotation_param": {"degrees"},
           "resize_param": {"ratio", "interpolation"}, "crop_param": {"size"},
           "jitter_param": {"brightness", "contrast", "saturation", "hue"}}


class PairAugmentation:
    """`transform(frames uint8 (T, H, W, 3), rng) -> uint8 (T, H', W', 3)`: resize to frame_shape, then augment."""

    def __init__(self, frame_size: tuple[int, int], augmentation_params: Mapping[str, Any] | None = None,
                 where: str = "dataset_params.augmentation_params"):
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        params = dict(augmentation_params or {})
        unknown = sorted(set(params) - set(AUGMENTATIONS))
        if unknown:
            raise AnimbenchError(f"{where}.{unknown[0]}: not an augmentation (expected {list(AUGMENTATIONS)})")
        self.steps: list[tuple[str, dict]] = []
        for name in AUGMENTATIONS:  # the official order, whatever the YAML's order
            if params.get(name) is None:
                continue
            options = dict(params[name])
            bad = sorted(set(options) - _FIELDS[name])
            if bad:
                raise AnimbenchError(f"{where}.{name}.{bad[0]}: unknown option (expected {sorted(_FIELDS[name])})")
            if name == "jitter_param" and not 0 <= options.get("hue", 0) <= 0.5:
                raise AnimbenchError(f"{where}.jitter_param.hue: expected 0..0.5, got {options['hue']!r}")
            self.steps.append((name, options))
        names = [n for n, _ in self.steps]
        if "resize_param" in names and "crop_param" not in names:
            raise AnimbenchError(f"{where}.resize_param: needs crop_param, or frames leave frame_shape "
                                 f"{list(self.frame_size)} and a batch cannot be stacked")

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        frames = resize_frames(np.asarray(frames), self.frame_size)
        for name, options in self.steps:
            frames = _STEPS[name](frames, rng, **options)
        if frames.shape[1:3] != self.frame_size:
            raise AnimbenchError(f"augmentation produced {frames.shape[1:3]} frames, expected {self.frame_size}: "
                                 "crop_param.size must equal dataset_params.frame_shape")
        return np.ascontiguousarray(frames)

    def describe(self) -> dict[str, Any]:
        """The resolved augmentation, for run.json."""
        return {"frame_size": list(self.frame_size), "steps": {n: o for n, o in self.steps}}


def make_transform(cfg: Mapping[str, Any]) -> PairAugmentation:
    """The config's training transform: dataset_params.augmentation_params at the config's frame size."""
    params = cfg.get("dataset_params") or {}
    return PairAugmentation(frame_shape(cfg), params.get("augmentation_params"))


def make_eval_transform(cfg: Mapping[str, Any]) -> PairAugmentation:
    """No augmentation: only the resize to the config's frame size (test-time reading)."""
    return PairAugmentation(frame_shape(cfg), None)
