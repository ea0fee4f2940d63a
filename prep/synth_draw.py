"""The synthetic subjects of `animbench synth`: a parametric face (iBUG-68 landmarks) and an articulated
tai-chi body (OpenPose-18 joints), drawn with OpenCV at 2x and downsampled (antialiasing).

Coordinates are full-frame pixels with pixel centres at integers (OpenCV's convention). A subject is built
from an identity `look` (appearance, shared by all videos of a person) and a video `motion` (trajectories);
`geometry(t)` gives every point drawn at frame t, `render(geometry)` the RGB frame.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

SS = 2  # supersampling factor of the drawing canvas
SHIFT = 4  # fixed-point bits of OpenCV's sub-pixel drawing
TEX = 256  # side of the (tileable) texture images
Geometry = dict[str, np.ndarray]


# --------------------------------------------------------------------------------------------- drawing
def _fx(p: np.ndarray) -> np.ndarray:
    """1x pixel coordinates -> fixed-point coordinates of the 2x canvas (pixel centres stay centres)."""
    return np.round((np.asarray(p, np.float64) * SS + (SS - 1) / 2) * (1 << SHIFT)).astype(np.int32)


def _poly(canvas: np.ndarray, pts: np.ndarray, color: tuple) -> None:
    cv2.fillPoly(canvas, [_fx(pts).reshape(-1, 1, 2)], color, cv2.LINE_AA, SHIFT)


def _line(canvas: np.ndarray, pts: np.ndarray, color: tuple, width: float, closed: bool = False) -> None:
    cv2.polylines(canvas, [_fx(pts).reshape(-1, 1, 2)], closed, color, max(1, round(width * SS)),
                  cv2.LINE_AA, SHIFT)


def _disc(canvas: np.ndarray, c: np.ndarray, r: float, color: tuple) -> None:
    cv2.circle(canvas, tuple(int(v) for v in _fx(c)), int(round(r * SS * (1 << SHIFT))), color, -1,
               cv2.LINE_AA, SHIFT)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 32, a0: float = 0.0,
             a1: float = 2 * np.pi) -> np.ndarray:
    a = np.linspace(a0, a1, n, endpoint=a1 - a0 < 2 * np.pi)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _fill_textured(canvas: np.ndarray, pts: np.ndarray, texture: np.ndarray, to_tex: np.ndarray | None,
                   layer: Any = None) -> None:
    """Fill polygon `pts` with `texture`, where the 2x3 affine `to_tex` maps 1x pixels to texture pixels
    (to_tex None: `texture` is one colour). `layer(patch, origin)` may draw on the patch before it is
    composited, clipped to the polygon (origin: the patch's top-left in fixed-point canvas units)."""
    q = _fx(pts).reshape(-1, 2) / (1 << SHIFT)
    x0, y0 = np.maximum(np.floor(q.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(q.max(0)).astype(int) + 2, [canvas.shape[1], canvas.shape[0]])
    if x1 <= x0 or y1 <= y0:
        return
    size = (int(x1 - x0), int(y1 - y0))
    if to_tex is None:
        patch = np.empty((size[1], size[0], 3), np.uint8)
        patch[:] = np.asarray(texture, np.float64).round().astype(np.uint8)
    else:
        # canvas pixel (u + x0, v + y0) is the 1x pixel ((u + x0) - (SS - 1) / 2) / SS
        m = np.asarray(to_tex, np.float64) / SS
        m[:, 2] = to_tex[:, 2] + m[:, 0] * (x0 - (SS - 1) / 2) + m[:, 1] * (y0 - (SS - 1) / 2)
        patch = cv2.warpAffine(texture, m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_WRAP)
    if layer is not None:
        layer(patch, np.array([x0, y0], np.int64) * (1 << SHIFT))
    mask = np.zeros(patch.shape[:2], np.uint8)
    cv2.fillPoly(mask, [(_fx(pts).reshape(-1, 2) - np.array([x0, y0]) * (1 << SHIFT)).reshape(-1, 1, 2)],
                 255, cv2.LINE_AA, SHIFT)
    roi = canvas[y0:y1, x0:x1]
    alpha = mask.astype(np.float32) * np.float32(1 / 255)
    roi[:] = cv2.blendLinear(patch, roi, alpha, 1 - alpha)


def _capsule(a: np.ndarray, b: np.ndarray, ra: float, rb: float, n: int = 10) -> np.ndarray:
    """Outline of a tapered limb from a (radius ra) to b (radius rb)."""
    d = b - a
    ang = np.arctan2(d[1], d[0])
    end_b = _ellipse(b[0], b[1], rb, rb, n, ang - np.pi / 2, ang + np.pi / 2)
    end_a = _ellipse(a[0], a[1], ra, ra, n, ang + np.pi / 2, ang + 3 * np.pi / 2)
    return np.concatenate([end_b, end_a])


def _limb_frame(a: np.ndarray, b: np.ndarray, k: float, offset: np.ndarray) -> np.ndarray:
    """Affine image -> texture that runs the texture's x axis along the limb a->b at k texture px per px."""
    d = (b - a) / max(float(np.linalg.norm(b - a)), 1e-6)
    rot = np.array([[d[0], d[1]], [-d[1], d[0]]]) * k
    return np.concatenate([rot, (offset - rot @ a)[:, None]], axis=1)


def _downsample(canvas: np.ndarray) -> np.ndarray:
    h, w = canvas.shape[0] // SS, canvas.shape[1] // SS
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)


# -------------------------------------------------------------------------------------------- textures
def periodic_noise(rng: np.random.Generator, h: int, w: int, cutoff: float) -> np.ndarray:
    """Tileable smooth noise in about [-1, 1]: white noise low-passed in Fourier space (cutoff in cycles)."""
    fy = np.fft.fftfreq(h)[:, None] * h
    fx = np.fft.rfftfreq(w)[None, :] * w
    spec = np.fft.rfft2(rng.standard_normal((h, w))) * np.exp(-(fx**2 + fy**2) / (2 * cutoff**2))
    n = np.fft.irfft2(spec, s=(h, w))
    return n / (3 * n.std() + 1e-9)


def _colour(rng: np.random.Generator, palette: list[tuple], jitter: float = 12.0) -> list[float]:
    i = rng.integers(len(palette))
    return [float(np.clip(c + rng.normal(0, jitter), 0, 255)) for c in palette[i]]


def cloth_texture(rng: np.random.Generator, c1: list[float], c2: list[float], pattern: str) -> np.ndarray:
    """A tileable TEX x TEX RGB texture: stripes, checks or blotches of c1/c2 plus fine grain."""
    u = np.arange(TEX)[None, :] / TEX
    v = np.arange(TEX)[:, None] / TEX
    cycles = int(rng.integers(6, 14))
    if pattern == "stripes":
        mix = np.broadcast_to(0.5 + 0.5 * np.tanh(4 * np.sin(2 * np.pi * cycles * u)), (TEX, TEX))
    elif pattern == "checks":
        mix = 0.5 + 0.5 * np.tanh(4 * np.sin(2 * np.pi * cycles * u) * np.sin(2 * np.pi * cycles * v))
    else:
        mix = np.clip(0.5 + 1.5 * periodic_noise(rng, TEX, TEX, 6.0), 0, 1)
    grain = 18 * periodic_noise(rng, TEX, TEX, 40.0)[..., None]
    tex = np.asarray(c1)[None, None] * mix[..., None] + np.asarray(c2)[None, None] * (1 - mix[..., None])
    return np.clip(tex + grain, 0, 255).astype(np.uint8)


def skin_texture(rng: np.random.Generator, skin: list[float]) -> np.ndarray:
    """Skin with blotches and a few freckles: texture the motion of the face can be seen on."""
    tex = np.asarray(skin)[None, None] * (1 + 0.07 * periodic_noise(rng, TEX, TEX, 8.0)[..., None])
    tex += 8 * periodic_noise(rng, TEX, TEX, 60.0)[..., None]
    tex = np.clip(tex, 0, 255).astype(np.uint8)
    dark = tuple(float(c) * 0.75 for c in skin)
    for _ in range(int(rng.integers(10, 40))):
        x, y = rng.uniform(40, TEX - 40, 2)
        cv2.circle(tex, (int(x * 16), int(y * 16)), int(rng.uniform(1.0, 2.5) * 16), dark, -1, cv2.LINE_AA, 4)
    return tex


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A 2x canvas background: two-colour gradient, soft blotches, a few blurred 'furniture' boxes, grain."""
    h, w = height * SS, width * SS
    c1, c2 = rng.uniform(30, 225, (2, 3))
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    g = np.clip(0.5 + (xx - 0.5) * np.cos(ang) + (yy - 0.5) * np.sin(ang), 0, 1)[..., None]
    img = c1 * g + c2 * (1 - g) + 40 * periodic_noise(rng, h, w, 4.0)[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = rng.uniform(0, 1, 2) * (w, h)
        bw, bh = rng.uniform(0.1, 0.4, 2) * (w, h)
        colour = rng.uniform(20, 235, 3).tolist()
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + bw), int(y0 + bh)), colour, -1)
    img = cv2.GaussianBlur(img, (0, 0), SS * 1.2)
    grain = 6 * periodic_noise(rng, h, w, 0.25 * min(h, w))[..., None]
    return np.clip(img + grain, 0, 255).astype(np.uint8)


def _wave(motion: dict[str, Any], name: str, tau: float) -> float:
    """A smooth trajectory: the sum of the sinusoids (amplitude, Hz, phase) stored under `name`."""
    return float(sum(a * np.sin(2 * np.pi * f * tau + p) for a, f, p in motion[name]))


def _waves(rng: np.random.Generator, amp: float, f_lo: float, f_hi: float, n: int = 2) -> list[list[float]]:
    share = rng.dirichlet(np.ones(n)) * amp
    return [[float(s), float(rng.uniform(f_lo, f_hi)), float(rng.uniform(0, 2 * np.pi))] for s in share]


SKIN = [(255, 224, 196), (234, 192, 134), (224, 172, 105), (198, 134, 66), (141, 85, 36), (90, 56, 37)]
HAIR = [(28, 24, 20), (70, 45, 25), (120, 80, 40), (215, 185, 120), (150, 60, 30), (170, 170, 175)]
CLOTH = [(200, 40, 40), (40, 80, 190), (40, 150, 70), (230, 200, 50), (240, 240, 235), (30, 30, 35),
         (150, 60, 160), (240, 130, 40), (90, 180, 200), (120, 90, 60)]
IRIS = [(95, 60, 30), (60, 100, 160), (75, 115, 70), (45, 32, 22)]
PATTERNS = ("stripes", "checks", "blotches")


def _clamp_into_frame(geom: Geometry, lo: np.ndarray, hi: np.ndarray, width: int, height: int) -> Geometry:
    """Shift every point so that the subject's extent [lo, hi] stays inside the frame (smooth in t)."""
    margin = 2.0
    d = np.zeros(2)
    for i, size in enumerate((width, height)):
        if hi[i] - lo[i] > size - 2 * margin:
            d[i] = (size - 1) / 2 - (lo[i] + hi[i]) / 2
        elif lo[i] < margin:
            d[i] = margin - lo[i]
        elif hi[i] > size - 1 - margin:
            d[i] = size - 1 - margin - hi[i]
    return {k: v + d if v.ndim == 2 and v.shape[-1] == 2 else v for k, v in geom.items()}


# ---------------------------------------------------------------------------------------------- faces
def sample_face_look(rng: np.random.Generator) -> dict[str, Any]:
    """Appearance parameters of one face identity (all a video of that person needs, with its seed)."""
    skin = _colour(rng, SKIN, 8)
    return {
        "skin": skin, "hair": _colour(rng, HAIR), "iris": _colour(rng, IRIS),
        "lips": [float(c) for c in np.clip(np.asarray(skin) * [0.85, 0.55, 0.55] + [25, 0, 5], 0, 255)],
        "shirt": [_colour(rng, CLOTH), _colour(rng, CLOTH)], "shirt_pattern": str(rng.choice(PATTERNS)),
        "hair_style": int(rng.integers(3)), "hairline": float(rng.uniform(-0.12, 0.12)),
        "eye_spacing": float(rng.uniform(0.34, 0.46)), "face_aspect": float(rng.uniform(0.76, 0.9)),
        "chin": float(rng.uniform(0.0, 0.25)), "mouth_width": float(rng.uniform(0.26, 0.36)),
        "brow_width": float(rng.uniform(0.04, 0.08)), "head_size": float(rng.uniform(0.92, 1.08)),
        "texture_seed": int(rng.integers(2**31)),
    }


def sample_face_motion(rng: np.random.Generator, width: int, height: int, duration: float) -> dict[str, Any]:
    """Trajectories of one face video: head translation, scale, roll/yaw/pitch, gaze, blinks, speech."""
    blinks = np.cumsum(rng.uniform(1.2, 4.0, int(duration / 1.2) + 2)) - rng.uniform(0.3, 1.5)
    return {
        "center": [width / 2 + rng.uniform(-0.06, 0.06) * width,
                   height / 2 + rng.uniform(-0.03, 0.03) * height],
        "x": _waves(rng, 0.06 * width, 0.1, 0.5), "y": _waves(rng, 0.035 * height, 0.1, 0.5),
        "scale": _waves(rng, 0.06, 0.1, 0.4), "roll": _waves(rng, 0.16, 0.1, 0.5),
        "yaw": _waves(rng, 0.45, 0.1, 0.5), "pitch": _waves(rng, 0.1, 0.1, 0.5),
        "gaze": _waves(rng, 0.8, 0.2, 0.8), "mouth": _waves(rng, 1.3, 1.0, 3.5, 3),
        "blinks": [float(b) for b in blinks], "blink_half_s": float(rng.uniform(0.08, 0.14)),
    }


def _face_points_3d(look: dict[str, Any], eye_open: float, mouth_open: float) -> np.ndarray:
    """The 68 iBUG landmarks in face units: x right, y down, z towards the camera; chin at y = 1."""
    es, mw, o = look["eye_spacing"], look["mouth_width"], 0.2 * mouth_open
    phi = np.linspace(0, np.pi, 17)
    jaw = np.stack([-np.cos(phi) * (1 - look["chin"] * np.sin(phi) ** 2), -0.15 + 1.15 * np.sin(phi),
                    0.7 * np.sin(phi) ** 2], 1)
    t = np.linspace(0, 1, 5)
    bx, by = -es - 0.3 + 0.52 * t, -0.47 - 0.08 * np.sin(np.pi * (0.25 + 0.75 * t))
    brows = np.stack([np.r_[bx, -bx[::-1]], np.r_[by, by[::-1]]], 1)
    nose = [[0, -0.25, 0.9], [0, -0.08, 1.0], [0, 0.08, 1.1], [0, 0.25, 1.25], [-0.17, 0.33, 0.95],
            [-0.09, 0.36, 1.02], [0, 0.38, 1.08], [0.09, 0.36, 1.02], [0.17, 0.33, 0.95]]
    up, lo, hw, ey = 0.085 * eye_open, 0.055 * eye_open, 0.16, -0.22
    eye = np.array([[-hw, 0], [-0.35 * hw, -up], [0.35 * hw, -up], [hw, 0], [0.35 * hw, lo],
                    [-0.35 * hw, lo]])
    eye_r = eye[[3, 2, 1, 0, 5, 4]] * [-1, 1]  # mirrored, so that 42 is the inner corner as in iBUG
    eyes = np.concatenate([eye + [-es, ey], eye_r + [es, ey]])
    my = 0.62
    outer = [[-1, 0], [-0.6, -0.06], [-0.22, -0.085], [0, -0.065], [0.22, -0.085], [0.6, -0.06], [1, 0],
             [0.6, 0.06 + 0.8 * o], [0.22, 0.08 + o], [0, 0.085 + o], [-0.22, 0.08 + o],
             [-0.6, 0.06 + 0.8 * o]]
    inner = [[-0.8, 0], [-0.35, -0.015], [0, -0.01], [0.35, -0.015], [0.8, 0], [0.35, 0.01 + 0.85 * o],
             [0, 0.01 + o], [-0.35, 0.01 + 0.85 * o]]
    mouth = np.array(outer + inner)
    mouth = mouth * [mw, 1] + [0, my]
    flat = np.concatenate([brows, eyes, mouth])
    flat = np.concatenate([flat, 0.9 * np.sqrt(np.clip(1 - flat[:, :1] ** 2, 0, 1))], 1)
    return np.concatenate([jaw, flat[:10], np.asarray(nose, np.float64), flat[10:]])


def _hair_shapes(look: dict[str, Any]) -> dict[str, np.ndarray]:
    """Hair polygons in face units (z 0: on the silhouette; the hairline follows the forehead)."""
    a = np.linspace(0.15, -np.pi - 0.15, 28)
    cap = np.stack([1.08 * np.cos(a), -0.15 + 1.3 * np.sin(a), np.zeros_like(a)], 1)
    hx = np.linspace(-1.0, 1.0, 9)
    hy = -0.05 - 0.8 * np.sqrt(np.clip(1 - hx**2, 0, 1)) ** 0.5 + look["hairline"] * hx
    line = np.stack([hx, hy, 0.6 * np.sqrt(np.clip(1 - hx**2, 0, 1))], 1)
    shapes = {"hair_front": np.concatenate([cap, line])}
    if look["hair_style"] == 1:
        a = np.linspace(0.3, -np.pi - 0.3, 28)
        back = np.stack([1.18 * np.cos(a), -0.15 + 1.36 * np.sin(a), np.full_like(a, -0.3)], 1)
        shapes["hair_back"] = np.concatenate([[[1.22, 1.35, -0.3]], back, [[-1.22, 1.35, -0.3]]])
    elif look["hair_style"] == 2:
        top = _ellipse(0.35 * np.sign(look["hairline"]), -1.3, 0.75, 0.28, 24)
        shapes["hair_top"] = np.concatenate([top, np.zeros((len(top), 1))], 1)
    return shapes


class FaceSubject:
    """A talking, turning, blinking head over a background; 68 iBUG landmarks per frame."""

    num_keypoints = 68
    subject_keys = ("kp", "face", "ear_l", "ear_r", "hair_front", "hair_back", "hair_top")

    def __init__(self, look: dict[str, Any], motion: dict[str, Any], width: int, height: int, fps: float,
                 bg: np.ndarray) -> None:
        self.look, self.motion, self.width, self.height, self.fps = look, motion, width, height, fps
        rng = np.random.default_rng(look["texture_seed"])
        self.skin_tex = skin_texture(rng, look["skin"])
        self.hair_tex = cloth_texture(rng, look["hair"], [c * 0.6 for c in look["hair"]], "blotches")
        self.shirt_tex = cloth_texture(rng, *look["shirt"], look["shirt_pattern"])
        self.bg = bg  # a 2x canvas from background()
        self.scale = 0.185 * min(width, height) * look["head_size"]
        self.hair = _hair_shapes(look)
        a = np.linspace(0, -np.pi, 24)[1:-1]
        self.forehead = np.stack([np.cos(a), -0.15 + 1.2 * np.sin(a), np.zeros_like(a)], 1)

    def geometry(self, t: int) -> Geometry:
        """Every point drawn at frame t, in full-frame pixels."""
        m, tau = self.motion, t / self.fps
        blink = max([np.cos(np.pi / 2 * (tau - b) / m["blink_half_s"]) ** 2 for b in m["blinks"]
                     if abs(tau - b) < m["blink_half_s"]] + [0.0])
        eye_open, mouth_open = 1 - 0.92 * blink, float(np.clip(_wave(m, "mouth", tau), 0, 1))
        s = self.scale * (1 + _wave(m, "scale", tau))
        c = np.array(m["center"]) + [_wave(m, "x", tau), _wave(m, "y", tau) + 0.22 * s]
        roll, yaw, pitch = _wave(m, "roll", tau), _wave(m, "yaw", tau), _wave(m, "pitch", tau)
        cw, sw, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        cr, sr = np.cos(roll), np.sin(roll)

        def project(p3: np.ndarray) -> np.ndarray:
            """Face units -> pixels: yaw about the vertical axis, pitch, then roll, scale and shift."""
            x, y, z = p3[:, 0] * self.look["face_aspect"], p3[:, 1], p3[:, 2]
            xr, zr = x * cw + z * sw, -x * sw + z * cw
            yr = y * cp + zr * sp
            return np.stack([c[0] + s * (cr * xr - sr * yr), c[1] + s * (sr * xr + cr * yr)], 1)

        p3 = _face_points_3d(self.look, eye_open, mouth_open)
        gaze = _wave(m, "gaze", tau) * 0.06
        irises = np.array([p3[36:42].mean(0), p3[42:48].mean(0)]) + [gaze, 0.01, 0.0]
        ear = _ellipse(0, 0.02, 0.13, 0.22, 16)
        geom = {"kp": project(p3), "face": project(np.concatenate([p3[:17], self.forehead])),
                "irises": project(irises), "sizes": np.array([s, roll])}
        for side, x in (("ear_l", -1.0), ("ear_r", 1.0)):
            geom[side] = project(np.concatenate([ear + [x, 0], np.full((16, 1), -0.1)], 1))
        geom.update({k: project(v) for k, v in self.hair.items()})
        # neck and shoulders follow the head's position but not its rotation
        body = np.array([[-0.48, 0.5], [0.48, 0.5], [0.55, 1.9], [-0.55, 1.9]])
        geom["neck"] = c + s * body
        geom["shoulders"] = c + s * _ellipse(0, 2.45, 2.6 * self.look["face_aspect"], 0.9, 40)
        geom["center"] = c[None]
        return _clamp_into_frame(geom, *self.extent(geom), self.width, self.height)

    def extent(self, g: Geometry) -> tuple[np.ndarray, np.ndarray]:
        """Top-left and bottom-right corners of the head (face, ears, hair); neck and shoulders left out."""
        pts = np.concatenate([g[k] for k in self.subject_keys if k in g])
        return pts.min(0), pts.max(0)

    def render(self, g: Geometry) -> np.ndarray:
        """The RGB frame (height, width, 3) uint8 of a geometry."""
        look, canvas = self.look, self.bg.copy()
        skin = np.asarray(look["skin"])
        s, roll = g["sizes"]
        c = g["center"][0]
        # the shirt's texture runs down the body (stripes across the chest) and moves with the head
        shirt_frame = _limb_frame(c, c + [0, 1], 200 / s, np.zeros(2))
        _fill_textured(canvas, g["shoulders"], self.shirt_tex, shirt_frame)
        _poly(canvas, g["neck"], tuple(skin * 0.8))
        rot = np.array([[np.cos(roll), np.sin(roll)], [-np.sin(roll), np.cos(roll)]]) * (80 / s)
        to_tex = np.concatenate([rot, (TEX / 2 - rot @ c)[:, None]], 1)
        if "hair_back" in g:
            _fill_textured(canvas, g["hair_back"], self.hair_tex, to_tex)
        for side in ("ear_l", "ear_r"):
            _poly(canvas, g[side], tuple(skin * 0.9))
            _line(canvas, g[side], tuple(skin * 0.7), 0.02 * s, closed=True)
        _fill_textured(canvas, g["face"], self.skin_tex, to_tex)
        _line(canvas, g["face"], tuple(skin * 0.75), 0.02 * s, closed=True)
        kp = g["kp"]
        for eye, iris in ((kp[36:42], g["irises"][0]), (kp[42:48], g["irises"][1])):
            self._eye(canvas, eye, iris, 0.075 * s, 0.015 * s)
        brow = tuple(np.asarray(look["hair"]) * 0.7)
        for sl in (slice(17, 22), slice(22, 27)):
            _line(canvas, kp[sl], brow, look["brow_width"] * s)
        _line(canvas, kp[27:31], tuple(skin * 0.82), 0.03 * s)
        _line(canvas, kp[31:36], tuple(skin * 0.6), 0.025 * s)
        for i in (32, 34):
            _disc(canvas, kp[i] + (kp[33] - kp[30]) * 0.1, 0.025 * s, tuple(skin * 0.4))
        _poly(canvas, kp[48:60], tuple(look["lips"]))
        if np.linalg.norm(kp[66] - kp[62]) > 0.02 * s:
            _poly(canvas, kp[60:68], (70, 20, 25))
            teeth = kp[60:65]
            drop = (kp[66] - kp[62]) * 0.35
            _poly(canvas, np.concatenate([teeth, teeth[::-1] + drop]), (235, 230, 215))
        _line(canvas, kp[48:60], tuple(np.asarray(look["lips"]) * 0.7), 0.015 * s, closed=True)
        for key in ("hair_front", "hair_top"):
            if key in g:
                _fill_textured(canvas, g[key], self.hair_tex, to_tex)
        return _downsample(canvas)

    def _eye(self, canvas: np.ndarray, eye: np.ndarray, iris: np.ndarray, r: float, lid: float) -> None:
        iris_col = tuple(self.look["iris"])

        def layer(patch: np.ndarray, origin: np.ndarray) -> None:
            ci = tuple(int(v) for v in _fx(iris) - origin)
            for rad, col in ((r, iris_col), (0.45 * r, (15, 12, 12))):
                cv2.circle(patch, ci, int(rad * SS * (1 << SHIFT)), col, -1, cv2.LINE_AA, SHIFT)
            hi = tuple(int(v) for v in _fx(iris + [-0.35 * r, -0.35 * r]) - origin)
            cv2.circle(patch, hi, int(0.22 * r * SS * (1 << SHIFT)), (250, 250, 250), -1, cv2.LINE_AA, SHIFT)

        _fill_textured(canvas, eye, (240, 238, 232), None, layer)
        _line(canvas, eye, (40, 30, 30), lid, closed=True)


# --------------------------------------------------------------------------------------------- bodies
# (a, b, radius at a, radius at b, texture) of each limb, in body units (standing height about 1)
LIMBS = (("r_hip", "r_knee", 0.05, 0.04, "pants"), ("r_knee", "r_ankle", 0.038, 0.03, "pants"),
         ("l_hip", "l_knee", 0.05, 0.04, "pants"), ("l_knee", "l_ankle", 0.038, 0.03, "pants"))
ARMS = (("r_shoulder", "r_elbow", 0.036, 0.029, "shirt"), ("r_elbow", "r_wrist", 0.028, 0.022, "sleeve"),
        ("l_shoulder", "l_elbow", 0.036, 0.029, "shirt"), ("l_elbow", "l_wrist", 0.028, 0.022, "sleeve"))
JOINTS = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
          "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")


def sample_body_look(rng: np.random.Generator) -> dict[str, Any]:
    """Appearance parameters of one body identity: clothes, colours, limb thickness, proportions."""
    return {
        "skin": _colour(rng, SKIN, 8), "hair": _colour(rng, HAIR), "shoes": _colour(rng, HAIR[:3]),
        "shirt": [_colour(rng, CLOTH), _colour(rng, CLOTH)], "shirt_pattern": str(rng.choice(PATTERNS)),
        "pants": [_colour(rng, CLOTH), _colour(rng, CLOTH)], "pants_pattern": str(rng.choice(PATTERNS)),
        "long_sleeves": bool(rng.integers(2)), "hair_style": int(rng.integers(2)),
        "limb_width": float(rng.uniform(0.85, 1.25)), "torso": float(rng.uniform(0.92, 1.08)),
        "legs": float(rng.uniform(0.92, 1.08)), "arms": float(rng.uniform(0.92, 1.08)),
        "shoulder_width": float(rng.uniform(0.9, 1.15)), "hip_width": float(rng.uniform(0.9, 1.2)),
        "head": float(rng.uniform(0.9, 1.1)), "texture_seed": int(rng.integers(2**31)),
    }


def sample_body_motion(rng: np.random.Generator, width: int, height: int, duration: float) -> dict[str, Any]:
    """Tai-chi-like trajectories: one slow base rhythm drives sway, squat, lean, arms and head."""
    def joint(lo: float, hi: float, amp: float) -> list[float]:
        """(mean, amplitude, phase) of an oscillation around a random mean."""
        return [float(rng.uniform(lo, hi)), float(rng.uniform(0.5, 1) * amp),
                float(rng.uniform(0, 2 * np.pi))]

    return {
        "ground": [width / 2 + rng.uniform(-0.08, 0.08) * width, height / 2 + 0.25 * min(width, height)],
        "freq": float(rng.uniform(0.25, 0.5)), "phase": float(rng.uniform(0, 2 * np.pi)),
        "sway": joint(-0.02, 0.02, 0.07), "squat": joint(0.0, 0.0, 0.06), "lean": joint(-0.02, 0.02, 0.08),
        "stance": float(rng.uniform(0.09, 0.15)), "step": joint(0.0, 0.0, 0.05),
        "r_arm": joint(0.5, 1.3, 0.8), "r_bend": joint(0.2, 1.0, 0.6),
        "l_arm": joint(0.5, 1.3, 0.8), "l_bend": joint(0.2, 1.0, 0.6),
        "head_yaw": joint(-0.1, 0.1, 0.5), "head_tilt": joint(-0.05, 0.05, 0.12),
    }


def _two_link(hip: np.ndarray, ankle: np.ndarray, l1: float, l2: float, outward: float) -> np.ndarray:
    """Knee position of a leg from hip to ankle (the knee bends towards `outward` x)."""
    d = ankle - hip
    dist = float(np.clip(np.linalg.norm(d), 1e-6, (l1 + l2) * 0.999))
    u = d / max(float(np.linalg.norm(d)), 1e-6)
    a = np.arccos(np.clip((l1**2 + dist**2 - l2**2) / (2 * l1 * dist), -1, 1))
    n = np.array([-u[1], u[0]])
    n = n if n[0] * outward >= 0 else -n
    return hip + l1 * (np.cos(a) * u + np.sin(a) * n)


class BodySubject:
    """An articulated figure with textured limbs doing slow tai-chi; 18 OpenPose joints per frame."""

    num_keypoints = 18
    subject_keys = ("kp", "head", "hair", "hair_back", "shoe_r", "shoe_l", "limbs", "torso", "hand_r",
                    "hand_l")

    def __init__(self, look: dict[str, Any], motion: dict[str, Any], width: int, height: int, fps: float,
                 bg: np.ndarray) -> None:
        self.look, self.motion, self.width, self.height, self.fps = look, motion, width, height, fps
        rng = np.random.default_rng(look["texture_seed"])
        self.tex = {"shirt": cloth_texture(rng, *look["shirt"], look["shirt_pattern"]),
                    "pants": cloth_texture(rng, *look["pants"], look["pants_pattern"]),
                    "skin": skin_texture(rng, look["skin"])}
        self.tex["sleeve"] = self.tex["shirt"] if look["long_sleeves"] else self.tex["skin"]
        self.offsets = rng.uniform(0, TEX, (len(LIMBS) + len(ARMS) + 1, 2))
        self.bg = bg  # a 2x canvas from background()
        self.scale = 0.5 * min(width, height)

    def geometry(self, t: int) -> Geometry:
        """Every point drawn at frame t, in full-frame pixels."""
        m, look = self.motion, self.look
        w = 2 * np.pi * m["freq"] * t / self.fps + m["phase"]

        def osc(name: str, harmonic: float = 1.0) -> float:
            mean, amp, ph = m[name]
            return mean + amp * np.sin(harmonic * w + ph)

        thigh = shin = 0.245 * look["legs"]
        step = osc("step", 0.5)
        # the feet stay planted; one of them slides out and back now and then (a step)
        j = {"r_ankle": np.array([-m["stance"] + min(step, 0), 0.0]),
             "l_ankle": np.array([m["stance"] + max(step, 0), 0.0])}
        squat = 0.5 * (1 - np.cos(2 * w + m["squat"][2])) * m["squat"][1]
        pelvis = np.array([osc("sway"), -(thigh + shin) * (0.95 - squat)])
        lean = osc("lean")
        up, right = np.array([np.sin(lean), -np.cos(lean)]), np.array([np.cos(lean), np.sin(lean)])
        j["neck"] = pelvis + 0.3 * look["torso"] * up
        hw, sw = 0.062 * look["hip_width"], 0.105 * look["shoulder_width"]
        j["r_hip"], j["l_hip"] = pelvis - hw * right, pelvis + hw * right
        j["r_shoulder"], j["l_shoulder"] = j["neck"] - sw * right, j["neck"] + sw * right
        j["r_knee"] = _two_link(j["r_hip"], j["r_ankle"], thigh, shin, -1)
        j["l_knee"] = _two_link(j["l_hip"], j["l_ankle"], thigh, shin, 1)
        upper, fore = 0.165 * look["arms"], 0.155 * look["arms"]
        for side, sign in (("r", -1), ("l", 1)):
            th, bend = osc(f"{side}_arm"), osc(f"{side}_bend")
            j[f"{side}_elbow"] = j[f"{side}_shoulder"] + upper * np.array([sign * np.sin(th), np.cos(th)])
            fore_dir = np.array([sign * np.sin(th - bend), np.cos(th - bend)])
            j[f"{side}_wrist"] = j[f"{side}_elbow"] + fore * fore_dir
        r = 0.062 * look["head"]
        tilt, yaw = osc("head_tilt"), osc("head_yaw")
        hup = np.array([np.sin(lean + tilt), -np.cos(lean + tilt)])
        hright = np.array([-hup[1], hup[0]])
        hc = j["neck"] + (0.045 + r) * hup
        j["nose"] = hc + r * (0.9 * np.sin(yaw) * hright - 0.15 * hup)
        for side, sign in (("r", -1), ("l", 1)):
            j[f"{side}_eye"] = hc + r * ((sign * 0.38 * np.cos(yaw) + 0.8 * np.sin(yaw)) * hright + 0.2 * hup)
            ear_x = sign * 0.97 * np.cos(yaw) - 0.2 * np.sin(yaw)
            j[f"{side}_ear"] = hc + r * (ear_x * hright + 0.05 * hup)
        frame = np.stack([hright, -hup])

        def head_shape(cx: float, cy: float, rx: float, ry: float, n: int = 28, a0: float = 0,
                       a1: float = 2 * np.pi) -> np.ndarray:
            return hc + (_ellipse(cx, cy, rx, ry, n, a0, a1) * r) @ frame

        g0 = np.array(m["ground"])
        units = {"kp": np.stack([j[k] for k in JOINTS]), "head": head_shape(0, 0, 0.85, 1.0),
                 "hair": head_shape(0, -0.05, 0.92, 1.08, 20, np.pi * 1.05, np.pi * 1.95)}
        if look["hair_style"] == 1:
            units["hair_back"] = head_shape(0, 0.5, 0.95, 1.35)
        for side in ("r", "l"):
            units[f"shoe_{side}"] = _ellipse(*(j[f"{side}_ankle"] + [0, 0.03]), 0.045, 0.025, 16)
        lw = look["limb_width"]
        limbs = [_capsule(j[a], j[b], ra * lw, rb * lw) for a, b, ra, rb, _ in LIMBS + ARMS]
        units["limbs"] = np.concatenate(limbs)
        units["torso"] = np.stack([
            j["r_shoulder"] - 0.03 * right + 0.01 * up, j["l_shoulder"] + 0.03 * right + 0.01 * up,
            j["l_hip"] + 0.035 * right + 0.03 * up, j["l_hip"] + 0.025 * right - 0.03 * up,
            j["r_hip"] - 0.025 * right - 0.03 * up, j["r_hip"] - 0.035 * right + 0.03 * up])
        for side in ("r", "l"):
            d = j[f"{side}_wrist"] - j[f"{side}_elbow"]
            hand = j[f"{side}_wrist"] + d / max(float(np.linalg.norm(d)), 1e-6) * 0.025
            units[f"hand_{side}"] = _ellipse(*hand, 0.03 * lw, 0.03 * lw, 16)
        geom = {k: g0 + self.scale * v for k, v in units.items()}
        geom["sizes"] = np.array([self.scale * r])
        return _clamp_into_frame(geom, *self.extent(geom), self.width, self.height)

    def extent(self, g: Geometry) -> tuple[np.ndarray, np.ndarray]:
        """Top-left and bottom-right corners of the figure (limbs, head, hands, feet; ears included)."""
        pts = np.concatenate([g[k] for k in self.subject_keys if k in g])
        ear = 0.2 * g["sizes"][0]
        return np.minimum(pts.min(0), g["kp"].min(0) - ear), np.maximum(pts.max(0), g["kp"].max(0) + ear)

    def render(self, g: Geometry) -> np.ndarray:
        """The RGB frame (height, width, 3) uint8 of a geometry."""
        look, kp, s = self.look, g["kp"], self.scale
        canvas = self.bg.copy()
        skin, hair = np.asarray(look["skin"]), tuple(look["hair"])
        idx = {name: i for i, name in enumerate(JOINTS)}
        k = 600 / s
        if "hair_back" in g:
            _poly(canvas, g["hair_back"], hair)
        limbs = np.split(g["limbs"], len(LIMBS) + len(ARMS))
        for i, (a, b, *_, tex) in enumerate(LIMBS):
            to_tex = _limb_frame(kp[idx[a]], kp[idx[b]], k, self.offsets[i])
            _fill_textured(canvas, limbs[i], self.tex[tex], to_tex)
        for side in ("shoe_r", "shoe_l"):
            _poly(canvas, g[side], tuple(look["shoes"]))
        to_tex = _limb_frame(kp[1], (kp[8] + kp[11]) / 2, k, self.offsets[-1])
        _fill_textured(canvas, g["torso"], self.tex["shirt"], to_tex)
        neck = _capsule(kp[1], kp[1] + (kp[0] - kp[1]) * 0.6, 0.028 * s, 0.028 * s)
        _poly(canvas, neck, tuple(skin * 0.85))
        for ear in (kp[16], kp[17]):
            _disc(canvas, ear, 0.18 * g["sizes"][0], tuple(skin * 0.85))
        _poly(canvas, g["head"], tuple(skin))
        _poly(canvas, g["hair"], hair)
        for eye in (kp[14], kp[15]):
            _disc(canvas, eye, 0.12 * g["sizes"][0], (30, 25, 25))
        _disc(canvas, kp[0], 0.1 * g["sizes"][0], tuple(skin * 0.7))
        for i, (a, b, *_, tex) in enumerate(ARMS, start=len(LIMBS)):
            to_tex = _limb_frame(kp[idx[a]], kp[idx[b]], k, self.offsets[i])
            _fill_textured(canvas, limbs[i], self.tex[tex], to_tex)
        for side in ("hand_r", "hand_l"):
            _poly(canvas, g[side], tuple(skin))
        return _downsample(canvas)
