"""Thin-Plate Spline Motion Model (Zhao & Zhang, CVPR 2022), faithful to the official code's numerics.

Five networks under the official checkpoint names (reference §2): `kp_detector` (ResNet-18 -> K·5 keypoints),
`bg_predictor` (ResNet-18 -> a 3×3 background affine; absent when `common_params.bg` is False), the
`dense_motion_network` (K TPS + background -> optical flow and four occlusion masks), the `inpainting_network`
(the generator) and the `avd_network` (animation via disentanglement, trained in the second stage). Keypoints
are (B, K·5, 2) tensors in (-1, 1) ordered (x, y); the TPS maths is in methods/tpsmm_tps.py. Shapes below are for
the official 256² configs (K = num_tps = 10). Every grid_sample and flow resize uses align_corners=True (explicit
in the official code, §2.10). The util blocks are layers.py's with InstanceNorm2d(affine) in place of BatchNorm
(§2.1); the two ResNets keep torchvision's BatchNorm. State-dict keys equal the official checkpoints'.

Checked against the official modules (yoyo-nb/Thin-Plate-Spline-Motion-Model, modules/ at 0ec14f6; the tiny,
vox-256 and mgif-256 configs; the same randomised weights and BatchNorm statistics; float32, one CPU thread):
keypoints, bg affine, dense motion (flow, contribution and occlusion maps), inpainting, reconstruction, the AVD
network, relative keypoints, per-frame animation in each mode, and one training step (dropout on and off: losses,
BatchNorm statistics, clipped gradients) are bit-identical. `animate` batches frames: that moves predictions by
~1e-5 (up to ~6e-4 in AVD mode with random weights), the ResNet's per-batch rounding amplified by the float32 TPS
solve; demo.py's own output moves as much when only its input tensor's memory layout changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from methods.config import get_path
from methods.interface import (
    AnimationMode,
    Method,
    check_animate_shapes,
    check_reconstruct_shapes,
    inference_mode,
)
from methods.layers import (
    AntiAliasInterpolation2d,
    DisentanglingAutoencoder,
    DownBlock2d,
    Hourglass,
    ResBlock2d,
    SameBlock2d,
    UpBlock2d,
    full_precision,
    kp2gaussian,
    make_coordinate_grid,
    upcast,
    warp,
)
from methods.losses import PerceptualPyramidLoss
from methods.registry import MethodCard, load_config, register_method
from methods.tpsmm_config import CONFIG_SPEC
from methods.tpsmm_tps import (
    KeypointTPS,
    RandomTPS,
    dropout_probability,
    dropout_softmax,
    random_scale,
    relative_keypoints,
)
from plumbing.errors import AnimbenchError

KP_VARIANCE = 0.01  # the DenseMotionNetwork default; no official config sets it
CLIP_MAX_NORM = 10  # clip_grad_norm_(max_norm=10, norm_type=inf) on kp / dense motion / bg (§2.11)
WEIGHT_DECAY = 1e-4


def instance_norm_(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d of a layers.py block by InstanceNorm2d(affine=True) of the same width, in place:
    TPSMM's util blocks (same keys `norm.weight` / `norm.bias`, no running statistics)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.InstanceNorm2d(child.num_features, affine=True))
        else:
            instance_norm_(child)
    return module


def resnet18(in_channels: int, outputs: int) -> nn.Module:
    """torchvision's ResNet-18, randomly initialised (the official code trains it from scratch), with its first
    conv taking in_channels and its fc giving `outputs` values; keys `conv1`, `bn1`, `layer1..4`, `fc`."""
    from torchvision.models import resnet18 as torchvision_resnet18

    net = torchvision_resnet18(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
    net.fc = nn.Linear(net.fc.in_features, outputs)
    return net


class KPDetector(nn.Module):
    """Full-resolution image -> K·5 keypoints: sigmoid(ResNet-18) · 2 - 1 (no ImageNet normalisation, §2.2)."""

    def __init__(self, num_tps: int):
        super().__init__()
        self.num_tps = num_tps
        self.fg_encoder = resnet18(3, num_tps * 5 * 2)

    def forward(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> keypoints (B, K·5, 2) in (-1, 1)."""
        kp = torch.sigmoid(upcast(self.fg_encoder(image))) * 2 - 1  # (B, K·5·2), float32 even under autocast
        return kp.view(image.shape[0], self.num_tps * 5, -1)


class BGMotionPredictor(nn.Module):
    """[source, driving] -> the 3×3 background affine (last row [0, 0, 1]), starting at the identity (§2.3)."""

    def __init__(self):
        super().__init__()
        self.bg_encoder = resnet18(6, 6)
        with torch.no_grad():
            self.bg_encoder.fc.weight.zero_()
            self.bg_encoder.fc.bias.copy_(torch.tensor([1, 0, 0, 0, 1, 0], dtype=torch.float))

    def forward(self, source: Tensor, driving: Tensor) -> Tensor:
        """(B, 3, H, W) twice -> (B, 3, 3)."""
        b = source.shape[0]
        top = upcast(self.bg_encoder(torch.cat([source, driving], dim=1))).view(b, 2, 3)
        bottom = torch.tensor([0.0, 0.0, 1.0], dtype=top.dtype, device=top.device).expand(b, 1, 3)
        return torch.cat([top, bottom], dim=1)


class DenseMotionNetwork(nn.Module):
    """K TPS transforms + the background slot -> optical flow and multi-resolution occlusion masks (§2.5)."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_tps: int, num_channels: int,
                 scale_factor: float = 0.25, multi_mask: bool = True, kp_variance: float = KP_VARIANCE,
                 align_corners: bool = True):
        super().__init__()
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)
        self.scale_factor = scale_factor
        in_features = num_channels * (num_tps + 1) + num_tps * 5 + 1  # 33 deformed RGB + 51 heatmaps = 84
        self.hourglass = instance_norm_(Hourglass(block_expansion, in_features, num_blocks, max_features))
        # channels of the decoder's post-concat outputs, coarse to fine (2048, 1024, 512, 256, 148)
        width = [in_features] + [min(max_features, block_expansion * 2**i) for i in range(1, num_blocks + 1)]
        self.out_channels = [min(max_features, block_expansion * 2**i) + width[i] for i in reversed(range(num_blocks))]
        self.maps = nn.Conv2d(self.out_channels[-1], num_tps + 1, kernel_size=(7, 7), padding=(3, 3))
        self.multi_mask = multi_mask
        self.up_nums, self.occlusion_num = 0, 1
        if multi_mask:
            # the decoder continued to the input resolution; a mask from each of the last maps (32², 64²) and
            # each extra level (128², 256²)
            self.up_nums, self.occlusion_num = int(math.log(1 / scale_factor, 2)), 4
            up_channels = [self.out_channels[-1] // 2**i for i in range(self.up_nums)]
            self.up = nn.ModuleList(instance_norm_(UpBlock2d(c, c // 2)) for c in up_channels)
            mask_channels = [self.out_channels[-i - 1] for i in reversed(range(self.occlusion_num - self.up_nums))]
            mask_channels += [self.out_channels[-1] // 2 ** (i + 1) for i in range(self.up_nums)]
        else:
            mask_channels = [self.out_channels[-1]]
        self.occlusion = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=(7, 7), padding=(3, 3)) for c in mask_channels)
        self.num_tps = num_tps
        self.kp_variance = kp_variance
        self.align_corners = align_corners

    def heatmaps(self, size: tuple[int, int], kp_driving: Tensor, kp_source: Tensor) -> Tensor:
        """Gaussian(kp_driving) - Gaussian(kp_source) of all K·5 points, a zero map first: (B, K·5+1, h, w)."""
        heatmap = kp2gaussian(kp_driving, size, self.kp_variance) - kp2gaussian(kp_source, size, self.kp_variance)
        return torch.cat([heatmap.new_zeros(heatmap.shape[0], 1, *size), heatmap], dim=1)

    def transformations(self, size: tuple[int, int], kp_driving: Tensor, kp_source: Tensor,
                        bg_param: Tensor | None) -> Tensor:
        """Slot 0 the background (identity, or bg_param applied in homogeneous coordinates), then the K TPS
        grids, all driving -> source: (B, K+1, h, w, 2)."""
        b = kp_driving.shape[0]
        h, w = size
        driving_to_source = KeypointTPS.fit(kp_driving, kp_source).grids(size)  # (B, K, h, w, 2)
        background = make_coordinate_grid(size, kp_driving.dtype, kp_driving.device).view(1, 1, h, w, 2).repeat(
            b, 1, 1, 1, 1)
        if bg_param is not None:
            homogeneous = torch.cat([background, torch.ones_like(background[..., :1])], dim=-1)
            background = torch.matmul(bg_param.view(b, 1, 1, 1, 3, 3), homogeneous.unsqueeze(-1)).squeeze(-1)
            background = background[..., :2] / background[..., 2:3]
        return torch.cat([background, driving_to_source], dim=1)

    def forward(self, source_image: Tensor, kp_driving: Tensor, kp_source: Tensor, bg_param: Tensor | None = None,
                dropout_p: float | None = None) -> dict[str, Any]:
        """Source (B, 3, H, W) and keypoints -> deformation (B, h, w, 2), contribution_maps (B, K+1, h, w),
        deformed_source (B, K+1, 3, h, w), occlusion_map [4 × (B, 1, ·, ·)] at h/2, h, 2h, 4h (32² .. 256²).
        dropout_p: TPS dropout (training); None: a plain softmax."""
        source = self.down(source_image) if self.scale_factor != 1 else source_image  # (B, 3, 64, 64)
        b, c, h, w = source.shape
        slots = self.num_tps + 1
        with full_precision(source):  # the TPS solve and the sampling grids in float32 even under autocast
            kp_driving, kp_source = upcast(kp_driving), upcast(kp_source)
            bg_param = None if bg_param is None else upcast(bg_param)
            heatmap = self.heatmaps((h, w), kp_driving, kp_source)  # (B, 51, 64, 64)
            transformations = self.transformations((h, w), kp_driving, kp_source, bg_param)  # (B, 11, 64, 64, 2)
            repeated = upcast(source).unsqueeze(1).expand(b, slots, c, h, w).reshape(b * slots, c, h, w)
            deformed = warp(repeated, transformations.reshape(b * slots, h, w, 2), self.align_corners)
            deformed = deformed.view(b, slots, c, h, w)
        # [51 heatmaps][33 deformed RGB], not interleaved per slot as FOMM's (§2.5.4): 84 channels
        prediction = self._decode(torch.cat([heatmap, deformed.view(b, -1, h, w)], dim=1))
        logits = upcast(self.maps(prediction[-1]))  # (B, 11, 64, 64)
        contribution = F.softmax(logits, dim=1) if dropout_p is None else dropout_softmax(logits, dropout_p)
        deformation = (transformations.permute(0, 1, 4, 2, 3) * contribution.unsqueeze(2)).sum(dim=1)
        occlusion = []
        if self.multi_mask:
            for i in range(self.occlusion_num - self.up_nums):
                occlusion.append(torch.sigmoid(self.occlusion[i](prediction[self.up_nums - self.occlusion_num + i])))
            features = prediction[-1]
            for i in range(self.up_nums):
                features = self.up[i](features)  # (B, 74, 128, 128), then (B, 37, 256, 256)
                occlusion.append(torch.sigmoid(self.occlusion[i + self.occlusion_num - self.up_nums](features)))
        else:
            occlusion.append(torch.sigmoid(self.occlusion[0](prediction[-1])))
        return {"deformation": deformation.permute(0, 2, 3, 1), "contribution_maps": contribution,
                "deformed_source": deformed, "occlusion_map": occlusion}

    def _decode(self, x: Tensor) -> list[Tensor]:
        """The hourglass with every post-concat decoder map kept, coarse to fine (the official mode 1)."""
        skips = self.hourglass.encoder(x)
        out = skips.pop()
        outs = []
        for block in self.hourglass.decoder.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
            outs.append(out)
        return outs


class InpaintingNetwork(nn.Module):
    """The generator (§2.6): a 3-down encoder whose maps are warped by the flow and masked by the occlusion at
    each level, a decoder of ResBlocks and UpBlocks concatenating them, and an output blend with the warped
    source."""

    def __init__(self, num_channels: int, block_expansion: int, max_features: int, num_down_blocks: int,
                 multi_mask: bool = True, align_corners: bool = True):
        super().__init__()
        if num_down_blocks != 3 or max_features != 8 * block_expansion:
            # the official decoder widths are [maxf, maxf, maxf/2] -> [maxf/2, maxf/4, maxf/8], ending at be
            raise AnimbenchError(f"model_params.generator_params: the inpainting network needs num_down_blocks 3 "
                                 f"and max_features = 8 * block_expansion, got {num_down_blocks} and "
                                 f"{max_features} (block_expansion {block_expansion})")
        self.first = instance_norm_(SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3))
        self.down_blocks = nn.ModuleList(
            instance_norm_(DownBlock2d(min(max_features, block_expansion * 2**i),
                                       min(max_features, block_expansion * 2 ** (i + 1))))
            for i in range(num_down_blocks))
        widths_in = [max_features, max_features, max_features // 2]
        widths_out = [max_features // 2, max_features // 4, max_features // 8]
        self.up_blocks = nn.ModuleList(instance_norm_(UpBlock2d(i, o)) for i, o in zip(widths_in, widths_out,
                                                                                          strict=True))
        self.resblock = nn.ModuleList(instance_norm_(ResBlock2d(widths_in[i // 2])) for i in range(2 * num_down_blocks))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.num_down_blocks = num_down_blocks
        self.multi_mask = multi_mask
        self.num_channels = num_channels
        self.align_corners = align_corners

    def deform_input(self, x: Tensor, deformation: Tensor) -> Tensor:
        """Warp x (B, C, H, W) by the flow (B, h, w, 2), bilinearly resized to H×W first (align_corners=True)."""
        if deformation.shape[1:3] != x.shape[2:]:
            deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=x.shape[2:], mode="bilinear",
                                        align_corners=self.align_corners).permute(0, 2, 3, 1)
        return warp(x, deformation, self.align_corners)

    def occlude(self, x: Tensor, occlusion: Tensor) -> Tensor:
        """x masked by an occlusion map (resized to x with a single mask, as official)."""
        if not self.multi_mask and occlusion.shape[2:] != x.shape[2:]:
            occlusion = F.interpolate(occlusion, size=x.shape[2:], mode="bilinear", align_corners=self.align_corners)
        return x * occlusion

    def forward(self, source_image: Tensor, motion: Mapping[str, Any]) -> dict[str, Any]:
        """Source (B, 3, H, W) and the dense motion's outputs -> {"prediction": (B, 3, H, W) in [0, 1],
        "deformed": the warped source, "warped_encoder_maps": the four warped maps on detached inputs (32² ..
        256², for the warp loss), and the motion's contribution_maps / deformed_source / occlusion_map}."""
        out = self.first(source_image)  # (B, 64, 256, 256)
        encoder_maps = [out]
        for block in self.down_blocks:
            out = block(out)
            encoder_maps.append(out)  # 128@128², 256@64², 512@32²
        occlusion, deformation = motion["occlusion_map"], motion["deformation"]
        warped_detached = [self.occlude(self.deform_input(out.detach(), deformation), occlusion[0].detach())]
        out = self.occlude(self.deform_input(out, deformation), occlusion[0])
        for i in range(self.num_down_blocks):
            out = self.resblock[2 * i + 1](self.resblock[2 * i](out))
            out = self.up_blocks[i](out)  # 256@64², 128@128², 64@256²
            skip = encoder_maps[-(i + 2)]
            mask = occlusion[i + 1 if self.multi_mask else 0]
            warped_detached.append(self.occlude(self.deform_input(skip.detach(), deformation), mask.detach()))
            skip = self.occlude(self.deform_input(skip, deformation), mask)
            if i == self.num_down_blocks - 1:
                break
            out = torch.cat([out, skip], dim=1)
        deformed = self.deform_input(source_image, deformation)
        occlusion_last = occlusion[-1]
        if not self.multi_mask:
            occlusion_last = F.interpolate(occlusion_last, size=out.shape[2:], mode="bilinear",
                                           align_corners=self.align_corners)
        out = out * (1 - occlusion_last) + skip
        out = torch.sigmoid(self.final(out))
        prediction = out * (1 - occlusion_last) + deformed * occlusion_last
        return {"prediction": prediction, "deformed": deformed, "warped_encoder_maps": warped_detached,
                "occlusion_map": occlusion, "contribution_maps": motion["contribution_maps"],
                "deformed_source": motion["deformed_source"]}

    def get_encode(self, driving: Tensor, occlusion: list[Tensor]) -> list[Tensor]:
        """The warp loss's targets: the driving frame's encoder maps (256², 128², 64², 32²), each masked by the
        matching occlusion, all detached (as official, hard-wired to 3 down blocks and 4 masks)."""
        out = self.first(driving)
        maps = [self.occlude(out.detach(), occlusion[-1].detach())]
        for i, block in enumerate(self.down_blocks):
            out = block(out.detach())
            maps.append(self.occlude(out.detach(), occlusion[2 - i].detach()).detach())
        return maps


class AVDNetwork(DisentanglingAutoencoder):
    """Animation via disentanglement (§2.7): identity from the source keypoints, pose from the driving ones."""

    def __init__(self, num_tps: int, id_bottle_size: int = 64, pose_bottle_size: int = 64):
        super().__init__(5 * 2 * num_tps, id_bottle_size, pose_bottle_size)
        self.num_tps = num_tps

    def forward(self, kp_source: Tensor, kp_driving: Tensor) -> Tensor:
        """(B, K·5, 2) twice -> the driving pose on the source identity, (B, K·5, 2)."""
        b = kp_source.shape[0]
        out = self.transfer(kp_source.reshape(b, -1), kp_driving.reshape(b, -1))
        return upcast(out).view(b, self.num_tps * 5, -1)


class EpochTagged(Dataset):
    """A training dataset whose samples also carry the epoch (TPSMM's dropout and bg schedules depend on it)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the loop before each epoch; forwarded to the wrapped dataset."""
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "epoch": torch.tensor(self.epoch)}

    def __getattr__(self, name: str) -> Any:  # videos, items, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class TPSMM(Method):
    """The official networks plus TPSMM's two training stages and demo.py's animation modes.

    Stage "main" (§2.11) trains the inpainting, dense motion and keypoint networks with one Adam (weight decay
    1e-4) and the bg predictor with its own (frozen before `bg_start`); the gradients of the keypoint detector,
    the dense motion network and the active bg predictor are clipped (inf-norm 10) after backward, in the loop's
    after_backward hook. Stage "avd" (`--stage avd --init-from MAIN_CKPT`) trains only `avd_network` on keypoints
    from the frozen detector.
    """

    required_entries = ("inpainting_network", "dense_motion_network", "kp_detector")
    discriminators = ()
    stages = ("main", "avd")
    supports_avd = True
    grid_convention = True  # explicit at every official grid_sample and resize (§2.10)

    def __init__(self, kp_detector: KPDetector, dense_motion_network: DenseMotionNetwork,
                 inpainting_network: InpaintingNetwork, bg_predictor: BGMotionPredictor | None,
                 avd_network: AVDNetwork, cfg: dict, align_corners: bool = True):
        super().__init__()
        self.inpainting_network = inpainting_network
        self.dense_motion_network = dense_motion_network
        self.kp_detector = kp_detector
        self.bg_predictor = bg_predictor
        self.avd_network = avd_network
        # the stage-1 checkpoint's entries, in the official order (no bg_predictor when common_params.bg is False,
        # as mgif); avd_network joins them once a checkpoint holds it or the AVD stage trains it
        self.networks = tuple(name for name in ("inpainting_network", "dense_motion_network", "kp_detector",
                                                "bg_predictor") if getattr(self, name) is not None)
        self.stage = "main"
        self.config = cfg
        self.train_params = cfg.get("train_params") or {}
        self.loss_weights = self.train_params.get("loss_weights") or {}
        self.align_corners = align_corners
        self._perceptual: PerceptualPyramidLoss | None = None  # built on first use: inference needs no VGG

    @classmethod
    def from_config(cls, cfg: dict | str, align_corners: bool = True) -> TPSMM:
        """Build from an official TPSMM YAML (or our own), as a path or a load_config dict."""
        if not isinstance(cfg, dict) or "_meta" not in cfg:
            cfg = load_config(cfg, method="tpsmm")
        common = get_path(cfg, "model_params.common_params")
        num_tps, num_channels = common["num_tps"], common["num_channels"]
        multi_mask = bool(common.get("multi_mask", True))
        kp_detector = KPDetector(num_tps)
        dense = DenseMotionNetwork(num_tps=num_tps, num_channels=num_channels, multi_mask=multi_mask,
                                   align_corners=align_corners, **get_path(cfg, "model_params.dense_motion_params"))
        inpainting = InpaintingNetwork(num_channels=num_channels, multi_mask=multi_mask, align_corners=align_corners,
                                       **get_path(cfg, "model_params.generator_params"))
        bg = BGMotionPredictor() if common.get("bg", False) else None
        avd = AVDNetwork(num_tps, **(get_path(cfg, "model_params.avd_network_params", None) or {}))
        return cls(kp_detector, dense, inpainting, bg, avd, cfg, align_corners)

    # --- checkpoints ---
    def read_checkpoint(self, path: Any) -> dict[str, Any]:
        """An official `.pth.tar` (training, AVD or released) or ours; the official `optimizer` is read as
        `optimizer_generator`. avd_network joins the networks when the file holds it; a stage-1 file saved before bg_start has no bg_predictor, which then leaves the networks
        (its untrained fc gives exactly the identity affine, the official code's bg-less motion)."""
        ckpt = super().read_checkpoint(path)
        if "optimizer" in ckpt and "optimizer_generator" not in ckpt:
            # the official Adam over inpainting + dense motion + keypoints: the same parameters, in the same order,
            # as our "generator" group, so a resumed official training run keeps its optimiser state
            ckpt["optimizer_generator"] = ckpt["optimizer"]
        if "avd_network" in ckpt and "avd_network" not in self.networks:
            self.networks = (*self.networks, "avd_network")
        if "bg_predictor" not in ckpt and "bg_predictor" in self.networks and self.stage == "main":
            self.networks = tuple(n for n in self.networks if n != "bg_predictor")
        return ckpt

    # --- inference ---
    def _inference(self):
        return inference_mode(*(getattr(self, name) for name in self.networks))

    def generate(self, source: Tensor, kp_source: Tensor, kp_driving: Tensor,
                 bg_param: Tensor | None = None) -> Tensor:
        """Source (B, 3, H, W) moved from kp_source to kp_driving (B, K·5, 2) -> prediction (B, 3, H, W)."""
        motion = self.dense_motion_network(source, kp_driving, kp_source, bg_param)
        return self.inpainting_network(source, motion)["prediction"]

    def reconstruct(self, source: Tensor, driving: Tensor) -> Tensor:
        """Reconstruction protocol (§2.13): absolute driving keypoints, the bg affine bg(source, driving) when
        the model has a (trained or loaded) bg predictor, no dropout -> (B, 3, H, W)."""
        check_reconstruct_shapes(source, driving)
        with self._inference():
            bg_param = self.bg_predictor(source, driving) if "bg_predictor" in self.networks else None
            return self.generate(source, self.kp_detector(source), self.kp_detector(driving), bg_param)

    def animation_mode(self, relative: bool | None = None, adapt_scale: bool | None = None) -> AnimationMode:
        """demo.py's default: relative, always scale-adapted (the flags given override it); options {"avd"}."""
        return AnimationMode.of(True if relative is None else relative, True if adapt_scale is None else adapt_scale,
                                {"avd": False})

    def animate(self, source: Tensor, driving_video: Tensor, mode: AnimationMode | None = None,
                batch_size: int = 16) -> Tensor:
        """Animate one source (3, H, W) or (1, 3, H, W) by a driving video (T, 3, H, W) -> (T, 3, H, W), as
        demo.py's make_animation: "avd" (mode.option("avd")) -> avd_network(kp_source, kp_driving); relative ->
        kp_source + s·(kp_driving - kp_driving of frame 0); else (standard) the driving keypoints as they are.
        No background motion and no dropout in animation (§2.12)."""
        source = check_animate_shapes(source, driving_video)
        mode = self.animation_mode() if mode is None else mode
        self.check_mode(mode)
        frames = []
        with self._inference():
            kp_source = self.kp_detector(source)
            kp_driving_initial = self.kp_detector(driving_video[:1])
            for chunk in driving_video.split(batch_size):
                n = chunk.shape[0]
                kp_driving = self.kp_detector(chunk)
                kp_source_n = kp_source.expand(n, *kp_source.shape[1:])
                if mode.option("avd", False):
                    kp_driving = self.avd_network(kp_source_n, kp_driving)
                elif mode.relative:
                    kp_driving = relative_keypoints(kp_source_n, kp_driving, kp_driving_initial.expand_as(kp_driving),
                                                    adapt_scale=bool(mode.adapt_scale))
                frames.append(self.generate(source.expand(n, *source.shape[1:]), kp_source_n, kp_driving))
        return torch.cat(frames)

    # --- training hooks ---
    def set_training_stage(self, stage: str) -> None:
        """Stage "avd" adds avd_network to the networks (saved, trained); "main" trains the others."""
        self.stage = stage
        if stage == "avd" and "avd_network" not in self.networks:
            self.networks = (*self.networks, "avd_network")

    def stage_config(self, cfg: Mapping[str, Any], stage: str) -> dict[str, Any]:
        """The AVD stage's schedule is train_avd_params (epochs, repeats, batch, milestones, checkpoint_freq)."""
        if stage != "avd":
            return dict(cfg)
        if not isinstance(cfg.get("train_avd_params"), Mapping):
            where = (cfg.get("_meta") or {}).get("path") or "<config>"
            raise AnimbenchError(f"{where}: train_avd_params missing; the AVD stage trains from it")
        return {**cfg, "train_params": dict(cfg["train_avd_params"])}

    def learning_rates(self, cfg: Mapping[str, Any], stage: str = "main") -> dict[str, float]:
        """main: train_params.lr_generator for every network but the AVD; avd: train_avd_params.lr for it alone."""
        where = (cfg.get("_meta") or {}).get("path") or "<config>"
        key = "train_avd_params.lr" if stage == "avd" else "train_params.lr_generator"
        try:
            lr = float(get_path(cfg, key))
        except KeyError:
            raise AnimbenchError(f"{where}: {key} missing") from None
        if stage == "avd":
            return {"avd_network": lr}
        return {name: lr for name in self.networks if name != "avd_network"}

    def optimizer_groups(self, cfg: Mapping[str, Any], stage: str = "main") -> dict[str, tuple[str, ...]]:
        """main: one Adam over inpainting + dense motion + keypoints (the official `optimizer`, saved here as
        `optimizer_generator`) and `optimizer_bg_predictor`; avd: `optimizer_avd`."""
        if stage == "avd":
            return {"avd": ("avd_network",)}
        groups = {"generator": ("inpainting_network", "dense_motion_network", "kp_detector")}
        if self.bg_predictor is not None:
            groups["bg_predictor"] = ("bg_predictor",)
        return groups

    def optimizer_options(self, cfg: Mapping[str, Any], stage: str = "main") -> dict[str, Any]:
        """Adam, betas (0.5, 0.999); coupled L2 weight decay 1e-4 in the main stage, none for the AVD."""
        options = {"kind": "Adam", "betas": (0.5, 0.999), "eps": 1e-8}
        return options if stage == "avd" else {**options, "weight_decay": WEIGHT_DECAY}

    def frozen_networks(self, cfg: Mapping[str, Any], epoch: int) -> set[str]:
        """The bg predictor's optimiser waits until train_params.bg_start (vox: epoch 10)."""
        if self.stage == "main" and self.bg_predictor is not None and epoch < int(
                get_path(cfg, "train_params.bg_start", 0)):
            return {"bg_predictor"}
        return set()

    def training_dataset(self, store: Any, cfg: Mapping[str, Any], *, num_repeats: int, seed: int,
                         transform: Any) -> EpochTagged:
        """FOMM-style frame pairs, each tagged with its epoch (the dropout and bg schedules read it)."""
        return EpochTagged(super().training_dataset(store, cfg, num_repeats=num_repeats, seed=seed,
                                                    transform=transform))

    def step_inputs(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, ...]:
        """(source, driving, epoch)."""
        return batch["source"], batch["driving"], batch["epoch"]

    def training_backends(self) -> dict[str, Any] | None:
        """The perceptual loss's network (VGG19 or the config's fallback); raises early when it is missing."""
        if self.stage == "avd":
            return None
        return {"backend": self.perceptual_loss.backend, "description": self.perceptual_loss.backend_description}

    @property
    def perceptual_loss(self) -> PerceptualPyramidLoss:
        """FOMM's VGG19 pyramid loss (or the config's perceptual_fallback), following the networks' device."""
        if self._perceptual is None:
            loss = PerceptualPyramidLoss(self.train_params["scales"], self.loss_weights["perceptual"],
                                         self.inpainting_network.num_channels,
                                         fallback=self.train_params.get("perceptual_fallback"))
            object.__setattr__(self, "_perceptual", loss)  # not a submodule: no VGG in the model's state_dict
        device = next(self.inpainting_network.parameters()).device
        if next(self._perceptual.buffers()).device != device:
            self._perceptual.to(device)
        return self._perceptual

    def generator_step(self, source: Tensor, driving: Tensor, epoch: Tensor | int | None = None
                       ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """One batch's weighted losses of the stage being trained (main: perceptual, equivariance_value,
        warp_loss, bg; avd: rec_kp) and the outputs; epoch (0-based) drives the dropout and bg schedules."""
        if self.stage == "avd":
            return self.avd_step(source, driving)
        epoch = 0 if epoch is None else int(torch.as_tensor(epoch).flatten()[0])
        w, tp = self.loss_weights, self.train_params
        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        bg_active = self.bg_predictor is not None and epoch >= int(tp.get("bg_start", 0))
        bg_param = self.bg_predictor(source, driving) if bg_active else None
        dropout_p = dropout_probability(epoch, tp["dropout_epoch"], tp["dropout_startp"], tp["dropout_maxp"],
                                        tp["dropout_inc_epoch"])
        motion = self.dense_motion_network(source, kp_driving, kp_source, bg_param, dropout_p)
        outputs: dict[str, Any] = self.inpainting_network(source, motion)
        outputs.update(kp_source=kp_source, kp_driving=kp_driving, bg_param=bg_param, dropout_p=dropout_p)
        losses: dict[str, Tensor] = {}
        if sum(w["perceptual"]) != 0:
            losses["perceptual"] = self.perceptual_loss(outputs["prediction"], driving)
        if w["equivariance_value"] != 0:
            transform = RandomTPS(driving.shape[0], device=driving.device, **tp["transform_params"])
            with full_precision(driving):
                transformed_frame = transform.transform_frame(upcast(driving), self.align_corners)
            transformed_kp = self.kp_detector(transformed_frame)  # float32 keypoints even under autocast
            outputs.update(transformed_frame=transformed_frame, transformed_kp=transformed_kp)
            with full_precision(driving):
                value = torch.abs(kp_driving - transform.warp_coordinates(transformed_kp)).mean()
            losses["equivariance_value"] = w["equivariance_value"] * value
        if w["warp_loss"] != 0:
            # both sides detached: the gradient reaches only the flow (dense motion, keypoints, bg)
            encoded = self.inpainting_network.get_encode(driving, outputs["occlusion_map"])
            warped = outputs["warped_encoder_maps"]
            value = sum(torch.abs(encoded[i] - warped[-i - 1]).mean() for i in range(len(encoded)))
            losses["warp_loss"] = w["warp_loss"] * value
        if bg_active and w["bg"] != 0:
            reverse = self.bg_predictor(driving, source)
            eye = torch.eye(3, dtype=bg_param.dtype, device=bg_param.device).view(1, 3, 3)
            with full_precision(driving):
                losses["bg"] = w["bg"] * torch.abs(eye - torch.matmul(bg_param, reverse)).mean()
        outputs["bg_active"] = bg_active  # which networks after_backward clips
        return losses, outputs

    def avd_step(self, source: Tensor, driving: Tensor) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """train_avd.py's loss: lambda_shift · mean|kp_driving - avd(kp_source, random_scale(kp_driving))|; the
        keypoints from the detector in eval mode under no_grad (the official code leaves its BatchNorm in train
        mode, drifting the stage-1 statistics; here the main networks stay exactly as trained)."""
        params = self.config.get("train_avd_params") or {}
        with inference_mode(self.kp_detector):
            kp_source = self.kp_detector(source)
            kp_driving = self.kp_detector(driving)
            kp_scaled = random_scale(kp_driving, float(params.get("random_scale", 0.25)))
        reconstruction = self.avd_network(kp_source, kp_scaled)
        value = torch.abs(kp_driving - reconstruction).mean()
        return ({"rec_kp": float(params.get("lambda_shift", 1)) * value},
                {"kp_source": kp_source, "kp_driving": kp_driving, "kp_reconstruction": reconstruction})

    def clip_gradients(self, bg_active: bool = True) -> None:
        """The official per-network clip_grad_norm_(max_norm=10, norm_type=inf) of the keypoint detector, the
        dense motion network and (while it trains) the bg predictor; the inpainting network is not clipped."""
        nets = [self.kp_detector, self.dense_motion_network]
        if bg_active and self.bg_predictor is not None:
            nets.append(self.bg_predictor)
        for net in nets:
            params = [p for p in net.parameters() if p.grad is not None]
            if params:
                torch.nn.utils.clip_grad_norm_(params, max_norm=CLIP_MAX_NORM, norm_type=math.inf)

    def after_backward(self, outputs: Mapping[str, Any]) -> None:
        """The loop's hook between backward and the optimisers' step: the official clip of the main stage."""
        if "bg_active" in outputs:  # a main-stage step (the AVD stage is not clipped)
            self.clip_gradients(bool(outputs["bg_active"]))


# --- the card ------------------------------------------------------------------------------------------------

_CONFIGS = {"vox": "vox-256.yaml", "taichi": "taichi-256.yaml", "ted": "ted-384.yaml", "mgif": "mgif-256.yaml",
            "tiny": "configs/tpsmm-tiny.yaml", "actions": "configs/tpsmm-actions64.yaml"}
_CHECKPOINTS = {"vox.pth.tar": "vox", "taichi.pth.tar": "taichi", "ted.pth.tar": "ted", "mgif.pth.tar": "mgif"}
TPSMM.card = register_method(MethodCard(
    name="tpsmm", paper="Thin-Plate Spline Motion Model for Image Animation (Zhao & Zhang, CVPR 2022)",
    family="keypoint-motion", build=TPSMM.build, config_spec=CONFIG_SPEC, configs=_CONFIGS, checkpoints=_CHECKPOINTS,
    notes="K thin-plate splines from ResNet-18 keypoints, bg affine, TPS dropout, multi-resolution occlusion, "
          "inpainting generator; AVD second stage; align_corners True"))
