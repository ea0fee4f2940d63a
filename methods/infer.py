"""Inference: FOMM's reconstruction protocol over a frame store, and animation of an image by a video.

Reconstruction (reference §5.1): per test video, source = frame 0; every frame t, including t = 0, is driven with
its own ABSOLUTE keypoints (no relative normalisation), batched over frames. L1 per frame is the mean |pred - gt|
over C x H x W on [0, 1] floats; FOMM averages over all frames (frame-weighted), Monkey-Net over videos
(video-weighted): both are reported. Predictions are written as a frame store of lossless PNGs holding
floor(255 * pred), the quantisation of the official png strips (`(255 * pred).astype(uint8)`), so the bench reads
exactly what the official evaluation read; `l1` is computed on the float predictions, `l1_quantised` on the stored
uint8 frames.

Frame size (one model, one number): a method runs, and is scored, at its config's frame shape
(`dataset_params.frame_shape`, the shape the official loader delivers). A store whose frames differ from it is
resized as the official loaders' `frame_shape` option does (skimage `resize`, order 1, anti-aliased; rounded to
uint8 as every stored frame is), ground truth included, and the choice is recorded (`evaluation`). Methods without
a config (copy-source, oracle) run at the store's size. `reconstruction_batches` is the one implementation:
`animbench reconstruct` and `animbench bench` both call it, so both report the same L1.

Animation: `animate_frames` yields float32 (H, W, 3) predictions in [0, 1] from any iterable of driving frames
(`animate_video` stacks them); `animate` streams the driving video (`DrivingVideo`: decoded, centre-cropped to
the model's aspect ratio with a warning, and resized one frame at a time) and `write_animation` writes .npy
(those floats, exactly: into a memory-mapped temporary file as frames come when their number is known up front,
as for every pose-driven input; gathered first otherwise), .mp4 (PyAV h264) or a directory of `%07d.png` frames
(floor(255 * pred) like the strips) as frames come, or a .gif.

Pose-driven families (`model.driven_by == "poses"`, e.g. pose2img): `generate_poses` turns label maps into
frames autoregressively as the official test script does (the first frame conditioned on zeros, each later one
on the previous raw output), `chunk` frames per `model.generate` call with `previous` carried, so a long video is
never held whole; `store_pose_frames` generates a store video from its own poses (the bench's path);
`animate_poses` is `animbench animate METHOD --poses P` (label maps, OpenPose keypoints or a store with poses:
methods/pose_inputs.py). `check_animate_inputs` tells a user which inputs a family takes.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from methods.data import frame_shape, resize_frames
from methods.interface import RECONSTRUCTION_PROTOCOL, AnimationMode, scale_box
from plumbing.errors import AnimbenchError
from plumbing.files import atomic_path, atomic_write_text
from plumbing.progress import progress_bar
from prep.pairs import to_tensor
from prep.store import EncodeOptions, FrameStore, FrameStoreWriter

QUANTISATION = "floor(255*pred)"  # as the official strips: (255 * pred).astype(np.uint8)
SUMMARY_FILE = "reconstruction.json"
PREDICTIONS_DIR = "predictions"


def quantise(pred: np.ndarray) -> np.ndarray:
    """float predictions in [0, 1] -> uint8 floor(255 * pred), the official png strips' conversion."""
    return np.floor(np.clip(pred, 0.0, 1.0) * 255.0).astype(np.uint8)


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    params = list(model.parameters())
    return params[0].device if params else torch.device("cpu")


def _to_hwc(pred: torch.Tensor) -> np.ndarray:
    return pred.detach().float().permute(0, 2, 3, 1).cpu().numpy()


def evaluation_size(method: str, config: str | os.PathLike | None) -> tuple[int, int] | None:
    """(H, W) a method runs and is scored at: its config's frame shape; None (the store's size) without a config."""
    from methods.config import load_config

    return frame_shape(load_config(config, method=method)) if config is not None else None


RESIZE_RULE = ("frames whose size differs from frame_size are resized to it, ground truth included, as the "
               "official loader's frame_shape: skimage.transform.resize(order=1, anti_aliasing=True, "
               "mode='constant'), rounded to uint8")


def evaluation_record(store: FrameStore, videos: list[str], frame_size: tuple[int, int] | None) -> dict[str, Any]:
    """What a reconstruction ran at, for its outputs: the model's frame size, the store's, and whether it resized."""
    sizes = sorted({(int(store.info(v)["height"]), int(store.info(v)["width"])) for v in videos})
    return {"frame_size": None if frame_size is None else list(frame_size),
            "store_frame_sizes": [list(s) for s in sizes],
            "resized": frame_size is not None and any(s != tuple(frame_size) for s in sizes),
            "rule": RESIZE_RULE if frame_size is not None else "frames used at the store's size (no config)"}


def l1_per_frame(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """FOMM's L1 per frame, float64 (N,): mean |pred - gt / 255| over H x W x C in float32, pred float32 in [0, 1]
    and gt uint8 (bench's `l1` metric calls this too)."""
    diff = np.abs(pred - gt.astype(np.float32) / np.float32(255.0))
    return diff.reshape(len(diff), -1).mean(axis=1, dtype=np.float64)


def reconstruction_batches(
    model: nn.Module,
    store: FrameStore,
    video_id: str,
    *,
    frame_size: tuple[int, int] | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """FOMM's reconstruction of one stored video, batch by batch: (ground truth uint8 (B, h, w, 3), predictions
    float32 (B, h, w, 3) in [0, 1]) at `frame_size` (None: the store's size). Source = frame 0; every frame,
    frame 0 included, is driven with its own absolute keypoints. The one implementation of the protocol."""
    dev = _model_device(model, device)
    n = store.num_frames(video_id)
    source_frame = store.read(video_id, [0])
    if frame_size is not None:
        source_frame = resize_frames(source_frame, frame_size)
    source = to_tensor(source_frame).to(dev)
    for start in range(0, n, batch_size):
        gt = store.read(video_id, range(start, min(n, start + batch_size)))
        if frame_size is not None:
            gt = resize_frames(gt, frame_size)
        driving = to_tensor(gt).to(dev)
        with torch.no_grad():
            pred = _to_hwc(model.reconstruct(source.expand(driving.shape[0], -1, -1, -1), driving))
        yield gt, np.clip(pred, 0.0, 1.0, out=pred)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", path)


def reconstruct_store(
    model: nn.Module,
    store: str | os.PathLike | FrameStore,
    out_dir: str | os.PathLike,
    split: str = "test",
    batch_size: int = 16,
    device: str | torch.device | None = None,
    *,
    limit_videos: int | None = None,
    frame_size: tuple[int, int] | None = None,
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the reconstruction protocol on a split; write predictions (frame store) and reconstruction.json.

    A run that fails (a corrupt store, a failing model) removes what it wrote, so the same command runs again."""
    store = store if isinstance(store, FrameStore) else FrameStore(store)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AnimbenchError(f"output {out}: exists and is not a directory")
    if (out / SUMMARY_FILE).exists() and not overwrite:
        raise AnimbenchError(f"{out}: already holds {SUMMARY_FILE} (pass --overwrite to replace it)")
    videos = store.videos(split)
    if not videos:
        raise AnimbenchError(f"store {store.root}: split {split!r} has no videos (splits: {store.splits()})")
    videos = videos[:limit_videos] if limit_videos is not None else videos
    if batch_size < 1:
        raise AnimbenchError(f"batch size {batch_size}: expected >= 1")
    dev = _model_device(model, device)
    model.to(dev).eval()
    provenance = dict(provenance or {})
    method = provenance.get("method", type(model).__name__)
    evaluation = evaluation_record(store, videos, frame_size)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).unlink(missing_ok=True)  # overwrite: the old summary must not describe new predictions
    config = {"kind": "reconstruction", "protocol": RECONSTRUCTION_PROTOCOL, "method": method,
              "source_store": str(store.root), "source_fingerprint": store.fingerprint, "split": split,
              "quantisation": QUANTISATION, "evaluation": evaluation, "provenance": provenance}
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def predicted_frames(vid: str, record: dict[str, Any]) -> Iterator[np.ndarray]:
        n = store.num_frames(vid)
        l1_sum = l1q_sum = 0.0
        for gt, pred in reconstruction_batches(model, store, vid, frame_size=frame_size, batch_size=batch_size,
                                               device=dev):
            uint8 = quantise(pred)
            l1_sum += float(l1_per_frame(pred, gt).sum())
            l1q_sum += float(l1_per_frame(uint8.astype(np.float32) / np.float32(255.0), gt).sum())
            yield from uint8
        record.update(num_frames=n, l1=l1_sum / n, l1_quantised=l1q_sum / n, l1_sum=l1_sum, l1_quantised_sum=l1q_sum)

    writing = False
    try:
        with FrameStoreWriter(out / PREDICTIONS_DIR, config, encode=EncodeOptions("png"), overwrite=overwrite) as w:
            writing = True  # from here on out/predictions is this run's
            for vid in videos:
                info = store.info(vid)  # plain Python values, None for missing facts
                record: dict[str, Any] = {"video_id": vid}
                w.add_video(vid, predicted_frames(vid, record), split=split, person_id=info.get("person_id"),
                            fps=info.get("fps"), source_path=f"{store.root}::{vid}",
                            recipe=f"reconstruction:{method}")
                rows.append(record)
    except BaseException:
        # nothing half-written may block the rerun (a corrupt store or a failing model used to leave predictions/)
        if writing:
            shutil.rmtree(out / PREDICTIONS_DIR, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    wall = time.perf_counter() - t0
    frames = sum(r["num_frames"] for r in rows)
    summary = {
        "protocol": RECONSTRUCTION_PROTOCOL, "method": method, "split": split, "num_videos": len(rows),
        "num_frames": frames,
        "l1": sum(r.pop("l1_sum") for r in rows) / frames,  # frame-weighted (FOMM's number)
        "l1_quantised": sum(r.pop("l1_quantised_sum") for r in rows) / frames,
        "l1_video_weighted": float(np.mean([r["l1"] for r in rows])),  # Monkey-Net's number
        "quantisation": QUANTISATION, "keypoints": "absolute; source = frame 0; every frame including 0 driven",
        "store": {"path": str(store.root), "fingerprint": store.fingerprint},
        "frame_size": None if frame_size is None else list(frame_size), "evaluation": evaluation,
        "predictions": {"path": str(out / PREDICTIONS_DIR), "content_hash": FrameStore(out / PREDICTIONS_DIR)
                        .fingerprint},
        "provenance": provenance, "device": str(dev), "batch_size": batch_size,
        "wall_s": round(wall, 3), "frames_per_s": round(frames / wall, 3) if wall > 0 else None,
        "videos": rows,
    }
    _write_json(out / SUMMARY_FILE, summary)  # last: its presence marks the output complete
    return summary


# --- animation ---------------------------------------------------------------------------------------------


# Driving frames per model call: the video is never held whole. Every chunk after the first is sent with driving
# frame 0 in front (the reference of relative motion) and that frame's output dropped; 64 = 4 of FOMM's internal
# batches of 16 and 8 of Monkey-Net's of 8. A video of up to 64 frames is one call, as before.
ANIMATE_CHUNK = 64


def _as_float(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """uint8 or float frames (..., H, W, C>=3) -> float32 (..., h, w, 3) in [0, 1], skimage-resized as the demo."""
    frames = np.asarray(frames)[..., :3]
    if size is not None and frames.shape[-3:-1] != tuple(size):
        from skimage.transform import resize

        batch = frames.reshape((-1,) + frames.shape[-3:])
        out = np.stack([resize(f, size, anti_aliasing=True) for f in batch]).astype(np.float32)
        return out.reshape(frames.shape[:-3] + out.shape[-3:])
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    return frames.astype(np.float32)


def centre_crop_box(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) of the centred window with `size`'s aspect ratio; None when it already has it."""
    th, tw = size
    if height * tw == width * th:
        return None
    if width * th > height * tw:  # wider than the model's frames: cut the sides
        w = max(1, round(height * tw / th))
        return 0, (width - w) // 2, height, w
    h = max(1, round(width * th / tw))
    return (height - h) // 2, 0, h, width


def _fit(frame: np.ndarray, size: tuple[int, int] | None, what: str) -> tuple[np.ndarray, list[int] | None]:
    """Centre-crop one frame to `size`'s aspect ratio (a one-line warning on stderr) instead of squashing it."""
    if size is None:
        return frame, None
    box = centre_crop_box(frame.shape[0], frame.shape[1], size)
    if box is None:
        return frame, None
    top, left, h, w = box
    print(f"animbench: warning: {what} is {frame.shape[1]}x{frame.shape[0]} (W x H), the model takes "
          f"{size[1]}x{size[0]}: centre-cropped to {w}x{h} (left {left}, top {top}), not squashed",
          file=sys.stderr, flush=True)
    return frame[top:top + h, left:left + w], list(box)


def _load_image(path: str | os.PathLike, size: tuple[int, int] | None) -> tuple[np.ndarray, list[int] | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))  # alpha dropped, as the demo's [..., :3]
    except (FileNotFoundError, UnidentifiedImageError, OSError) as e:
        raise AnimbenchError(f"source image {path}: cannot be read ({e})") from None
    array, box = _fit(array, size, f"source image {path}")
    return _as_float(array, size), box


def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as float32 (H, W, 3) in [0, 1]: centre-cropped to `size`'s aspect ratio (with a warning),
    then resized to `size` (H, W) like the official demo."""
    return _load_image(path, size)[0]


class DrivingVideo:
    """A video decoded frame by frame with PyAV (any container FFmpeg reads: mp4, mov, mkv, gif); iterating
    yields float32 (h, w, 3) frames in [0, 1], each centre-cropped to `size`'s aspect ratio (with a warning) and
    resized to `size` as it is decoded, so memory holds one full-size frame at a time."""

    def __init__(self, path: str | os.PathLike, size: tuple[int, int] | None = None):
        import av

        self.path, self.size, self.crop = Path(path), None if size is None else tuple(size), None
        if not self.path.is_file():
            raise AnimbenchError(f"driving video {path}: file not found")
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                self.num_frames = int(stream.frames) or None  # None: the container does not say
                shape = (stream.codec_context.height, stream.codec_context.width)
        except (av.FFmpegError, IndexError) as e:
            raise AnimbenchError(f"driving video {path}: cannot be decoded ({e})") from None
        self.fps = float(rate) if rate else 25.0
        self._probed = all(shape)
        if self._probed:  # the crop (and its warning) is known before the first frame is decoded
            self.crop = _fit(np.empty((*shape, 0), np.uint8), self.size, f"driving video {path}")[1]

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        count = 0
        try:
            with av.open(str(self.path)) as container:
                for frame in container.decode(container.streams.video[0]):
                    array = frame.to_ndarray(format="rgb24")
                    if count == 0 and not self._probed:  # the container did not say its frame size
                        self.crop = _fit(array, self.size, f"driving video {self.path}")[1]
                    box = None if self.size is None else centre_crop_box(*array.shape[:2], self.size)
                    if box is not None:
                        top, left, h, w = box
                        array = array[top:top + h, left:left + w]
                    count += 1
                    yield _as_float(array, self.size)
        except (av.FFmpegError, IndexError) as e:
            raise AnimbenchError(f"driving video {self.path}: cannot be decoded at frame {count} ({e})") from None
        if count == 0:
            raise AnimbenchError(f"driving video {self.path}: no frames")


def read_video(path: str | os.PathLike, size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """A whole video as float32 (T, H, W, 3) in [0, 1] and its fps (DrivingVideo's frames, stacked)."""
    video = DrivingVideo(path, size)
    return np.stack(list(video)), video.fps


def animation_settings(model: nn.Module, relative: bool | None, adapt_scale: bool | None) -> dict[str, Any]:
    """The animation mode actually used, as plain data: the explicit flags, else the method's config's."""
    return model.animation_mode(relative, adapt_scale).as_dict()


def avd_families() -> list[str]:
    """The registered methods whose family animates by disentanglement (`supports_avd`), sorted."""
    from methods.registry import METHODS

    return sorted(name for name, card in METHODS.items()
                  if getattr(getattr(card.build, "__self__", None), "supports_avd", False))


def check_avd(method: str, avd: bool) -> None:
    """A one-line AnimbenchError when --avd is asked of a family without an AVD network."""
    if avd and method not in avd_families():
        raise AnimbenchError(f"--avd: method {method} has no animation-via-disentanglement network; the methods "
                             f"that have one: {', '.join(avd_families()) or 'none'}")


def check_align_corners(method: str, align_corners: bool | None) -> None:
    """A one-line AnimbenchError when --align-corners contradicts a family's fixed convention (`grid_convention`)."""
    from methods.registry import get_method

    fixed = getattr(getattr(get_method(method).build, "__self__", None), "grid_convention", None)
    if fixed is not None and align_corners is not None and bool(align_corners) != fixed:
        raise AnimbenchError(f"--align-corners {str(bool(align_corners)).lower()}: method {method} runs with "
                             f"align_corners={str(fixed).lower()}, the convention its official weights need")


def resolve_mode(model: nn.Module, relative: bool | None, adapt_scale: bool | None, avd: bool = False
                 ) -> AnimationMode:
    """The mode of `animbench animate`: with avd, the family's absolute mode with option "avd" True; else its
    animation_mode of the flags (None: its config's)."""
    if avd:
        return model.animation_mode(False, adapt_scale).with_option("avd", True)
    return model.animation_mode(relative, adapt_scale)


def animate_frames(
    model: nn.Module,
    source_img: np.ndarray,
    driving_frames: Iterable[np.ndarray],
    relative: bool | None = None,
    adapt_scale: bool | None = None,
    *,
    device: str | torch.device | None = None,
    chunk: int = ANIMATE_CHUNK,
    mode: AnimationMode | None = None,
) -> Iterator[np.ndarray]:
    """Animate one image (H, W, 3) by driving frames (H, W, 3), uint8 or [0, 1] floats, from any iterable:
    yields float32 (H, W, 3) predictions as they are made, `chunk` driving frames per model call. `mode` (e.g.
    resolve_mode's, with avd) replaces the one relative / adapt_scale give."""
    dev = _model_device(model, device)
    model.to(dev).eval()
    source = torch.from_numpy(_as_float(source_img, None)).permute(2, 0, 1).unsqueeze(0).to(dev)
    mode = model.animation_mode(relative, adapt_scale) if mode is None else mode

    def run(frames: list[np.ndarray]) -> np.ndarray:
        driving = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).to(dev)
        if source.shape[2:] != driving.shape[2:]:
            raise AnimbenchError(f"animate: source {tuple(source.shape[2:])} and driving {tuple(driving.shape[2:])}"
                                 " frames differ in size; resize both to the config's frame size")
        with torch.no_grad():
            pred = model.animate(source, driving, mode)
        return np.ascontiguousarray(_to_hwc(pred), dtype=np.float32)

    yield from _chunked((_as_float(frame, None) for frame in driving_frames), run, chunk)


def _chunked(frames: Iterable[np.ndarray], run: Any, chunk: int) -> Iterator[np.ndarray]:
    """run(list of frames) -> predictions, `chunk` frames per call; every call after the first gets driving
    frame 0 in front (the reference of relative motion) and its output dropped."""
    first: np.ndarray | None = None
    pending: list[np.ndarray] = []
    for frame in frames:
        if first is None:
            first = frame
        pending.append(frame)
        if len(pending) == chunk:
            yield from (run(pending) if pending[0] is first else run([first, *pending])[1:])
            pending = []
        elif len(pending) == chunk - 1 and pending[0] is not first:  # frame 0 in front makes a full chunk
            yield from run([first, *pending])[1:]
            pending = []
    if first is None:
        raise AnimbenchError("animate: the driving video has no frames")
    if pending:
        yield from (run(pending) if pending[0] is first else run([first, *pending])[1:])


def animate_video(
    model: nn.Module,
    source_img: np.ndarray,
    driving_frames: np.ndarray | Iterable[np.ndarray],
    relative: bool | None = None,
    adapt_scale: bool | None = None,
    *,
    device: str | torch.device | None = None,
    chunk: int = ANIMATE_CHUNK,
) -> np.ndarray:
    """Animate one image (H, W, 3) by a video (T, H, W, 3), uint8 or [0, 1] floats -> float32 (T, H, W, 3)."""
    return np.stack(list(animate_frames(model, source_img, driving_frames, relative, adapt_scale, device=device,
                                        chunk=chunk)))


def _even(frames: np.ndarray) -> np.ndarray:
    # yuv420p needs even sizes: repeat the last row / column
    h, w = frames.shape[1:3]
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def output_kind(out: str | os.PathLike) -> str:
    """'npy', 'mp4', 'gif' or 'png_dir' (no suffix, or a trailing slash) for an OUT path."""
    text = str(out)
    suffix = Path(text).suffix.lower()
    if text.endswith(("/", os.sep)) or not suffix:
        return "png_dir"
    if suffix in (".npy", ".mp4", ".gif"):
        return suffix[1:]
    raise AnimbenchError(f"output {out}: expected a .mp4, .gif or .npy file, or a directory (no suffix) for PNGs")


def _output_path(out: str | os.PathLike, overwrite: bool) -> Path:
    path = Path(str(out).rstrip("/" + os.sep))
    if path.exists() and not overwrite:
        raise AnimbenchError(f"output {path}: already exists (pass --overwrite to replace it)")
    return path


def check_out_apart(out: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """Refuse an OUT that is, holds or lies inside one of `inputs` ({flag: path}; None skipped), or whose OUT.json
    is one: --overwrite replaces OUT whole, and a PNG folder would mix the outputs into the inputs."""
    path = Path(str(out).rstrip("/" + os.sep))
    target = Path(os.path.realpath(path))
    record = Path(os.path.realpath(path.with_name(path.name + ".json")))
    for flag, given in inputs.items():
        if given is None:
            continue
        source = Path(os.path.realpath(given))
        if target == source or record == source:
            how = "is"
        elif target in source.parents:
            how = "holds"
        elif source in target.parents:
            how = "lies inside"
        else:
            continue
        raise AnimbenchError(f"--out {out}: {how} the input {flag} {given}; expected an output path apart from the "
                             "inputs (nothing was written)")


def _checked(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for frame in frames:
        frame = np.asarray(frame, dtype=np.float32)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise AnimbenchError(f"write_animation: expected (T, H, W, 3) frames, got a frame of {frame.shape}")
        yield frame


def _stream_npy(frames: Iterator[np.ndarray], tmp: Path, path: Path, num_frames: int) -> None:
    """Frames written one by one into a (num_frames, H, W, 3) float32 .npy memory map at tmp (beside path): the
    whole output is never in memory; a count or shape that differs from the first frame's is a one-line error."""
    array = None
    count = 0
    for i, frame in enumerate(frames):
        if array is None:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(num_frames, *frame.shape))
        if i >= num_frames:
            raise AnimbenchError(f"output {path}: more frames than the {num_frames} expected")
        if frame.shape != array.shape[1:]:
            raise AnimbenchError(f"output {path}: frame {i} is {frame.shape}, expected {array.shape[1:]} as the "
                                 "first")
        array[i] = frame
        count = i + 1
    if count != num_frames:
        raise AnimbenchError(f"output {path}: {count} frames made, {num_frames} expected")
    if array is not None:
        array.flush()
        del array  # unmapped before the file is renamed into place


def _write_frames(kind: str, frames: Iterator[np.ndarray], tmp: Path, path: Path, fps: float,
                  num_frames: int | None = None) -> None:
    if kind == "npy" and num_frames is not None:  # the raw floats, streamed into a memory-mapped file
        _stream_npy(frames, tmp, path, num_frames)
    elif kind == "npy":  # the count is not known up front: the raw floats gathered, then saved
        with open(tmp, "wb") as f:
            np.save(f, np.stack(list(frames)))
    elif kind == "mp4":  # encoded as produced
        import av

        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "17"}
            for i, frame in enumerate(frames):
                data = _even(quantise(frame[None]))[0]
                if i == 0:
                    stream.height, stream.width = data.shape[:2]
                container.mux(stream.encode(av.VideoFrame.from_ndarray(data, format="rgb24")))
            container.mux(stream.encode())
    elif kind == "gif":
        from PIL import Image

        images = [Image.fromarray(quantise(f)) for f in frames]
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=max(1, round(1000 / fps)))
    else:  # written as produced
        import cv2

        tmp.mkdir()
        for i, frame in enumerate(frames):
            if not cv2.imwrite(str(tmp / f"{i:07d}.png"), np.ascontiguousarray(quantise(frame)[..., ::-1])):
                raise AnimbenchError(f"output {path}: could not write frame {i}")


def write_animation(frames: np.ndarray | Iterable[np.ndarray], out: str | os.PathLike, fps: float = 25.0,
                    overwrite: bool = False, num_frames: int | None = None) -> Path:
    """Write float32 (T, H, W, 3) predictions (an array or an iterable of (H, W, 3) frames, written as they
    come: mp4 and PNGs never hold the whole video) to .npy / .mp4 / .gif / a PNG directory, atomically.

    num_frames: how many frames the iterable yields, when known up front: a .npy is then written frame by frame
    into a memory-mapped file (a different count is an error); unknown, the frames of a .npy are gathered first."""
    kind = output_kind(out)
    path = _output_path(out, overwrite)
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise AnimbenchError(f"write_animation: expected (T, H, W, 3) frames, got {frames.shape}")
        num_frames = len(frames)
    frames = iter(_checked(frames))
    try:
        first = next(frames)
    except StopIteration:
        raise AnimbenchError(f"output {path}: no frames to write") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    # a failure (or Ctrl-C) mid-video leaves no half-written output behind; an old output is replaced only
    # once the new one is complete
    with atomic_path(path, suffix=path.suffix) as tmp:
        _write_frames(kind, itertools.chain([first], frames), tmp, path, fps, num_frames)
    return path


# --- one call per CLI command ------------------------------------------------------------------------------


def reconstruct(method: str, store: str | os.PathLike, out_dir: str | os.PathLike, *,
                checkpoint: str | None = None, config: str | None = None, split: str = "test",
                batch_size: int = 16, device: str = "cpu", limit_videos: int | None = None,
                align_corners: bool | None = None, overwrite: bool = False) -> dict[str, Any]:
    """`animbench reconstruct`: load a registered method and run the reconstruction protocol on a store."""
    from methods.registry import load_model

    check_align_corners(method, align_corners)
    model, provenance = load_model(method, checkpoint=checkpoint, config=config, device=device,
                                   align_corners=align_corners)
    size = evaluation_size(method, config)  # as `animbench bench`: the config's frame shape, else the store's
    return reconstruct_store(model, store, out_dir, split=split, batch_size=batch_size, device=device,
                             limit_videos=limit_videos, frame_size=size, provenance=provenance,
                             overwrite=overwrite)


def _frame_size(height_width: Iterable[int]) -> dict[str, Any]:
    """OUT.json's frame size as [width, height], the order of every size in the record (poses.frame_size, --frame-size
    WxH); frames themselves are (H, W, 3)."""
    height, width = (int(v) for v in height_width)
    return {"frame_size": [width, height], "frame_size_order": "width, height"}


def animate(method: str, source: str | os.PathLike | None, driving: str | os.PathLike, out: str | os.PathLike, *,
            checkpoint: str | None = None, config: str | None = None, relative: bool | None = None,
            adapt_scale: bool | None = None, align_corners: bool | None = None, device: str = "cpu",
            fps: float | None = None, overwrite: bool = False, progress: bool = True, no_crop: bool = False,
            detector: str | None = None, avd: bool = False) -> dict[str, Any]:
    """`animbench animate`: animate a source image by a driving video; writes OUT and OUT.json (provenance;
    frame_size is [width, height]). OUT may not be, hold or lie inside --source or --driving (refused first).

    The driving video is streamed: decoded, centre-cropped to the model's aspect ratio (a warning on stderr when
    it is not already) and resized one frame at a time, animated in chunks, and written as it is produced.
    A family with a face crop (`input_crop`) or a set of source images (`source_images = "set"`) goes through
    `animate_set` (no_crop, detector: its crop options). avd: animation via disentanglement (`--avd`), for the
    families that have it (`supports_avd`)."""
    from methods.config import load_config
    from methods.registry import load_model

    kind = output_kind(out)  # a bad OUT fails before any work
    check_out_apart(out, {"--source": source, "--driving": driving})
    _output_path(out, overwrite)
    check_avd(method, avd)
    check_align_corners(method, align_corners)
    model, provenance = load_model(method, checkpoint=checkpoint, config=config, device=device,
                                   align_corners=align_corners)
    if model.input_crop is not None or model.source_images != "one":
        return animate_set(model, provenance, source, driving, out, relative=relative, adapt_scale=adapt_scale,
                           device=device, fps=fps, overwrite=overwrite, progress=progress, no_crop=no_crop,
                           detector=detector, config=config)
    for flag, given in (("--no-crop", no_crop), ("--detector", detector)):
        if given:
            raise AnimbenchError(f"{flag}: method {method} takes no face crop (its inputs are centre-cropped and "
                                 "resized to the config's frame shape)")
    if source is None:
        raise AnimbenchError(f"method {method}: animates a source image by a driving video: pass --source IMAGE")
    size = frame_shape(load_config(config, method=method)) if config is not None else None
    source_img, source_crop = _load_image(source, size)
    video = DrivingVideo(driving, size if size is not None else source_img.shape[:2])
    mode = resolve_mode(model, relative, adapt_scale, avd)
    model.check_mode(mode)  # before the progress bar and any output
    bar = progress_bar(video.num_frames, f"animate {method}", "frame", enabled=progress)
    made = []

    def produced() -> Iterator[np.ndarray]:
        for frame in animate_frames(model, source_img, video, device=device, mode=mode):
            bar.update(1)
            made.append(frame.shape[:2])
            yield frame

    try:
        path = write_animation(produced(), out, fps=fps or video.fps, overwrite=overwrite)
    finally:
        bar.close()
    record = {"output": str(path), "format": kind, "num_frames": len(made), **_frame_size(made[0]),
              "fps": fps or video.fps, "source": str(source), "driving": str(driving),
              "crop": {"source": source_crop, "driving": video.crop},
              "mode": mode.as_dict(),
              "quantisation": None if kind == "npy" else QUANTISATION, "provenance": provenance}
    _write_json(path.with_name(path.name + ".json"), record)
    return record


# --- families fed face crops or a set of source images (input_crop, source_images "set") ---------------------

INPUT_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_DETECTOR = "dlib"  # as `animbench prep --crop latentpose`: offline; s3fd is the official one


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file -> uint8 RGB (H, W, 3), read with OpenCV as the official loaders do (alpha dropped)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise AnimbenchError(f"{path}: not a readable image (expected {', '.join(INPUT_IMAGE_EXTENSIONS)})")
    return np.ascontiguousarray(image[..., ::-1])


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of a folder, sorted by name (hidden files skipped)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in INPUT_IMAGE_EXTENSIONS)


def input_frames(path: str | os.PathLike, what: str) -> tuple[str, Iterator[tuple[str, np.ndarray]], float]:
    """An input of `animbench animate` / `finetune` -> (kind, (name, uint8 RGB (H, W, 3)) in order, fps): an
    image file, a folder of images (sorted name order), a video file (decoded in order) or a frame store (every
    frame of every video, videos in stored order). The path is checked now, the frames read lazily."""
    root = Path(path)
    if root.is_dir() and (root / "manifest.json").is_file():
        store = FrameStore(root)
        videos = store.videos()
        fps = float(store.info(videos[0]).get("fps") or 25.0) if videos else 25.0

        def stored() -> Iterator[tuple[str, np.ndarray]]:
            for vid in videos:
                for i, frame in enumerate(store.iter_frames(vid)):
                    yield f"{vid}#{i}", frame
        return "store", stored(), fps
    if root.is_dir():
        files = image_files(root)
        if not files:
            raise AnimbenchError(f"{what} {root}: holds no images ({', '.join(INPUT_IMAGE_EXTENSIONS)}) and is "
                                 "not a frame store")
        return "images", ((f.name, read_rgb(f)) for f in files), 25.0
    if not root.is_file():
        raise AnimbenchError(f"{what} {root}: no such file or folder (expected an image, a folder of images, a "
                             "video or a frame store)")
    if root.suffix.lower() in INPUT_IMAGE_EXTENSIONS:
        return "image", iter([(root.name, read_rgb(root))]), 25.0
    video = DrivingVideo(root)  # checks the container now

    def decoded() -> Iterator[tuple[str, np.ndarray]]:
        for i, frame in enumerate(video):
            yield f"{root.name}#{i}", np.round(frame * 255.0).astype(np.uint8)
    return "video", decoded(), video.fps


def make_face_detector(name: str | None):
    """prep.detect's detector of the latent-pose crop (default dlib), checked before any model work."""
    from prep.detect import check_detector, make_detector

    name = name or DEFAULT_DETECTOR
    check_detector(name)
    return make_detector(name)


def crop_inputs(frames: Iterable[tuple[str, np.ndarray]], crop: str | None, detector: Any,
                size: tuple[int, int] | None, what: str, boxes: list | None = None) -> Iterator[np.ndarray]:
    """uint8 RGB frames -> float32 (h, w, 3) in [0, 1] as a family takes them: "latentpose" the latent-pose
    crop (prep.latentpose_crop.crop_frame, 256 px; its boxes appended to `boxes`), "none" the frames as they
    are (crops already), None centre-cropped and resized to `size`. Every frame must come out at the first's
    size (one batch)."""
    from prep.latentpose_crop import crop_frame

    first: tuple[int, ...] | None = None
    for name, frame in frames:
        if crop == "latentpose":
            frame, box = crop_frame(frame, detector)
            if boxes is not None:
                boxes.append([float(v) for v in box])
        elif crop is None:
            frame = _fit(frame, size, f"{what} {name}")[0]
        out = _as_float(frame, size if crop is None else None)
        if first is None:
            first = out.shape
        elif out.shape != first:
            raise AnimbenchError(f"{what} {name}: {out.shape[1]}x{out.shape[0]}, the first image is "
                                 f"{first[1]}x{first[0]} (with --no-crop every image of one input must be a crop "
                                 "of one size)")
        yield out


def animate_set(model: nn.Module, provenance: Mapping[str, Any], source: str | os.PathLike | None,
                driving: str | os.PathLike, out: str | os.PathLike, *, relative: bool | None = None,
                adapt_scale: bool | None = None, device: str = "cpu", fps: float | None = None,
                overwrite: bool = False, progress: bool = True, no_crop: bool = False, detector: str | None = None,
                config: str | None = None) -> dict[str, Any]:
    """`animbench animate` for a family with `input_crop` or a set of source images: S and D are each an image, a
    folder of images (sorted name order), a video or a frame store; every image is cut as `model.input_crop`
    says (the latent-pose crop with `detector`), or taken as a crop as it is with no_crop (the family then reads
    it as the official loader reads crops). When `model.holds_identity()` (a fine-tuned avatar) the source is
    not needed and, if given, not used (a note on stderr). Writes OUT and OUT.json."""
    from methods.config import load_config

    kind = output_kind(out)
    check_out_apart(out, {"--source": source, "--driving": driving})
    crop = "none" if no_crop else model.input_crop
    if no_crop and model.input_crop is None:
        raise AnimbenchError(f"--no-crop: method {provenance.get('method')} takes no face crop")
    if crop != "latentpose" and detector is not None:
        raise AnimbenchError("--detector: only for the latent-pose crop (not with --no-crop)")
    size = frame_shape(load_config(config)) if crop is None and config is not None else None
    held = model.holds_identity()
    if source is None and not held:
        raise AnimbenchError(f"method {provenance.get('method')}: this checkpoint holds no identity (it is not "
                             "fine-tuned): pass --source (an image, a folder of images, a video or a store of the "
                             "person)")
    if source is not None and held:
        print(f"animbench: note: the checkpoint holds its fine-tuned identity; --source {source} is not used",
              file=sys.stderr, flush=True)
    _, driving_frames, driving_fps = input_frames(driving, "--driving")
    det = make_face_detector(detector) if crop == "latentpose" else None
    dev = _model_device(model, device)
    model.to(dev).eval()
    mode = model.animation_mode(relative, adapt_scale)
    sources, source_names, source_boxes = None, [], []
    if source is not None and not held:
        _, frames = input_frames(source, "--source")[:2]

        def named() -> Iterator[tuple[str, np.ndarray]]:
            for name, frame in frames:
                source_names.append(name)
                yield name, frame
        images = list(crop_inputs(named(), crop, det, size, "--source", source_boxes))
        if model.source_images == "one" and len(images) != 1:
            raise AnimbenchError(f"--source {source}: {len(images)} images; method {provenance.get('method')} "
                                 "takes one")
        sources = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(dev)

    def run(frames: list[np.ndarray]) -> np.ndarray:
        batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).to(dev)
        with torch.no_grad():
            pred = model.animate_sources(sources, batch, mode)
        return np.ascontiguousarray(_to_hwc(pred).clip(0.0, 1.0), dtype=np.float32)

    driving_boxes: list = []
    bar = progress_bar(None, f"animate {provenance.get('method')}", "frame", enabled=progress)
    made: list[tuple[int, int]] = []

    def produced() -> Iterator[np.ndarray]:
        for frame in _chunked(crop_inputs(driving_frames, crop, det, size, "--driving", driving_boxes), run,
                              ANIMATE_CHUNK):
            bar.update(1)
            made.append(frame.shape[:2])
            yield frame

    try:
        path = write_animation(produced(), out, fps=fps or driving_fps, overwrite=overwrite)
    finally:
        bar.close()
    no_face = _no_face_counts(source_boxes, driving_boxes)
    for what, (missed, total) in no_face.items():
        if missed:
            print(f"animate: no face found in {missed} of {total} {what} frame(s): the official fallback window "
                  "(0, 0, 200, 200) was cut there (boxes in OUT.json)", file=sys.stderr)
    record = {"output": str(path), "format": kind, "num_frames": len(made), **_frame_size(made[0]),
              "fps": fps or driving_fps, "source": None if source is None else str(source), "driving": str(driving),
              "identity": ("the checkpoint's own (fine-tuned)" if held else
                           f"pooled over {len(source_names)} source image(s)"), "sources": source_names,
              "crop": {"style": crop, "detector": (detector or DEFAULT_DETECTOR) if det is not None else None,
                       "source_boxes": source_boxes or None, "driving_boxes": driving_boxes or None,
                       "no_face": {k: v[0] for k, v in no_face.items()}},
              "mode": mode.as_dict(), "values": "clamp(output, 0, 1)",
              "quantisation": None if kind == "npy" else QUANTISATION, "provenance": dict(provenance)}
    _write_json(path.with_name(path.name + ".json"), record)
    return record


def _no_face_counts(source_boxes: list, driving_boxes: list) -> dict[str, tuple[int, int]]:
    """{"source" | "driving": (frames cut at the latent-pose crop's no-face fallback, frames cut)}."""
    from prep.latentpose_crop import NO_FACE_BOX as FALLBACK

    return {what: (sum(1 for b in boxes if tuple(b) == FALLBACK), len(boxes))
            for what, boxes in (("source", source_boxes), ("driving", driving_boxes)) if boxes}


# --- pose-driven families ------------------------------------------------------------------------------------

POSE_CHUNK = 16  # label maps per model.generate call; frames inside a call are still made one after another
NO_FACE_BOX = (-1, -1, -1, -1)  # a face_boxes row for a frame without a head (no face residual there)


def _weight_facts(backend: str) -> dict[str, str]:
    """The detector's weight file as provenance: its path and sha256."""
    from plumbing.files import sha256_file
    from plumbing.weights import locate
    from prep.poses.detectors import WEIGHT_FILES

    path = locate(WEIGHT_FILES[backend], verify_hash=False)  # the detector checked it when it loaded
    return {"path": str(path), "sha256": sha256_file(path)}


def check_animate_inputs(method: str, source: Any = None, driving: Any = None, poses: Any = None, *,
                         pose_options: Mapping[str, Any] | None = None,
                         video_options: Mapping[str, Any] | None = None) -> str:
    """The family's `driven_by` ("video" or "poses") when the inputs given are the ones it takes; else a
    one-line AnimbenchError saying which inputs it takes. pose_options / video_options: the options only one
    kind of family takes (name -> value; None when not given)."""
    from methods.registry import get_method

    def flags(options: Mapping[str, Any] | None) -> list[str]:
        return [f"--{k.replace('_', '-')}" for k, v in (options or {}).items() if v is not None]

    driven_by = get_method(method).driven_by
    if driven_by == "poses":
        wrong = ["--source"] * (source is not None) + ["--driving"] * (driving is not None) + flags(video_options)
        if wrong or poses is None:
            extra = f" ({', '.join(wrong)} is for video-driven families)" if wrong else ""
            raise AnimbenchError(f"method {method}: generates frames from poses: pass --poses P (a folder of label "
                                 f"maps, of OpenPose keypoint files, a frame store with poses, or a video with "
                                 f"--pose-backend){extra}")
        return driven_by
    wrong = ["--poses"] * (poses is not None) + flags(pose_options)
    owner = getattr(get_method(method).build, "__self__", None)
    takes_set = getattr(owner, "source_images", "one") != "one"  # a fine-tuned avatar may go without --source
    if wrong or (source is None and not takes_set) or driving is None:
        extra = f" ({', '.join(wrong)} is for pose-driven families)" if wrong else ""
        if takes_set:
            raise AnimbenchError(f"method {method}: animates source images by driving frames: pass --driving "
                                 "IMAGES|VIDEO|STORE and --source IMAGES|VIDEO|STORE (not needed with a fine-tuned "
                                 f"checkpoint){extra}")
        raise AnimbenchError(f"method {method}: animates a source image by a driving video: pass --source IMAGE "
                             f"and --driving VIDEO{extra}")
    return driven_by


def _pose_frames(model: nn.Module, items: Iterable[tuple[np.ndarray, tuple[int, int, int, int] | None, Any]],
                 chunk: int = POSE_CHUNK) -> Iterator[tuple[np.ndarray, Any]]:
    """(label map uint8 (H, W, 3), face box or None, anything) -> (float32 (h, w, 3) = (raw + 1) / 2, unclamped,
    the same anything), generated in chunks with the previous raw output carried between calls. Face boxes are
    passed when the model uses them, a row of -1s (NO_FACE_BOX) for a frame without a head."""
    if chunk < 1:
        raise AnimbenchError(f"chunk {chunk}: expected >= 1 frames per call")
    dev = _model_device(model, None)
    use_boxes = bool(model.needs_face_boxes)
    previous: torch.Tensor | None = None

    def run(batch: list[tuple[np.ndarray, Any, Any]]) -> list[tuple[np.ndarray, Any]]:
        nonlocal previous
        labels = torch.stack([model.label_tensor(label) for label, _, _ in batch]).to(dev)
        boxes = None
        if use_boxes:
            boxes = torch.tensor([list(NO_FACE_BOX if box is None else box) for _, box, _ in batch],
                                 dtype=torch.int64, device=dev)
        with torch.no_grad():
            raw, previous = model.generate(labels, boxes, previous)
        frames = ((raw.detach().float() + 1.0) / 2.0).permute(0, 2, 3, 1).cpu().numpy()
        return [(np.ascontiguousarray(f, dtype=np.float32), meta) for f, (_, _, meta) in zip(frames, batch,
                                                                                            strict=True)]

    pending: list[tuple[np.ndarray, Any, Any]] = []
    for item in items:
        pending.append(item)
        if len(pending) == chunk:
            yield from run(pending)
            pending = []
    if pending:
        yield from run(pending)


def generate_poses(model: nn.Module, labels: Iterable[np.ndarray],
                   face_boxes: Iterable[tuple[int, int, int, int] | None] | None = None,
                   chunk: int = POSE_CHUNK) -> Iterator[np.ndarray]:
    """Frames of a pose-driven model from uint8 (H, W, 3) RGB label maps, in order: float32 (h, w, 3) =
    (raw + 1) / 2 at the generator's resolution, unclamped; face boxes (miny, maxy, minx, maxx) per label (None:
    none: no face residual on that frame), used when the model has a face generator. Streamed: `chunk` labels
    per call, `previous` carried."""
    model.eval()
    pairs = ((label, None) for label in labels) if face_boxes is None else zip(labels, face_boxes, strict=True)
    items = ((label, None if box is None else tuple(int(v) for v in box), None) for label, box in pairs)
    for frame, _ in _pose_frames(model, items, chunk):
        yield frame


def store_pose_frames(model: nn.Module, store: FrameStore, video_id: str, chunk: int = POSE_CHUNK
                      ) -> Iterator[dict[str, Any]]:
    """A store video generated from its own poses, one dict per frame with a pose, in frame order:
    {"index", "prediction": float32 (h, w, 3) in [0, 1] clamped, "target": float32 (h, w, 3) in [0, 1]
    (model.pose_target of the stored frame), "pose": the PoseFrame in the stored frame's pixels, "face_box":
    (miny, maxy, minx, maxx) in generator pixels or None}."""
    model.eval()
    poses = store.poses(video_id)
    info = store.info(video_id)
    frame_size = (int(info["width"]), int(info["height"]))

    def items() -> Iterator[tuple[np.ndarray, Any, dict[str, Any]]]:
        indices = sorted(poses)
        for start in range(0, len(indices), chunk):
            wanted = indices[start:start + chunk]
            for index, frame in zip(wanted, store.read(video_id, wanted), strict=True):
                label, box = model.pose_condition(poses[index], frame_size)
                target = model.pose_target(frame).astype(np.float32) / np.float32(255.0)
                yield label, box, {"index": index, "target": target, "pose": poses[index], "face_box": box}

    for prediction, meta in _pose_frames(model, items(), chunk):
        yield {"index": meta["index"], "prediction": np.clip(prediction, 0.0, 1.0, out=prediction),
               "target": meta["target"], "pose": meta["pose"], "face_box": meta["face_box"]}


def animate_poses(method: str, poses: str | os.PathLike, out: str | os.PathLike, *,
                  checkpoint: str | None = None, config: str | None = None, normalize_to: str | None = None,
                  face_boxes: str | None = None, video: str | None = None,
                  frame_size: tuple[int, int] | None = None, pose_backend: str | None = None, device: str = "cpu",
                  fps: float | None = None, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """`animbench animate METHOD --poses P`: frames of a pose-driven family from label maps, OpenPose keypoints
    (rendered with model.pose_condition; with normalize_to, globally normalised to that target subject's
    OpenPose folder first), a frame store's poses or a video's poses found by `pose_backend` (rtpose, dwpose);
    writes OUT and OUT.json (provenance, inputs, normalisation; frame_size and poses.frame_size are both
    [width, height]). OUT may not be, hold or lie inside an input folder (refused before any work).

    frame_size (W, H): the frame OpenPose keypoints refer to (default EDN's 1920x1080); a store's and a video's
    are their own."""
    from methods import pose_inputs as pi
    from methods.registry import load_model

    check_animate_inputs(method, poses=poses)
    kind = output_kind(out)  # a bad OUT fails before any work
    check_out_apart(out, {"--poses": poses, "--face-boxes": face_boxes, "--normalize-to": normalize_to})
    _output_path(out, overwrite)
    source = pi.pose_input_kind(poses)
    if source == pi.LABELS and normalize_to is not None:
        raise AnimbenchError(f"--normalize-to: needs keypoints, but --poses {poses} holds label maps (pass a folder "
                             "of OpenPose files or a frame store with poses)")
    if source != pi.LABELS and face_boxes is not None:
        raise AnimbenchError(f"--face-boxes: only for label-map folders; the boxes of {poses} come from its poses")
    if source != pi.STORE and video is not None:
        raise AnimbenchError(f"--video: only for a frame store, but --poses {poses} is {pi.KIND_WORDS[source]}")
    if source == pi.VIDEO:
        from prep.poses.detectors import DETECTORS, check_pose_detector

        if pose_backend not in DETECTORS:
            given = "" if pose_backend is None else f" (got {pose_backend!r})"
            raise AnimbenchError(f"--poses {poses} is a video: pass --pose-backend {'|'.join(DETECTORS)} to find its "
                                 f"poses{given}")
        if frame_size is not None:
            raise AnimbenchError(f"--frame-size: only for OpenPose files; the poses of the video {poses} are in its "
                                 "own pixels")
        check_pose_detector(pose_backend)  # a missing weight file fails before the model loads
    elif pose_backend is not None:
        raise AnimbenchError(f"--pose-backend: only for a video, but --poses {poses} is {pi.KIND_WORDS[source]}")
    box_dir = pi.find_face_box_folder(poses, face_boxes) if source == pi.LABELS else None
    check_out_apart(out, {"face box folder (found beside --poses)": box_dir})
    model, provenance = load_model(method, checkpoint=checkpoint, config=config, device=device)
    inputs: dict[str, Any] = {"path": str(poses), "kind": source}
    normalization = None
    default_fps = 25.0
    if source == pi.LABELS:
        inputs["face_boxes"] = None if box_dir is None else str(box_dir)
        size = tuple(model.generator_size)
        count = len(pi.label_files(poses))
        items = ((item.label, scale_box(item.face_box, (item.label.shape[1], item.label.shape[0]), size), item.name)
                 for item in pi.label_items(poses, box_dir, model.needs_face_boxes))
    else:
        if source == pi.OPENPOSE:
            names, pose_list, skipped = pi.openpose_poses(poses)
            size = tuple(frame_size or (1920, 1080))
            inputs.update(frame_size=list(size), skipped=skipped)
        elif source == pi.VIDEO:
            names, pose_list, skipped, size, default_fps = pi.video_poses(poses, pose_backend, device, progress)
            inputs.update(frame_size=list(size), skipped=skipped, pose_backend=pose_backend,
                          detector_weights=_weight_facts(pose_backend))
        else:
            vid, names, pose_list, size, info = pi.store_poses(poses, video)
            inputs.update(video=vid, frame_size=list(size))
            default_fps = float(info.get("fps") or default_fps)
        if normalize_to is not None:
            names, pose_list, normalization = pi.normalized(names, pose_list, normalize_to, size)
        count = len(names)
        items = ((*model.pose_condition(pose, size), name) for name, pose in zip(names, pose_list, strict=True))
    bar = progress_bar(count, f"generate {method}", "frame", enabled=progress)
    made: list[str] = []
    shape: list[int] = []  # (H, W) of the frames made

    def produced() -> Iterator[np.ndarray]:
        for frame, name in _pose_frames(model.eval(), items):
            bar.update(1)
            made.append(name)
            shape[:] = frame.shape[:2]
            yield frame

    try:
        path = write_animation(produced(), out, fps=fps or default_fps, overwrite=overwrite, num_frames=count)
    finally:
        bar.close()
    record = {"output": str(path), "format": kind, "num_frames": len(made), **_frame_size(shape),
              "fps": fps or default_fps, "poses": inputs, "frames": made, "normalization": normalization,
              "values": "(raw + 1) / 2 at the generator's resolution, unclamped" if kind == "npy" else None,
              "conditioning": "first frame on zeros, each later frame on the previous raw output",
              "quantisation": None if kind == "npy" else QUANTISATION, "provenance": provenance}
    _write_json(path.with_name(path.name + ".json"), record)
    return record
