"""Tiny frame stores for the methods tests: coloured squares moving over a gradient, 64x64, seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prep.store import FrameStoreWriter


def moving_square_video(num_frames: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 (T, size, size, 3): a square of a random colour moving on a straight line over a soft gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    background = np.stack([xx * 2, yy * 2, np.full_like(xx, 60)], axis=-1).clip(0, 255)
    side = int(rng.integers(size // 5, size // 3))
    start = rng.integers(0, size - side, 2)
    velocity = rng.integers(-3, 4, 2)
    colour = rng.integers(80, 256, 3)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        y, x = np.clip(start + velocity * t, 0, size - side)
        frame = background.copy()
        frame[y:y + side, x:x + side] = colour
        frames[t] = frame
    return frames


def make_store(root: Path, train: int = 4, test: int = 2, frames: int = 6, size: int = 64,
               person_ids: bool = True) -> Path:
    """A complete store with `train` + `test` moving-square videos (person ids p0, p1 unless person_ids=False)."""
    with FrameStoreWriter(root, {"recipe": "tests.tiny_store"}) as writer:
        for i in range(train + test):
            split = "train" if i < train else "test"
            writer.add_video(f"{split}{i:02d}", moving_square_video(frames, size, seed=i), split=split,
                             person_id=f"p{i % 2}" if person_ids else None, fps=25.0, recipe="tiny_store")
    return Path(root)
