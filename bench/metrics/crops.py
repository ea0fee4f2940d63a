"""SSIM and LPIPS on crops: the person (body) box and the 128x128 face box of Everybody Dance Now's evaluation.

EDN (Chan et al., ICCV 2019, Tables 1-3) reports SSIM and LPIPS on body crops and on face crops of the target
subject's held-out frames generated from their own poses. The paper released no evaluation code (issue #3 of
carolineec/EverybodyDanceNow asks how the crops were made and has no answer), so the body-crop rule is ours:

- body box: the bounding box of the input keypoints with confidence > MIN_CONFIDENCE (body, face and both hands,
  in the prediction's pixels), grown by BODY_MARGIN of its longer side on every side, the pixels it touches
  included, clipped to the frame, and widened to at least MIN_CROP pixels (the SSIM window) where the frame
  allows; the same box on prediction and target.
- face box: the 128x128 box the method's own face stage uses (EDN's facetexts128: nose-centred, clamped to the
  image), clipped to the frame; frames without one (or whose clipped box is smaller than the metric takes:
  SSIM_MIN_CROP, LPIPS_MIN_CROP) are skipped and counted.

The arithmetic is plain numpy over arrays first (`body_box`, `crop_scores`); the registered metrics reuse the
full-frame SSIM (bench.metrics.pixel) and LPIPS (bench.metrics.lpips_metric) on each crop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bench.metrics.lpips_metric import TRUNK_FILES, LPIPSMetric, _to_signed_unit
from bench.metrics.pixel import SSIM_RADIUS, ssim
from bench.metrics.registry import FrameScores, check_frames, register_metric
from plumbing.errors import AnimbenchError

MIN_CONFIDENCE = 0.05  # OpenPose's hand threshold in EDN's renderer; lower-confidence points are noise
BODY_MARGIN = 0.1  # of the box's longer side, added on every side
SSIM_MIN_CROP = 2 * SSIM_RADIUS + 1  # 11: the SSIM window
LPIPS_MIN_CROP = 31  # AlexNet's pools leave nothing of a smaller crop
MIN_CROP = max(SSIM_MIN_CROP, LPIPS_MIN_CROP)  # body boxes are widened to this: one box for both metrics
GROUPS = ("body", "face", "hand_left", "hand_right")
NO_BOX = (-1, -1, -1, -1)

BODY_RULE = (f"person box: bounding box of the input keypoints with confidence > {MIN_CONFIDENCE} (body, face and "
             f"both hands, in the prediction's pixels), grown by {BODY_MARGIN:g} x its longer side on every side "
             f"(the pixels it touches included), clipped to the frame, widened to at least {MIN_CROP} px where the "
             "frame allows (LPIPS-Alex needs 31 px); the same box on prediction and target; frames without a confident "
             "point are skipped. "
             "EDN released no evaluation code (carolineec/EverybodyDanceNow issue #3): this crop rule is ours")
FACE_RULE = ("face box: the method's 128x128 face box (EDN facetexts128: nose-centred, +-70 px of the 1080p frame "
             "scaled, grown to 128x128 and clamped to the image), clipped to the frame; the same box on prediction "
             "and target; frames without a face box, or whose clipped box is smaller than the metric takes (SSIM "
             f"{SSIM_MIN_CROP} px, LPIPS {LPIPS_MIN_CROP} px), are skipped and counted")


def all_points(keypoints: Mapping[str, np.ndarray]) -> np.ndarray:
    """Keypoint groups {group: (N, J, 3)} -> (N, K, 3) every group's points side by side (x, y, confidence)."""
    parts = [np.asarray(keypoints[g], np.float64) for g in GROUPS if g in keypoints]
    if not parts:
        raise AnimbenchError(f"keypoints: no group among {list(GROUPS)}")
    return np.concatenate(parts, axis=1)


def _widen(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
    """[lo, hi) grown about its centre to at least `size` pixels, shifted and clamped into [0, limit)."""
    if hi - lo >= size:
        return lo, hi
    if limit <= size:
        return 0, limit
    lo = max(0, min(lo - (size - (hi - lo)) // 2, limit - size))
    return lo, lo + size


def body_box(points: np.ndarray, height: int, width: int, *, margin: float = BODY_MARGIN,
             min_confidence: float = MIN_CONFIDENCE, min_size: int = MIN_CROP) -> tuple[int, int, int, int] | None:
    """Person box (miny, maxy, minx, maxx), end exclusive, of one frame's (K, 3) keypoints (x, y, confidence) in
    a height x width frame; None when no point is confident or the box lies outside the frame."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    xy = points[points[:, 2] > min_confidence, :2]
    if len(xy) == 0:
        return None
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    m = margin * max(x1 - x0, y1 - y0)
    left, top = max(0, math.floor(x0 - m)), max(0, math.floor(y0 - m))
    right, bottom = min(width, math.ceil(x1 + m) + 1), min(height, math.ceil(y1 + m) + 1)
    if right <= left or bottom <= top:
        return None
    left, right = _widen(left, right, min_size, width)
    top, bottom = _widen(top, bottom, min_size, height)
    return top, bottom, left, right


def body_boxes(keypoints: Mapping[str, np.ndarray], height: int, width: int, **rule: Any) -> np.ndarray:
    """(N, 4) int64 person boxes of every frame (NO_BOX rows where a frame has none); `rule`: body_box's options."""
    points = all_points(keypoints)
    return np.array([body_box(p, height, width, **rule) or NO_BOX for p in points], np.int64).reshape(-1, 4)


def clip_box(box: Any, height: int, width: int) -> tuple[int, int, int, int] | None:
    """A (miny, maxy, minx, maxx) box clipped to the frame; None for NO_BOX or a box outside the frame."""
    miny, maxy, minx, maxx = (int(v) for v in box)
    if miny < 0 and maxy < 0:
        return None
    miny, minx, maxy, maxx = max(0, miny), max(0, minx), min(height, maxy), min(width, maxx)
    return (miny, maxy, minx, maxx) if maxy > miny and maxx > minx else None


def crop_scores(pred: np.ndarray, gt: np.ndarray, boxes: np.ndarray,
                score: Callable[[np.ndarray, np.ndarray], float], *, min_size: int = 1) -> FrameScores:
    """score(pred crop, gt crop) per frame on the frame's box (uint8 (1, h, w, 3) each); frames whose box is
    NO_BOX, lies outside the frame or is smaller than min_size on a side are skipped. Field 'box': the box used."""
    boxes = np.asarray(boxes, np.int64).reshape(-1, 4)
    if len(boxes) != len(pred):
        raise AnimbenchError(f"crops: {len(boxes)} boxes for {len(pred)} frames")
    height, width = pred.shape[1:3]
    values, skipped, used = np.full(len(pred), np.nan), np.ones(len(pred), bool), np.full((len(pred), 4), -1)
    for i, box in enumerate(boxes):
        b = clip_box(box, height, width)
        if b is None or min(b[1] - b[0], b[3] - b[2]) < min_size:
            continue
        (y0, y1, x0, x1), used[i], skipped[i] = b, b, False
        values[i] = score(pred[i:i + 1, y0:y1, x0:x1], gt[i:i + 1, y0:y1, x0:x1])
    return FrameScores(values, skipped, {"box": used})


def _ssim_on(boxes: np.ndarray, pred: np.ndarray, gt: np.ndarray, device: str) -> FrameScores:
    return crop_scores(pred, gt, boxes, lambda p, g: float(ssim(p, g, device=device)[0]), min_size=SSIM_MIN_CROP)


SSIM_NOTE = "SSIM exactly as the full-frame `ssim` metric (Gaussian 11x11, sigma 1.5, RGB averaged) on the crop; "


@register_metric("ssim_body", kind="paired", higher_is_better=True, backend="torch", inputs=("keypoints",),
                 settings={"margin": BODY_MARGIN, "min_confidence": MIN_CONFIDENCE, "min_crop": MIN_CROP},
                 protocol_notes=SSIM_NOTE + BODY_RULE)
def ssim_body(pred: np.ndarray, gt: np.ndarray, *, keypoints: Mapping[str, np.ndarray],
              device: str = "cpu") -> FrameScores:
    """SSIM on the person box of the input keypoints (EDN's body crop), per frame; field 'box'."""
    check_frames(pred, gt, metric="ssim_body")
    return _ssim_on(body_boxes(keypoints, *pred.shape[1:3]), pred, gt, device)


@register_metric("ssim_face", kind="paired", higher_is_better=True, backend="torch", inputs=("face_boxes",),
                 settings={"box": "128x128 face box of the method (facetexts128)", "min_crop": SSIM_MIN_CROP},
                 protocol_notes=SSIM_NOTE + FACE_RULE)
def ssim_face(pred: np.ndarray, gt: np.ndarray, *, face_boxes: np.ndarray, device: str = "cpu") -> FrameScores:
    """SSIM on the 128x128 face box (EDN's face crop), per frame; frames without a face box skipped."""
    check_frames(pred, gt, metric="ssim_face")
    return _ssim_on(face_boxes, pred, gt, device)


class _LPIPSCrop(LPIPSMetric):
    """LPIPS (AlexNet trunk, v0.1) on one box per frame, frame by frame (crops differ in size)."""

    rule = ""

    def boxes(self, pred: np.ndarray, inputs: dict[str, Any]) -> np.ndarray:
        """(N, 4) boxes of the frames."""
        raise NotImplementedError

    def __call__(self, pred: np.ndarray, gt: np.ndarray, **inputs: Any) -> FrameScores:
        """Per-frame LPIPS on the crops of uint8 (N, H, W, 3) frames; field 'box'."""
        check_frames(pred, gt, metric=self.spec.name)

        def score(p: np.ndarray, g: np.ndarray) -> float:
            x, y = _to_signed_unit(p, self.device), _to_signed_unit(g, self.device)
            return float(self.distance(x, y)[0])

        return crop_scores(pred, gt, self.boxes(pred, inputs), score, min_size=LPIPS_MIN_CROP)

    def describe(self) -> dict[str, Any]:
        """LPIPS provenance plus the crop rule."""
        d = super().describe()
        d["settings"] = {**d["settings"], "crop": self.rule, "min_crop": LPIPS_MIN_CROP}
        return d


LPIPS_NOTE = "LPIPS v0.1 (AlexNet trunk, inputs in [-1,1]) exactly as the full-frame `lpips` metric, on the crop; "


@register_metric("lpips_body", kind="paired", higher_is_better=False, backend="lpips", inputs=("keypoints",),
                 needs=(TRUNK_FILES["alex"],), protocol_notes=LPIPS_NOTE + BODY_RULE)
class LPIPSBody(_LPIPSCrop):
    """LPIPS on the person box of the input keypoints (EDN's body crop), per frame."""

    rule = BODY_RULE

    def boxes(self, pred: np.ndarray, inputs: dict[str, Any]) -> np.ndarray:
        """Person boxes from the `keypoints` input."""
        return body_boxes(inputs["keypoints"], *pred.shape[1:3])


@register_metric("lpips_face", kind="paired", higher_is_better=False, backend="lpips", inputs=("face_boxes",),
                 needs=(TRUNK_FILES["alex"],), protocol_notes=LPIPS_NOTE + FACE_RULE)
class LPIPSFace(_LPIPSCrop):
    """LPIPS on the 128x128 face box (EDN's face crop), per frame; frames without a face box skipped."""

    rule = FACE_RULE

    def boxes(self, pred: np.ndarray, inputs: dict[str, Any]) -> np.ndarray:
        """The `face_boxes` input."""
        return inputs["face_boxes"]
