"""EDN's label maps and face boxes, as `data_prep/graph_train.py` writes them with its defaults.

A pose is drawn on a white 1920x1080 canvas in BGR with OpenCV (joints as filled circles at truncated integer
coordinates, limbs as filled ellipse polygons blended 0.4/0.6 one by one in list order, the sparse face points,
the hands), flipped to RGB and resized by PIL's Lanczos to the output size (1024x512). A frame of another size
is first letterboxed into the canvas (`scale_resize`), its keypoints with it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from plumbing.errors import AnimbenchError
from prep.poses.format import PoseFrame

OFFICIAL_CANVAS = (1920, 1080)  # (W, H)
FACE_BOX_BUFFER = 70  # graph_train.py --boxbuffer: half the face box side, in 1080p canvas pixels

# Palettes as the official code writes them: BGR triples (so [255, 0, 0] is blue in the PNG).
_COCO_COLORS = [
    [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
    [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
    [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
]
_COCO_LIMBS = [[1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10], [1, 11], [11, 12],
               [12, 13], [1, 0], [0, 14], [14, 16], [0, 15], [15, 17]]
_BODY23_COLORS = [
    [255, 0, 0], [255, 55, 0], [255, 110, 0], [255, 165, 0], [255, 215, 0], [255, 235, 0], [255, 255, 0],
    [255, 0, 0], [175, 255, 0], [85, 255, 0], [0, 255, 0], [0, 255, 85], [0, 255, 170], [25, 25, 128],
    [0, 85, 255], [0, 170, 255], [0, 212.5, 255], [0, 255, 255], [255, 0, 0], [255, 0, 255], [238, 130, 238],
    [138, 43, 226], [75, 0, 130],
]  # 212.5 is in the original; OpenCV rounds it when drawing, as it did for the official maps
_BODY23_LIMBS = [[0, 1], [1, 2], [2, 3], [0, 4], [4, 5], [5, 6], [0, 7], [7, 8], [8, 9], [9, 10], [10, 11],
                 [10, 12], [7, 13], [13, 14], [14, 15], [15, 16], [15, 17], [0, 18], [18, 19], [19, 20],
                 [18, 21], [21, 22]]
_BODY25_COLORS = [
    [255, 0, 85], [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
    [0, 255, 0], [255, 0, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255],
    [0, 0, 255], [255, 0, 170], [170, 0, 255], [255, 0, 255], [85, 0, 255], [0, 0, 255], [0, 0, 255],
    [0, 0, 255], [0, 255, 255], [0, 255, 255], [0, 255, 255],
]
_BODY25_LIMBS = [[0, 1], [0, 15], [0, 16], [1, 2], [1, 5], [1, 8], [2, 3], [3, 4], [5, 6], [6, 7], [8, 9],
                 [8, 12], [9, 10], [10, 11], [11, 22], [11, 24], [12, 13], [13, 14], [14, 19], [14, 21],
                 [15, 17], [16, 18], [19, 20], [22, 23]]
BODY_STYLES = {"COCO_18": (_COCO_COLORS, _COCO_LIMBS), "BODY_23": (_BODY23_COLORS, _BODY23_LIMBS),
               "BODY_25": (_BODY25_COLORS, _BODY25_LIMBS)}
# aveface's head joints per format: (nose, right ear, left ear)
HEAD_JOINTS = {"COCO_18": (0, 16, 17), "BODY_23": (18, 20, 22), "BODY_25": (0, 17, 18)}

_HAND_COLORS = [
    [230, 53, 40], [231, 115, 64], [233, 136, 31], [213, 160, 13], [217, 200, 19], [170, 210, 35],
    [139, 228, 48], [83, 214, 45], [77, 192, 46], [83, 213, 133], [82, 223, 190], [80, 184, 197],
    [78, 140, 189], [86, 112, 208], [83, 73, 217], [123, 46, 183], [189, 102, 255], [218, 83, 232],
    [229, 65, 189], [236, 61, 141], [255, 102, 145],
]
# each finger: the chain along it, then wrist (0) to its base, in the official drawing order
_HAND_LIMBS = [pair for base in (1, 5, 9, 13, 17)
               for pair in ([base, base + 1], [base + 1, base + 2], [base + 2, base + 3], [0, base])]
FACE_POINT_SETS = {8: [27, 30, 8, 0, 16, 33, 68, 69], 9: [27, 30, 8, 0, 16, 33, 68, 69, 62],
                   22: [27, 30, 8, 0, 16, 31, 33, 35, 68, 69, 36, 39, 42, 45, 17, 21, 22, 26, 48, 51, 54, 57]}
FACE_MIN_MEAN_CONFIDENCE = 0.2
HAND_THRESHOLD = 0.05


def letterbox(frame_size: tuple[int, int], canvas_size: tuple[int, int]) -> tuple[float, float, float] | None:
    """scale_resize: (scale, dx, dy) fitting a (W, H) frame into the (W, H) canvas, centred; None when equal."""
    (w, h), (cw, ch) = frame_size, canvas_size
    if (w, h) == (cw, ch):
        return None
    row_mult, col_mult = ch / float(h), cw / float(w)
    if row_mult == col_mult:
        return row_mult, 0.0, 0.0
    if col_mult > row_mult:  # the frame is narrower than the canvas: fit the height, centre horizontally
        return row_mult, (cw - row_mult * float(w)) / 2.0, 0.0
    return col_mult, 0.0, (ch - col_mult * float(h)) / 2.0


def _on_canvas(pose: PoseFrame, frame_size: tuple[int, int], canvas_size: tuple[int, int]) -> PoseFrame:
    fit = letterbox(tuple(frame_size), tuple(canvas_size))
    return pose if fit is None else pose.transformed(*fit)


def _blend_limb(canvas: np.ndarray, p1: np.ndarray, p2: np.ndarray, half_width: int, color) -> np.ndarray:
    """One limb as the official code draws it: an ellipse polygon filled on a copy, blended 0.4/0.6.

    Pixels outside the polygon blend with themselves and keep their value, so only the polygon's bounding box
    is blended (the same result, ~20x faster)."""
    x1, y1, x2, y2 = float(p1[0]), float(p1[1]), float(p2[0]), float(p2[1])
    mean_x, mean_y = (x1 + x2) / 2, (y1 + y2) / 2
    length = ((y1 - y2) ** 2 + (x1 - x2) ** 2) ** 0.5
    angle = math.degrees(math.atan2(y1 - y2, x1 - x2))
    polygon = cv2.ellipse2Poly((int(mean_x), int(mean_y)), (int(length / 2), half_width), int(angle), 0, 360, 1)
    h, w = canvas.shape[:2]
    left, top = max(int(polygon[:, 0].min()), 0), max(int(polygon[:, 1].min()), 0)
    right, bottom = min(int(polygon[:, 0].max()) + 1, w), min(int(polygon[:, 1].max()) + 1, h)
    if right <= left or bottom <= top:
        return canvas
    roi = canvas[top:bottom, left:right]
    drawn = roi.copy()
    cv2.fillConvexPoly(drawn, polygon - np.array([left, top], np.int32), color)
    canvas[top:bottom, left:right] = cv2.addWeighted(roi, 0.4, drawn, 0.6, 0)
    return canvas


def _draw_body(canvas: np.ndarray, body: np.ndarray, body_format: str) -> None:
    colors, limbs = BODY_STYLES[body_format]
    for joint, (x, y, conf) in enumerate(body):
        if conf > 0:
            cv2.circle(canvas, (int(x), int(y)), 8, tuple(colors[joint]), thickness=-1)
    for a, b in limbs:
        if body[a, 2] > 0 and body[b, 2] > 0:
            _blend_limb(canvas, body[a], body[b], 4, colors[a])


def _draw_face(canvas: np.ndarray, face: np.ndarray, num_face_keypoints: int) -> None:
    # the mean over all 70 confidences decides whether the face is drawn at all
    if float(np.sum(face[:, 2], dtype=np.float64)) / 70.0 < FACE_MIN_MEAN_CONFIDENCE:
        return
    for i in FACE_POINT_SETS.get(num_face_keypoints, FACE_POINT_SETS[8]):  # others fall back to 8, as EDN
        x, y, conf = face[i]
        if conf > 0:
            cv2.circle(canvas, (int(x), int(y)), 4, (0, 0, 0), thickness=-1)


def _draw_hand(canvas: np.ndarray, hand: np.ndarray) -> None:
    for i, (x, y, conf) in enumerate(hand):
        if conf > HAND_THRESHOLD:
            cv2.circle(canvas, (int(x), int(y)), 3, tuple(_HAND_COLORS[i]), thickness=-1)
    for a, b in _HAND_LIMBS:
        if hand[a, 2] > HAND_THRESHOLD and hand[b, 2] > HAND_THRESHOLD:
            _blend_limb(canvas, hand[a], hand[b], 2, _HAND_COLORS[b])


def render_canvas(pose: PoseFrame, canvas_size=OFFICIAL_CANVAS, *, num_face_keypoints: int = 8) -> np.ndarray:
    """A pose already in canvas pixels -> the full-size BGR canvas uint8 (H, W, 3), before the final resize."""
    w, h = canvas_size
    canvas = np.full((h, w, 3), 255, np.uint8)
    _draw_body(canvas, pose.body, pose.body_format)
    _draw_face(canvas, pose.face, num_face_keypoints)
    _draw_hand(canvas, pose.hand_right)  # right hand first, as graph_train.py
    _draw_hand(canvas, pose.hand_left)
    return canvas


def render_label(pose: PoseFrame, frame_size=OFFICIAL_CANVAS, out_size=(1024, 512), *, num_face_keypoints=8,
                 canvas_size=OFFICIAL_CANVAS) -> np.ndarray:
    """EDN's label map of one pose whose pixels refer to a (W, H) frame -> uint8 (out H, out W, 3) RGB."""
    canvas = render_canvas(_on_canvas(pose, frame_size, canvas_size), canvas_size,
                           num_face_keypoints=num_face_keypoints)
    return _resize(canvas[:, :, ::-1], out_size)


def fit_frame(frame: np.ndarray, out_size=(1024, 512), *, canvas_size=OFFICIAL_CANVAS) -> np.ndarray:
    """uint8 (H, W, 3) RGB frame -> letterboxed into the canvas (scale_resize, black borders) and resized to
    out_size by Lanczos: the training image graph_train.py makes, matching render_label's map."""
    frame = np.ascontiguousarray(frame)
    fit = letterbox((frame.shape[1], frame.shape[0]), tuple(canvas_size))
    if fit is not None:
        scale, dx, dy = fit
        matrix = np.float32([[scale, 0, dx], [0, scale, dy]])
        frame = cv2.warpAffine(frame, matrix, tuple(canvas_size))
    return _resize(frame, out_size)


def _resize(rgb: np.ndarray, out_size) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(rgb))
    if image.size != tuple(out_size):
        image = image.resize(tuple(out_size), Image.LANCZOS)
    return np.asarray(image)


def face_center(pose: PoseFrame) -> tuple[float, float] | None:
    """aveface: the nose, else the midpoint of the two ears, else the one ear seen; None without any of them
    (the official code then uses the undetected ear's (0, 0))."""
    nose, right_ear, left_ear = HEAD_JOINTS[pose.body_format]
    body = pose.body
    if body[nose, 2] > 0:
        return float(body[nose, 0]), float(body[nose, 1])
    seen_r, seen_l = body[right_ear, 2] > 0, body[left_ear, 2] > 0
    if seen_r and seen_l:
        return (0.5 * (float(body[right_ear, 0]) + float(body[left_ear, 0])),
                0.5 * (float(body[right_ear, 1]) + float(body[left_ear, 1])))
    if seen_r or seen_l:
        ear = right_ear if seen_r else left_ear
        return float(body[ear, 0]), float(body[ear, 1])
    return None


def face_box(pose: PoseFrame, frame_size=OFFICIAL_CANVAS, out_size=(1024, 512), *, canvas_size=OFFICIAL_CANVAS,
             box=128) -> tuple[int, int, int, int] | None:
    """The facetexts128 box (miny, maxy, minx, maxx) in out_size pixels: +-70 canvas px around the head centre,
    scaled to out_size, then grown or shifted to box x box inside the image (makebox128); None without a head."""
    (cw, ch), (ow, oh) = canvas_size, out_size
    if box > min(ow, oh):
        raise AnimbenchError(f"face box {box} px does not fit the {ow}x{oh} label map; expected box <= {min(ow, oh)}")
    center = face_center(_on_canvas(pose, frame_size, canvas_size))
    if center is None:
        return None
    scale_x, scale_y = float(ow) / float(cw), float(oh) / float(ch)
    buffer = FACE_BOX_BUFFER * ch / 1080  # 70 on the official canvas
    cx, cy = center
    minx = int(max(cx - buffer, 0) * scale_x)
    miny = int(max(cy - buffer, 0) * scale_y)
    maxx = int(min(cx + buffer, cw) * scale_x)
    maxy = int(min(cy + buffer, ch) * scale_y)
    miny, maxy = _fit_span(miny, maxy, box, oh)
    minx, maxx = _fit_span(minx, maxx, box, ow)
    return miny, maxy, minx, maxx


def _fit_span(low: int, high: int, size: int, limit: int) -> tuple[int, int]:
    """makebox128 along one axis: move `high` by half the missing length, set low = high - size, clamp."""
    if high - low != size:
        high = high + (size - (high - low)) // 2
        low = high - size
        if high > limit:
            high, low = limit, limit - size
        if low < 0:
            low, high = 0, size
    return low, high
