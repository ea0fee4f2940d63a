"""Monkey-Net (Siarohin et al., CVPR 2019): keypoints as Gaussians with covariance, a dense-motion network,
and a U-Net generator whose warped skips are decoded with keypoint heatmaps; LSGAN with a keypoint-aware
discriminator. Built to the official code's numerics so that its checkpoints load and reproduce.

Tensors are 5-D (B, C, D=time, H, W) inside the networks, as in the official code; the MonkeyNet model takes and
returns (B, 3, H, W) frames in [0, 1]. Keypoints are dicts: 'mean' (B, D, K, 2) in [-1, 1] ordered (x, y), and
'var' (B, D, K, 2, 2) (kp_variance 'matrix'). Numerics that matter are named where they happen:
softmax temperature, the +1e-7 on heatmaps, clip_variance, norm_const, the zero-initialised mask/correction conv,
nearest downsampling without anti-aliasing, and 5-D grid_sample with a z=0 coordinate.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.config import AUGMENTATION, LEAF, SHARED_SECTIONS, TRAIN_COMMON, ConfigSpec
from methods.interface import AnimationMode, Method, check_animate_shapes, check_reconstruct_shapes
from methods.layers import make_coordinate_grid, warp
from methods.layers3d import (
    Decoder3d,
    DiscriminatorBlock3d,
    Encoder3d,
    Hourglass3d,
    ResBlock3d,
    SameBlock3d,
)
from methods.monkey_net_keypoints import Keypoints, gaussian2kp, kp2gaussian, kp_displacement, normalize_kp
from methods.registry import MethodCard, register_method
from plumbing.errors import AnimbenchError

ANIMATE_CHUNK = 8  # frames per generator call in animate(); eval-mode results do not depend on it
# constructor arguments that come from common_params or from the model, never from a nested config section
FILLED_BY_CODE = frozenset({"num_kp", "kp_variance", "num_channels", "align_corners"})


def _check_kp_variance(kp_variance: str | float) -> None:
    if kp_variance not in ("matrix", "single") and not isinstance(kp_variance, int | float):
        raise AnimbenchError(
            f"common_params.kp_variance: expected 'matrix', 'single' or a number, got {kp_variance!r}"
        )


def _downscale(x: torch.Tensor, scale_factor: float) -> torch.Tensor:
    # plain nearest, no anti-aliasing (unlike FOMM): picks pixels i / scale_factor
    return x if scale_factor == 1 else F.interpolate(x, scale_factor=(1, scale_factor, scale_factor))


def _check_fields(cls: type, fields: dict, where: str, filled_by_code: frozenset[str] = frozenset()) -> None:
    """Raise AnimbenchError naming unknown or missing config fields before a constructor sees them."""
    if not isinstance(fields, dict):
        raise AnimbenchError(f"Monkey-Net config {where}: expected a mapping, got {type(fields).__name__}")
    params = inspect.signature(cls).parameters
    filled = FILLED_BY_CODE | filled_by_code
    allowed = set(params) - filled
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise AnimbenchError(
            f"Monkey-Net config {where}: unknown field(s) {unknown}; expected some of {sorted(allowed)}"
        )
    missing = [n for n, p in params.items() if p.default is p.empty and n not in fields and n not in filled]
    if missing:
        raise AnimbenchError(f"Monkey-Net config {where}: missing field(s) {missing}")


# ----------------------------------------------------------------------------------------------- networks


class KPDetector(nn.Module):
    """Hourglass -> K heatmaps -> softmax(logits / temperature) -> Gaussian mean and covariance per keypoint."""

    def __init__(
        self,
        block_expansion: int,
        num_kp: int,
        num_channels: int,
        max_features: int,
        num_blocks: int,
        temperature: float,
        kp_variance: str | float,
        scale_factor: float = 1,
        clip_variance: float | None = None,
    ):
        super().__init__()
        _check_kp_variance(kp_variance)
        self.predictor = Hourglass3d(block_expansion, num_channels, num_kp, num_blocks, max_features)
        self.temperature = temperature
        self.kp_variance = kp_variance
        self.scale_factor = scale_factor
        self.clip_variance = clip_variance

    def forward(self, x: torch.Tensor) -> Keypoints:
        """Frames (B, 3, D, H, W) -> {'mean': (B, D, K, 2), 'var': (B, D, K, 2, 2)}."""
        heatmap = self.predictor(_downscale(x, self.scale_factor))  # (B, K, D, h, w)
        shape = heatmap.shape
        # keypoint statistics stay float32 under autocast: bf16 means are off by ~1/4 pixel, covariances worse
        with torch.autocast(x.device.type, enabled=False):
            heatmap = heatmap.float().reshape(shape[0], shape[1], shape[2], -1)
            heatmap = F.softmax(heatmap / self.temperature, dim=3)
            return gaussian2kp(heatmap.view(shape), self.kp_variance, self.clip_variance)


class MovementEmbeddingModule(nn.Module):
    """Per-keypoint input channels [heatmap, dx, dy, translated source RGB] for the other networks (no weights).

    heatmap_type 'difference' gives driving minus source heatmaps, 'gaussian' the driving ones; each heatmap is
    divided by norm_const (a number, or 'sum' for sum-normalisation). add_bg_feature_map prepends an all-zero
    background slot. Output (B, (K + bg) * per_slot, D, H, W), slots in order, channels [heat, dx, dy, R, G, B].
    """

    def __init__(
        self,
        num_kp: int,
        kp_variance: str | float,
        num_channels: int,
        use_deformed_source_image: bool = False,
        use_difference: bool = False,
        use_heatmap: bool = True,
        add_bg_feature_map: bool = False,
        heatmap_type: str = "gaussian",
        norm_const: str | float = "sum",
        scale_factor: float = 1,
        align_corners: bool = True,
    ):
        super().__init__()
        if heatmap_type not in ("gaussian", "difference"):
            raise AnimbenchError(f"heatmap_type: expected 'gaussian' or 'difference', got {heatmap_type!r}")
        if not (use_heatmap or use_difference or use_deformed_source_image):
            raise AnimbenchError(
                "movement embedding: one of use_heatmap, use_difference, use_deformed_source_image"
            )
        if norm_const != "sum" and not isinstance(norm_const, int | float):
            raise AnimbenchError(f"norm_const: expected a number or 'sum', got {norm_const!r}")
        per_slot = 1 * use_heatmap + 2 * use_difference + num_channels * use_deformed_source_image
        self.out_channels = per_slot * (num_kp + add_bg_feature_map)
        self.kp_variance = kp_variance
        self.use_heatmap, self.use_difference = use_heatmap, use_difference
        self.use_deformed_source_image = use_deformed_source_image
        self.add_bg_feature_map = add_bg_feature_map
        self.heatmap_type = heatmap_type
        self.norm_const = norm_const
        self.scale_factor = scale_factor
        self.align_corners = align_corners

    def normalize_heatmap(self, heatmap: torch.Tensor) -> torch.Tensor:
        """Divide (B, D, K, H, W) heatmaps by norm_const, or by their spatial sum when it is 'sum'."""
        if self.norm_const == "sum":
            return heatmap / heatmap.flatten(3).sum(dim=3)[..., None, None]
        return heatmap / self.norm_const

    def forward(
        self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints
    ) -> torch.Tensor:
        """Source (B, C, 1, H, W) and keypoints -> embedding (B, out_channels, D, H', W') at the scaled size."""
        source_image = _downscale(source_image, self.scale_factor)
        bs, _, _, h, w = source_image.shape
        d, num_kp = kp_driving["mean"].shape[1:3]
        slots = num_kp + self.add_bg_feature_map
        inputs = []
        if self.use_heatmap:
            heatmap = self.normalize_heatmap(kp2gaussian(kp_driving, (h, w), self.kp_variance))
            if self.heatmap_type == "difference":
                heatmap = heatmap - self.normalize_heatmap(kp2gaussian(kp_source, (h, w), self.kp_variance))
            if self.add_bg_feature_map:
                heatmap = torch.cat([heatmap.new_zeros(bs, d, 1, h, w), heatmap], dim=2)
            inputs.append(heatmap.unsqueeze(3))  # (B, D, slots, 1, H, W)
        if self.use_difference or self.use_deformed_source_image:
            displacement = kp_displacement(kp_driving, kp_source, self.add_bg_feature_map)  # (B, D, slots, 2)
        if self.use_difference:
            inputs.append(displacement.view(bs, d, slots, 2, 1, 1).expand(bs, d, slots, 2, h, w))
        if self.use_deformed_source_image:
            inputs.append(self._translated_sources(source_image, displacement))
        embedding = torch.cat(inputs, dim=3).reshape(bs, d, -1, h, w)
        return embedding.permute(0, 2, 1, 3, 4)

    def _translated_sources(self, source_image: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
        # the source shifted by each keypoint's displacement: the crude per-keypoint motion guess
        bs, c, _, h, w = source_image.shape
        _, d, slots, _ = displacement.shape
        sources = source_image.view(bs, 1, 1, c, h, w).expand(bs, d, slots, c, h, w).reshape(-1, c, h, w)
        grid = make_coordinate_grid((h, w), displacement.dtype, displacement.device).view(1, h, w, 2)
        warped = warp(sources, grid + displacement.reshape(-1, 1, 1, 2), self.align_corners)
        return warped.view(bs, d, slots, c, h, w)


class DenseMotionModule(nn.Module):
    """Keypoint embedding -> grouped blocks -> hourglass -> mask over K+1 translations plus a 2-ch correction.

    Returns the absolute sampling grid (B, D, H', W', 3) with z = 0 appended, for 5-D grid_sample.
    """

    def __init__(
        self,
        block_expansion: int,
        num_blocks: int,
        max_features: int,
        mask_embedding_params: dict,
        num_kp: int,
        num_channels: int,
        kp_variance: str | float,
        use_correction: bool,
        use_mask: bool,
        bg_init: float = 2,
        num_group_blocks: int = 0,
        scale_factor: float = 1,
        align_corners: bool = True,
    ):
        super().__init__()
        _check_fields(
            MovementEmbeddingModule, mask_embedding_params, "dense_motion_params.mask_embedding_params",
            frozenset({"add_bg_feature_map"}),
        )  # fmt: skip
        self.mask_embedding = MovementEmbeddingModule(
            num_kp=num_kp, kp_variance=kp_variance, num_channels=num_channels, add_bg_feature_map=True,
            align_corners=align_corners, **mask_embedding_params,
        )  # fmt: skip
        channels = self.mask_embedding.out_channels
        self.group_blocks = nn.ModuleList(
            SameBlock3d(channels, channels, groups=num_kp + 1, kernel_size=(1, 1, 1), padding=(0, 0, 0))
            for _ in range(num_group_blocks)
        )
        out_features = (num_kp + 1) * use_mask + 2 * use_correction
        self.hourglass = Hourglass3d(block_expansion, channels, out_features, num_blocks, max_features)
        # at initialisation the mask is all background and there is no correction: the identity motion
        final = self.hourglass.decoder.conv
        nn.init.zeros_(final.weight)
        bias = ([bg_init] + [0] * num_kp) * use_mask + [0, 0] * use_correction
        with torch.no_grad():
            final.bias.copy_(torch.tensor(bias, dtype=torch.float))
        self.num_kp, self.use_mask, self.use_correction = num_kp, use_mask, use_correction
        self.scale_factor = scale_factor

    def forward(
        self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints
    ) -> torch.Tensor:
        """Source (B, C, 1, H, W) and keypoints -> sampling grid (B, D, H', W', 3), H' = H * scale_factor."""
        source_image = _downscale(source_image, self.scale_factor)
        prediction = self.mask_embedding(source_image, kp_driving, kp_source)
        for block in self.group_blocks:
            # the leaky_relu is a no-op after the block's ReLU; kept as the official code has it
            prediction = F.leaky_relu(block(prediction), 0.2)
        # (B, out_features, D, H', W'); mask and flow in float32 even under autocast
        prediction = self.hourglass(prediction).float()
        bs, _, d, h, w = prediction.shape
        flow = prediction.new_zeros(bs, 2, d, h, w)
        if self.use_mask:
            mask = F.softmax(prediction[:, : self.num_kp + 1], dim=1).unsqueeze(2)  # (B, K+1, 1, D, H', W')
            displacement = kp_displacement(kp_driving, kp_source, add_bg=True)  # (B, D, K+1, 2)
            displacement = displacement.permute(0, 2, 3, 1)[..., None, None]  # (B, K+1, 2, D, 1, 1)
            flow = (displacement * mask).sum(dim=1)
        if self.use_correction:
            flow = flow + prediction[:, -2:]
        identity = make_coordinate_grid((h, w), flow.dtype, flow.device).view(1, 1, h, w, 2)
        deformation = flow.permute(0, 2, 3, 4, 1) + identity
        return torch.cat([deformation, deformation.new_zeros(deformation.shape[:-1] + (1,))], dim=-1)


class MotionTransferGenerator(nn.Module):
    """Appearance encoder -> skips warped by the dense motion, concatenated with keypoint heatmaps -> decoder
    -> refinement ResBlocks -> 1x1x1 'conv-last' -> sigmoid."""

    def __init__(
        self,
        num_channels: int,
        num_kp: int,
        kp_variance: str | float,
        block_expansion: int,
        max_features: int,
        num_blocks: int,
        num_refinement_blocks: int,
        dense_motion_params: dict,
        kp_embedding_params: dict,
        interpolation_mode: str = "nearest",
        align_corners: bool = True,
    ):
        super().__init__()
        if interpolation_mode not in ("nearest", "trilinear"):
            raise AnimbenchError(
                "generator_params.interpolation_mode: expected 'nearest' or 'trilinear', "
                f"got {interpolation_mode!r}"
            )
        self.appearance_encoder = Encoder3d(block_expansion, num_channels, num_blocks, max_features)
        _check_fields(MovementEmbeddingModule, kp_embedding_params, "generator_params.kp_embedding_params")
        self.kp_embedding_module = MovementEmbeddingModule(
            num_kp=num_kp, kp_variance=kp_variance, num_channels=num_channels, align_corners=align_corners,
            **kp_embedding_params,
        )  # fmt: skip
        embedding_features = self.kp_embedding_module.out_channels
        _check_fields(DenseMotionModule, dense_motion_params, "generator_params.dense_motion_params")
        self.dense_motion_module = DenseMotionModule(
            num_kp=num_kp, kp_variance=kp_variance, num_channels=num_channels, align_corners=align_corners,
            **dense_motion_params,
        )  # fmt: skip
        self.video_decoder = Decoder3d(
            block_expansion, num_channels, num_channels, num_blocks, max_features,
            additional_features_for_block=embedding_features, use_last_conv=False,
        )  # fmt: skip
        features = self.video_decoder.out_channels
        refinement = [(f"r{i}", ResBlock3d(features)) for i in range(num_refinement_blocks)]
        # the official key has a hyphen: refinement_module.conv-last.weight
        refinement.append(("conv-last", nn.Conv3d(features, num_channels, kernel_size=1, padding=0)))
        self.refinement_module = nn.Sequential(OrderedDict(refinement))
        self.interpolation_mode = interpolation_mode
        self.align_corners = align_corners

    def deform_input(self, inp: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
        """Warp (B, C, 1, H, W) with a grid (B, D, h, w, 3), resized to (D, H, W) with interpolation_mode."""
        d = deformation.shape[1]
        size = (d,) + inp.shape[3:]
        if deformation.shape[1:4] != size:
            grid = F.interpolate(deformation.permute(0, 4, 1, 2, 3), size=size, mode=self.interpolation_mode)
            deformation = grid.permute(0, 2, 3, 4, 1)
        return F.grid_sample(inp, deformation, align_corners=self.align_corners)

    def forward(self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> dict:
        """Source (B, 3, 1, H, W) -> {'video_prediction', 'video_deformed': (B, 3, D, H, W), 'deformation'}."""
        appearance_skips = self.appearance_encoder(source_image)
        deformation = self.dense_motion_module(source_image, kp_driving, kp_source)
        deformed_skips = [self.deform_input(skip, deformation) for skip in appearance_skips]
        d = kp_driving["mean"].shape[1]
        movement_embedding = self.kp_embedding_module(source_image, kp_driving, kp_source)
        kp_skips = [
            F.interpolate(movement_embedding, size=(d,) + skip.shape[3:], mode=self.interpolation_mode)
            for skip in deformed_skips
        ]
        skips = [
            torch.cat([skip, kp_skip], dim=1) for skip, kp_skip in zip(deformed_skips, kp_skips, strict=True)
        ]
        video_prediction = torch.sigmoid(self.refinement_module(self.video_decoder(skips)))
        video_deformed = self.deform_input(source_image, deformation)
        return {
            "video_prediction": video_prediction,
            "video_deformed": video_deformed,
            "deformation": deformation,
        }


class Discriminator(nn.Module):
    """Pix2Pix-like patch discriminator on [image, Gaussian heatmaps of the driving keypoints]."""

    def __init__(
        self,
        num_channels: int,
        num_kp: int,
        kp_variance: str | float,
        block_expansion: int,
        num_blocks: int,
        max_features: int,
        kp_embedding_params: dict | None = None,
    ):
        super().__init__()
        self.kp_embedding = None
        embedding_channels = 0
        if kp_embedding_params is not None:
            _check_fields(
                MovementEmbeddingModule, kp_embedding_params, "discriminator_params.kp_embedding_params"
            )
            self.kp_embedding = MovementEmbeddingModule(
                num_kp=num_kp, kp_variance=kp_variance, num_channels=num_channels, **kp_embedding_params
            )
            embedding_channels = self.kp_embedding.out_channels
        self.down_blocks = nn.ModuleList(
            DiscriminatorBlock3d(
                num_channels + embedding_channels if i == 0 else min(max_features, block_expansion * 2**i),
                min(max_features, block_expansion * 2 ** (i + 1)),
                norm=i != 0,
            )
            for i in range(num_blocks)
        )
        self.conv = nn.Conv3d(self.down_blocks[-1].conv.out_channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> list[torch.Tensor]:
        """Frames (B, 3, D, H, W) -> [x, block_1, ..., block_nb, prediction map] (feature matching uses all)."""
        maps = [x]
        out = (
            x if self.kp_embedding is None else torch.cat([x, self.kp_embedding(x, kp_driving, kp_source)], 1)
        )
        for block in self.down_blocks:
            out = block(out)
            maps.append(out)
        maps.append(self.conv(out))
        return maps


# ----------------------------------------------------------------------------------------------- the model

DEFAULT_LOSS_WEIGHTS = {"reconstruction": [10, 10, 10, 10, 1], "reconstruction_deformed": 0, "generator_gan": 1,
                        "discriminator_gan": 1}  # fmt: skip
DEFAULT_TRAIN_FLAGS = {"detach_kp_generator": False, "detach_kp_discriminator": True}


def _mean_batch(x: torch.Tensor) -> torch.Tensor:
    # per-sample mean, then the caller averages over the batch: the official reduction order
    return x.reshape(x.shape[0], -1).mean(-1)


def _split_kp(kp_joined: Keypoints) -> tuple[Keypoints, Keypoints]:
    """Keypoints of [source, driving] stacked on time -> (kp_source, kp_driving), each with D = 1."""
    return {k: v[:, :1] for k, v in kp_joined.items()}, {k: v[:, 1:] for k, v in kp_joined.items()}


def _detached(kp: Keypoints) -> Keypoints:
    return {k: v.detach() for k, v in kp.items()}


def _section(cfg: dict, key: str, where: str) -> dict:
    value = cfg.get(key) if isinstance(cfg, dict) else None
    if not isinstance(value, dict):
        raise AnimbenchError(f"Monkey-Net config: missing section {where} (a mapping)")
    return value


class MonkeyNet(Method):
    """Monkey-Net with its three checkpoint entries (kp_detector, generator, discriminator) and its steps.

    Frames are (B, 3, H, W) floats in [0, 1]; internally each is one time step (D = 1) of the official 5-D code.
    Training: call generator_step, backward its summed losses, step the generator and kp_detector optimisers,
    zero the discriminator's gradients (the generator losses reach it through feature matching), then
    discriminator_step and step the discriminator. When detach_kp_discriminator is False, backward the
    generator loss with retain_graph=True, as the official loop does.
    """

    def __init__(
        self,
        kp_detector: KPDetector,
        generator: MotionTransferGenerator,
        discriminator: Discriminator,
        train_params: dict | None = None,
        normalization_params: dict | None = None,
        align_corners: bool = True,
    ):
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator
        self.discriminator = discriminator
        train_params = train_params or {}
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(train_params.get("loss_weights") or {})}
        flags = {
            **DEFAULT_TRAIN_FLAGS,
            **{k: train_params[k] for k in DEFAULT_TRAIN_FLAGS if k in train_params},
        }
        self.detach_kp_generator = bool(flags["detach_kp_generator"])
        self.detach_kp_discriminator = bool(flags["detach_kp_discriminator"])
        rec = self.loss_weights["reconstruction"]
        maps = len(discriminator.down_blocks) + 1
        if not (rec == 0 or (isinstance(rec, list) and len(rec) == maps)):
            raise AnimbenchError(
                f"train_params.loss_weights.reconstruction: expected {maps} weights (image + "
                f"{maps - 1} discriminator blocks) or 0, got {rec!r}"
            )
        normalization_params = dict(normalization_params or {})
        _check_fields(normalize_kp, normalization_params, "transfer_params.normalization_params",
                      frozenset({"kp_driving", "kp_source"}))  # fmt: skip
        self.normalization_params = normalization_params
        self.align_corners = align_corners

    @classmethod
    def from_config(cls, cfg: dict, align_corners: bool = True) -> MonkeyNet:
        """Build from a whole official-style YAML dict (model_params, train_params, transfer_params)."""
        model_params = _section(cfg, "model_params", "model_params")
        common = _section(model_params, "common_params", "model_params.common_params")
        unknown = sorted(set(common) - {"num_kp", "kp_variance", "num_channels"})
        missing = sorted({"num_kp", "kp_variance", "num_channels"} - set(common))
        if unknown or missing:
            raise AnimbenchError(
                f"Monkey-Net config model_params.common_params: unknown {unknown}, missing {missing}"
            )
        kp_params = _section(model_params, "kp_detector_params", "model_params.kp_detector_params")
        gen_params = _section(model_params, "generator_params", "model_params.generator_params")
        disc_params = _section(model_params, "discriminator_params", "model_params.discriminator_params")
        _check_fields(KPDetector, kp_params, "model_params.kp_detector_params")
        _check_fields(MotionTransferGenerator, gen_params, "model_params.generator_params")
        _check_fields(Discriminator, disc_params, "model_params.discriminator_params")
        transfer = cfg.get("transfer_params") or {}
        return cls(
            kp_detector=KPDetector(**kp_params, **common),
            generator=MotionTransferGenerator(**gen_params, **common, align_corners=align_corners),
            discriminator=Discriminator(**disc_params, **common),
            train_params=cfg.get("train_params"),
            normalization_params=transfer.get("normalization_params"),
            align_corners=align_corners,
        )

    @property
    def uses_gan(self) -> bool:
        """Monkey-Net always trains with its LSGAN discriminator."""
        return True

    @property
    def retains_generator_graph(self) -> bool:
        """Without detach_kp_discriminator the discriminator step re-uses the keypoint graph (official)."""
        return not self.detach_kp_discriminator

    def learning_rates(self, cfg: Mapping[str, Any], stage: str = "main") -> dict[str, float]:
        """train_params.lr for every network, as the official code."""
        try:
            return {name: float(cfg["train_params"]["lr"]) for name in self.networks}
        except KeyError as e:
            raise AnimbenchError(f"{cfg['_meta']['path'] or '<config>'}: train_params.{e.args[0]} missing") from None

    def checkpoint_entries(self, step: int) -> dict[str, Any]:
        """Monkey-Net's official checkpoints also hold the iteration count `it`."""
        return {"it": step}

    def generator_step(
        self, source: torch.Tensor, driving: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict]:
        """Reconstruct driving from source: weighted generator losses and outputs for discriminator_step."""
        source_5d, driving_5d = source.unsqueeze(2), driving.unsqueeze(2)
        # one detector pass over both frames stacked on time, so batch norm sees them together (official)
        kp_source, kp_driving = _split_kp(self.kp_detector(torch.cat([source_5d, driving_5d], dim=2)))
        if self.detach_kp_generator:
            generated = self.generator(source_5d, _detached(kp_driving), _detached(kp_source))
        else:
            generated = self.generator(source_5d, kp_driving, kp_source)
        # the discriminator here sees undetached keypoints: generator losses also train the detector (official)
        maps_generated = self.discriminator(generated["video_prediction"], kp_driving, kp_source)
        maps_real = self.discriminator(driving_5d, kp_driving, kp_source)

        weights = self.loss_weights
        losses = {}
        if weights["reconstruction_deformed"] != 0:
            deformed_l1 = _mean_batch(torch.abs(maps_real[0] - generated["video_deformed"]))
            losses["reconstruction_deformed"] = (weights["reconstruction_deformed"] * deformed_l1).mean()
        if weights["reconstruction"] != 0:
            # layer 0 is the image itself (pixel L1), then feature matching on the discriminator blocks
            terms = [
                (weight * _mean_batch(torch.abs(generated_map - real_map))).mean()
                for weight, generated_map, real_map in zip(
                    weights["reconstruction"], maps_generated[:-1], maps_real[:-1], strict=True
                )
                if weight != 0
            ]
            losses["reconstruction"] = sum(terms)
        losses["generator_gan"] = (
            weights["generator_gan"] * _mean_batch((1 - maps_generated[-1]) ** 2)
        ).mean()

        outputs = {
            "prediction": generated["video_prediction"][:, :, 0],
            "deformed": generated["video_deformed"][:, :, 0],
            "deformation": generated["deformation"][:, 0, ..., :2],  # (B, h, w, 2) absolute (x, y) grid
            "kp_source": kp_source,  # 'mean' (B, 1, K, 2), 'var' (B, 1, K, 2, 2)
            "kp_driving": kp_driving,
        }
        return losses, outputs

    def discriminator_step(
        self, source: torch.Tensor, driving: torch.Tensor, outputs: dict
    ) -> dict[str, torch.Tensor]:
        """LSGAN discriminator loss on the real driving frame and the (detached) prediction of generator_step."""
        kp_source, kp_driving = outputs["kp_source"], outputs["kp_driving"]
        if self.detach_kp_discriminator:
            kp_source, kp_driving = _detached(kp_source), _detached(kp_driving)
        maps_generated = self.discriminator(
            outputs["prediction"].detach().unsqueeze(2), kp_driving, kp_source
        )
        maps_real = self.discriminator(driving.unsqueeze(2), kp_driving, kp_source)
        score = (1 - maps_real[-1]) ** 2 + maps_generated[-1] ** 2
        return {"discriminator_gan": (self.loss_weights["discriminator_gan"] * _mean_batch(score)).mean()}

    @torch.no_grad()
    def reconstruct(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        """Reconstruction protocol: source frames animated by their driving frames' keypoints, (B, 3, H, W)."""
        check_reconstruct_shapes(source, driving)
        source_5d = source.unsqueeze(2)
        kp_source = self.kp_detector(source_5d)
        kp_driving = self.kp_detector(driving.unsqueeze(2))
        return self.generator(source_5d, kp_driving, kp_source)["video_prediction"][:, :, 0]

    def animation_mode(self, relative: bool | None = None, adapt_scale: bool | None = None) -> AnimationMode:
        """transfer_params.normalization_params; relative / adapt_scale override move_location / movement_mult
        (None keeps the config's); adapt_variance and clip_mean always come from the config."""
        norm = dict(self.normalization_params)
        if relative is not None:
            norm["move_location"] = relative
        if adapt_scale is not None:
            norm["movement_mult"] = adapt_scale
        return AnimationMode.of(bool(norm.get("move_location", False)), bool(norm.get("movement_mult", False)), norm)

    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving_video: torch.Tensor, mode: AnimationMode | None = None
                ) -> torch.Tensor:
        """Transfer mode: one source frame (3, H, W) or (1, 3, H, W) moved by a driving video (T, 3, H, W)
        -> (T, 3, H, W). Call model.eval() first."""
        source = check_animate_shapes(source, driving_video)
        mode = self.animation_mode() if mode is None else mode
        params = {**dict(mode.options), "move_location": bool(mode.relative), "movement_mult": bool(mode.adapt_scale)}
        source_5d = source.unsqueeze(2)
        kp_source = self.kp_detector(source_5d)
        chunks = [self.kp_detector(frames.unsqueeze(2)) for frames in driving_video.split(ANIMATE_CHUNK)]
        # (1, T, K, ...): the whole video on the time axis, frame 0 the reference for relative motion
        kp_driving = {k: torch.cat([c[k] for c in chunks]).transpose(0, 1) for k in kp_source}
        kp_norm = normalize_kp(kp_driving, kp_source, **params)

        frames = []
        for start in range(0, driving_video.shape[0], ANIMATE_CHUNK):
            kp_frames = {k: v[0, start : start + ANIMATE_CHUNK].unsqueeze(1) for k, v in kp_norm.items()}
            n = kp_frames["mean"].shape[0]
            kp_src = {k: v.expand(n, *v.shape[1:]) for k, v in kp_source.items()}
            out = self.generator(source_5d.expand(n, -1, -1, -1, -1), kp_frames, kp_src)
            frames.append(out["video_prediction"][:, :, 0])
        return torch.cat(frames)


# --- the config ----------------------------------------------------------------------------------------------

_MN_EMBEDDING = {k: LEAF for k in ("scale_factor", "use_heatmap", "use_difference", "use_deformed_source_image",
                                   "heatmap_type", "norm_const")}
CONFIG_SCHEMA = {
    **SHARED_SECTIONS,
    "dataset_params": {"root_dir": LEAF, "image_shape": LEAF, "id_sampling": LEAF, "pairs_list": LEAF,
                       "augmentation_params": AUGMENTATION},
    "model_params": {
        "common_params": {"num_kp": LEAF, "num_channels": LEAF, "kp_variance": LEAF},
        "kp_detector_params": {k: LEAF for k in ("temperature", "block_expansion", "max_features", "num_blocks",
                                                 "scale_factor", "clip_variance")},
        "generator_params": {
            **{k: LEAF for k in ("interpolation_mode", "block_expansion", "max_features", "num_blocks",
                                 "num_refinement_blocks")},
            "dense_motion_params": {
                **{k: LEAF for k in ("block_expansion", "max_features", "num_blocks", "use_mask",
                                     "use_correction", "scale_factor", "num_group_blocks", "bg_init")},
                "mask_embedding_params": _MN_EMBEDDING,  # add_bg_feature_map is set by the code here
            },
            "kp_embedding_params": {**_MN_EMBEDDING, "add_bg_feature_map": LEAF},
        },
        "discriminator_params": {"block_expansion": LEAF, "max_features": LEAF, "num_blocks": LEAF,
                                 "kp_embedding_params": {**_MN_EMBEDDING, "add_bg_feature_map": LEAF}},
    },
    "train_params": {
        **TRAIN_COMMON,
        **{k: LEAF for k in ("lr", "detach_kp_generator", "detach_kp_discriminator")},
        "loss_weights": {k: LEAF for k in ("reconstruction", "reconstruction_deformed", "generator_gan",
                                           "discriminator_gan")},
        "log_params": {"log_freq_iter": LEAF, "cpk_freq_epoch": LEAF},
    },
    "transfer_params": {"num_pairs": LEAF, "format": LEAF, "normalization_params": {
        "movement_mult": LEAF, "move_location": LEAF, "adapt_variance": LEAF, "clip_mean": LEAF}},
    # the official configs' video prediction module (not implemented here): accepted, not used
    "prediction_params": {
        **{k: LEAF for k in ("predict_variance", "num_epochs", "lr", "batch_size", "num_frames", "init_frames",
                             "train_size", "format")},
        "rnn_params": {"num_features": LEAF, "num_layers": LEAF, "dropout": LEAF},
    },
}
REQUIRED_KEYS = (
    "model_params.common_params.num_kp",
    "model_params.common_params.num_channels",
    "model_params.common_params.kp_variance",
    "model_params.kp_detector_params.temperature",
    "model_params.kp_detector_params.block_expansion",
    "model_params.kp_detector_params.max_features",
    "model_params.kp_detector_params.num_blocks",
    "model_params.generator_params.block_expansion",
    "model_params.generator_params.max_features",
    "model_params.generator_params.num_blocks",
    "model_params.generator_params.num_refinement_blocks",
    "model_params.generator_params.dense_motion_params",
    "model_params.generator_params.kp_embedding_params",
    "model_params.discriminator_params.block_expansion",
    "model_params.discriminator_params.max_features",
    "model_params.discriminator_params.num_blocks",
    "train_params.loss_weights.reconstruction",
    "train_params.loss_weights.generator_gan",
    "train_params.loss_weights.discriminator_gan",
)
CONFIG_SPEC = ConfigSpec(CONFIG_SCHEMA, REQUIRED_KEYS, markers=("num_refinement_blocks", "kp_embedding_params"),
                         hints={"animate_params": "transfer_params"},
                         official_repo="github.com/AliaksandrSiarohin/monkey-net")


# --- the card ------------------------------------------------------------------------------------------------

_CONFIGS = {
    "actions": "actions.yaml", "shapes": "shapes.yaml", "taichi": "taichi.yaml", "nemo": "nemo.yaml",
    "bair": "bair.yaml", "moving-gif": "moving-gif.yaml", "vox": "vox.yaml", "vox-full": "vox-full.yaml",
    "tiny": "configs/monkey_net-tiny.yaml",
}
MonkeyNet.card = register_method(MethodCard(
    name="monkey_net", family="keypoint-motion", build=MonkeyNet.build, config_spec=CONFIG_SPEC, configs=_CONFIGS,
    paper="Animating Arbitrary Objects via Deep Motion Transfer (Siarohin et al., CVPR 2019)",
    notes="Gaussian keypoints with covariance; the release names no checkpoint files, any official-layout "
          "checkpoint (generator, kp_detector, discriminator, epoch, it) loads"))
