"""The synthetic face of `animbench synth`: iBUG-68 landmarks, turning, blinking and talking."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from prep.synth_draw import (
    CLOTH,
    HAIR,
    IRIS,
    PATTERNS,
    SHIFT,
    SKIN,
    SS,
    TEX,
    Geometry,
    _clamp_into_frame,
    _colour,
    _disc,
    _downsample,
    _ellipse,
    _fill_textured,
    _fx,
    _limb_frame,
    _line,
    _poly,
    _wave,
    _waves,
    cloth_texture,
    skin_texture,
)


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

    def render_mask(self, g: Geometry) -> np.ndarray:
        """The subject's foreground (height, width) uint8 of a geometry: 255 on every pixel `render` draws the
        person on (shoulders, neck, ears, face, hair), 0 on the background, antialiased as the frame is."""
        s = g["sizes"][0]
        canvas = np.zeros(self.bg.shape[:2], np.uint8)
        for key in ("shoulders", "neck", "hair_back", "ear_l", "ear_r", "face", "hair_front", "hair_top"):
            if key in g:
                _poly(canvas, g[key], (255,))
        for key, width in (("ear_l", 0.02 * s), ("ear_r", 0.02 * s), ("face", 0.02 * s)):
            _line(canvas, g[key], (255,), width, closed=True)
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
