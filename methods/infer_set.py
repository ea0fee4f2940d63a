"""`animbench animate` of a video-driven family, and the families fed face crops or a set of source images
(`input_crop`, `source_images = "set"`, e.g. latent_pose).

`animate` loads the method and takes one of two paths: a family with a face crop or a source set goes through
`animate_set` here (its inputs read by `input_frames`, cut by `crop_inputs`), any other through
methods/infer.py's `animate_image` (one source image, a driving video streamed).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from methods.data import frame_shape
from methods.infer import (
    ANIMATE_CHUNK,
    QUANTISATION,
    animate_image,
    check_align_corners,
    check_avd,
    check_out_apart,
    chunked,
    frame_size_fields,
    model_device,
    output_kind,
    output_path,
    to_hwc,
    write_animation,
    write_json,
)
from methods.infer_inputs import as_float, fit_frame, input_frames
from plumbing.errors import AnimbenchError
from plumbing.progress import progress_bar

DEFAULT_DETECTOR = "dlib"  # as `animbench prep --crop latentpose`: offline; s3fd is the official one


def animate(method: str, source: str | os.PathLike | None, driving: str | os.PathLike, out: str | os.PathLike, *,
            checkpoint: str | None = None, config: str | None = None, relative: bool | None = None,
            adapt_scale: bool | None = None, align_corners: bool | None = None, device: str = "cpu",
            fps: float | None = None, overwrite: bool = False, progress: bool = True, no_crop: bool = False,
            detector: str | None = None, avd: bool = False) -> dict[str, Any]:
    """`animbench animate`: animate a source image by a driving video; writes OUT and OUT.json (provenance;
    frame_size is [width, height]). OUT may not be, hold or lie inside --source or --driving (refused first).

    A family with a face crop (`input_crop`) or a set of source images (`source_images = "set"`) goes through
    `animate_set` (no_crop, detector: its crop options); any other through infer.animate_image (the driving
    video streamed). avd: animation via disentanglement (`--avd`), for the families that have it
    (`supports_avd`)."""
    from methods.registry import load_model

    output_kind(out)  # a bad OUT fails before any work
    check_out_apart(out, {"--source": source, "--driving": driving})
    output_path(out, overwrite)
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
    return animate_image(model, provenance, source, driving, out, config=config, relative=relative,
                         adapt_scale=adapt_scale, device=device, fps=fps, overwrite=overwrite, progress=progress,
                         avd=avd)


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
            frame = fit_frame(frame, size, f"{what} {name}")[0]
        out = as_float(frame, size if crop is None else None)
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
    from methods.registry import load_config

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
    dev = model_device(model, device)
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
        return np.ascontiguousarray(to_hwc(pred).clip(0.0, 1.0), dtype=np.float32)

    driving_boxes: list = []
    bar = progress_bar(None, f"animate {provenance.get('method')}", "frame", enabled=progress)
    made: list[tuple[int, int]] = []

    def produced() -> Iterator[np.ndarray]:
        for frame in chunked(crop_inputs(driving_frames, crop, det, size, "--driving", driving_boxes), run,
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
    record = {"output": str(path), "format": kind, "num_frames": len(made), **frame_size_fields(made[0]),
              "fps": fps or driving_fps, "source": None if source is None else str(source), "driving": str(driving),
              "identity": ("the checkpoint's own (fine-tuned)" if held else
                           f"pooled over {len(source_names)} source image(s)"), "sources": source_names,
              "crop": {"style": crop, "detector": (detector or DEFAULT_DETECTOR) if det is not None else None,
                       "source_boxes": source_boxes or None, "driving_boxes": driving_boxes or None,
                       "no_face": {k: v[0] for k, v in no_face.items()}},
              "mode": mode.as_dict(), "values": "clamp(output, 0, 1)",
              "quantisation": None if kind == "npy" else QUANTISATION, "provenance": dict(provenance)}
    write_json(path.with_name(path.name + ".json"), record)
    return record


def _no_face_counts(source_boxes: list, driving_boxes: list) -> dict[str, tuple[int, int]]:
    """{"source" | "driving": (frames cut at the latent-pose crop's no-face fallback, frames cut)}."""
    from prep.latentpose_crop import NO_FACE_BOX as FALLBACK

    return {what: (sum(1 for b in boxes if tuple(b) == FALLBACK), len(boxes))
            for what, boxes in (("source", source_boxes), ("driving", driving_boxes)) if boxes}
