"""The synthetic tai-chi body of `animbench synth`: OpenPose-18 joints, textured limbs."""

from __future__ import annotations

from typing import Any

import numpy as np

from prep.synth_draw import (
    CLOTH,
    HAIR,
    PATTERNS,
    SKIN,
    TEX,
    Geometry,
    _capsule,
    _clamp_into_frame,
    _colour,
    _disc,
    _downsample,
    _ellipse,
    _fill_textured,
    _limb_frame,
    _poly,
    cloth_texture,
    skin_texture,
)

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
