"""Where `animbench prep ... --masks synthetic|DIR|graphonomy` takes each stored frame's foreground mask from.

- `synthetic`: the ground truth `animbench synth --kind faces` writes (OUT/masks/<video>.npy, uint8 (frames,
  height, width) at the full frame's size): the stored frame's mask is cut from it exactly as the frame was
  (crop, pad with 0, resize; or the latent-pose window with the mask variant of its padding).
- DIR, mask files: `DIR/<store video id>/` holds one image per STORED frame (sorted name order = frame order;
  .png, or any image OpenCV reads), grayscale or colour (then channel 1, green, is read, as the official loader
  does with Graphonomy's three identical channels); a mask of another size than the stored frame is resized to
  it (bilinear), one of another aspect ratio fails its video ("masks" stage: another picture's mask). A missing folder is an error before any work starts; a file count that does not match the
  frames is a failure row of that video ("masks" stage).
- `graphonomy`: Graphonomy's universal model run on every stored frame (graphonomy.py).

Every source gives uint8 (H, W) masks at the stored frame's size: 0 background .. 255 foreground.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from plumbing.errors import AnimbenchError
from plumbing.files import sha256_file
from prep.recipes import Clip, Unit

BACKENDS = ("synthetic", "graphonomy")
MASK_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
ToStored = Callable[[np.ndarray], np.ndarray]  # a full-frame uint8 mask -> the stored frame's


def source_name(spec: str) -> str:
    """How the manifest records a mask source: the backend name, or `files:<absolute DIR>`."""
    return spec if spec in BACKENDS else f"files:{Path(spec).resolve()}"


def mask_facts(spec: str) -> dict[str, Any]:
    """The manifest's facts of a mask source: source, backend and the weight file's name and sha256."""
    if spec == "graphonomy":
        from prep.masks.graphonomy import BACKEND, GRAPHONOMY_FILE, check_graphonomy

        return {"source": spec, "backend": BACKEND,
                "weights": {"file": GRAPHONOMY_FILE, "sha256": sha256_file(check_graphonomy())}}
    if spec == "synthetic":
        return {"source": spec, "backend": "animbench synth ground truth, cut as the frames", "weights": None}
    return {"source": source_name(spec), "backend": "mask files, one per stored frame", "weights": None}


def _synthetic_file(unit: Unit) -> Path:
    source = Path(unit.source)
    return source.parent.parent / "masks" / f"{source.stem}.npy"


def check_mask_source(spec: str, units: Sequence[Unit]) -> None:
    """Driver-side checks before any work: the weight file present, every video's ground-truth file or mask
    folder present (one-line AnimbenchError naming what is missing and where it was looked for)."""
    if spec == "graphonomy":
        from prep.masks.graphonomy import check_graphonomy

        check_graphonomy()
        return
    if spec != "synthetic" and not Path(spec).is_dir():
        raise AnimbenchError(f"--masks {spec}: not a folder, nor one of {', '.join(BACKENDS)}")
    for unit in units:
        for clip in unit.clips:
            if spec == "synthetic":
                path = _synthetic_file(unit)
                if not path.is_file():
                    raise AnimbenchError(f"--masks synthetic: {path} is missing (expected the ground truth of "
                                         f"`animbench synth --kind faces` for {Path(unit.source).name})")
            elif not (Path(spec) / clip.video_id).is_dir():
                raise AnimbenchError(f"--masks {spec}: no mask folder {Path(spec) / clip.video_id} for video "
                                     f"{clip.video_id!r} (one image per stored frame)")


def read_mask_file(path: Path) -> np.ndarray:
    """A mask image -> uint8 (H, W): grayscale as it is, colour by its channel 1 (the official loader's rule)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise AnimbenchError(f"{path}: not a readable image (expected a mask, one per stored frame)")
    if image.ndim == 3:
        image = image[:, :, 1]
    if image.dtype == np.uint16:  # 16-bit PNGs: keep the high byte
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise AnimbenchError(f"{path}: {image.dtype} pixels, expected an 8-bit mask")
    return image


class ClipMasks:
    """One clip's masks as its frames are stored: `add` per frame in order, then `problem` with the count."""

    def __init__(self, read: Callable[[int, np.ndarray, np.ndarray, ToStored], np.ndarray],
                 count_problem: Callable[[int], str | None] = lambda n: None) -> None:
        self._read, self._count_problem = read, count_problem
        self.masks: list[np.ndarray] = []

    def add(self, source_frame: np.ndarray, stored_frame: np.ndarray, to_stored: ToStored) -> None:
        """The mask of the next stored frame; to_stored cuts a full-frame mask as this frame was cut."""
        mask = self._read(len(self.masks), source_frame, stored_frame, to_stored)
        if mask.shape != stored_frame.shape[:2]:
            mask = cv2.resize(mask, (stored_frame.shape[1], stored_frame.shape[0]))
        self.masks.append(np.ascontiguousarray(mask, np.uint8))

    def problem(self, num_frames: int) -> str | None:
        """Why the source's masks do not match a clip of num_frames stored frames (None: they do)."""
        return self._count_problem(num_frames)


class MaskSource:
    """Opens the per-clip mask readers of one `--masks` spec; the segmentation model is loaded once."""

    def __init__(self, spec: str, device: str = "cpu") -> None:
        self.spec, self.device = spec, device
        self._segmenter = None

    def open_clip(self, unit: Unit, clip: Clip, lo: int) -> ClipMasks:
        """The reader of one clip whose first stored frame is source frame `lo`."""
        if self.spec == "graphonomy":
            if self._segmenter is None:
                from prep.masks.graphonomy import GraphonomySegmenter

                self._segmenter = GraphonomySegmenter(device=self.device)
            segmenter = self._segmenter
            return ClipMasks(lambda k, source_frame, stored_frame, to_stored: segmenter.mask(stored_frame))
        if self.spec == "synthetic":
            return self._synthetic(unit, lo)
        return self._files(clip)

    def _synthetic(self, unit: Unit, lo: int) -> ClipMasks:
        path = _synthetic_file(unit)
        try:
            truth = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise AnimbenchError(f"--masks synthetic: {path} cannot be read ({exc})") from None
        if truth.ndim != 3 or truth.dtype != np.uint8:
            raise AnimbenchError(f"--masks synthetic: {path} is {truth.dtype} {truth.shape}, expected uint8 "
                                 "(frames, height, width)")

        def read(k, source_frame, stored_frame, to_stored):
            i = lo + k
            if i >= len(truth) or truth.shape[1:] != source_frame.shape[:2]:
                raise AnimbenchError(f"--masks synthetic: {path} has {len(truth)} masks of {truth.shape[1:]}, the "
                                     f"video's source frame {i} is {source_frame.shape[:2]}")
            return to_stored(np.asarray(truth[i]))

        def problem(n):
            if lo + n > len(truth):
                return f"{path} has {len(truth)} masks, the clip needs source frames [{lo}, {lo + n})"
            return None

        return ClipMasks(read, problem)

    def _files(self, clip: Clip) -> ClipMasks:
        folder = Path(self.spec) / clip.video_id
        if not folder.is_dir():
            raise AnimbenchError(f"--masks {self.spec}: no mask folder {folder} for video {clip.video_id!r}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in MASK_EXTENSIONS)

        def read(k, source_frame, stored_frame, to_stored):
            if k >= len(files):
                return np.zeros(stored_frame.shape[:2], np.uint8)  # counted by problem(): the video fails
            mask = read_mask_file(files[k])
            (h, w), (fh, fw) = mask.shape[:2], stored_frame.shape[:2]
            if abs(h * fw - w * fh) > max(h, w, fh, fw):  # more than rounding: another picture's mask
                raise AnimbenchError(f"--masks {files[k]}: {w}x{h}, the stored frame {k} of {clip.video_id!r} is "
                                     f"{fw}x{fh} (a mask of another size is resized, not one of another aspect ratio)")
            return mask

        def problem(n):
            if len(files) != n:
                return f"{folder} has {len(files)} mask files, the video has {n} frames (one file per frame)"
            return None

        return ClipMasks(read, problem)
