"""The training samples of latent-pose reenactment, read from a frame store as the official loader reads its
folders (official `dataloaders/voxceleb2_segmentation_nolandmarks.py`; ../shared/reference/edn-latentpose.md §2.2).

Meta-learning (`LatentPoseDataset`): one item per training video (x num_repeats). K + 1 distinct frames drawn at
random (the frame list repeated while shorter than K + 1, as `list_ids`, so a short video can repeat a frame):
the first K are the identity frames, the last the pose input and target. Label = the video's index in the split.
Fine-tuning (`FinetuneDataset`): one item per frame of the split's videos (one identity), the frame serving as
identity frame (K = 1), pose input and target; label 0.

Every image is read as the official loader reads an already-cropped image (prep.latentpose_crop.load_cropped: the
one-pixel border stripped and re-padded, blurred and faded, resized to `image_size`, / 255); masks by the loader's
segmentation variant (`official_mask`). The pose input is augmented (methods.latent_pose_augment, the shift shared
with target and mask); target = image x mask truncated to uint8 (the official cast before its shift). Masks come
from the store (`FrameStore.mask_info` / `masks(video_id)`), or are all ones when `dataset_params.use_masks` is
false (the official `noSegm` ablation's input; the dice term then pulls the predicted mask to 1).

Items: {"enc_rgbs": (K, 3, S, S), "pose_rgbs": (3, S, S), "target_rgbs": (3, S, S), "real_segm": (3, S, S), all
float in [0, 1]; "label": int64}. Randomness from (seed, epoch, index) only.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from methods.latent_pose_augment import PoseAugmentation, official_uint8
from plumbing.errors import AnimbenchError
from prep.latentpose_crop import load_cropped


def official_image(frame_rgb: np.ndarray, size: int) -> np.ndarray:
    """uint8 RGB (H, W, 3) stored crop -> float32 RGB (size, size, 3) in [0, 1], as the official loader reads it."""
    return load_cropped(np.ascontiguousarray(frame_rgb[..., ::-1]), size)  # load_cropped takes cv2's BGR


def official_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A stored mask (H, W) (uint8, or float in [0, 1], rounded to uint8 as the PNG the official code reads) ->
    float32 (size, size) in [0, 1]: the loader's segmentation path on the whole-image window. The one-pixel
    border is stripped and re-padded (1 px top/left, 2 px bottom/right for a square mask): replicated on the sides
    and bottom, zero on top; then blurred (sigma 0.016 x window height) with weight clip(3m + 1, 0, 1) and faded to 0
    with the horizontal m only; bilinear resize to `size`; / 255."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or min(mask.shape) < 3:
        raise AnimbenchError(f"latent_pose mask: shape {mask.shape}, expected (H >= 3, W >= 3)")
    if mask.dtype != np.uint8:
        mask = np.clip(np.round(mask.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    height = mask.shape[0]
    inner = mask[1:-1, 1:-1]
    top, left, bottom, right = -1, -1, height, height  # the window (0, 0, H + 1, H + 1) less the stripped border
    pad = [max(0, -top), max(0, bottom - inner.shape[0]), max(0, -left), max(0, right - inner.shape[1])]
    inner = inner[:bottom, :right]
    window = cv2.copyMakeBorder(inner, 0, pad[1], pad[2], pad[3], cv2.BORDER_REPLICATE)
    window = cv2.copyMakeBorder(window, pad[0], 0, 0, 0, cv2.BORDER_CONSTANT, value=0)
    h, w = window.shape
    y, x = map(np.float32, np.ogrid[:h, :w])
    inf_x, inf_y = np.full_like(x, np.inf), np.full_like(y, np.inf)
    m_l = x / pad[2] if pad[2] else inf_x
    m_r = (w - 1 - x) / pad[3] if pad[3] else inf_x
    m_t = y / pad[0] if pad[0] else inf_y
    m_b = (h - 1 - y) / pad[1] if pad[1] else inf_y
    m = np.maximum(1.0 - np.minimum(m_l, m_r), 1.0 - np.minimum(m_t, m_b))
    blurred = cv2.GaussianBlur(window, (0, 0), h * 0.016).astype(np.float32) / 255.0
    out = window.astype(np.float32) / 255.0
    out += (blurred - out) * np.clip(m * 3.0 + 1.0, 0.0, 1.0)
    out += (0.0 - out) * np.clip(1.0 - np.minimum(m_l, m_r), 0.0, 1.0)  # fade to black, horizontally only
    out = np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
    return cv2.resize(out, (size, size)).astype(np.float32) / 255.0


def _chw(image: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()


class _LatentPoseSamples(torch.utils.data.Dataset):
    """What both datasets share: reading, masks, augmentation, seeding."""

    def __init__(self, store: Any, *, split: str, image_size: int, augment: PoseAugmentation | None,
                 use_masks: bool, num_repeats: int, seed: int):
        self.store, self.image_size, self.augment = store, int(image_size), augment
        self.use_masks, self.num_repeats, self.seed, self.epoch = bool(use_masks), int(num_repeats), int(seed), 0
        self.videos = store.videos(split)
        if not self.videos:
            raise AnimbenchError(f"store {store.root}: split {split!r} has no videos to train latent_pose on")
        if self.use_masks and getattr(store, "mask_info", None) is None:
            raise AnimbenchError(f"store {store.root}: has no foreground masks; prep it with --masks, or set "
                                 "dataset_params.use_masks: false (all-ones masks, the official noSegm input)")

    def set_epoch(self, epoch: int) -> None:
        """Frames and augmentations are drawn from (seed, epoch, index)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index, 0x1A7E])

    def _mask(self, video_id: str, index: int) -> np.ndarray:
        """float32 (S, S) in [0, 1]: the frame's stored mask read officially, or ones without masks."""
        if not self.use_masks:
            return np.ones((self.image_size, self.image_size), np.float32)
        masks = self.store.masks(video_id)
        if index not in masks:
            raise AnimbenchError(f"store {self.store.root}: video {video_id} frame {index} has no mask")
        return official_mask(masks[index], self.image_size)

    def _triplet(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> dict[str, Tensor]:
        """One pose/target frame (float (S, S, 3), mask (S, S)) -> pose input, target, real mask. As officially,
        the augmenter casts the pose input to uint8 (truncating), and the target only when the shift is on."""
        pose, target = image, image * mask[..., None]
        if self.augment is not None:
            out = self.augment(official_uint8(pose), official_uint8(target), mask, rng)
            pose, mask = out.pose_input.astype(np.float32) / 255.0, out.mask
            if self.augment.shift:
                target = out.target.astype(np.float32) / 255.0
        segm = torch.from_numpy(np.ascontiguousarray(mask, np.float32))[None].expand(3, -1, -1)
        return {"pose_rgbs": _chw(pose), "target_rgbs": _chw(target), "real_segm": segm}


class LatentPoseDataset(_LatentPoseSamples):
    """Meta-learning samples: per video K identity frames + one pose/target frame, label = video index."""

    def __init__(self, store: Any, *, num_frames_for_encoder: int = 8, **kwargs: Any):
        super().__init__(store, **kwargs)
        self.k = int(num_frames_for_encoder)
        self.lengths = [store.num_frames(v) for v in self.videos]

    @property
    def num_labels(self) -> int:
        """The discriminator rows this dataset needs: one per video."""
        return len(self.videos)

    def __len__(self) -> int:
        return len(self.videos) * self.num_repeats

    def draw_frames(self, label: int, rng: np.random.Generator) -> list[int]:
        """K + 1 distinct positions of the video's frame list, repeated while shorter than K + 1 (list_ids)."""
        frames = list(range(self.lengths[label]))
        while self.k + 1 > len(frames):
            frames += list(range(self.lengths[label]))
        return [frames[i] for i in rng.choice(len(frames), self.k + 1, replace=False)]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        label = index % len(self.videos)
        rng = self._rng(index)
        video_id = self.videos[label]
        ids = self.draw_frames(label, rng)
        frames = self.store.read(video_id, sorted(set(ids)))
        by_index = dict(zip(sorted(set(ids)), frames, strict=True))
        images = [official_image(by_index[i], self.image_size) for i in ids]
        item = self._triplet(images[-1], self._mask(video_id, ids[-1]), rng)
        item["enc_rgbs"] = torch.stack([_chw(im) for im in images[:-1]])
        item["label"] = torch.tensor(label, dtype=torch.int64)
        return item


class FinetuneDataset(_LatentPoseSamples):
    """Fine-tuning samples: every frame of the split (one identity), each its own identity frame; label 0."""

    def __init__(self, store: Any, **kwargs: Any):
        super().__init__(store, **kwargs)
        self.items = [(v, i) for v in self.videos for i in range(store.num_frames(v))]

    num_labels = 1

    def __len__(self) -> int:
        return len(self.items) * self.num_repeats

    def identity_images(self) -> Tensor:
        """(N, 1, 3, S, S): every fine-tuning image, unaugmented (for the mean identity embedding)."""
        return torch.stack([self._image(v, i)[None] for v, i in self.items])

    def _image(self, video_id: str, i: int) -> Tensor:
        return _chw(official_image(self.store.read(video_id, [i])[0], self.image_size))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        video_id, i = self.items[index % len(self.items)]
        rng = self._rng(index)
        frame = self.store.read(video_id, [i])[0]
        image = official_image(frame, self.image_size)
        item = self._triplet(image, self._mask(video_id, i), rng)
        item["enc_rgbs"] = _chw(image)[None]
        item["label"] = torch.tensor(0, dtype=torch.int64)
        return item
