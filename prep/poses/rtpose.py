"""rtpose body model (CMU OpenPose VGG-19, 6-stage CPM; the PyTorch port @ 257d8b4) and pose-evaluation's decode.

Prep's `--poses rtpose` detector (prep/poses/detectors.py) and the bench's AKD / MKR / pose distance
(bench/backends/rtpose.py re-exports this module) share this one network and decode.

Keys are `model0.<i>.*` (VGG-19 front to conv4_4_CPM, stride 8) and `model{t}_{1,2}.<i>.*` (branch 1: 38 PAF
channels, branch 2: 19 heatmaps, 18 joints + background). Only the heatmaps and thre1 decide the keypoints that
AKD/MKR compare: pose-evaluation discards the person grouping and keeps, per joint type, the last peak in raster
order. Joint order: nose, neck, R-shoulder, R-elbow, R-wrist, L-shoulder, L-elbow, L-wrist, R-hip, R-knee,
R-ankle, L-hip, L-knee, L-ankle, R-eye, L-eye, R-ear, L-ear.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.ndimage import generate_binary_structure, maximum_filter
from torch import nn

from plumbing import weights
from plumbing.errors import AnimbenchError
from plumbing.state_dicts import load_exact, read_state_dict

WEIGHT_FILE = "pose_model.pth"
NUM_JOINTS = 18
BOXSIZE = 368  # network input height
STRIDE = 8
THRE1 = 0.1  # heatmap peak threshold (thre2 / thre3 only affect the discarded person grouping)
# left/right heatmap channel swap for flip averaging (background last)
SWAP_HEAT = np.array((0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16, 18))
_VGG = ((3, 64), (64, 64), "pool", (64, 128), (128, 128), "pool", (128, 256), (256, 256), (256, 256), (256, 256),
        "pool", (256, 512), (512, 512), (512, 256), (256, 128))  # ... conv4_2, conv4_3_CPM, conv4_4_CPM


def _sequential(layers: list[nn.Module]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((str(i), m) for i, m in enumerate(layers)))


def _stage(cin: int, cout: int, first: bool) -> nn.Sequential:
    if first:  # 3 x conv3x3 128, conv1x1 512, conv1x1 out
        convs = [nn.Conv2d(cin, 128, 3, 1, 1), nn.Conv2d(128, 128, 3, 1, 1), nn.Conv2d(128, 128, 3, 1, 1),
                 nn.Conv2d(128, 512, 1), nn.Conv2d(512, cout, 1)]
    else:  # 5 x conv7x7 128, conv1x1 128, conv1x1 out
        convs = [nn.Conv2d(cin if i == 0 else 128, 128, 7, 1, 3) for i in range(5)]
        convs += [nn.Conv2d(128, 128, 1), nn.Conv2d(128, cout, 1)]
    layers: list[nn.Module] = []
    for i, conv in enumerate(convs):
        layers.append(conv)
        if i < len(convs) - 1:
            layers.append(nn.ReLU(inplace=True))
    return _sequential(layers)


class RtPoseNet(nn.Module):
    """(B,3,H,W) BGR/256-0.5 -> (paf (B,38,H/8,W/8), heat (B,19,H/8,W/8)) after stage 6."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        for item in _VGG:
            if item == "pool":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(item[0], item[1], 3, 1, 1), nn.ReLU(inplace=True)]
        self.model0 = _sequential(layers)
        # registration order = the original's state_dict order: all PAF branches, then all heatmap branches
        for branch, cout in ((1, 38), (2, 19)):
            for t in range(1, 7):
                setattr(self, f"model{t}_{branch}", _stage(128 if t == 1 else 185, cout, first=t == 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage-6 outputs; feature F is (B,128,H/8,W/8)."""
        feature = self.model0(x)
        paf, heat = self.model1_1(feature), self.model1_2(feature)
        for t in range(2, 7):
            stage_in = torch.cat([paf, heat, feature], 1)  # [PAF, heat, F]: the 185-channel order
            paf, heat = getattr(self, f"model{t}_1")(stage_in), getattr(self, f"model{t}_2")(stage_in)
        return paf, heat


def network_input(bgr: np.ndarray, boxsize: int = BOXSIZE) -> tuple[np.ndarray, tuple[int, int]]:
    """BGR uint8 (H,W,3) -> (3,H',W') float32 at boxsize/min(H,W) scale, zero-padded to x8; and the real size."""
    scale = boxsize / min(bgr.shape[:2])
    im = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    h, w = im.shape[:2]
    padded = np.zeros((-(-h // STRIDE) * STRIDE, -(-w // STRIDE) * STRIDE, 3), im.dtype)
    padded[:h, :w] = im
    return (padded.astype(np.float32) / 256.0 - 0.5).transpose(2, 0, 1), (h, w)


def upsample_maps(maps: np.ndarray, real_hw: tuple[int, int], frame_hw: tuple[int, int]) -> np.ndarray:
    """(h/8, w/8, C) net output -> (H, W, C): bicubic x8, crop the padding, bicubic to the frame size."""
    out = cv2.resize(maps, None, fx=STRIDE, fy=STRIDE, interpolation=cv2.INTER_CUBIC)
    out = out[:real_hw[0], :real_hw[1]]
    return cv2.resize(out, (frame_hw[1], frame_hw[0]), interpolation=cv2.INTER_CUBIC)


def flip_average(heat: np.ndarray, heat_flipped: np.ndarray) -> np.ndarray:
    """Average (H,W,19) heatmaps with those of the mirrored image, mirrored back with left/right swapped.

    (The original also averages the PAFs; they only feed the person grouping, which the metrics discard.)
    """
    return (heat + heat_flipped[:, ::-1][..., SWAP_HEAT]) / 2.0


def joints_from_heatmaps(heat: np.ndarray, thre1: float = THRE1) -> np.ndarray:
    """(H,W,>=18) heatmaps -> (18,2) float64 (x,y) pixels; missing joints (-1,-1); the last raster peak wins.

    A peak equals its 4-neighbourhood maximum (scipy 'reflect' borders) and exceeds thre1; it then moves to the
    arg-max of the 5x5 patch around it (clipped at the borders), as decode_pose does at upsampling factor 1.
    """
    joints = -np.ones((NUM_JOINTS, 2))
    footprint = generate_binary_structure(2, 1)
    h, w = heat.shape[:2]
    for j in range(NUM_JOINTS):
        hm = heat[..., j]
        ys, xs = np.nonzero((maximum_filter(hm, footprint=footprint) == hm) & (hm > thre1))
        if len(ys) == 0:
            continue
        # peaks come in row-major order and each overwrites the previous one: only the last survives
        y, x = int(ys[-1]), int(xs[-1])
        y0, x0 = max(0, y - 2), max(0, x - 2)
        patch = hm[y0:min(h - 1, y + 2) + 1, x0:min(w - 1, x + 2) + 1]
        dy, dx = np.unravel_index(np.argmax(patch), patch.shape)
        joints[j] = (x0 + dx, y0 + dy)
    return joints


def load_weights(net: RtPoseNet, path: str | Path) -> None:
    """Load a pose_model.pth state_dict into `net`: every key and shape must match (one-line error otherwise)."""
    load_exact(net, read_state_dict(path), path)


class RtPoseKeypoints:
    """18 body joints per frame, exactly as pose-evaluation's extract_body_pose (BGR, 368 px, flip-averaged)."""

    def __init__(self, device: str = "cpu", verify_hash: bool = True, boxsize: int = BOXSIZE):
        self.weight_path = path = weights.locate(WEIGHT_FILE, verify_hash=verify_hash)
        if boxsize % STRIDE:
            raise AnimbenchError(f"rtpose: boxsize {boxsize} must be a multiple of {STRIDE}")
        self.device, self.boxsize = torch.device(device), boxsize
        self.net = RtPoseNet()
        load_weights(self.net, path)
        self.net.eval().to(self.device)

    @torch.no_grad()
    def heatmaps(self, frame: np.ndarray) -> np.ndarray:
        """uint8 RGB (H,W,3) -> flip-averaged (H,W,19) float64 heatmaps at frame resolution."""
        bgr = np.ascontiguousarray(frame[..., ::-1])
        x, real_hw = network_input(bgr, self.boxsize)
        x_flip, _ = network_input(np.ascontiguousarray(bgr[:, ::-1]), self.boxsize)
        _, heat = self.net(torch.from_numpy(np.stack([x, x_flip])).to(self.device))
        # float64 like the original accumulator (np.zeros + map / len(multiplier))
        maps = [upsample_maps(h.transpose(1, 2, 0), real_hw, frame.shape[:2]).astype(np.float64)
                for h in heat.cpu().numpy()]
        return flip_average(maps[0], maps[1])

    def keypoints(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB (N,H,W,3) -> (N,18,2) float64 joint (x,y); (-1,-1) where a joint is not detected."""
        out = np.empty((len(frames), NUM_JOINTS, 2))
        for i, frame in enumerate(frames):
            out[i] = joints_from_heatmaps(self.heatmaps(frame))
        return out
