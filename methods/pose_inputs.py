"""What `animbench animate --poses P` reads for a pose-driven family: label maps, OpenPose keypoints or a store.

P is one of
- a folder of label maps (`*.png`, sorted by name, read as RGB as the official loader does), with face boxes from
  facetexts128 `.txt` files of the same names (`--face-boxes DIR`, else a sibling `<P>_facetexts128` or
  `../test_facetexts128` folder when present; required only when the model uses face boxes);
- a folder of OpenPose outputs (`<name>_pose.yml` + face / hand files, or `<name>_keypoints.json`), read with
  prep.poses.openpose; frames with several people are skipped as the official code does, and recorded;
- a frame store with a keypoints table (its `manifest.json`): one video's poses, in the stored frames' pixels;
- a video file (anything FFmpeg decodes) with `--pose-backend rtpose|dwpose`: every frame decoded and run through
  prep.poses.detectors (user-placed weights), its poses in the video's pixels; frames where the detector finds
  nobody are skipped and recorded.

Each reader yields `PoseItem`s in frame order; methods/infer_pose.py renders the poses (model.pose_condition)
and generates the frames.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from plumbing.errors import AnimbenchError

if TYPE_CHECKING:
    from prep.poses.format import PoseFrame

LABELS, OPENPOSE, STORE, VIDEO = "label_maps", "openpose", "store", "video"
KIND_WORDS = {LABELS: "a folder of label maps", OPENPOSE: "a folder of OpenPose files", STORE: "a frame store",
              VIDEO: "a video"}
FACE_BOX_FOLDERS = ("{name}_facetexts128", "../test_facetexts128")  # beside P, as EDN's data folders
EXPECTED = ("a folder of label maps (*.png), a folder of OpenPose keypoint files (<name>_pose.yml or "
            "<name>_keypoints.json), a frame store with poses (manifest.json) or a video file (with --pose-backend)")


@dataclass
class PoseItem:
    """One frame to generate: its name, and either a rendered label map or a pose (with its frame's size)."""

    name: str
    label: np.ndarray | None = None  # uint8 (H, W, 3) RGB label map
    face_box: tuple[int, int, int, int] | None = None  # (miny, maxy, minx, maxx) in label pixels
    pose: PoseFrame | None = None
    frame_size: tuple[int, int] | None = None  # (W, H) the pose's pixels refer to


def pose_input_kind(path: str | os.PathLike) -> str:
    """LABELS, OPENPOSE or STORE for a --poses folder, VIDEO for a file; one-line error for anything else."""
    root = Path(path)
    if root.is_file():
        return VIDEO
    if not root.is_dir():
        raise AnimbenchError(f"--poses {root}: not a folder; expected {EXPECTED}")
    if (root / "manifest.json").is_file():
        return STORE
    from prep.poses.openpose import frame_name

    names = [p.name for p in root.iterdir() if p.is_file()]
    if any(frame_name(n) is not None for n in names):
        return OPENPOSE
    if any(n.lower().endswith(".png") for n in names):
        return LABELS
    raise AnimbenchError(f"--poses {root}: holds none of the inputs expected: {EXPECTED}")


def label_files(path: str | os.PathLike) -> list[Path]:
    """The label maps of a folder, sorted by file name (the official loader's order)."""
    files = sorted(p for p in Path(path).iterdir() if p.is_file() and p.name.lower().endswith(".png"))
    if not files:
        raise AnimbenchError(f"--poses {path}: no .png label maps")
    return files


def read_label(path: Path) -> np.ndarray:
    """A label map as uint8 (H, W, 3) RGB (PIL's convert('RGB'), as the official loader)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise AnimbenchError(f"label map {path}: cannot be read ({e})") from None


def find_face_box_folder(labels_dir: str | os.PathLike, given: str | os.PathLike | None) -> Path | None:
    """--face-boxes DIR when given (it must exist), else `<P>_facetexts128` or `<P>/../test_facetexts128`."""
    labels_dir = Path(labels_dir)
    if given is not None:
        if not Path(given).is_dir():
            raise AnimbenchError(f"--face-boxes {given}: not a folder of facetexts128 .txt files")
        return Path(given)
    for pattern in FACE_BOX_FOLDERS:
        candidate = (labels_dir.parent / pattern.format(name=labels_dir.name)) if "{name}" in pattern \
            else labels_dir / pattern
        if candidate.is_dir():
            return Path(os.path.normpath(candidate))
    return None


def read_face_box(path: Path) -> tuple[int, int, int, int]:
    """A facetexts128 file: "miny maxy minx maxx" integers."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AnimbenchError(f"face box {path}: cannot be read ({e.strerror})") from None
    parts = text.split()
    if len(parts) != 4 or not all(p.lstrip("-").isdigit() for p in parts):
        raise AnimbenchError(f"face box {path}: line 1: expected four integers 'miny maxy minx maxx', got {text!r}")
    miny, maxy, minx, maxx = (int(p) for p in parts)
    if not (miny < maxy and minx < maxx):
        raise AnimbenchError(f"face box {path}: line 1: expected miny < maxy and minx < maxx, got {text.strip()!r}")
    return miny, maxy, minx, maxx


def label_items(path: str | os.PathLike, face_box_dir: Path | None, need_boxes: bool) -> Iterator[PoseItem]:
    """The label maps of a folder in name order, each with its face box (from face_box_dir, when given)."""
    files = label_files(path)
    if need_boxes and face_box_dir is None:
        raise AnimbenchError(f"--poses {path}: the model has a face generator, so it needs face boxes: pass "
                             f"--face-boxes DIR (facetexts128 .txt files named as the label maps) or place them "
                             f"in {Path(path).name}_facetexts128/ beside it")
    first: tuple[Path, tuple[int, ...]] | None = None
    for file in files:
        label = read_label(file)
        # each frame is conditioned on the previous output, so every label map must have one size
        if first is None:
            first = (file, label.shape)
        elif label.shape != first[1]:
            raise AnimbenchError(f"label map {file}: {label.shape[1]}x{label.shape[0]}, expected the "
                                 f"{first[1][1]}x{first[1][0]} of {first[0].name} (one size for the whole folder)")
        box = None
        if face_box_dir is not None:
            box_file = face_box_dir / (file.stem + ".txt")
            if not box_file.is_file():
                raise AnimbenchError(f"face box {box_file}: missing (every label map of {path} needs one in "
                                     f"{face_box_dir})")
            box = read_face_box(box_file)
            miny, maxy, minx, maxx = box
            if miny < 0 or minx < 0 or maxy > label.shape[0] or maxx > label.shape[1]:
                raise AnimbenchError(f"face box {box_file}: line 1: {' '.join(map(str, box))} lies outside the "
                                     f"{label.shape[1]}x{label.shape[0]} label map {file.name}; expected the "
                                     "facetexts128 box made for this map")
        yield PoseItem(name=file.stem, label=label, face_box=box)


def openpose_poses(path: str | os.PathLike) -> tuple[list[str], list[PoseFrame], dict[str, str]]:
    """Frame names, poses (name order) and skipped frames (name -> reason) of an OpenPose folder."""
    from prep.poses.openpose import read_openpose_folder

    folder = read_openpose_folder(path)
    if not folder.frames:
        raise AnimbenchError(f"--poses {path}: every frame was skipped (first: "
                             f"{next(iter(folder.skipped.items()), ('', ''))[1]})")
    names = sorted(folder.frames)
    return names, [folder.frames[n] for n in names], dict(folder.skipped)


def store_poses(path: str | os.PathLike, video: str | None) -> tuple[str, list[str], list[PoseFrame],
                                                                        tuple[int, int], dict[str, Any]]:
    """(video id, frame names, poses in frame order, stored frame size (W, H), video facts) of a frame store's
    video (`video`; None: the first test video, else the first video)."""
    from prep.store import FrameStore

    store = FrameStore(path)
    if store.pose_info is None:
        raise AnimbenchError(f"--poses {path}: the frame store has no poses (prep it with --poses DIR|BACKEND)")
    if video is None:
        videos = store.videos("test") or store.videos()
        if not videos:
            raise AnimbenchError(f"--poses {path}: the frame store has no videos")
        video = videos[0]
    elif video not in store.videos():
        raise AnimbenchError(f"--video {video}: not in the frame store {path} (videos: {store.videos()[:5]} ...)")
    poses = store.poses(video)
    if not poses:
        raise AnimbenchError(f"--poses {path}: video {video} has no poses")
    info = store.info(video)
    indices = sorted(poses)
    return (video, [f"{i:07d}" for i in indices], [poses[i] for i in indices],
            (int(info["width"]), int(info["height"])), info)


def video_poses(path: str | os.PathLike, backend: str, device: str = "cpu", progress: bool = True
                ) -> tuple[list[str], list[PoseFrame], dict[str, str], tuple[int, int], float]:
    """(frame names "%07d" of the frames with a pose, their poses in the video's pixels, skipped frames (name ->
    reason), the video's frame size (W, H), its fps) of a video, every frame run through `backend`."""
    from plumbing.progress import progress_bar
    from prep.decode import DecodeStopped, open_source
    from prep.poses.detectors import make_pose_detector

    detector = make_pose_detector(backend, device)  # weights first: a missing file fails before decoding
    try:
        source = open_source(path, "video", backend="pyav")
    except Exception as exc:  # noqa: BLE001 - PyAV raises its own classes for files it cannot open
        raise AnimbenchError(f"--poses {path}: cannot be decoded as a video ({_one_line(exc)}); expected "
                             f"{EXPECTED}") from None
    names: list[str] = []
    poses: list[PoseFrame] = []
    skipped: dict[str, str] = {}
    size: tuple[int, int] | None = None
    bar = progress_bar(source.num_frames, f"detect poses ({backend})", "frame", enabled=progress)
    try:
        for index, frame in source.frames():
            name = f"{index:07d}"
            if size is None:
                size = (int(frame.shape[1]), int(frame.shape[0]))
            elif (frame.shape[1], frame.shape[0]) != size:
                raise AnimbenchError(f"--poses {path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                                     f"expected every frame {size[0]}x{size[1]} as the first")
            pose = detector.pose(np.ascontiguousarray(frame))
            if pose is None:
                skipped[name] = f"no person detected by {backend}"
            else:
                names.append(name)
                poses.append(pose)
            bar.update(1)
    except DecodeStopped as exc:
        raise AnimbenchError(f"--poses {path}: {exc}") from None
    finally:
        bar.close()
        source.close()
    if size is None:
        raise AnimbenchError(f"--poses {path}: the video has no frames")
    if not poses:
        raise AnimbenchError(f"--poses {path}: {backend} found nobody in any of its {len(skipped)} frames")
    return names, poses, skipped, size, float(source.fps or 25.0)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def normalized(names: Sequence[str], poses: Sequence[PoseFrame], target: str | os.PathLike,
               frame_size: tuple[int, int]) -> tuple[list[str], list[PoseFrame], dict[str, Any]]:
    """graph_posenorm.py's global normalisation of `poses` to the target subject's OpenPose folder: the fitted
    parameters, then each frame moved (frames before the first valid one dropped, as the official script)."""
    from prep.poses.normalize import fit_norm_params, normalize_poses
    from prep.poses.openpose import read_openpose_folder

    target_poses = list(read_openpose_folder(target).frames.values())
    if not target_poses:
        raise AnimbenchError(f"--normalize-to {target}: no usable target poses")
    params = fit_norm_params(target_poses, list(poses))
    moved = normalize_poses(list(poses), params, frame_size=frame_size)
    kept = [(n, p) for n, p in zip(names, moved, strict=True) if p is not None]
    if not kept:
        raise AnimbenchError(f"--normalize-to {target}: no frame left of the {len(names)} source frames (frames "
                             "before the first with head, right ankle and left ear are dropped, and the median "
                             "smoothing over 7 frames writes none for a shorter run)")
    record = {"target": str(target), "params": _as_plain(params), "dropped": len(names) - len(kept)}
    return [n for n, _ in kept], [p for _, p in kept], record


def _as_plain(params: Any) -> dict[str, float]:
    from dataclasses import asdict, is_dataclass

    return {k: float(v) for k, v in asdict(params).items()} if is_dataclass(params) else dict(params)
