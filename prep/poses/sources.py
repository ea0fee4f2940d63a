"""Where `animbench prep ... --poses DIR|synthetic|rtpose|dwpose` takes each stored frame's pose from.

- DIR, OpenPose output folders: `DIR/<store video id>/` holds one file per STORED frame (`<name>_pose.yml` +
  face / hand files as EDN writes them, or `<name>_keypoints.json`; sorted name order = frame order), or, when
  that folder is absent, `DIR/<source video name>/` holds one file per SOURCE frame (OpenPose run on the whole
  video), and a clip takes the files of its frame range. Frames OpenPose saw several people in are skipped as
  the official code does (no row; the manifest lists them). A missing folder is an error before any work
  starts; a file count that does not match the frames is a failure row of that video ("poses" stage).
- `synthetic`: the ground truth `animbench synth` writes (OUT/keypoints/<video>.npy, 18 OpenPose-COCO joints in
  full-frame pixels): confidence 1 for joints inside the frame, 0 outside.
- `rtpose`, `dwpose`: detectors (prep/poses/detectors.py) run on every stored frame.

Points given in source-frame pixels get the frame's crop / pad / resize (prep.stages.stored_affine); the store
keeps them in the stored frame's pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from plumbing.errors import AnimbenchError
from prep.poses.format import FACE_POINTS, HAND_POINTS, PoseFrame
from prep.recipes import Clip, Unit

Affine = tuple[float, float, float, float]  # sx, sy, dx, dy: x' = x * sx + dx, y' = y * sy + dy


def source_name(spec: str) -> str:
    """How the manifest records a pose source: the backend name, or `openpose:<absolute DIR>`."""
    return spec if spec in ("synthetic", "rtpose", "dwpose") else f"openpose:{Path(spec).resolve()}"


def check_pose_source(spec: str, units: Sequence[Unit]) -> None:
    """Driver-side checks before any work: detector weights present, every video's pose folder or ground-truth
    file present (one-line AnimbenchError naming what is missing and where it was looked for)."""
    if spec in ("rtpose", "dwpose"):
        from prep.poses.detectors import check_pose_detector

        check_pose_detector(spec)
        return
    for unit in units:
        for clip in unit.clips:
            if spec == "synthetic":
                path = _synthetic_file(unit)
                if not path.is_file():
                    raise AnimbenchError(f"--poses synthetic: {path} is missing (expected `animbench synth` "
                                         f"ground truth for {Path(unit.source).name})")
                _check_synthetic_shape(path)
            elif not Path(spec).is_dir():
                raise AnimbenchError(f"--poses {spec}: not a folder, nor one of synthetic, rtpose, dwpose")
            elif _openpose_folder(spec, unit, clip) is None:
                looked = dict.fromkeys(str(Path(spec) / n) for n in (clip.video_id, Path(unit.source).stem) if n)
                raise AnimbenchError(f"--poses {spec}: no pose folder for video {clip.video_id!r} (looked for "
                                     f"{' and '.join(looked)})")


def transform_pose(pose: PoseFrame, affine: Affine) -> PoseFrame:
    """Move a pose's confident points by `affine` (per-axis scale); points of confidence <= 0 become (0, 0, 0)."""
    sx, sy, dx, dy = affine

    def move(points: np.ndarray) -> np.ndarray:
        out = np.zeros_like(points)
        seen = points[:, 2] > 0
        out[seen, 0] = points[seen, 0] * sx + dx
        out[seen, 1] = points[seen, 1] * sy + dy
        out[seen, 2] = points[seen, 2]
        return out

    return PoseFrame(move(pose.body), move(pose.face), move(pose.hand_left), move(pose.hand_right))


def _check_synthetic_shape(path: Path, shape: tuple[int, ...] | None = None) -> None:
    """The ground truth must be body poses, (frames, 18, 2); a faces set holds 68 landmarks."""
    if shape is None:
        try:
            shape = np.load(path, mmap_mode="r").shape
        except (OSError, ValueError) as exc:
            raise AnimbenchError(f"--poses synthetic: {path} cannot be read ({exc})") from None
    if len(shape) != 3 or tuple(shape[1:]) != (18, 2):
        raise AnimbenchError(f"--poses synthetic: {path} has shape {tuple(shape)}, expected (frames, 18, 2): the "
                             "COCO-18 body poses of a `synth --kind bodies` set")


def _synthetic_file(unit: Unit) -> Path:
    source = Path(unit.source)
    return source.parent.parent / "keypoints" / f"{source.stem}.npy"


def _openpose_folder(spec: str, unit: Unit, clip: Clip) -> tuple[Path, bool] | None:
    """(folder, per_stored_frame) of a clip: DIR/<video id> (one file per stored frame) or DIR/<source stem>."""
    for name, per_stored in ((clip.video_id, True), (Path(unit.source).stem, False)):
        if name and (Path(spec) / name).is_dir():
            return Path(spec) / name, per_stored
    return None


class ClipPoses:
    """One clip's poses as its frames are stored: `add` per frame in order, then `finish` with the count."""

    def __init__(self, read: Callable[[int, np.ndarray, np.ndarray], tuple[PoseFrame | None, str | None]],
                 in_source_pixels: bool, affine: Callable[[int, int], Affine],
                 count_problem: Callable[[int], str | None] = lambda n: None) -> None:
        self._read, self._in_source, self._affine, self._count_problem = read, in_source_pixels, affine, count_problem
        self._moved: Affine | None = None
        self.poses: dict[int, PoseFrame] = {}
        self.skipped: dict[int, str] = {}
        self.count = 0

    def add(self, source_frame: np.ndarray, stored_frame: np.ndarray) -> None:
        """The pose of the next stored frame (source_frame: the decoded frame it was cut from)."""
        k = self.count
        self.count += 1
        pose, why = self._read(k, source_frame, stored_frame)
        if pose is None:
            self.skipped[k] = why or "no pose"
            return
        if self._in_source:
            if self._moved is None:
                self._moved = self._affine(source_frame.shape[1], source_frame.shape[0])
            pose = transform_pose(pose, self._moved)
        self.poses[k] = pose

    def problem(self, num_frames: int) -> str | None:
        """Why the source's poses do not match a clip of num_frames stored frames (None: they do)."""
        return self._count_problem(num_frames)


class PoseSource:
    """Opens the per-clip pose readers of one `--poses` spec; a detector is loaded once, on first use."""

    def __init__(self, spec: str, device: str = "cpu") -> None:
        self.spec, self.device = spec, device
        self._detector = None

    def open_clip(self, unit: Unit, clip: Clip, lo: int, affine: Callable[[int, int], Affine]) -> ClipPoses:
        """The reader of one clip whose first stored frame is source frame `lo`."""
        if self.spec in ("rtpose", "dwpose"):
            if self._detector is None:
                from prep.poses.detectors import make_pose_detector

                self._detector = make_pose_detector(self.spec, self.device)
            detector = self._detector

            def detect(k, source_frame, stored_frame):
                pose = detector.pose(stored_frame)
                return pose, None if pose is not None else f"{self.spec}: no body point detected"

            return ClipPoses(detect, False, affine)
        if self.spec == "synthetic":
            return self._synthetic(unit, lo, affine)
        return self._openpose(unit, clip, lo, affine)

    def _synthetic(self, unit: Unit, lo: int, affine) -> ClipPoses:
        path = _synthetic_file(unit)
        try:
            truth = np.load(path)
        except (OSError, ValueError) as exc:
            raise AnimbenchError(f"--poses synthetic: {path} cannot be read ({exc})") from None
        _check_synthetic_shape(path, truth.shape)
        zeros = np.zeros((FACE_POINTS, 3), np.float32), np.zeros((HAND_POINTS, 3), np.float32)

        def read(k, source_frame, stored_frame):
            i = lo + k
            if i >= len(truth):
                return None, f"no ground truth for source frame {i}"
            h, w = source_frame.shape[:2]
            xy = truth[i]
            inside = (xy[:, 0] >= -0.5) & (xy[:, 0] < w - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] < h - 0.5)
            body = np.concatenate([xy, inside[:, None]], 1).astype(np.float32)
            return PoseFrame(body, zeros[0], zeros[1], zeros[1]), None

        def problem(n):
            if lo + n > len(truth):
                return f"{path} has {len(truth)} frames of ground truth, the clip needs source frames [{lo}, {lo + n})"
            return None

        return ClipPoses(read, True, affine, problem)

    def _openpose(self, unit: Unit, clip: Clip, lo: int, affine) -> ClipPoses:
        from prep.poses.openpose import read_openpose_folder

        found = _openpose_folder(self.spec, unit, clip)
        if found is None:
            raise AnimbenchError(f"--poses {self.spec}: no pose folder for video {clip.video_id!r}")
        folder, per_stored = found
        poses = read_openpose_folder(folder)
        names = sorted({*poses.frames, *poses.skipped})
        offset = 0 if per_stored else lo

        def read(k, source_frame, stored_frame):
            if offset + k >= len(names):
                return None, "no pose file"
            name = names[offset + k]
            if name in poses.skipped:
                return None, f"{name}: {poses.skipped[name]}"
            return poses.frames[name], None

        def problem(n):
            if per_stored and len(names) != n:
                return f"{folder} has {len(names)} pose files, the video has {n} frames (one file per frame)"
            if not per_stored and (len(names) < lo + n or (clip.end is None and len(names) != lo + n)):
                return (f"{folder} has {len(names)} pose files (one per source frame), the clip stores source "
                        f"frames [{lo}, {lo + n})" + (" to the end of the video" if clip.end is None else ""))
            return None

        return ClipPoses(read, True, affine, problem)

