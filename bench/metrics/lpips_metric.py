"""LPIPS (Zhang et al. 2018) through the `lpips` package, with the trunk weights loaded from the manifest.

The linear heads ship inside the lpips wheel (lpips/weights/v0.1/<net>.pth). The ImageNet trunk is
torchvision's file, which lpips would download; here it is resolved through `plumbing.weights.locate` (clear
error when missing, hash checked) and loaded explicitly, so nothing is ever fetched.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.metrics.registry import (
    FrameScores,
    base_description,
    check_frames,
    file_provenance,
    register_metric,
)
from plumbing import weights
from plumbing.errors import AnimbenchError

TRUNK_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
LPIPS_VERSION = "0.1"


def build_lpips(net: str, trunk_path: str | Path) -> torch.nn.Module:
    """lpips.LPIPS(net, version 0.1) with linear heads from the wheel and the trunk from trunk_path."""
    import lpips

    with warnings.catch_warnings():
        # lpips passes torchvision's deprecated `pretrained=`; pnet_rand=True asks for an untrained trunk
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, version=LPIPS_VERSION, pretrained=True, pnet_rand=True, verbose=False)
    try:
        state = torch.load(trunk_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated download, HTML error page, full pickled model: all one user error
        raise AnimbenchError(f"{trunk_path}: cannot be read as a state_dict ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise AnimbenchError(f"{trunk_path}: holds a {type(state).__name__}, expected a torchvision state_dict")
    # lpips splits torchvision's `features` into slices whose children keep the original layer indices as
    # names, so "features.<i>.<param>" of the torchvision file maps onto slice child <i>
    for slice_ in model.net.children():
        for index, layer in slice_.named_children():
            for pname, param in layer.named_parameters():
                key = f"features.{index}.{pname}"
                if key not in state or state[key].shape != param.shape:
                    found = tuple(state[key].shape) if key in state else "absent"
                    raise AnimbenchError(f"{trunk_path}: not a torchvision {net} state_dict ({key}: {found}, "
                                         f"expected {tuple(param.shape)})")
                with torch.no_grad():
                    param.copy_(state[key])
    return model.eval()


def lpips_heads_path(net: str) -> Path:
    """The linear-head file the lpips wheel ships for a trunk."""
    import lpips

    return Path(lpips.__file__).parent / "weights" / f"v{LPIPS_VERSION}" / f"{net}.pth"


@register_metric(
    "lpips", kind="paired", higher_is_better=False, backend="lpips", needs=(TRUNK_FILES["alex"],),
    protocol_notes="LPIPS v0.1, AlexNet trunk (the package default), spatially averaged per frame; inputs "
                   "scaled to [-1,1] (feeding [0,1] is a common bug that lowers LPIPS).",
)
class LPIPSMetric:
    """LPIPS distance per frame (lpips package, AlexNet trunk, v0.1 linear heads)."""

    net = "alex"

    def __init__(self, spec: Any, *, device: str = "cpu", batch_size: int = 32, verify_hash: bool = True):
        self.spec, self.device, self.batch_size = spec, torch.device(device), batch_size
        # verify_hash=False is for weight files made by tests or converted locally; describe() records it
        self.verify_hash = verify_hash
        self.trunk_path = weights.locate(TRUNK_FILES[self.net], verify_hash=verify_hash)
        self.model = build_lpips(self.net, self.trunk_path).to(self.device)

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS of (B,3,H,W) float tensors in [-1,1] (asserted), shape (B,)."""
        for label, t in (("pred", x), ("gt", y)):
            lo, hi = float(t.min()), float(t.max())
            if lo < -1.0 or hi > 1.0:
                raise AnimbenchError(f"lpips: {label} values span [{lo:.3f}, {hi:.3f}], expected [-1, 1]")
        with torch.inference_mode():
            return self.model(x, y).reshape(-1)

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> FrameScores:
        """Per-frame LPIPS of uint8 (N,H,W,3) frames."""
        check_frames(pred, gt, metric="lpips")
        out = np.empty(len(pred), np.float64)
        for i in range(0, len(pred), self.batch_size):
            s = slice(i, i + self.batch_size)
            out[s] = self.distance(_to_signed_unit(pred[s], self.device),
                                   _to_signed_unit(gt[s], self.device)).double().cpu().numpy()
        return FrameScores(out)

    def describe(self) -> dict[str, Any]:
        """Provenance: lpips version, trunk and head files with hashes, input scaling."""
        return {
            **base_description(self.spec),
            "settings": {"net": self.net, "version": LPIPS_VERSION, "spatial": False, "dtype": "float32",
                         "input_scaling": "uint8 / 127.5 - 1 -> [-1, 1]",
                         "trunk_hash_verified": self.verify_hash},
            "heads": file_provenance(lpips_heads_path(self.net)),
        }


@register_metric(
    "lpips_vgg", kind="paired", higher_is_better=False, backend="lpips", needs=(TRUNK_FILES["vgg"],),
    protocol_notes="LPIPS v0.1 with the VGG16 trunk (closer to a perceptual loss); inputs scaled to [-1,1].",
)
class LPIPSVggMetric(LPIPSMetric):
    """LPIPS distance per frame (lpips package, VGG16 trunk, v0.1 linear heads)."""

    net = "vgg"


def _to_signed_unit(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2)
    return t.to(torch.float32) / 127.5 - 1.0

