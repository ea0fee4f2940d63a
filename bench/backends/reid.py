"""layumi ft_net re-id (Person_reID_baseline_pytorch @ 2a5a656): the AED-body embedder of pose-evaluation.

The network is torchvision's ResNet-50 under the prefix `model.`, with the pinned bottleneck `model.fc`
(Linear 2048->512, BN1d, LeakyReLU 0.1, Dropout) and `classifier` (Linear 512->751). pose-evaluation loads the
whole file and then replaces both heads by identities, so the embedding is the 2048-d average-pooled layer4
feature. Files from the 2022 layout (`classifier.add_block`, a 1000-way `model.fc`) load too: the heads are
discarded either way, only the trunk keys must match.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.models import resnet50

from bench.backends import load_exact, read_state_dict
from bench.protocols import check_variant
from plumbing import weights

WEIGHT_FILE = "reid_model.pth"
NUM_CLASSES = 751  # Market-1501 training identities
INPUT_HW = (288, 144)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FtNet(nn.Module):
    """ft_net(751) at the pinned commit; `strip_heads()` turns it into the 2048-d feature extractor."""

    def __init__(self, class_num: int = NUM_CLASSES):
        super().__init__()
        self.model = resnet50(weights=None)  # built offline; the file's weights replace everything
        self.model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.model.fc = nn.Sequential(nn.Linear(2048, 512), nn.BatchNorm1d(512), nn.LeakyReLU(0.1), nn.Dropout(0.5))
        self.classifier = nn.Sequential(nn.Linear(512, class_num))

    def strip_heads(self) -> FtNet:
        """Replace model.fc and classifier by identities, as pose-evaluation does after loading."""
        self.model.fc = nn.Sequential()
        self.classifier = nn.Sequential()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,288,144) -> classifier(model(x)); (B,2048) once the heads are stripped."""
        return self.classifier(self.model(x))


def preprocess(frames: np.ndarray, variant: str) -> torch.Tensor:
    """uint8 RGB (N,H,W,3) -> (N,3,288,144): PIL bicubic resize, [0,1], (legacy: /255 again), ImageNet norm."""
    out = np.empty((len(frames), 3) + INPUT_HW, np.float32)
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    for i, frame in enumerate(frames):
        img = Image.fromarray(np.ascontiguousarray(frame)).resize(INPUT_HW[::-1], Image.BICUBIC)
        x = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0
        if variant == "legacy":
            x = x / 255.0  # the quirk: Normalize(mean=0, std=255) after ToTensor divides a second time
        out[i] = (x - mean) / std
    return torch.from_numpy(out)


class ReidEmbedder:
    """2048-d re-id features of whole frames (legacy: train-mode BN per image, double /255, no flip, no norm)."""

    def __init__(self, variant: str = "legacy", device: str = "cpu", verify_hash: bool = True):
        check_variant(variant, "re-id: variant")
        self.weight_path = path = weights.locate(WEIGHT_FILE, verify_hash=verify_hash)
        self.variant, self.device = variant, torch.device(device)
        self.net = FtNet()
        load_exact(self.net, read_state_dict(path), path, ignore_prefixes=("model.fc.", "classifier."))
        self.net.strip_heads().to(self.device)
        if variant == "legacy":
            # pose-evaluation never calls eval(): BatchNorm normalises with the statistics of the single input
            # image. Momentum 0 keeps the loaded running statistics from drifting while we do the same.
            self.net.train()
            for m in self.net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = 0.0
        else:
            self.net.eval()

    @torch.no_grad()
    def embed(self, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """uint8 RGB (N,H,W,3) -> (N,2048) float32 features."""
        out = []
        if self.variant == "legacy":
            for frame in frames:  # batch statistics must be those of one image, as in the original loop
                out.append(self.net(preprocess(frame[None], "legacy").to(self.device)).cpu().numpy())
        else:
            for start in range(0, len(frames), batch_size):
                x = preprocess(frames[start:start + batch_size], "clean").to(self.device)
                # the re-id repo's own test protocol: add the horizontally flipped image's feature, L2-normalise
                f = self.net(x) + self.net(torch.flip(x, dims=[3]))
                out.append(torch.nn.functional.normalize(f, dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048), np.float32)
