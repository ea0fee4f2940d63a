"""EDN's global pose normalisation (`data_prep/graph_posenorm.py`): the source subject's poses are scaled and
moved so their ankles and body heights span the target subject's range, then median-smoothed over 7 frames.

The quantities, as the official script names them:
- per frame (get_pose_stats): height = |head - mean(ankles)|, toe = the lower ankle's y (closest to the camera);
- per video (get_keypoints_stats): max toe (closest position), median toe, horizon (farthest position);
  m_* for the target ("model"), t_* for the source;
- scales (get_minmax_scales): s_close / s_far = target height / source height near the closest / farthest toe;
- per source frame (calculate_translation): p = (toe - t_hor) / (t_max - t_hor), vertical shift
  b = m_hor + p (m_max - m_hor) - toe, scale s = s_far + p (s_close - s_far), applied about a fixed anchor.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from plumbing.errors import AnimbenchError
from plumbing.files import atomic_write_text
from prep.poses.format import PoseFrame, map_25_to_23

# (nose, right ear, left ear, right ankle, left ankle) per body format, as get_pose_stats
STATS_JOINTS = {"COCO_18": (0, 16, 17, 10, 13), "BODY_23": (18, 20, 22, 10, 15), "BODY_25": (0, 17, 18, 11, 14)}
CLOSE_FAR_FRAC = 0.05  # get_minmax_scales: toes within 5 % of the range count as "at" the closest/farthest row


@dataclass
class NormParams:
    """The normalisation: scales near and far, target (m_) and source (t_) closest / farthest toe rows."""

    s_close: float
    s_far: float
    m_max: float
    m_hor: float
    t_max: float
    t_hor: float

    def save(self, path: str | os.PathLike) -> None:
        """norm_params.txt as the official script writes it: `s_close s_far` / `m_max m_hor t_max t_hor`."""
        atomic_write_text(f"{self.s_close!r} {self.s_far!r}\n{self.m_max!r} {self.m_hor!r} {self.t_max!r} "
                          f"{self.t_hor!r}\n", Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> NormParams:
        """Read norm_params.txt (the official format, ours or the official script's)."""
        path = Path(path)
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise AnimbenchError(f"{path}: cannot read norm_params ({exc})") from None
        values = []
        for number, count in ((1, 2), (2, 4)):
            fields = lines[number - 1].split() if len(lines) >= number else []
            try:
                row = [float(v) for v in fields]
            except ValueError:
                row = []
            if len(row) != count or not all(math.isfinite(v) for v in row):
                want = "s_close s_far" if number == 1 else "m_max m_hor t_max t_hor"
                got = " ".join(fields)
                got = got if len(got) <= 60 else got[:57] + "..."
                raise AnimbenchError(f"{path}: line {number}: expected {count} numbers ({want}), got "
                                     f"{len(fields)} fields {got!r}")
            values += row
        return cls(*values)


def pose_stats(pose: PoseFrame) -> tuple[float, float, float] | None:
    """get_pose_stats: (height, min toe, max toe) in pixels, or None unless the head (nose, or both ears), the
    right ankle and -- as coded -- the left ear are detected (the left ankle is never checked)."""
    nose, right_ear, left_ear, right_ankle, left_ankle = STATS_JOINTS[pose.body_format]
    body = pose.body.astype(np.float64)
    head_seen = body[nose, 2] > 0
    head = body[nose, :2]
    if not head_seen:
        head_seen = body[right_ear, 2] > 0 and body[left_ear, 2] > 0
        head = 0.5 * (body[right_ear, :2] + body[left_ear, :2])
    if not (head_seen and body[right_ankle, 2] > 0 and body[left_ear, 2] > 0):
        return None
    feet = 0.5 * (body[right_ankle, :2] + body[left_ankle, :2])
    height = math.sqrt((head[0] - feet[0]) ** 2 + (head[1] - feet[1]) ** 2)
    toes = (float(body[right_ankle, 1]), float(body[left_ankle, 1]))
    return height, min(toes), max(toes)


def _as_stats_format(pose: PoseFrame | None) -> PoseFrame | None:
    # graph_posenorm.py hard-codes BODY_23 (poselen 69): BODY_25 goes through map_25_to_23 first
    return None if pose is None else map_25_to_23(pose)


@dataclass
class VideoStats:
    """get_keypoints_stats: the closest toe row, the median toe row, and the heights seen at each toe row."""

    maxtoe: float
    median: float
    toes: list[float]
    tiptoe_to_height: dict[float, list[float]]

    def horizon(self, median_frac: float, who: str) -> float:
        """The farthest toe row: the largest `median - toe` below median_frac of (maxtoe - median)."""
        below = self.median - np.asarray(self.toes)
        ok = below[(below > 0) & (below < median_frac * (self.maxtoe - self.median))]
        if ok.size == 0:
            raise AnimbenchError(f"{who} poses: no toe row between the median ({self.median:.1f}) and "
                                 f"{median_frac} of its distance to the closest row; expected a subject who moves "
                                 f"back and forth (try a larger --{who}-median-frac of `animbench pose normalize`)")
        return float(self.median - ok.max())


def video_stats(poses: Sequence[PoseFrame | None], rng: np.random.RandomState, max_frames: int,
                who: str) -> VideoStats:
    """Statistics of frames drawn at random with replacement until max_frames (or len(poses)) valid draws."""
    poses = [_as_stats_format(p) for p in poses]
    stats = [None if p is None else pose_stats(p) for p in poses]
    if not any(s is not None for s in stats):
        raise AnimbenchError(f"{who} poses: no frame with the head, right ankle and left ear detected "
                             f"(of {len(poses)}); expected full-body poses")
    toes: list[float] = []
    tiptoe_to_height: dict[float, list[float]] = {}
    maxtoe = 0.0
    while len(toes) < min(max_frames, len(poses)):
        drawn = stats[rng.randint(0, len(poses))]
        if drawn is None:
            continue
        height, _, toe = drawn
        maxtoe = max(maxtoe, toe)
        toes.append(toe)
        tiptoe_to_height.setdefault(toe, []).append(height)
    return VideoStats(maxtoe, float(np.median(toes)), toes, tiptoe_to_height)


def _heights_near(tiptoe_to_height: dict[float, list[float]], row: float, radius: float) -> float:
    return max((max(h) for toe, h in tiptoe_to_height.items() if abs(toe - row) <= radius), default=0.0)


def _close_far_heights(video: VideoStats, closest: float, farthest: float) -> tuple[float, float]:
    """get_minmax_scales for one video: the tallest body near the closest and the farthest rows."""
    radius = (closest - farthest) * CLOSE_FAR_FRAC
    close = _heights_near(video.tiptoe_to_height, closest, radius)
    far = _heights_near(video.tiptoe_to_height, farthest, radius)
    # as coded: the greatest list of heights (compared as lists), its first entry, stands for "the tallest"
    tallest = max(video.tiptoe_to_height.values())[0]
    if tallest - close > 0.1 * tallest:
        close = tallest
    return close, far


def fit_norm_params(target: Sequence[PoseFrame | None], source: Sequence[PoseFrame | None], *, seed: int = 0,
                    target_median_frac: float = 0.5, source_median_frac: float = 0.5,
                    target_max_frames: int = 5000, source_max_frames: int = 20000) -> NormParams:
    """graph_posenorm.py --calculate_scale_translation: the normalisation taking source poses to the target's
    scale and floor rows (frames drawn with a RandomState(seed), the source first as the official script)."""
    for who, frac in (("target", target_median_frac), ("source", source_median_frac)):
        if not frac > 0:
            raise AnimbenchError(f"--{who}-median-frac {frac}: expected a number > 0 (official default 0.5)")
    rng = np.random.RandomState(seed)
    src = video_stats(source, rng, source_max_frames, "source")
    tgt = video_stats(target, rng, target_max_frames, "target")
    t_max, t_hor = src.maxtoe, src.horizon(source_median_frac, "source")
    m_max, m_hor = tgt.maxtoe, tgt.horizon(target_median_frac, "target")
    if t_max - t_hor < m_max - m_hor:  # range match: shrink the target's range about its middle
        middle, half = 0.5 * (m_max + m_hor), 0.5 * (t_max - t_hor)
        m_max, m_hor = middle + half, middle - half
    m_close, m_far = _close_far_heights(tgt, m_max, m_hor)
    t_close, t_far = _close_far_heights(src, t_max, t_hor)
    if t_close <= 0 or t_far <= 0:
        raise AnimbenchError("source poses: no body height near the closest or farthest toe row; expected a "
                             "subject seen at both")
    return NormParams(m_close / t_close, m_far / t_far, m_max, m_hor, t_max, t_hor)


def frame_transform(toe: float, params: NormParams) -> tuple[float, float]:
    """calculate_translation: (vertical shift b, scale s) for a source frame whose lower ankle is at row `toe`."""
    p = (toe - params.t_hor) / float(params.t_max - params.t_hor)
    target_row = params.m_hor + p * float(params.m_max - params.m_hor)
    return target_row - toe, params.s_far + p * float(params.s_close - params.s_far)


def _apply(points: np.ndarray, scale: float, anchor: tuple[float, float], shift: float) -> np.ndarray:
    """apply_transform about the anchor, to every point as coded (undetected ones too)."""
    out = points.astype(np.float64)
    out[:, 0] = out[:, 0] * scale + (anchor[0] - scale * anchor[0])
    out[:, 1] = out[:, 1] * scale + (anchor[1] - scale * anchor[1] + shift)
    return out


def _lower_ankle_row(pose: PoseFrame) -> float:
    """get_min_point's y: the left ankle's row unless the right ankle is lower in the image."""
    right, left = STATS_JOINTS[pose.body_format][3:]
    return float(pose.body[right, 1] if pose.body[right, 1] > pose.body[left, 1] else pose.body[left, 1])


def confident_median(window: np.ndarray) -> np.ndarray:
    """getmedians_adapt: (T, N, 3) -> (N, 3); a point whose median confidence is > 0 takes the median of its
    confident (> 0) observations only; others keep the plain median, zeroed here since nothing draws them."""
    out = np.median(window, axis=0)
    for j in np.nonzero(out[:, 2] > 0)[0]:
        seen = window[:, j, 2] > 0
        out[j] = np.median(window[seen, j], axis=0)
    out[out[:, 2] <= 0] = 0.0
    return out


def normalize_poses(source: Sequence[PoseFrame | None], params: NormParams, *, frame_size=(1920, 1080),
                    median_window: int = 7) -> list[PoseFrame | None]:
    """Normalise and smooth a source video's poses; the result is aligned with `source`.

    Frames before the first one with valid stats are dropped; a later frame without valid stats reuses the last
    (b, s); None frames (no single person) are left out. Each output is the confident median of `median_window`
    consecutive kept frames and stands at the window's centre frame, so the first and last window//2 kept
    frames get None. The anchor is (frame width // 2, the lower ankle row of the first valid frame).
    BODY_25 poses come out as BODY_23 (map_25_to_23), as the official script needs them."""
    if params.t_max == params.t_hor:
        raise AnimbenchError("norm_params: t_max equals t_hor; expected a source toe range of non-zero height")
    if median_window < 1:
        raise AnimbenchError(f"median_window {median_window}: expected at least 1")
    out: list[PoseFrame | None] = [None] * len(source)
    window: list[tuple[int, list[np.ndarray]]] = []
    anchor: tuple[float, float] | None = None
    shift = scale = 0.0
    for index, pose in enumerate(source):
        pose = _as_stats_format(pose)
        if pose is None:
            continue
        stats = pose_stats(pose)
        if stats is None and anchor is None:
            continue
        if stats is not None:
            shift, scale = frame_transform(stats[2], params)
        if anchor is None:
            anchor = (float(frame_size[0] // 2), _lower_ankle_row(pose))
        moved = [_apply(part, scale, anchor, shift) for part in (pose.body, pose.face, pose.hand_left,
                                                                  pose.hand_right)]
        window.append((index, moved))
        if len(window) >= median_window:
            centre = window[median_window // 2][0]
            parts = [confident_median(np.stack([w[1][k] for w in window])) for k in range(4)]
            out[centre] = PoseFrame(*parts)
            window.pop(0)
    return out


def astext(params: NormParams) -> str:
    """One line for summaries."""
    return " ".join(f"{name}={value:.4g}" for name, value in zip(
        ("s_close", "s_far", "m_max", "m_hor", "t_max", "t_hor"), astuple(params), strict=True))
