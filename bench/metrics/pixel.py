"""Pixel metrics on [0,1] RGB values: L1 (FOMM's reconstruction metric), PSNR and SSIM (Wang et al. 2004).

All take uint8 (N, H, W, 3) frames as stored and return one value per frame. SSIM runs in torch (batched,
CPU or GPU) and matches scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1.0, channel_axis=-1)` to float64 precision.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.metrics.registry import check_frames, register_metric
from bench.results import PSNR_CAP_DB, psnr_from_mse
from methods.infer import l1_per_frame
from plumbing.errors import AnimbenchError

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scikit-image's choice: radius int(3.5 * 1.5 + 0.5) = 5, an 11-tap window
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@register_metric(
    "l1", kind="paired", higher_is_better=False, backend="numpy",
    settings={"value_range": "[0,1]", "reduce": "mean over C*H*W per frame"},
    protocol_notes=(
        "FOMM reconstruction L1: mean |pred - gt| over C*H*W on [0,1] values, per frame. FOMM averages over all "
        "frames of all videos (frame-weighted); Monkey-Net averages per-video means (video-weighted): the "
        "runner's aggregation choice. As in FOMM, the bench scores the float generator output (pred float32 in "
        "[0,1]) against the stored uint8 ground truth / 255; uint8 pred is accepted too."
    ),
    float_input=True,
)
def l1(pred: np.ndarray, gt: np.ndarray, *, chunk: int = 64) -> np.ndarray:
    """Per-frame mean absolute difference on [0,1] values, shape (N,); pred uint8 or float32 in [0,1]."""
    check_frames(pred, gt, metric="l1", float_pred=True)
    out = np.empty(len(pred), np.float64)
    if pred.dtype == np.float32:
        for s in _chunks(len(pred), chunk):
            # float32 throughout, as FOMM: sigmoid output vs img_as_float32(gt) (= uint8 / 255 in float32); the
            # same function `animbench reconstruct` scores with, so both report one number
            out[s] = l1_per_frame(pred[s], gt[s])
        return out
    for s in _chunks(len(pred), chunk):
        diff = np.abs(pred[s].astype(np.int16) - gt[s].astype(np.int16))
        out[s] = diff.reshape(len(diff), -1).mean(axis=1, dtype=np.float64) / 255.0
    return out


@register_metric(
    "psnr", kind="paired", higher_is_better=True, backend="numpy",
    settings={"data_range": 1.0, "channels": "RGB", "crop_border": 0, "cap_db": PSNR_CAP_DB,
              "pooling": "psnr of the mean squared error"},
    protocol_notes=(
        f"10*log10(1/MSE) per frame on [0,1] RGB values, capped at {PSNR_CAP_DB:g} dB: identical frames "
        "(copy-source's frame 0, the oracle) get the cap instead of +inf (scikit-image's value). Means pool the "
        "mean squared error, not the dB values: a video's PSNR is that of its mean squared error over frames "
        "(the frame-weighted mean: of all frames' mean squared error), so one identical frame cannot outweigh "
        "the rest of a video."
    ),
    pooling="psnr",
)
def psnr(pred: np.ndarray, gt: np.ndarray, *, chunk: int = 64) -> np.ndarray:
    """Per-frame PSNR in dB with data range 1 on [0,1] RGB values, capped at PSNR_CAP_DB, shape (N,)."""
    check_frames(pred, gt, metric="psnr")
    mse = np.empty(len(pred), np.float64)
    for s in _chunks(len(pred), chunk):
        diff = pred[s].astype(np.int32) - gt[s].astype(np.int32)
        mse[s] = (diff * diff).reshape(len(diff), -1).mean(axis=1, dtype=np.float64) / (255.0 * 255.0)
    return psnr_from_mse(mse)


def _gaussian_taps(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # scipy.ndimage's kernel: exp(-x^2 / 2 sigma^2) on integer offsets, normalised to sum 1
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=dtype, device=device)
    taps = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return taps / taps.sum()


def _filter_valid(m: torch.Tensor, taps: torch.Tensor, dim: int) -> torch.Tensor:
    # a valid 1-D correlation as an in-place weighted sum of shifted slices: in float64 this is several
    # times faster on CPU than conv2d (no optimised double kernels) and gives the same numbers
    n = m.shape[dim] - len(taps) + 1
    out = m.narrow(dim, 0, n) * taps[0]
    for k in range(1, len(taps)):
        out.add_(m.narrow(dim, k, n), alpha=float(taps[k]))
    return out


def ssim_map_mean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image of (B, C, H, W) tensors on [0,1], channels averaged, border of 5 px excluded."""
    b, c = x.shape[:2]
    taps = _gaussian_taps(x.dtype, x.device)
    # five moments, filtered separably; a valid filter yields exactly the interior that scikit-image keeps
    # after cropping (win_size - 1) // 2 pixels, so its reflect padding never matters
    moments = torch.stack([x, y, x * x, y * y, x * y])
    moments = _filter_valid(_filter_valid(moments, taps, dim=3), taps, dim=4)
    ux, uy, uxx, uyy, uxy = moments.unbind(dim=0)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy  # population covariance (Wang et al.)
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # (K * data_range)^2 with data_range 1
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(b, c, -1).mean(dim=2).mean(dim=1)


def _to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    return t.permute(0, 3, 1, 2).to(torch.float64).contiguous() / 255.0


@register_metric(
    "ssim", kind="paired", higher_is_better=True, backend="torch",
    settings={"window": "gaussian", "win_size": 2 * SSIM_RADIUS + 1, "sigma": SSIM_SIGMA, "K1": SSIM_K1,
              "K2": SSIM_K2, "data_range": 1.0, "covariance": "population", "channels": "RGB averaged",
              "border": "cropped by (win_size-1)//2", "dtype": "float64",
              "matches": "skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, "
                         "use_sample_covariance=False, data_range=1.0, channel_axis=-1)"},
    protocol_notes="Wang et al. 2004 SSIM on RGB channels (not the Y channel), averaged; animation papers "
                   "rarely state their SSIM settings, so compare published SSIM values with care.",
)
def ssim(pred: np.ndarray, gt: np.ndarray, *, device: str = "cpu", chunk: int | None = None) -> np.ndarray:
    """Per-frame SSIM (Gaussian 11x11, sigma 1.5, data range 1) on RGB channels averaged, shape (N,)."""
    check_frames(pred, gt, metric="ssim")
    if min(pred.shape[1:3]) < 2 * SSIM_RADIUS + 1:
        raise AnimbenchError(f"ssim: frames {pred.shape[1]}x{pred.shape[2]} are smaller than the 11x11 window")
    dev = torch.device(device)
    # one frame at a time keeps the float64 moments in cache on CPU; a GPU wants big batches
    chunk = chunk or (1 if dev.type == "cpu" else 32)
    out = np.empty(len(pred), np.float64)
    with torch.inference_mode():
        for s in _chunks(len(pred), chunk):
            out[s] = ssim_map_mean(_to_tensor(pred[s], dev), _to_tensor(gt[s], dev)).cpu().numpy()
    return out
