"""EDN's pose distance and missed detections: re-detect keypoints on the generated frame, compare with the input.

Everybody Dance Now (§1.12 of the reference) runs the pose detector on the synthesized frames and reports the mean
L2 distance in pixels between the detected keypoints and the keypoints the frame was generated from, per keypoint
group (body / face / hands), and the keypoints the detector failed to find ("missed detections"). Here:

- `*_body` metrics: the bench's body backend, rtpose (the OpenPose-compatible CMU body network, COCO 18 joints,
  user-placed `pose_model.pth`; bench.backends.rtpose, the decode pose-evaluation uses). It finds body joints
  only, so these report the body group (their describe() says so).
- `*_dwpose*` metrics: the whole-body backend prep uses for `--poses dwpose` (DWPose RTMPose-l ONNX, user-placed
  `dw-ll_ucoco_384.onnx`; prep.poses.detectors), which finds body, face (70) and hands (2 x 21): the distance per
  group (body, face, hands) and overall (every group's points pooled), and the missed detections over all points.
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
from bench.metrics.registry import (
    FrameScores,
    base_description,
    check_frames,
    register_metric,
    weights_provenance,
)
from plumbing.errors import AnimbenchError
from plumbing.weights import DWPOSE_FILE

# COCO-18 joint j (nose, neck, R sho/elb/wri, L sho/elb/wri, R hip/knee/ankle, L hip/knee/ankle, R eye, L eye,
# R ear, L ear) is input joint COCO18_FROM[format][j]
COCO18_FROM = {
    "COCO_18": tuple(range(18)),
    "BODY_25": (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18),
    "BODY_23": (18, 0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 13, 14, 15, 19, 21, 20, 22),  # EDN's map_25_to_23 order
}
FORMAT_OF_JOINTS = {18: "COCO_18", 23: "BODY_23", 25: "BODY_25"}
GROUPS_NOT_AVAILABLE = ("rtpose (18 COCO joints) finds body joints only, so only the body group is reported; face "
                        "and hand distances: the whole-body *_dwpose* metrics (DWPose, user-placed "
                        "dw-ll_ucoco_384.onnx)")


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


# --- whole body: DWPose ----------------------------------------------------------------------------------------
WB_GROUPS = {"body": ("body",), "face": ("face",), "hands": ("hand_left", "hand_right"),
             "all": ("body", "face", "hand_left", "hand_right")}


def comparable_groups(keypoints: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{group: (N, J, 3)} with the body in COCO-18 order (the joints every body format shares)."""
    return {**{k: np.asarray(v, np.float64) for k, v in keypoints.items()}, "body": body_as_coco18(keypoints["body"])}


def detected_groups(poses: list[Any]) -> dict[str, np.ndarray]:
    """Detected PoseFrames (None: no person) -> {group: (N, J, 2)} with (-1, -1) for points not found."""
    shapes = {"body": (18,), "face": (70,), "hand_left": (21,), "hand_right": (21,)}
    out = {}
    for group, (j,) in shapes.items():
        arr = -np.ones((len(poses), j, 2))
        for i, p in enumerate(poses):
            if p is None:
                continue
            pts = comparable_groups({"body": np.asarray(p.body)[None]})["body"][0] if group == "body" else \
                np.asarray(getattr(p, group), np.float64)
            found = pts[:, 2] > 0
            arr[i, found] = pts[found, :2]
        out[group] = arr
    return out


class _DWPoseDistance:
    """Whole-body pose distance: DWPose's keypoints of the generated frames against the input, per group."""

    group = "all"

    def __init__(self, spec: Any, *, device: str = "cpu"):
        from prep.poses.detectors import make_pose_detector

        self.spec = spec
        # onnxruntime on CPU: the bench's device does not change DWPose's numbers
        self.detector = make_pose_detector("dwpose", device=device)

    def scores(self, pred: np.ndarray, keypoints: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """pose_distance_from_keypoints over this metric's group of points."""
        check_frames(pred, metric=self.spec.name)
        given = comparable_groups(keypoints)
        if len(given["body"]) != len(pred):
            raise AnimbenchError(f"{self.spec.name}: {len(given['body'])} poses for {len(pred)} frames")
        key = ("dwpose", str(self.detector.path), pred.shape, zlib.crc32(np.ascontiguousarray(pred).data))
        if key not in _DETECTIONS:
            _DETECTIONS.clear()
            _DETECTIONS[key] = detected_groups([self.detector.pose(frame) for frame in pred])
        found = _DETECTIONS[key]
        parts = WB_GROUPS[self.group]
        return pose_distance_from_keypoints(np.concatenate([given[g] for g in parts], axis=1),
                                            np.concatenate([found[g] for g in parts], axis=1))

    def __call__(self, pred: np.ndarray, gt: np.ndarray, *, keypoints: Mapping[str, np.ndarray]) -> FrameScores:
        """Per-frame mean distance in pixels over the group's points given and detected; field 'missed'."""
        s = self.scores(pred, keypoints)
        return FrameScores(s["distance"], s["skipped"], {"missed": s["missed"], "matched": s["matched"]})

    def describe(self) -> dict[str, Any]:
        """Provenance: the DWPose file and hash, the group, the point mapping."""
        d = base_description(self.spec)
        d["weights"] = weights_provenance((DWPOSE_FILE,))
        d["settings"] = {"detector": f"DWPose RTMPose-l whole body ({DWPOSE_FILE}) via onnxruntime, the whole "
                                     "frame as the person box, points scoring < 0.3 undetected (prep.poses."
                                     "detectors)", "group": self.group, "group_points": list(WB_GROUPS[self.group]),
                         "body_joints": "COCO-18 (the joints every body format shares)",
                         "min_confidence": MIN_CONFIDENCE, "pixels": "the generated frame's"}
        return d


WB_NOTES = ("EDN pose distance with a whole-body detector: DWPose re-detects body, face and hands on the generated "
            "frame (as saved, uint8); per frame the mean Euclidean distance in pixels between detected and input "
            f"points (confidence > {MIN_CONFIDENCE}; body as COCO-18) given and detected, over the group {{}}; "
            "frames with none are skipped.")


def _register_wb(group: str, name: str) -> None:
    cls = type(f"PoseDistanceDWPose_{group}", (_DWPoseDistance,), {
        "group": group, "__doc__": f"EDN pose distance ({group}, DWPose whole body): mean L2 in pixels between "
                                   "re-detected and input points; field 'missed'."})
    register_metric(name, kind="paired", higher_is_better=False, backend="onnxruntime", needs=(DWPOSE_FILE,),
                    inputs=("keypoints",), protocol_notes=WB_NOTES.format(group))(cls)


for _group in ("body", "face", "hands"):
    _register_wb(_group, f"pose_distance_dwpose_{_group}")
_register_wb("all", "pose_distance_dwpose")


@register_metric("missed_detections_dwpose", kind="paired", higher_is_better=False, backend="onnxruntime",
                 needs=(DWPOSE_FILE,), inputs=("keypoints",),
                 protocol_notes=("EDN missed detections with a whole-body detector: per frame the number of input "
                                 f"points (confidence > {MIN_CONFIDENCE}; body as COCO-18, face 70, hands 2 x 21) "
                                 "DWPose does not find on the generated frame; frames with no input point skipped."))
class MissedDetectionsDWPose(_DWPoseDistance):
    """EDN missed detections (body, face and hands, DWPose): input points not found on the generated frame."""

    def __call__(self, pred: np.ndarray, gt: np.ndarray, *, keypoints: Mapping[str, np.ndarray]) -> FrameScores:
        """Per-frame count of missed points; field 'given'."""
        s = self.scores(pred, keypoints)
        return FrameScores(s["missed"].astype(np.float64), s["given"] == 0, {"given": s["given"]})
