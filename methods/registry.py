"""The method registry: a decorator and a dict, one card per method (timm-style).

A `MethodCard` says what a method is (paper, family), which configs it comes with (dataset -> config file: bare
names are the official repository's `config/` files, paths under `configs/` are ours), which official checkpoint
files it loads (file name -> the dataset whose config it needs), and how to build it from a config.

    model, provenance = load_model("fomm", checkpoint="vox-cpk.pth.tar", config="vox-256.yaml")

`copy-source` and `oracle` are reference baselines with the same `reconstruct` / `animate` API: they bound every
metric from below (the prediction is the source frame) and from above (the prediction is the driving frame).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from plumbing.errors import AnimbenchError

# The grid_sample convention of the official weights (torch 1.0 semantics, reference §1.8.1).
DEFAULT_ALIGN_CORNERS = True

Builder = Callable[[dict | None, bool], nn.Module]


@dataclass(frozen=True)
class MethodCard:
    """What a method is, which configs and official checkpoints it has, and how to build it."""

    name: str
    paper: str
    family: str
    build: Builder = field(repr=False, compare=False)
    configs: Mapping[str, str] = field(default_factory=dict)  # dataset -> config file
    checkpoints: Mapping[str, str] = field(default_factory=dict)  # official file name -> dataset of its config
    trainable: bool = True
    needs_config: bool = True
    notes: str = ""

    def __post_init__(self) -> None:
        # read-only views: a card is data, shared by every caller
        object.__setattr__(self, "configs", MappingProxyType(dict(self.configs)))
        object.__setattr__(self, "checkpoints", MappingProxyType(dict(self.checkpoints)))
        unknown = sorted(set(self.checkpoints.values()) - set(self.configs))
        if unknown:
            raise ValueError(f"method {self.name}: checkpoints name datasets without a config: {unknown}")

    def as_dict(self) -> dict[str, Any]:
        """The card as plain data (what `animbench methods --json` prints)."""
        return {"name": self.name, "paper": self.paper, "family": self.family, "trainable": self.trainable,
                "needs_config": self.needs_config, "configs": dict(self.configs),
                "checkpoints": dict(self.checkpoints), "notes": self.notes}


METHODS: dict[str, MethodCard] = {}


def register_method(card: MethodCard | None = None, **fields: Any):
    """Register a card: `register_method(card)`, or decorate a build function with `@register_method(name=...)`."""
    if card is not None:
        if card.name in METHODS and METHODS[card.name] != card:
            raise ValueError(f"method {card.name!r} registered twice with different cards")
        METHODS[card.name] = card
        return card

    def decorate(build: Builder) -> Builder:
        register_method(MethodCard(build=build, **fields))
        return build

    return decorate


def get_method(name: str) -> MethodCard:
    """The card of a registered method."""
    try:
        return METHODS[name]
    except KeyError:
        raise AnimbenchError(f"unknown method {name!r}: expected one of {list_methods()}") from None


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching a shell-style pattern, sorted."""
    return sorted(n for n in METHODS if fnmatch.fnmatchcase(n, pattern))


def _device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise AnimbenchError(f"device {device!r}: expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AnimbenchError(f"device {device!r}: CUDA is not available on this machine (use --device cpu)")
    return dev


def load_model(
    name: str,
    checkpoint: str | Path | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    align_corners: bool | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build a registered method from its config, load an official-layout checkpoint, move to device, eval mode.

    Returns the model and its provenance: method, config path + sha256, checkpoint path + sha256, the
    grid_sample convention (align_corners), device and dtype. Record it with every output.
    """
    from methods.checkpoints import checkpoint_sha256, load_checkpoint, load_into
    from methods.config import load_config

    card = get_method(name)
    dev = _device(device)
    cfg = None
    if card.needs_config:
        if config is None:
            raise AnimbenchError(f"method {name}: a config is required (--config); its configs: "
                                 f"{', '.join(f'{k}={v}' for k, v in card.configs.items())}")
        cfg = load_config(config, method=name)
    elif config is not None:
        raise AnimbenchError(f"method {name}: takes no config (it has no networks)")
    model = card.build(cfg, DEFAULT_ALIGN_CORNERS if align_corners is None else bool(align_corners))
    provenance: dict[str, Any] = {
        "method": name,
        "paper": card.paper,
        "config": None if cfg is None else {"path": cfg["_meta"]["path"], "sha256": cfg["_meta"]["sha256"]},
        "checkpoint": None,
    }
    if checkpoint is not None:
        if not card.checkpoints and not card.trainable:
            raise AnimbenchError(f"method {name}: has no weights, so it loads no checkpoint (got {checkpoint})")
        ckpt = load_checkpoint(checkpoint, weights_only=True, map_location="cpu")
        report = load_into(model, ckpt, strict=True)
        epoch = ckpt.get("epoch")
        provenance["checkpoint"] = {
            "path": str(checkpoint), "sha256": checkpoint_sha256(checkpoint),
            "epoch": int(epoch) if isinstance(epoch, int) else None, "entries": sorted(report),
        }
    model = model.to(dev).eval()
    params = list(model.parameters())
    align = getattr(model, "align_corners", None)
    provenance.update(
        align_corners=align,
        grid_sample=None if align is None else f"align_corners={align}" + (
            " (torch 1.0 semantics, as the official weights were trained)" if align else " (torch >= 1.3 default)"),
        device=str(dev),
        dtype=str(params[0].dtype).removeprefix("torch.") if params else "float32",
        num_parameters=sum(p.numel() for p in params),
    )
    return model, provenance


# --- reference baselines -----------------------------------------------------------------------------------


class CopySource(nn.Module):
    """Baseline: the prediction is the source frame (no motion at all)."""

    align_corners = None
    uses_gan = False

    def reconstruct(self, source: Tensor, driving: Tensor) -> Tensor:
        """(B, 3, H, W) copies of the source frames."""
        return source.expand_as(driving).clone()

    def animate(self, source: Tensor, driving_video: Tensor, relative: bool | None = None,
                adapt_scale: bool | None = None) -> Tensor:
        """(T, 3, H, W) copies of the source image."""
        if source.dim() == 4:
            source = source[0]
        return source.unsqueeze(0).expand_as(driving_video).clone()


class Oracle(nn.Module):
    """Baseline: the prediction is the driving frame (a perfect reconstruction)."""

    align_corners = None
    uses_gan = False

    def reconstruct(self, source: Tensor, driving: Tensor) -> Tensor:
        """The driving frames themselves."""
        return driving.clone()

    def animate(self, source: Tensor, driving_video: Tensor, relative: bool | None = None,
                adapt_scale: bool | None = None) -> Tensor:
        """The driving video itself (in reconstruction it is the ground truth)."""
        return driving_video.clone()


# --- the cards -----------------------------------------------------------------------------------------------

_FOMM_CONFIGS = {
    "vox": "vox-256.yaml", "vox-adv": "vox-adv-256.yaml", "taichi": "taichi-256.yaml",
    "taichi-adv": "taichi-adv-256.yaml", "fashion": "fashion-256.yaml", "mgif": "mgif-256.yaml",
    "nemo": "nemo-256.yaml", "bair": "bair-256.yaml", "tiny": "configs/fomm-tiny.yaml",
}
_FOMM_CHECKPOINTS = {
    "vox-cpk.pth.tar": "vox", "vox-adv-cpk.pth.tar": "vox-adv", "taichi-cpk.pth.tar": "taichi",
    "taichi-adv-cpk.pth.tar": "taichi-adv", "nemo-cpk.pth.tar": "nemo", "mgif-cpk.pth.tar": "mgif",
    "bair-cpk.pth.tar": "bair", "fashion.pth.tar": "fashion",
}
_MONKEY_NET_CONFIGS = {
    "actions": "actions.yaml", "shapes": "shapes.yaml", "taichi": "taichi.yaml", "nemo": "nemo.yaml",
    "bair": "bair.yaml", "moving-gif": "moving-gif.yaml", "vox": "vox.yaml", "vox-full": "vox-full.yaml",
    "tiny": "configs/monkey_net-tiny.yaml",
}


@register_method(name="fomm", paper="First Order Motion Model for Image Animation (Siarohin et al., NeurIPS 2019)",
                 family="keypoint-motion", configs=_FOMM_CONFIGS, checkpoints=_FOMM_CHECKPOINTS,
                 notes="keypoints with local affine jacobians, occlusion-aware generator")
def _build_fomm(cfg: dict | None, align_corners: bool) -> nn.Module:
    from methods.fomm import FOMM

    return FOMM.from_config(cfg, align_corners=align_corners)


@register_method(name="monkey_net", family="keypoint-motion", configs=_MONKEY_NET_CONFIGS,
                 paper="Animating Arbitrary Objects via Deep Motion Transfer (Siarohin et al., CVPR 2019)",
                 notes="Gaussian keypoints with covariance; the release names no checkpoint files, any "
                       "official-layout checkpoint (generator, kp_detector, discriminator, epoch, it) loads")
def _build_monkey_net(cfg: dict | None, align_corners: bool) -> nn.Module:
    from methods.monkey_net import MonkeyNet

    return MonkeyNet.from_config(cfg, align_corners=align_corners)


register_method(MethodCard(name="copy-source", paper="reference baseline: prediction = source frame",
                           family="baseline", build=lambda cfg, align: CopySource(), trainable=False,
                           needs_config=False, notes="lower bound of reconstruction quality"))
register_method(MethodCard(name="oracle", paper="reference baseline: prediction = driving frame",
                           family="baseline", build=lambda cfg, align: Oracle(), trainable=False,
                           needs_config=False, notes="upper bound (reconstruction error 0)"))
