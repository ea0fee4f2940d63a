"""Inference of pose-driven families (`model.driven_by == "poses"`, e.g. pose2img).

`generate_poses` turns label maps into frames autoregressively as the official test script does (the first frame
conditioned on zeros, each later one on the previous raw output), `chunk` frames per `model.generate` call with
`previous` carried, so a long video is never held whole; `store_pose_frames` generates a store video from its own
poses (the bench's path); `animate_poses` is `animbench animate METHOD --poses P` (label maps, OpenPose keypoints,
a store with poses or a video: methods/pose_inputs.py), written through methods/infer.py's `write_animation`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from methods.infer import (
    QUANTISATION,
    check_animate_inputs,
    check_out_apart,
    frame_size_fields,
    model_device,
    output_kind,
    output_path,
    write_animation,
    write_json,
)
from methods.interface import scale_box
from plumbing.errors import AnimbenchError
from plumbing.progress import progress_bar
from prep.store import FrameStore

POSE_CHUNK = 16  # label maps per model.generate call; frames inside a call are still made one after another
NO_FACE_BOX = (-1, -1, -1, -1)  # a face_boxes row for a frame without a head (no face residual there)


def _weight_facts(backend: str) -> dict[str, str]:
    """The detector's weight file as provenance: its path and sha256."""
    from plumbing.files import sha256_file
    from plumbing.weights import locate
    from prep.poses.detectors import WEIGHT_FILES

    path = locate(WEIGHT_FILES[backend], verify_hash=False)  # the detector checked it when it loaded
    return {"path": str(path), "sha256": sha256_file(path)}


def _pose_frames(model: nn.Module, items: Iterable[tuple[np.ndarray, tuple[int, int, int, int] | None, Any]],
                 chunk: int = POSE_CHUNK) -> Iterator[tuple[np.ndarray, Any]]:
    """(label map uint8 (H, W, 3), face box or None, anything) -> (float32 (h, w, 3) = (raw + 1) / 2, unclamped,
    the same anything), generated in chunks with the previous raw output carried between calls. Face boxes are
    passed when the model uses them, a row of -1s (NO_FACE_BOX) for a frame without a head."""
    if chunk < 1:
        raise AnimbenchError(f"chunk {chunk}: expected >= 1 frames per call")
    dev = model_device(model, None)
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
    output_path(out, overwrite)  # after the input checks, whose messages say more
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
    record = {"output": str(path), "format": kind, "num_frames": len(made), **frame_size_fields(shape),
              "fps": fps or default_fps, "poses": inputs, "frames": made, "normalization": normalization,
              "values": "(raw + 1) / 2 at the generator's resolution, unclamped" if kind == "npy" else None,
              "conditioning": "first frame on zeros, each later frame on the previous raw output",
              "quantisation": None if kind == "npy" else QUANTISATION, "provenance": provenance}
    write_json(path.with_name(path.name + ".json"), record)
    return record
