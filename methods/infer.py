"""Inference, the core: FOMM's reconstruction protocol over a frame store, animation of an image by a video, and
the animation outputs every path writes.

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
(`animate_video` stacks them); `animate_image` streams the driving video (methods/infer_inputs.py's
`DrivingVideo`: decoded, centre-cropped to the model's aspect ratio with a warning, and resized one frame at a
time) and `write_animation` writes .npy (those floats, exactly: into a memory-mapped temporary file as frames come
when their number is known up front, as for every pose-driven input; gathered first otherwise), .mp4 (PyAV h264)
or a directory of `%07d.png` frames (floor(255 * pred) like the strips) as frames come, or a .gif.

The other paths build on this module: methods/infer_set.py (`animbench animate` of a video-driven family, and
the families fed face crops or a set of source images) and methods/infer_pose.py (pose-driven families).
`check_animate_inputs` tells a user which inputs a family takes.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from methods.data import frame_shape, resize_frames
from methods.infer_inputs import DrivingVideo, as_float, load_image
from methods.interface import RECONSTRUCTION_PROTOCOL, AnimationMode
from plumbing.errors import AnimbenchError
from plumbing.files import atomic_path, atomic_write_text, path_relation
from plumbing.progress import progress_bar
from prep.pairs import to_tensor
from prep.store import EncodeOptions, FrameStore, FrameStoreWriter

QUANTISATION = "floor(255*pred)"  # as the official strips: (255 * pred).astype(np.uint8)
SUMMARY_FILE = "reconstruction.json"
PREDICTIONS_DIR = "predictions"


def quantise(pred: np.ndarray) -> np.ndarray:
    """float predictions in [0, 1] -> uint8 floor(255 * pred), the official png strips' conversion."""
    return np.floor(np.clip(pred, 0.0, 1.0) * 255.0).astype(np.uint8)


def model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The device asked for, else the model's (its first parameter's; cpu without parameters)."""
    if device is not None:
        return torch.device(device)
    params = list(model.parameters())
    return params[0].device if params else torch.device("cpu")


def to_hwc(pred: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) tensor -> float32 (B, H, W, 3) numpy array on the CPU."""
    return pred.detach().float().permute(0, 2, 3, 1).cpu().numpy()


def evaluation_size(method: str, config: str | os.PathLike | None) -> tuple[int, int] | None:
    """(H, W) a method runs and is scored at: its config's frame shape; None (the store's size) without a config."""
    from methods.registry import load_config

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
    dev = model_device(model, device)
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
            pred = to_hwc(model.reconstruct(source.expand(driving.shape[0], -1, -1, -1), driving))
        yield gt, np.clip(pred, 0.0, 1.0, out=pred)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """A record as indented, key-sorted JSON, written atomically."""
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
    # OUT/predictions is replaced whole with --overwrite: it may not be, hold or lie inside the store read
    check_out_apart(out / PREDICTIONS_DIR, {"--store": store.root}, shown=f"--out {out} (its {PREDICTIONS_DIR}/)")
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
    dev = model_device(model, device)
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
    write_json(out / SUMMARY_FILE, summary)  # last: its presence marks the output complete
    return summary


# --- animation ---------------------------------------------------------------------------------------------


# Driving frames per model call: the video is never held whole. Every chunk after the first is sent with driving
# frame 0 in front (the reference of relative motion) and that frame's output dropped; 64 = 4 of FOMM's internal
# batches of 16 and 8 of Monkey-Net's of 8. A video of up to 64 frames is one call, as before.
ANIMATE_CHUNK = 64


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
    dev = model_device(model, device)
    model.to(dev).eval()
    source = torch.from_numpy(as_float(source_img, None)).permute(2, 0, 1).unsqueeze(0).to(dev)
    mode = model.animation_mode(relative, adapt_scale) if mode is None else mode

    def run(frames: list[np.ndarray]) -> np.ndarray:
        driving = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).to(dev)
        if source.shape[2:] != driving.shape[2:]:
            raise AnimbenchError(f"animate: source {tuple(source.shape[2:])} and driving {tuple(driving.shape[2:])}"
                                 " frames differ in size; resize both to the config's frame size")
        with torch.no_grad():
            pred = model.animate(source, driving, mode)
        return np.ascontiguousarray(to_hwc(pred), dtype=np.float32)

    yield from chunked((as_float(frame, None) for frame in driving_frames), run, chunk)


def chunked(frames: Iterable[np.ndarray], run: Any, chunk: int) -> Iterator[np.ndarray]:
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


def output_path(out: str | os.PathLike, overwrite: bool) -> Path:
    """OUT as a path (a trailing slash dropped); an existing one is an error unless overwrite, and overwrite
    replaces only what an animation writes: a file of OUT's kind, or a folder of %07d.png frames."""
    path = Path(str(out).rstrip("/" + os.sep))
    if path.exists() and not overwrite:
        raise AnimbenchError(f"output {path}: already exists (pass --overwrite to replace it)")
    if path.is_dir():
        if output_kind(out) != "png_dir":
            raise AnimbenchError(f"output {path}: is a folder; expected a path for the {output_kind(out)} file")
        strays = sorted(p.name for p in path.iterdir() if not (p.is_file() and re.fullmatch(r"\d{7}\.png", p.name)))
        if strays:
            raise AnimbenchError(f"output {path}: an existing folder holding {strays[0]!r}, which no animation writes, "
                                 "so --overwrite will not replace it; expected a new path or an earlier output")
    return path


def check_out_apart(out: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None],
                    shown: str | None = None) -> None:
    """Refuse an OUT that is, holds or lies inside one of `inputs` ({flag: path}; None skipped), or whose OUT.json
    is one: --overwrite replaces OUT whole, and a PNG folder would mix the outputs into the inputs. `shown`: how
    the message names OUT (default `--out OUT`)."""
    path = Path(str(out).rstrip("/" + os.sep))
    record = path.with_name(path.name + ".json")
    for flag, given in inputs.items():
        if given is None:
            continue
        how = "is" if path_relation(record, given) == "is" else path_relation(path, given)
        if how is None:
            continue
        raise AnimbenchError(f"{shown or f'--out {out}'}: {how} the input {flag} {given}; expected an output path "
                             "apart from the inputs (nothing was written)")


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
    path = output_path(out, overwrite)
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


def frame_size_fields(height_width: Iterable[int]) -> dict[str, Any]:
    """OUT.json's frame size as [width, height], the order of every size in the record (poses.frame_size, --frame-size
    WxH); frames themselves are (H, W, 3)."""
    height, width = (int(v) for v in height_width)
    return {"frame_size": [width, height], "frame_size_order": "width, height"}


def animate_image(model: nn.Module, provenance: Mapping[str, Any], source: str | os.PathLike | None,
                  driving: str | os.PathLike, out: str | os.PathLike, *, config: str | None = None,
                  relative: bool | None = None, adapt_scale: bool | None = None, device: str = "cpu",
                  fps: float | None = None, overwrite: bool = False, progress: bool = True,
                  avd: bool = False) -> dict[str, Any]:
    """`animbench animate` of a loaded family that takes one source image as it is (infer_set.animate's path
    when the family has no face crop and no source set): writes OUT and OUT.json (provenance; frame_size is
    [width, height]).

    The driving video is streamed: decoded, centre-cropped to the model's aspect ratio (a warning on stderr when
    it is not already) and resized one frame at a time, animated in chunks, and written as it is produced.
    avd: animation via disentanglement (`--avd`), for the families that have it (`supports_avd`)."""
    from methods.registry import load_config

    method = provenance.get("method")
    kind = output_kind(out)
    if source is None:
        raise AnimbenchError(f"method {method}: animates a source image by a driving video: pass --source IMAGE")
    size = frame_shape(load_config(config, method=method)) if config is not None else None
    source_img, source_crop = load_image(source, size)
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
    record = {"output": str(path), "format": kind, "num_frames": len(made), **frame_size_fields(made[0]),
              "fps": fps or video.fps, "source": str(source), "driving": str(driving),
              "crop": {"source": source_crop, "driving": video.crop},
              "mode": mode.as_dict(),
              "quantisation": None if kind == "npy" else QUANTISATION, "provenance": provenance}
    write_json(path.with_name(path.name + ".json"), record)
    return record


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

