"""EDN's pose distance and missed detections: re-detect keypoints on the generated frame, compare with the input.

Everybody Dance Now (§1.12 of the reference) runs the pose detector on the synthesized frames and reports the mean
L2 distance in pixels between the detected keypoints and the keypoints the frame was generated from, per keypoint
group (body / face / hands), and the keypoints the detector failed to find ("missed detections"). Here:

- the detector is the bench's body backend, rtpose (the OpenPose-compatible CMU body network, COCO 18 joints,
  user-placed `pose_model.pth`; bench.backends.rtpose, the decode pose-evaluation uses). It finds body joints
  only, so only the body group is reported: face and hand distances need a whole-body detector, which this
  bench does not have (the metrics say so in describe()).
- the input body (COCO_18, BODY_23 or BODY_25) is mapped to the detector's 18 COCO joints (COCO18_FROM); a point
  is an input point when its confidence is > MIN_CONFIDENCE, and detected when the detector returns it.
- pose distance per frame: mean Euclidean distance over points both given and detected; a frame with none is
  skipped and counted. Missed detections per frame: the number of input points the detector did not find.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.metrics.crops import MIN_CONFIDENCE
from bench.metrics.pose import present
from bench.metrics.registry import FrameScores, base_description, check_frames, register_metric
from plumbing.errors import AnimbenchError

# COCO-18 joint j (nose, neck, R sho/elb/wri, L sho/elb/wri, R hip/knee/ankle, L hip/knee/ankle, R eye, L eye,
# R ear, L ear) is input joint COCO18_FROM[format][j]
COCO18_FROM = {
    "COCO_18": tuple(range(18)),
    "BODY_25": (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18),
    "BODY_23": (18, 0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 13, 14, 15, 19, 21, 20, 22),  # EDN's map_25_to_23 order
}
FORMAT_OF_JOINTS = {18: "COCO_18", 23: "BODY_23", 25: "BODY_25"}
GROUPS_NOT_AVAILABLE = ("face and hand distances need a whole-body detector; the bench's body backend (rtpose, "
                        "18 COCO joints) finds body joints only, so only the body group is reported")


def body_as_coco18(body: np.ndarray) -> np.ndarray:
    """(N, J, 3) input body joints (J = 18, 23 or 25) -> (N, 18, 3) in the detector's COCO-18 order."""
    body = np.asarray(body, np.float64)
    if body.ndim != 3 or body.shape[2] != 3 or body.shape[1] not in FORMAT_OF_JOINTS:
        raise AnimbenchError(f"keypoints: body is {body.shape}, expected (N, J, 3) with J in "
                             f"{sorted(FORMAT_OF_JOINTS)}")
    return body[:, list(COCO18_FROM[FORMAT_OF_JOINTS[body.shape[1]]])]


def pose_distance_from_keypoints(given: np.ndarray, detected: np.ndarray, *,
                                 min_confidence: float = MIN_CONFIDENCE) -> dict[str, np.ndarray]:
    """Per-frame pose distance and missed detections of one keypoint group.

    given (N, K, 3) input x, y, confidence; detected (N, K, 2) with (-1, -1) where not found, same pixels.
    Returns {"distance": (N,) mean L2 over points given and detected (NaN where none), "skipped": (N,) bool,
    "missed": (N,) int given but not detected, "given": (N,) int points given, "matched": (N,) int}.
    """
    given, detected = np.asarray(given, np.float64), np.asarray(detected, np.float64)
    if given.shape[:2] != detected.shape[:2] or given.shape[2:] != (3,) or detected.shape[2:] != (2,):
        raise AnimbenchError(f"pose distance: given keypoints {given.shape} and detected {detected.shape} do not "
                             "pair up (expected (N, K, 3) and (N, K, 2))")
    is_given = given[..., 2] > min_confidence
    both = is_given & present(detected)
    dist = np.linalg.norm(detected - given[..., :2], axis=-1)
    matched = both.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(matched > 0, np.where(both, dist, 0.0).sum(axis=1) / matched, np.nan)
    return {"distance": mean, "skipped": matched == 0, "missed": (is_given & ~both).sum(axis=1),
            "given": is_given.sum(axis=1), "matched": matched}


_DETECTIONS: dict[tuple, np.ndarray] = {}


class _RtPoseDistance:
    """Shared by pose_distance_body and missed_detections_body: rtpose joints of the generated frames, compared
    with the input body; one detection per frame set (the two metrics of a run share it)."""

    def __init__(self, spec: Any, *, device: str = "cpu", verify_hash: bool = True, boxsize: int = 368):
        from bench.backends.rtpose import RtPoseKeypoints

        self.spec = spec
        # boxsize (network input height) is OpenPose's own setting; pose-evaluation's numbers use 368
        self.backend = RtPoseKeypoints(device=device, verify_hash=verify_hash, boxsize=boxsize)

    def scores(self, pred: np.ndarray, keypoints: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """pose_distance_from_keypoints of the input body against rtpose's joints on the uint8 pred frames."""
        check_frames(pred, metric=self.spec.name)
        given = body_as_coco18(keypoints["body"])
        if len(given) != len(pred):
            raise AnimbenchError(f"{self.spec.name}: {len(given)} poses for {len(pred)} frames")
        key = (str(self.backend.weight_path), self.backend.boxsize, str(self.backend.device), pred.shape,
               zlib.crc32(np.ascontiguousarray(pred).data))
        if key not in _DETECTIONS:
            _DETECTIONS.clear()  # one frame set at a time: the metrics of one video run back to back
            _DETECTIONS[key] = self.backend.keypoints(pred)
        return pose_distance_from_keypoints(given, _DETECTIONS[key])

    def describe(self) -> dict[str, Any]:
        """Provenance: detector, decode settings, joint mapping, what is not reported."""
        from bench.backends.rtpose import WEIGHT_FILE

        d = base_description(self.spec)
        d["settings"] = {"detector": f"rtpose ({WEIGHT_FILE}): VGG19 6-stage, height {self.backend.boxsize}, "
                                     "flip-averaged heatmaps, peaks > 0.1, last peak per joint, 18 COCO joints",
                         "groups": ["body"], "groups_not_reported": GROUPS_NOT_AVAILABLE,
                         "input_joints": {k: list(v) for k, v in COCO18_FROM.items()},
                         "min_confidence": MIN_CONFIDENCE, "pixels": "the generated frame's"}
        return d


DISTANCE_NOTES = ("EDN pose distance, body group: rtpose re-detects 18 COCO joints on the generated frame (as saved, "
                  "uint8); per frame the mean Euclidean distance in pixels of the generated frame between detected "
                  f"joints and the input joints (confidence > {MIN_CONFIDENCE}, mapped to COCO-18) over joints both "
                  "given and detected; frames with none are skipped. " + GROUPS_NOT_AVAILABLE + ".")
MISSED_NOTES = ("EDN missed detections, body group: per frame the number of input joints (confidence > "
                f"{MIN_CONFIDENCE}, mapped to COCO-18) that rtpose does not find on the generated frame; frames "
                "with no input joint are skipped. " + GROUPS_NOT_AVAILABLE + ".")


@register_metric("pose_distance_body", kind="paired", higher_is_better=False, backend="torch",
                 needs=("pose_model.pth",), inputs=("keypoints",), protocol_notes=DISTANCE_NOTES)
class PoseDistanceBody(_RtPoseDistance):
    """EDN pose distance (body): mean L2 in pixels between re-detected and input joints; field 'missed'."""

    def __call__(self, pred: np.ndarray, gt: np.ndarray, *, keypoints: Mapping[str, np.ndarray]) -> FrameScores:
        """Per-frame pose distance of the generated frames (gt is not used: the input is the pose)."""
        s = self.scores(pred, keypoints)
        return FrameScores(s["distance"], s["skipped"], {"missed": s["missed"], "matched": s["matched"]})


@register_metric("missed_detections_body", kind="paired", higher_is_better=False, backend="torch",
                 needs=("pose_model.pth",), inputs=("keypoints",), protocol_notes=MISSED_NOTES)
class MissedDetectionsBody(_RtPoseDistance):
    """EDN missed detections (body): input joints the detector does not find on the generated frame."""

    def __call__(self, pred: np.ndarray, gt: np.ndarray, *, keypoints: Mapping[str, np.ndarray]) -> FrameScores:
        """Per-frame count of missed joints; field 'given' (input joints)."""
        s = self.scores(pred, keypoints)
        return FrameScores(s["missed"].astype(np.float64), s["given"] == 0, {"given": s["given"]})
