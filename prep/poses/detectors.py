"""Pose detector backends for `animbench prep ... --poses rtpose|dwpose`: one person's keypoints per frame.

A detector runs on the STORED frame (after crop, pad and resize), so its points are already in the store's
coordinates; the recipes crop around the person, and the whole frame is the person box.

- `rtpose`: the OpenPose-compatible body network the bench uses (prep/poses/rtpose.py, user-placed
  `pose_model.pth`): 18 COCO joints, pose-evaluation's single-person decode (the last heatmap peak per joint);
  the confidence is the flip-averaged heatmap value at the joint.
- `dwpose`: DWPose's whole-body RTMPose-l (`dw-ll_ucoco_384.onnx`, input `input` (1, 3, 384, 288) RGB
  normalised with ImageNet mean/std, outputs `simcc_x` (1, 133, 576) and `simcc_y` (1, 133, 768)) through
  onnxruntime, decoded as rtmlib / DWPose do: top-down affine of the box grown 1.25x to the 3:4 input,
  arg-max of each SimCC vector / 2, score = mean of the two maxima; points scoring below 0.3 (DWPose's own
  visibility threshold) are undetected. The 133 COCO-WholeBody points map to OpenPose as follows:
    body BODY_25: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles by name; neck = mean of the
      shoulders and mid-hip = mean of the hips (each scored by the lower of the two); the six foot points
      (big toe, small toe, heel per side) are BODY_25's 19-24;
    face: the 68 iBUG points are OpenPose face 0-67 (same order); the pupils 68 / 69, which COCO-WholeBody lacks,
      are the centroids of the right (36-41) / left (42-47) eye contours, scored by the lowest of the six;
    hands: 21 points each, the same order as OpenPose's (wrist, then four per finger from the thumb).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from plumbing import weights
from plumbing.errors import AnimbenchError
from prep.poses.format import FACE_POINTS, HAND_POINTS, PoseFrame

DETECTORS = ("rtpose", "dwpose")
BODY_FORMAT = {"rtpose": "COCO_18", "dwpose": "BODY_25"}

DWPOSE_FILE = weights.DWPOSE_FILE  # declared in the manifest with the other weight files
WEIGHT_FILES = {"rtpose": "pose_model.pth", "dwpose": DWPOSE_FILE}  # detector -> its manifest file
DW_INPUT = (288, 384)  # model input (width, height)
DW_SPLIT = 2.0  # SimCC bins per input pixel
DW_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
DW_STD = np.array([58.395, 57.12, 57.375], np.float32)
DW_PADDING = 1.25
DW_THRESHOLD = 0.3
# BODY_25 joint -> COCO-WholeBody index (None: neck and mid-hip, computed)
WB_TO_BODY25 = (0, None, 6, 8, 10, 5, 7, 9, None, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3, 17, 18, 19, 20, 21, 22)
WB_FACE, WB_LEFT_HAND, WB_RIGHT_HAND = slice(23, 91), slice(91, 112), slice(112, 133)


def check_pose_detector(name: str) -> None:
    """Fail early, in one line, when a detector is unknown or its weight file is not where it is expected."""
    if name not in DETECTORS:
        raise AnimbenchError(f"--poses {name!r}: expected a folder of OpenPose outputs, 'synthetic' or a detector "
                             f"({', '.join(DETECTORS)})")
    weights.locate(WEIGHT_FILES[name])


def make_pose_detector(name: str, device: str = "cpu"):
    """The detector called `name`, loaded (its weights through the manifest, hash-checked)."""
    check_pose_detector(name)
    return RtPoseDetector(device) if name == "rtpose" else DWPoseDetector()


def _pose(body: np.ndarray, face: np.ndarray | None = None, left: np.ndarray | None = None,
          right: np.ndarray | None = None) -> PoseFrame:
    def part(points, n):
        return np.zeros((n, 3), np.float32) if points is None else points

    return PoseFrame(body, part(face, FACE_POINTS), part(left, HAND_POINTS), part(right, HAND_POINTS))


class RtPoseDetector:
    """18 COCO joints of one person per frame with the rtpose network (pose-evaluation's decode)."""

    name = "rtpose"

    def __init__(self, device: str = "cpu", boxsize: int | None = None) -> None:
        from prep.poses.rtpose import BOXSIZE, RtPoseKeypoints

        self.net = RtPoseKeypoints(device, boxsize=boxsize or BOXSIZE)

    def pose(self, frame: np.ndarray) -> PoseFrame | None:
        """uint8 RGB (H, W, 3) -> pose in its pixels (confidence = heatmap value), None when no joint is found."""
        from prep.poses.rtpose import joints_from_heatmaps

        heat = self.net.heatmaps(frame)
        joints = joints_from_heatmaps(heat)
        body = np.zeros((len(joints), 3), np.float32)
        for j, (x, y) in enumerate(joints):
            if x >= 0:
                body[j] = (x, y, heat[int(y), int(x), j])
        return _pose(body) if (body[:, 2] > 0).any() else None


class DWPoseDetector:
    """Whole-body keypoints (BODY_25, face, hands) of the person filling the frame, with DWPose's ONNX model."""

    name = "dwpose"

    def __init__(self, path: str | Path | None = None, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path) if path is not None else weights.locate(DWPOSE_FILE)
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes for unreadable files
            raise AnimbenchError(f"weight file {self.path}: not a loadable ONNX model "
                                 f"({' '.join(str(exc).split())[:200]})") from None
        inputs = self.session.get_inputs()
        outputs = {o.name for o in self.session.get_outputs()}
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [3, DW_INPUT[1], DW_INPUT[0]] or \
                not {"simcc_x", "simcc_y"} <= outputs:
            raise AnimbenchError(f"weight file {self.path}: expected one input (N, 3, {DW_INPUT[1]}, {DW_INPUT[0]}) "
                                 f"and outputs simcc_x, simcc_y; got {[(i.name, i.shape) for i in inputs]} -> "
                                 f"{sorted(outputs)}")
        self.input_name = inputs[0].name

    def pose(self, frame: np.ndarray) -> PoseFrame | None:
        """uint8 RGB (H, W, 3) -> pose in its pixels; None when no body point scores 0.3 or more."""
        h, w = frame.shape[:2]
        blob, center, scale = dw_preprocess(frame, (0.0, 0.0, float(w), float(h)))
        simcc_x, simcc_y = self.session.run(["simcc_x", "simcc_y"], {self.input_name: blob})
        points, scores = dw_decode(simcc_x[0], simcc_y[0], center, scale)
        pose = wholebody_to_openpose(points, scores)
        return pose if (pose.body[:, 2] > 0).any() else None


def dw_preprocess(frame: np.ndarray, box: tuple[float, float, float, float]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8 frame + person box (x1, y1, x2, y2) -> input (1, 3, 384, 288) float32, box centre, box size
    (grown 1.25x, then to the input's 3:4 aspect) as RTMPose's top-down affine makes them."""
    x1, y1, x2, y2 = box
    center = np.array([(x1 + x2) / 2, (y1 + y2) / 2], np.float32)
    bw, bh = (x2 - x1) * DW_PADDING, (y2 - y1) * DW_PADDING
    aspect = DW_INPUT[0] / DW_INPUT[1]
    bw, bh = (bw, bw / aspect) if bw > bh * aspect else (bh * aspect, bh)
    scale = np.array([bw, bh], np.float32)
    sx = DW_INPUT[0] / bw
    warp = np.array([[sx, 0, DW_INPUT[0] / 2 - center[0] * sx], [0, sx, DW_INPUT[1] / 2 - center[1] * sx]],
                    np.float32)
    img = cv2.warpAffine(frame, warp, DW_INPUT, flags=cv2.INTER_LINEAR)
    blob = ((img.astype(np.float32) - DW_MEAN) / DW_STD).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(blob), center, scale


def dw_decode(simcc_x: np.ndarray, simcc_y: np.ndarray, center: np.ndarray, scale: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """SimCC vectors (K, 576), (K, 768) -> points (K, 2) in frame pixels and scores (K,)."""
    locs = np.stack([simcc_x.argmax(1), simcc_y.argmax(1)], -1).astype(np.float32) / DW_SPLIT
    scores = 0.5 * (simcc_x.max(1) + simcc_y.max(1))
    points = locs / np.array(DW_INPUT, np.float32) * scale + center - scale / 2
    return points, scores


def wholebody_to_openpose(points: np.ndarray, scores: np.ndarray, threshold: float = DW_THRESHOLD) -> PoseFrame:
    """133 COCO-WholeBody points (K, 2) + scores (K,) -> PoseFrame (BODY_25, face 70, hands); points scoring
    below `threshold` are (0, 0, 0). The mapping is in the module docstring."""
    pts = np.concatenate([points, scores[:, None]], 1).astype(np.float32)
    pts[pts[:, 2] < threshold] = 0

    def mean_of(group: np.ndarray) -> np.ndarray:
        if (group[:, 2] <= 0).any():
            return np.zeros(3, np.float32)
        return np.array([*group[:, :2].mean(0), group[:, 2].min()], np.float32)

    body = np.stack([pts[i] if i is not None else np.zeros(3, np.float32) for i in WB_TO_BODY25])
    body[1], body[8] = mean_of(pts[[5, 6]]), mean_of(pts[[11, 12]])
    face68 = pts[WB_FACE]
    face = np.concatenate([face68, [mean_of(face68[36:42]), mean_of(face68[42:48])]])
    return PoseFrame(body, face, pts[WB_LEFT_HAND], pts[WB_RIGHT_HAND])
