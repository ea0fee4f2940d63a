"""OpenFace nn4.small2.v1 (the thnkim/OpenFacePytorch port @ d002218): the AED-face embedder of pose-evaluation.

State-dict keys and shapes equal the port's (`layerN.*`, `layerN.seq_list.<branch>.<k_name>.*`), so the
original `openface.pth` loads unchanged. The port's cross-map LRN has an off-by-one bug (channel 0's square
stays in the running sum for every channel >= 3); the legacy variant keeps it, the clean one uses the correct
LRN of the Lua original.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from skimage.transform import resize
from torch import nn

from bench.backends import load_exact, read_state_dict
from bench.protocols import check_variant
from plumbing import weights

WEIGHT_FILE = "openface.pth"
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 1.0


class PortLRN(nn.Module):
    """The port's cross-map LRN: out_c = x_c (k + a/n (sum_{|d|<=2} x_{c+d}^2 + [c>=3] x_0^2))^-b."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> (B,C,H,W) normalised across channels."""
        sq = x.pow(2)
        window = F.avg_pool3d(F.pad(sq, (0, 0, 0, 0, LRN_SIZE // 2, LRN_SIZE // 2)).unsqueeze(1),
                              (LRN_SIZE, 1, 1), stride=1).squeeze(1) * LRN_SIZE
        stale = torch.zeros_like(sq)
        stale[:, 3:] = sq[:, :1]  # the bug: channel 0 is never removed from the running sum
        return x * (LRN_K + LRN_ALPHA / LRN_SIZE * (window + stale)).pow(-LRN_BETA)


def _conv_bn_relu(names: tuple[str, str, str], cin: int, cout: int, k: int, stride: int = 1) -> list:
    return [(names[0], nn.Conv2d(cin, cout, k, stride, k // 2)), (names[1], nn.BatchNorm2d(cout)),
            (names[2], nn.ReLU())]


class Inception(nn.Module):
    """An nn4 inception block: branches [3x3, 5x5, pool, 1x1] (absent ones skipped), centred zero-pad, concat."""

    def __init__(self, cin: int, conv3: tuple[int, int, int] | None, conv5: tuple[int, int, int] | None,
                 pool: nn.Module, pool_proj: int | None, conv1: int | None):
        super().__init__()
        branches = []
        for spec, k in ((conv3, 3), (conv5, 5)):
            if spec is not None:
                reduce, out, stride = spec
                branches.append(nn.Sequential(OrderedDict(
                    _conv_bn_relu(("1_conv", "2_bn", "3_relu"), cin, reduce, 1)
                    + _conv_bn_relu(("4_conv", "5_bn", "6_relu"), reduce, out, k, stride))))
        pool_layers = [("1_pool", pool)]
        if pool_proj is not None:
            pool_layers += _conv_bn_relu(("2_conv", "3_bn", "4_relu"), cin, pool_proj, 1)
        branches.append(nn.Sequential(OrderedDict(pool_layers)))
        if conv1 is not None:
            branches.append(nn.Sequential(OrderedDict(_conv_bn_relu(("1_conv", "2_bn", "3_relu"), cin, conv1, 1))))
        self.seq_list = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,Cin,H,W) -> (B,sum of branch widths,H',W'), H' the largest branch output."""
        outs = [branch(x) for branch in self.seq_list]
        h = max(o.shape[2] for o in outs)
        w = max(o.shape[3] for o in outs)
        padded = []
        for o in outs:
            dh, dw = h - o.shape[2], w - o.shape[3]
            padded.append(F.pad(o, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)))
        return torch.cat(padded, 1)


def _lp_pool() -> nn.Module:
    return nn.LPPool2d(2, 3, stride=3)  # sqrt of the sum of squares over an unpadded 3x3 window


class OpenFaceNet(nn.Module):
    """nn4.small2.v1: (B,3,96,96) in [0,1] -> (emb (B,128) L2-normalised, f736 (B,736))."""

    def __init__(self, lrn: str = "port"):
        super().__init__()
        if lrn not in ("port", "correct"):
            raise ValueError(f"lrn must be 'port' or 'correct', got {lrn!r}")

        def make_lrn() -> nn.Module:
            return PortLRN() if lrn == "port" else nn.LocalResponseNorm(LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K)

        self.layer1 = nn.Conv2d(3, 64, 7, 2, 3)
        self.layer2 = nn.BatchNorm2d(64)
        self.layer3 = nn.ReLU()
        self.layer4 = nn.MaxPool2d(3, 2, 1)
        self.layer5 = make_lrn()
        self.layer6 = nn.Conv2d(64, 64, 1)
        self.layer7 = nn.BatchNorm2d(64)
        self.layer8 = nn.ReLU()
        self.layer9 = nn.Conv2d(64, 192, 3, 1, 1)
        self.layer10 = nn.BatchNorm2d(192)
        self.layer11 = nn.ReLU()
        self.layer12 = make_lrn()
        self.layer13 = nn.MaxPool2d(3, 2, 1)
        self.layer14 = Inception(192, (96, 128, 1), (16, 32, 1), nn.MaxPool2d(3, 2), 32, 64)  # 3a -> 256x12x12
        self.layer15 = Inception(256, (96, 128, 1), (32, 64, 1), _lp_pool(), 64, 64)  # 3b -> 320x12x12
        self.layer16 = Inception(320, (128, 256, 2), (32, 64, 2), nn.MaxPool2d(3, 2), None, None)  # 3c -> 640x6x6
        self.layer17 = Inception(640, (96, 192, 1), (32, 64, 1), _lp_pool(), 128, 256)  # 4a -> 640x6x6
        self.layer18 = Inception(640, (160, 256, 2), (64, 128, 2), nn.MaxPool2d(3, 2), None, None)  # 4e -> 1024x3x3
        self.layer19 = Inception(1024, (96, 384, 1), None, _lp_pool(), 96, 256)  # 5a -> 736x3x3
        self.layer21 = Inception(736, (96, 384, 1), None, nn.MaxPool2d(3, 2), 96, 256)  # 5b -> 736x3x3
        self.layer22 = nn.AvgPool2d(3, 1)
        self.layer25 = nn.Linear(736, 128)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed a batch; 128-px inputs are first brought to 96 px as the port does (nearest x3, avg-pool 4)."""
        if x.shape[-1] == 128:
            x = F.avg_pool2d(F.interpolate(x, scale_factor=3, mode="nearest"), 4)
        for i in range(1, 23):
            if hasattr(self, f"layer{i}"):
                x = getattr(self, f"layer{i}")(x)
        f736 = x.flatten(1)
        y = self.layer25(f736)
        emb = y / torch.sqrt((y * y).sum(1, keepdim=True) + 1e-6)
        return emb, f736


def preprocess(frames: np.ndarray, variant: str) -> torch.Tensor:
    """uint8 RGB (N,H,W,3) -> float32 (N,3,96,96) in [0,1], as pose-evaluation feeds OpenFace (see describe)."""
    out = np.empty((len(frames), 96, 96, 3), np.float64)
    for i, frame in enumerate(frames):
        if variant == "legacy":
            # the quirk: BGR into a net trained on RGB; scikit-image 0.14 defaults (no anti-aliasing)
            out[i] = resize(frame[..., ::-1], (96, 96), order=1, mode="constant", anti_aliasing=False)
        else:
            out[i] = resize(frame, (96, 96), order=1, mode="reflect", anti_aliasing=True)
    return torch.from_numpy(out.transpose(0, 3, 1, 2).astype(np.float32))


class OpenFaceEmbedder:
    """128-d L2-normalised OpenFace embeddings of whole frames (no face detection, as pose-evaluation)."""

    def __init__(self, variant: str = "legacy", device: str = "cpu", verify_hash: bool = True):
        check_variant(variant, "OpenFace: variant")
        self.weight_path = path = weights.locate(WEIGHT_FILE, verify_hash=verify_hash)
        self.variant, self.device = variant, torch.device(device)
        self.net = OpenFaceNet(lrn="port" if variant == "legacy" else "correct")
        load_exact(self.net, read_state_dict(path), path)
        self.net.eval().to(self.device)

    @torch.no_grad()
    def embed(self, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 RGB (N,H,W,3) -> (N,128) float32 embeddings (output[0] of the port)."""
        out = []
        for start in range(0, len(frames), batch_size):
            x = preprocess(frames[start:start + batch_size], self.variant).to(self.device)
            out.append(self.net(x)[0].cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 128), np.float32)
