"""Face detection for `--detect` mode: detectors (face-alignment's S3FD, dlib's HOG offline), IoU tubes and
the official crop rules of crop_vox.py (see ../shared/reference/fomm-monkeynet.md §4.4).

A tube starts at a detection and follows detections whose IoU with the tube's *initial* box is at least
`iou`; it is cut when no detection overlaps enough or when it reaches `max_frames`. The tube box is the union
of its boxes. A tube becomes a clip if it lasts `min_frames` or more and its box is at least `min_size` px on
its longer side; the box is then enlarged by `increase` (aspect-preserving, so the crop is square-ish) and
the clip is dropped if the enlarged box leaves the frame.

Those are the official rules and the defaults. Real footage needs two more, both off by default:

- `max_gap`: a tube survives up to this many consecutive frames without an overlapping detection (a
  detector's miss); when the face is found again the gap's boxes are interpolated linearly between the boxes
  on either side, and the tube goes on. A gap longer than `max_gap`, or one at the end of the video, ends the
  tube at its last detection.
- `out_of_frame`: what happens to an enlarged box that leaves the frame: `drop` the clip (official),
  `shift` the box inside the frame (same size; dropped only if larger than the frame), or keep it and pad
  the missing pixels (`pad-constant` with the pad value, `pad-replicate` with the nearest edge pixels).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from plumbing.errors import AnimbenchError
from plumbing.files import sha256_file

Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels
S3FD_FILE = "s3fd-619a316812.pth"  # face-alignment's name; the hex part is the sha256 prefix (torch hub style)
DETECTORS = ("dlib", "dlib-cnn", "s3fd")
OUT_OF_FRAME = ("drop", "shift", "pad-constant", "pad-replicate")


@dataclass(frozen=True)
class CropRules:
    """The thresholds of the official vox crop (crop_vox.py); min_size may be lowered for small videos."""

    iou: float = 0.25
    min_frames: int = 64
    max_frames: int = 1024
    min_size: int = 256
    increase: float = 0.1
    detect_height: int = 360  # frames are downscaled to this height before detection (never upscaled)
    max_gap: int = 0  # frames without a detection a tube bridges (0: a miss ends the tube, as officially)
    out_of_frame: str = "drop"  # one of OUT_OF_FRAME: enlarged boxes that leave the frame

    def __post_init__(self) -> None:
        if self.out_of_frame not in OUT_OF_FRAME:
            raise AnimbenchError(f"--out-of-frame {self.out_of_frame!r}: expected one of {', '.join(OUT_OF_FRAME)}")
        if self.max_gap < 0 or self.min_frames < 1 or self.max_frames < self.min_frames or self.min_size < 1:
            raise AnimbenchError(f"crop rules: max_gap {self.max_gap} (>= 0), min_frames {self.min_frames} (>= 1), "
                                 f"max_frames {self.max_frames} (>= min_frames), min_size {self.min_size} (>= 1)")

    def as_dict(self) -> dict[str, Any]:
        """The rules as recorded in the manifest config."""
        return asdict(self)


@dataclass
class Tube:
    """A face track: the box it started from, the union of its boxes, first and last frame (inclusive), the
    box of every frame (interpolated in bridged gaps) and how many frames were bridged."""

    initial: Box
    union: Box
    start: int
    last: int
    boxes: list[Box] = field(default_factory=list)
    bridged: int = 0
    missed: int = 0  # frames since the last detection (while the tube is open)

    @property
    def length(self) -> int:
        """Frames covered by the tube."""
        return self.last - self.start + 1


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return float(inter / (area_a + area_b - inter))


def _join(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _lerp(a: Box, b: Box, t: float) -> Box:
    return tuple(x + (y - x) * t for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def track_tubes(detections: Iterable[list[Box]], rules: CropRules = CropRules()) -> list[Tube]:
    """Link per-frame detections into tubes by IoU with each tube's initial box, bridging up to
    `rules.max_gap` frames without one; return all tubes by start."""
    open_tubes: list[Tube] = []
    done: list[Tube] = []
    for i, boxes in enumerate(detections):
        still_open = []
        for tube in open_tubes:
            overlap = max((iou(tube.initial, b) for b in boxes), default=0.0)
            fits = i - tube.start < rules.max_frames  # frame i would still be within max_frames
            if fits and (overlap >= rules.iou or tube.missed < rules.max_gap):
                still_open.append(tube)
            else:
                done.append(tube)
        open_tubes = still_open
        for box in boxes:
            best, best_iou = None, rules.iou
            for tube in open_tubes:
                v = iou(tube.initial, box)
                if v >= best_iou:
                    best, best_iou = tube, v
            if best is None:
                open_tubes.append(Tube(box, box, i, i, [box]))
            elif best.last == i:  # a second box on the tube in this frame (official: it joins the union)
                best.boxes[-1] = _join(best.boxes[-1], box)
                best.union = _join(best.union, box)
            else:
                gap = i - best.last - 1
                if gap:  # a bridged miss: boxes interpolated between the detections on either side
                    before = best.boxes[-1]
                    best.boxes += [_lerp(before, box, (k + 1) / (gap + 1)) for k in range(gap)]
                    best.bridged += gap
                best.boxes.append(box)
                best.union = _join(best.union, box)
                best.last = i
        for tube in open_tubes:  # a tube without a box in this frame is missing it (its gap grows)
            tube.missed = i - tube.last
    done.extend(open_tubes)
    return sorted(done, key=lambda t: (t.start, t.initial))


def enlarge(box: Box, increase: float) -> Box:
    """Grow a box aspect-preservingly: each side moves out by inc * size, the shorter side more (§4.4 formula)."""
    left, top, right, bot = box
    w, h = right - left, bot - top
    w_inc = max(increase, ((1 + 2 * increase) * h - w) / (2 * w))
    h_inc = max(increase, ((1 + 2 * increase) * w - h) / (2 * h))
    return (left - w_inc * w, top - h_inc * h, right + w_inc * w, bot + h_inc * h)


DROP_REASONS = ("too_short", "too_small", "leaves_frame")


def _shift_inside(box: Box, width: int, height: int) -> Box | None:
    """The box moved (not resized) to lie inside the frame; None when it is larger than the frame."""
    left, top, right, bot = box
    if right - left > width or bot - top > height:
        return None
    dx = max(0.0, -left) - max(0.0, right - width)
    dy = max(0.0, -top) - max(0.0, bot - height)
    return (left + dx, top + dy, right + dx, bot + dy)


def tube_clips(tubes: Iterable[Tube], width: int, height: int, rules: CropRules = CropRules()
               ) -> tuple[list[tuple[int, int, tuple[int, int, int, int]]], dict[str, int]]:
    """Apply the crop rules: return clips (start, end exclusive, int box) and counts: tubes dropped by rule
    (DROP_REASONS), clips kept by `out_of_frame` (shifted, padded), frames bridged, the longest tube."""
    clips = []
    counts = dict.fromkeys(DROP_REASONS, 0) | {"shifted": 0, "padded": 0, "bridged_frames": 0, "longest": 0}
    for tube in tubes:
        counts["longest"] = max(counts["longest"], tube.length)
        if tube.length < rules.min_frames:
            counts["too_short"] += 1
            continue
        left, top, right, bot = tube.union
        if max(right - left, bot - top) < rules.min_size:
            counts["too_small"] += 1
            continue
        big = enlarge(tube.union, rules.increase)
        if big[0] < 0 or big[1] < 0 or big[2] > width or big[3] > height:
            if rules.out_of_frame == "shift":
                big = _shift_inside(big, width, height)
                counts["shifted" if big is not None else "leaves_frame"] += 1
            elif rules.out_of_frame.startswith("pad"):
                counts["padded"] += 1
            else:
                big = None
                counts["leaves_frame"] += 1
            if big is None:
                continue
        counts["bridged_frames"] += tube.bridged
        clips.append((tube.start, tube.last + 1, tuple(int(np.floor(v)) for v in big)))
    return clips, counts


def no_clip_reason(counts: dict[str, int], frames: int, rules: CropRules) -> str:
    """Why no tube became a clip, with the option that would help for each reason."""
    if not any(counts[k] for k in DROP_REASONS):
        return f"no face detected in {frames} frames"
    hints = {
        "too_short": f"longest tube {counts['longest']} frames, --min-frames {rules.min_frames}"
                     + ("; --max-gap N bridges missed detections" if rules.max_gap == 0 else ""),
        "too_small": f"--min-size {rules.min_size}",
        "leaves_frame": "--out-of-frame shift or pad-replicate keeps them",
    }
    why = ", ".join(f"{k} {counts[k]} ({hints[k]})" for k in DROP_REASONS if counts[k])
    return f"no face tube passes the crop rules in {frames} frames: {why}"


# --- detectors -------------------------------------------------------------------------------------------------

def _face_recognition_models_file(name: str) -> Path:
    """A model file of the face-recognition-models distribution, found by path: importing the package fails
    with setuptools >= 81 (it needs pkg_resources)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("face-recognition-models")
    except metadata.PackageNotFoundError:
        raise AnimbenchError(f"detector needs {name}: `pip install face-recognition-models`") from None
    for f in dist.files or ():
        if f.name == name:
            return Path(dist.locate_file(f))
    raise AnimbenchError(f"face-recognition-models is installed but has no {name}")


class DlibDetector:
    """dlib's HOG frontal face detector (built into dlib: works offline); 'dlib-cnn' uses the MMOD CNN."""

    def __init__(self, cnn: bool = False) -> None:
        import dlib

        self.name = "dlib-cnn" if cnn else "dlib"
        if cnn:
            path = _face_recognition_models_file("mmod_human_face_detector.dat")
            self._cnn = dlib.cnn_face_detection_model_v1(str(path))
            self._hog = None
        else:
            self._hog = dlib.get_frontal_face_detector()
            self._cnn = None

    def __call__(self, rgb: np.ndarray) -> list[Box]:
        """Face boxes in the image's pixels."""
        if self._hog is not None:
            rects = self._hog(rgb, 0)
        else:
            rects = [d.rect for d in self._cnn(rgb, 0)]
        return [(float(r.left()), float(r.top()), float(r.right()), float(r.bottom())) for r in rects]


def _torch_hub_checkpoints() -> Path:
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def locate_s3fd(weights: str | os.PathLike | None = None) -> Path:
    """The S3FD weight file: an explicit path, else face-alignment's standard name in the torch hub cache,
    whose sha256 must start with the hash in its name."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise AnimbenchError(f"--detector-weights {path}: no such file")
        return path
    path = _torch_hub_checkpoints() / S3FD_FILE
    if not path.is_file():
        raise AnimbenchError(f"s3fd detector: weight file {S3FD_FILE} missing in {path.parent} (place it there "
                             f"from face-alignment's release, or use --detector dlib, which works offline)")
    digest = sha256_file(path)
    prefix = S3FD_FILE.split("-")[1].split(".")[0]
    if not digest.startswith(prefix):
        raise AnimbenchError(f"s3fd detector: {path} has sha256 {digest[:12]}..., expected {prefix}...")
    return path


class S3FDDetector:
    """face-alignment's S3FD (the detector crop_vox.py and crop-video.py use), on CPU unless told otherwise."""

    name = "s3fd"

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu") -> None:
        from face_alignment.detection.sfd.sfd_detector import SFDDetector

        self._net = SFDDetector(device, path_to_detector=str(locate_s3fd(weights)))

    def __call__(self, rgb: np.ndarray) -> list[Box]:
        """Face boxes (score above face-alignment's 0.5 threshold) in the image's pixels."""
        bgr = np.ascontiguousarray(rgb[..., ::-1])  # S3FD was trained on BGR with BGR means
        found = self._net.detect_from_image(bgr)
        return [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in found]


def check_detector(name: str, weights: str | os.PathLike | None = None) -> None:
    """Fail early, in the driver, when a detector cannot load here (a missing package or weight file)."""
    from importlib.util import find_spec

    if name not in DETECTORS:
        raise AnimbenchError(f"detector {name!r}: expected one of {', '.join(DETECTORS)}")
    package = "face_alignment" if name == "s3fd" else "dlib"
    if find_spec(package) is None:
        raise AnimbenchError(f"detector {name} needs {package}: pip install "
                             f"{'face-alignment' if name == 's3fd' else 'dlib-bin'}")
    if name == "s3fd":
        locate_s3fd(weights)
    elif name == "dlib-cnn":
        _face_recognition_models_file("mmod_human_face_detector.dat")


def make_detector(name: str, weights: str | os.PathLike | None = None):
    """Build a detector by name: 'dlib' (HOG, offline), 'dlib-cnn' (MMOD, offline) or 's3fd'."""
    if name == "dlib":
        return DlibDetector()
    if name == "dlib-cnn":
        return DlibDetector(cnn=True)
    if name == "s3fd":
        return S3FDDetector(weights)
    raise AnimbenchError(f"detector {name!r}: expected one of {', '.join(DETECTORS)}")


def detect_frame(detector, frame: np.ndarray, detect_height: int) -> list[Box]:
    """Detect on a copy downscaled to detect_height (never upscaled); boxes in the frame's own pixels."""
    h = frame.shape[0]
    if h <= detect_height:
        return detector(frame)
    scale = detect_height / h
    small = cv2.resize(frame, (max(1, round(frame.shape[1] * scale)), detect_height), interpolation=cv2.INTER_AREA)
    return [tuple(v / scale for v in box) for box in detector(small)]
