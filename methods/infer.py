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

Animation: `animate_video` returns float32 (T, H, W, 3) in [0, 1]; `write_animation` writes .npy (those floats,
exactly), .mp4 (PyAV h264), .gif, or a directory of `%07d.png` frames (floor(255 * pred) like the strips).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from methods.data import frame_shape, resize_frames
from prep.errors import AnimbenchError
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
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


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
    config = {"kind": "reconstruction", "protocol": "fomm-reconstruction", "method": method,
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
        "protocol": "fomm-reconstruction", "method": method, "split": split, "num_videos": len(rows),
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


def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as float32 (H, W, 3) in [0, 1], resized to `size` (H, W) like the official demo."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))  # alpha dropped, as the demo's [..., :3]
    except (FileNotFoundError, UnidentifiedImageError, OSError) as e:
        raise AnimbenchError(f"source image {path}: cannot be read ({e})") from None
    return _as_float(array, size)


def read_video(path: str | os.PathLike, size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """Decode any container FFmpeg reads (mp4, mov, mkv, gif) with PyAV: float32 (T, H, W, 3) in [0, 1] and fps."""
    import av

    if not Path(path).is_file():
        raise AnimbenchError(f"driving video {path}: file not found")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except (av.FFmpegError, IndexError) as e:
        raise AnimbenchError(f"driving video {path}: cannot be decoded ({e})") from None
    if not frames:
        raise AnimbenchError(f"driving video {path}: no frames")
    return _as_float(np.stack(frames), size), float(rate) if rate else 25.0


def animation_settings(model: nn.Module, relative: bool | None, adapt_scale: bool | None) -> dict[str, Any]:
    """The animation mode actually used: the explicit flags, else the config's (FOMM animate_params,
    Monkey-Net transfer_params.normalization_params)."""
    from methods.fomm import FOMM
    from methods.monkey_net import MonkeyNet

    if isinstance(model, FOMM):
        norm = ((getattr(model, "config", None) or {}).get("animate_params") or {}).get("normalization_params") or {}
        relative = bool(norm.get("use_relative_movement", False)) if relative is None else relative
        return {"relative": relative,
                "adapt_scale": bool(norm.get("adapt_movement_scale", False)) if adapt_scale is None else adapt_scale,
                "relative_jacobian": bool(norm.get("use_relative_jacobian", relative))}
    if isinstance(model, MonkeyNet):  # move_location / movement_mult; covariance adaptation and clipping as config
        norm = dict(model.normalization_params)
        if relative is not None:
            norm["move_location"] = relative
        if adapt_scale is not None:
            norm["movement_mult"] = adapt_scale
        return {"relative": bool(norm.get("move_location", False)),
                "adapt_scale": bool(norm.get("movement_mult", False)), **norm}
    return {"relative": relative, "adapt_scale": adapt_scale}


def animate_video(
    model: nn.Module,
    source_img: np.ndarray,
    driving_frames: np.ndarray,
    relative: bool | None = None,
    adapt_scale: bool | None = None,
    *,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Animate one image (H, W, 3) by a video (T, H, W, 3), uint8 or [0, 1] floats -> float32 (T, H, W, 3)."""
    dev = _model_device(model, device)
    model.to(dev).eval()
    source = torch.from_numpy(_as_float(source_img, None)).permute(2, 0, 1).unsqueeze(0).to(dev)
    driving = torch.from_numpy(_as_float(driving_frames, None)).permute(0, 3, 1, 2).to(dev)
    if source.shape[2:] != driving.shape[2:]:
        raise AnimbenchError(f"animate: source {tuple(source.shape[2:])} and driving {tuple(driving.shape[2:])} "
                             "frames differ in size; resize both to the config's frame size")
    mode = animation_settings(model, relative, adapt_scale)
    with torch.no_grad():
        if "relative_jacobian" in mode:  # FOMM takes every setting explicitly
            pred = model.animate(source, driving, relative=mode["relative"], adapt_scale=mode["adapt_scale"],
                                 relative_jacobian=mode["relative_jacobian"])
        else:
            pred = model.animate(source, driving, relative=relative, adapt_scale=adapt_scale)
    return np.ascontiguousarray(_to_hwc(pred), dtype=np.float32)


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


def write_animation(frames: np.ndarray, out: str | os.PathLike, fps: float = 25.0,
                    overwrite: bool = False) -> Path:
    """Write float32 (T, H, W, 3) predictions to .npy / .mp4 / .gif / a PNG directory, atomically."""
    kind = output_kind(out)
    path = Path(str(out).rstrip("/" + os.sep))
    if path.exists() and not overwrite:
        raise AnimbenchError(f"output {path}: already exists (pass --overwrite to replace it)")
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise AnimbenchError(f"write_animation: expected (T, H, W, 3) frames, got {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    if kind == "npy":
        with open(tmp, "wb") as f:
            np.save(f, frames)
    elif kind == "mp4":
        import av

        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            data = _even(quantise(frames))
            stream.height, stream.width = data.shape[1:3]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "17"}
            for frame in data:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
    elif kind == "gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in quantise(frames)]
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=max(1, round(1000 / fps)))
    else:
        import cv2

        tmp.mkdir()
        for i, frame in enumerate(quantise(frames)):
            if not cv2.imwrite(str(tmp / f"{i:07d}.png"), np.ascontiguousarray(frame[..., ::-1])):
                raise AnimbenchError(f"output {path}: could not write frame {i}")
    if path.exists():  # overwrite: move the old output aside first, so a failure never leaves neither
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, path)
    return path


# --- one call per CLI command ------------------------------------------------------------------------------


def reconstruct(method: str, store: str | os.PathLike, out_dir: str | os.PathLike, *,
                checkpoint: str | None = None, config: str | None = None, split: str = "test",
                batch_size: int = 16, device: str = "cpu", limit_videos: int | None = None,
                align_corners: bool | None = None, overwrite: bool = False) -> dict[str, Any]:
    """`animbench reconstruct`: load a registered method and run the reconstruction protocol on a store."""
    from methods.registry import load_model

    model, provenance = load_model(method, checkpoint=checkpoint, config=config, device=device,
                                   align_corners=align_corners)
    size = evaluation_size(method, config)  # as `animbench bench`: the config's frame shape, else the store's
    return reconstruct_store(model, store, out_dir, split=split, batch_size=batch_size, device=device,
                             limit_videos=limit_videos, frame_size=size, provenance=provenance,
                             overwrite=overwrite)


def animate(method: str, source: str | os.PathLike, driving: str | os.PathLike, out: str | os.PathLike, *,
            checkpoint: str | None = None, config: str | None = None, relative: bool | None = None,
            adapt_scale: bool | None = None, align_corners: bool | None = None, device: str = "cpu",
            fps: float | None = None, overwrite: bool = False) -> dict[str, Any]:
    """`animbench animate`: animate a source image by a driving video; writes OUT and OUT.json (provenance)."""
    from methods.config import load_config
    from methods.registry import load_model

    output_kind(out)  # a bad OUT fails before any work
    model, provenance = load_model(method, checkpoint=checkpoint, config=config, device=device,
                                   align_corners=align_corners)
    size = frame_shape(load_config(config, method=method)) if config is not None else None
    source_img = read_image(source, size)
    driving_frames, driving_fps = read_video(driving, size if size is not None else source_img.shape[:2])
    frames = animate_video(model, source_img, driving_frames, relative, adapt_scale, device=device)
    path = write_animation(frames, out, fps=fps or driving_fps, overwrite=overwrite)
    record = {"output": str(path), "format": output_kind(out), "num_frames": int(frames.shape[0]),
              "frame_size": list(frames.shape[1:3]), "fps": fps or driving_fps, "source": str(source),
              "driving": str(driving), "mode": animation_settings(model, relative, adapt_scale),
              "quantisation": None if output_kind(out) == "npy" else QUANTISATION, "provenance": provenance}
    _write_json(path.with_name(path.name + ".json"), record)
    return record
