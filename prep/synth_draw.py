"""Drawing primitives, textures and palettes shared by the synthetic subjects (synth_face, synth_body):
drawn with OpenCV at 2x and downsampled (antialiasing).

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
