"""Torch dataset adapter over a frame store: FOMM-style training pairs (two frames of one video).

FOMM draws two frame indices uniformly with replacement and sorts them (so source <= driving, and both may be
the same frame); with identity sampling each item is a person id and a random video of that person is used.
Randomness is a pure function of (seed, epoch, index), so DataLoader workers and DDP ranks agree.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from plumbing.errors import AnimbenchError
from prep.store import FrameStore

# transform(frames uint8 (2,H,W,3), rng) -> frames uint8 (2,H',W',3): applied identically to both frames
PairTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [0, 1], as skimage's img_as_float32."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0)
    return t.movedim(-1, -3)


class FramePairDataset(Dataset):
    """Pairs (source, driving) of frames from one video of a split, drawn the way FOMM trains."""

    def __init__(self, store: FrameStore | str | os.PathLike, split: str = "train", *, id_sampling: bool = False,
                 num_repeats: int = 1, seed: int = 0, transform: PairTransform | None = None) -> None:
        self.store = store if isinstance(store, FrameStore) else FrameStore(store)
        self.videos = self.store.videos(split)
        if not self.videos:
            raise AnimbenchError(f"store {self.store.root}: split {split!r} has no videos "
                                 f"(splits: {self.store.splits()})")
        self.id_sampling = id_sampling
        if id_sampling:
            table = self.store.videos_table
            table = table[table["split"] == split]
            persons = table["person_id"].fillna(table["video_id"])
            self.by_person = {p: sorted(g) for p, g in table.groupby(persons)["video_id"]}
            self.items = sorted(self.by_person)
        else:
            self.items = list(self.videos)
        self.num_repeats = int(num_repeats)
        self.seed = int(seed)
        self.epoch = 0
        self.transform = transform

    def set_epoch(self, epoch: int) -> None:
        """Draw a different set of pairs each epoch (call before each epoch, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items) * self.num_repeats

    def sample(self, index: int) -> tuple[str, np.ndarray]:
        """The (video id, sorted frame indices) that item `index` draws in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        item = self.items[index % len(self.items)]
        vid = self.by_person[item][rng.integers(len(self.by_person[item]))] if self.id_sampling else item
        n = self.store.num_frames(vid)
        return vid, np.sort(rng.choice(n, size=2, replace=True))

    def __getitem__(self, index: int) -> dict:
        vid, frame_idx = self.sample(index)
        frames = self.store.read(vid, frame_idx)
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            frames = self.transform(frames, rng)
        pair = to_tensor(frames)
        return {"source": pair[0], "driving": pair[1], "video_id": vid,
                "frame_indices": torch.as_tensor(frame_idx, dtype=torch.long)}
