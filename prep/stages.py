"""The worker's stages as small functions that return errors as values, and the timer that measures them.

Modelled on video2dataset's subsamplers: a stage takes what the previous one produced and returns its output
and an error (None when it worked), so the worker chains them and files an error as a failure row without
unwinding. Per-stage seconds come from one `StageTimer`, never from subtracting one clock from another.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from prep.cropscale import area_resize
from prep.recipes import Clip, Unit
from prep.store import failure_row

if TYPE_CHECKING:
    from prep.config import PrepConfig

STAGES = ("download", "decode", "detect", "crop", "poses", "masks", "encode", "write")


class StageTimer:
    """Seconds per stage; `with timer("encode"):` blocks nest, and a nested stage's time is not its outer's."""

    def __init__(self, stages: tuple[str, ...] = STAGES) -> None:
        self.seconds = dict.fromkeys(stages, 0.0)
        self._open: list[list] = []  # [stage, since] of the running blocks, innermost last

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._open:  # pause the outer stage while this one runs
            outer = self._open[-1]
            self.seconds[outer[0]] += now - outer[1]
        self._open.append([stage, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            self.seconds[stage] += now - self._open.pop()[1]
            if self._open:
                self._open[-1][1] = now

    def as_dict(self) -> dict[str, float]:
        """`{"<stage>_s": seconds}`, as the shard's stats record them."""
        return {f"{k}_s": round(v, 6) for k, v in self.seconds.items()}


def fetch(unit: Unit, config: PrepConfig) -> tuple[Path | None, list[dict[str, str]]]:
    """The download stage: the unit's source on disk (fetched with yt-dlp when allowed), or its failure rows."""
    path = Path(unit.source)
    if path.exists():
        return path, []
    ids = [c.video_id for c in unit.clips]
    if not (config.download and unit.url):
        msg = f"{path}: no such file" + (" (pass --download to fetch it)" if unit.url else "")
        return None, [failure_row(v, "input", "MissingFile", msg) for v in ids]
    from prep.download import DownloadError, download_video

    try:
        return download_video(unit.url, path, fmt=config.download_format, timeout=config.download_timeout), []
    except DownloadError as exc:
        return None, [failure_row(v, "download", exc.kind, exc.message) for v in ids]


def scaled_box(clip: Clip, w: int, h: int) -> tuple[int, int, int, int]:
    """The clip's crop box rescaled from its reference size to a w x h frame, as load_videos.py does."""
    ref_w, ref_h = clip.ref_size or (w, h)
    left, top, right, bot = clip.bbox
    return int(left / (ref_w / w)), int(top / (ref_h / h)), int(right / (ref_w / w)), int(bot / (ref_h / h))


def cut_box(clip: Clip, width: int, height: int, border: str | None) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a width x height frame as the crop stage cuts it: the whole frame without a
    box; the clip's box clamped to the frame, or kept whole (it may leave the frame) when `border` pads it."""
    if clip.bbox is None:
        return 0, 0, width, height
    left, top, right, bot = scaled_box(clip, width, height)
    if border is not None:  # the padded box keeps its size and origin
        return left, top, right, bot
    return max(left, 0), max(top, 0), min(right, width), min(bot, height)


def stored_affine(width: int, height: int, clip: Clip, config: PrepConfig, border: str | None
                  ) -> tuple[float, float, float, float]:
    """(sx, sy, dx, dy): where crop_pad_resize puts a point of a width x height frame, x' = x * sx + dx and
    y' = y * sy + dy, with pixel centres at integers on both sides (a resize by s maps x to (x + 0.5) s - 0.5)."""
    left, top, right, bot = cut_box(clip, width, height, border)
    x0, y0, w, h = left, top, right - left, bot - top
    if config.pad and w != h:
        side = max(w, h)
        x0, y0, w, h = x0 - (side - w) // 2, y0 - (side - h) // 2, side, side
    sx = sy = 1.0
    if config.size and (h, w) != (config.size, config.size):
        sx, sy = config.size / w, config.size / h
    return sx, sy, (0.5 - x0) * sx - 0.5, (0.5 - y0) * sy - 0.5


def direct_box(clip: Clip, width: int, height: int, config: PrepConfig, border: str | None
               ) -> tuple[int, int, int, int] | None:
    """The box of a width x height frame that crop_pad_resize cuts and resizes as it is, when nothing is padded:
    the clip's box (clamped to the frame) or the whole frame. A decoder can then crop and scale the frame
    itself (prep/cropscale.py). None when padding is involved (--pad to a square, a box leaving the frame with
    --out-of-frame pad-*), the box is empty or nothing is resized (--size 0): crop_pad_resize's cases."""
    box = cut_box(clip, width, height, border)
    if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:  # a padded box leaving the frame
        return None
    if not config.size or box[2] <= box[0] or box[3] <= box[1]:
        return None
    if config.pad and box[2] - box[0] != box[3] - box[1]:
        return None
    return box


def crop_pad_resize(frame: np.ndarray, clip: Clip, config: PrepConfig, border: str | None, mask: bool = False
                    ) -> tuple[np.ndarray | None, str | None]:
    """Crop to the clip's box, pad to a square (config.pad), resize to config.size with OpenCV's area filter;
    returns (frame, None), or (None, why) when the box is empty on this frame. `border` (pad-constant |
    pad-replicate) fills a box that leaves the frame instead of clamping it. mask=True: a (H, W) foreground
    mask of the frame gets the same geometry, its constant padding 0 (background) instead of the pad value."""
    fill = (0 if mask else config.pad_value,) * 3
    out = frame
    if clip.bbox is not None:
        h, w = frame.shape[:2]
        left, top, right, bot = scaled_box(clip, w, h)
        out = frame[max(top, 0):bot, max(left, 0):right]
        if border is not None and out.size and (left < 0 or top < 0 or right > w or bot > h):
            # --out-of-frame pad-*: the box keeps its size; the pixels outside the frame are filled
            mode = cv2.BORDER_REPLICATE if border == "pad-replicate" else cv2.BORDER_CONSTANT
            out = cv2.copyMakeBorder(out, max(0, -top), max(0, bot - h), max(0, -left), max(0, right - w),
                                     mode, value=fill)
        if out.size == 0:
            ref_w, ref_h = clip.ref_size or (w, h)
            return None, f"crop box {clip.bbox} at {ref_w}x{ref_h} is empty on a {w}x{h} frame"
    if config.pad and out.shape[0] != out.shape[1]:
        h, w = out.shape[:2]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        out = cv2.copyMakeBorder(out, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=fill)
    size = config.size
    if size and out.shape[:2] != (size, size):
        out = area_resize(out, (size, size))
    return np.ascontiguousarray(out), None
