"""First Order Motion Model (Siarohin et al., NeurIPS 2019), faithful to the official code's numerics.

Shapes below are for the official 256² configs (K = num_kp = 10). Keypoints are dicts
`{"value": (B, K, 2) in [-1, 1] ordered (x, y), "jacobian": (B, K, 2, 2)}`. Every grid_sample goes through
`layers.warp` with the model's `align_corners` (True by default: the official weights were trained with torch
1.0 semantics, reference §1.8.1). State-dict keys equal the official checkpoints' (checked against the dumps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.checkpoints import NETWORK_ENTRIES, OPTIMIZER_ENTRIES
from methods.config import (
    AUGMENTATION,
    LEAF,
    SHARED_SECTIONS,
    TRAIN_COMMON,
    ConfigSpec,
    get_path,
    is_inverse_int,
)
from methods.fomm_keypoints import normalize_kp
from methods.interface import (
    AnimationMode,
    Method,
    check_animate_shapes,
    check_reconstruct_shapes,
    inference_mode,
)
from methods.layers import (
    AntiAliasInterpolation2d,
    Hourglass,
    add_generator_trunk,
    full_precision,
    kp2gaussian,
    make_coordinate_grid,
    resize_deformation,
    upcast,
    warp,
)
from methods.losses import (
    ImagePyramide,
    PerceptualPyramidLoss,
    Transform,
    check_perceptual_fallback,
    scale_key,
)
from methods.registry import MethodCard, load_config, register_method
from plumbing.errors import AnimbenchError

KP_VARIANCE = 0.01  # absent from every official config; the modules' default


class KPDetector(nn.Module):
    """Image -> K keypoints (soft-argmax of heatmaps) and their local 2x2 jacobians."""

    def __init__(self, block_expansion: int, num_kp: int, num_channels: int, max_features: int, num_blocks: int,
                 temperature: float, estimate_jacobian: bool = False, scale_factor: float = 1,
                 single_jacobian_map: bool = False, pad: int = 0):
        super().__init__()
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        # padding 0: heatmaps are 58x58 for a 64x64 input, and the keypoint grid spans those 58 px (§1.2)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=(7, 7), padding=pad)
        self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
        self.jacobian: nn.Conv2d | None = None
        if estimate_jacobian:
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * self.num_jacobian_maps, kernel_size=(7, 7),
                                      padding=pad)
            # identity initialisation: every keypoint starts with J = I
            with torch.no_grad():
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(torch.tensor([1, 0, 0, 1] * self.num_jacobian_maps, dtype=torch.float))
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """(B, 3, H, W) in [0, 1] -> {"value": (B, K, 2), "jacobian": (B, K, 2, 2)}."""
        x = self.down(image) if self.scale_factor != 1 else image  # (B, 3, 64, 64)
        feature_map = self.predictor(x)  # (B, 35, 64, 64)
        logits = self.kp(feature_map)  # (B, K, 58, 58)
        jacobian_map = self.jacobian(feature_map) if self.jacobian is not None else None
        b, k, h, w = logits.shape
        # keypoint statistics in float32 even under autocast: bf16 coordinates are off by ~1/4 px
        with full_precision(logits):
            heatmap = F.softmax(upcast(logits).view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)
            grid = make_coordinate_grid((h, w), heatmap.dtype, heatmap.device)  # over the heatmap, not the image
            out = {"value": (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))}  # (B, K, 2)
            if jacobian_map is not None:
                jacobian_map = upcast(jacobian_map).reshape(b, self.num_jacobian_maps, 4, h, w)
                jacobian = (heatmap.unsqueeze(2) * jacobian_map).view(b, k, 4, -1).sum(dim=-1)
                out["jacobian"] = jacobian.view(b, k, 2, 2)  # row-major [[a, b], [c, d]]
        return out


class DenseMotionNetwork(nn.Module):
    """Sparse per-keypoint motions -> dense backward deformation (driving -> source) and occlusion map."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int, num_channels: int,
                 estimate_occlusion_map: bool = False, scale_factor: float = 1, kp_variance: float = KP_VARIANCE,
                 align_corners: bool = True):
        super().__init__()
        self.hourglass = Hourglass(block_expansion, (num_kp + 1) * (num_channels + 1), num_blocks, max_features)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=(7, 7), padding=(3, 3))
        self.occlusion: nn.Conv2d | None = None
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3))
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        self.align_corners = align_corners
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def heatmap_representation(self, size: Sequence[int], kp_driving: dict, kp_source: dict) -> Tensor:
        """Gaussian(kp_driving) - Gaussian(kp_source), zero background slot first: (B, K+1, 1, h, w)."""
        heatmap = kp2gaussian(kp_driving["value"], size, self.kp_variance) - kp2gaussian(
            kp_source["value"], size, self.kp_variance)
        zeros = heatmap.new_zeros(heatmap.shape[0], 1, *heatmap.shape[2:])
        return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)

    def sparse_motions(self, size: Sequence[int], kp_driving: dict, kp_source: dict) -> Tensor:
        """T_k(z) = kp_source + J_s J_d^-1 (z - kp_driving) per keypoint, identity in slot 0: (B, K+1, h, w, 2)."""
        h, w = size
        value_driving, value_source = kp_driving["value"], kp_source["value"]
        b = value_driving.shape[0]
        identity_grid = make_coordinate_grid((h, w), value_source.dtype, value_source.device).view(1, 1, h, w, 2)
        coordinate_grid = identity_grid - value_driving.view(b, self.num_kp, 1, 1, 2)
        if "jacobian" in kp_driving:
            jacobian = torch.matmul(kp_source["jacobian"], torch.inverse(kp_driving["jacobian"]))  # (B, K, 2, 2)
            coordinate_grid = torch.matmul(jacobian[:, :, None, None], coordinate_grid.unsqueeze(-1)).squeeze(-1)
        driving_to_source = coordinate_grid + value_source.view(b, self.num_kp, 1, 1, 2)
        return torch.cat([identity_grid.expand(b, 1, h, w, 2), driving_to_source], dim=1)

    def forward(self, source_image: Tensor, kp_driving: dict, kp_source: dict) -> dict[str, Tensor]:
        """Source image and keypoints -> deformation (B, h, w, 2), mask, sparse_deformed, occlusion_map."""
        source = self.down(source_image) if self.scale_factor != 1 else source_image  # (B, 3, 64, 64)
        b, c, h, w = source.shape
        with full_precision(source):  # motion in float32 under autocast (2x2 inverses, coordinates)
            kp_driving = {key: upcast(v) for key, v in kp_driving.items()}
            kp_source = {key: upcast(v) for key, v in kp_source.items()}
            heatmap = self.heatmap_representation((h, w), kp_driving, kp_source)
            sparse_motion = self.sparse_motions((h, w), kp_driving, kp_source)
        slots = self.num_kp + 1
        source_repeat = source.unsqueeze(1).expand(b, slots, c, h, w).reshape(b * slots, c, h, w)
        sparse_deformed = warp(source_repeat, sparse_motion.reshape(b * slots, h, w, 2), self.align_corners)
        sparse_deformed = sparse_deformed.view(b, slots, c, h, w)
        # per slot [heat, R, G, B], background slot first: 44 channels for K = 10 (§1.8.9)
        hourglass_input = torch.cat([heatmap, sparse_deformed], dim=2).view(b, -1, h, w)
        prediction = self.hourglass(hourglass_input)  # (B, 108, 64, 64)
        mask = F.softmax(upcast(self.mask(prediction)), dim=1)  # (B, K+1, 64, 64)
        deformation = (sparse_motion.permute(0, 1, 4, 2, 3) * mask.unsqueeze(2)).sum(dim=1)
        out = {"sparse_deformed": sparse_deformed, "mask": mask, "deformation": deformation.permute(0, 2, 3, 1)}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))  # (B, 1, 64, 64)
        return out


class OcclusionAwareGenerator(nn.Module):
    """Encoder -> warp features by the dense motion, mask by occlusion -> residual bottleneck -> decoder."""

    def __init__(self, num_channels: int, num_kp: int, block_expansion: int, max_features: int,
                 num_down_blocks: int, num_bottleneck_blocks: int, estimate_occlusion_map: bool = False,
                 dense_motion_params: dict | None = None, align_corners: bool = True):
        super().__init__()
        self.dense_motion_network: DenseMotionNetwork | None = None
        if dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(
                num_kp=num_kp, num_channels=num_channels, estimate_occlusion_map=estimate_occlusion_map,
                align_corners=align_corners, **dense_motion_params)
        add_generator_trunk(self, num_channels, block_expansion, max_features, num_down_blocks, num_bottleneck_blocks)
        self.num_channels = num_channels
        self.align_corners = align_corners

    def deform_input(self, x: Tensor, deformation: Tensor) -> Tensor:
        """Warp x by the deformation, bilinearly resized (align_corners=False, as official) if sizes differ."""
        return warp(x, resize_deformation(deformation, x.shape[2:]), self.align_corners)

    def forward(self, source_image: Tensor, kp_driving: dict, kp_source: dict) -> dict[str, Tensor]:
        """Source image (B, 3, H, W) and keypoints -> {"prediction": (B, 3, H, W) in [0, 1], ...}."""
        out = self.first(source_image)  # (B, 64, 256, 256)
        for block in self.down_blocks:
            out = block(out)  # (B, 256, 64, 64) after two
        result: dict[str, Tensor] = {}
        if self.dense_motion_network is not None:
            motion = self.dense_motion_network(source_image, kp_driving=kp_driving, kp_source=kp_source)
            result["mask"] = motion["mask"]
            result["sparse_deformed"] = motion["sparse_deformed"]
            out = self.deform_input(out, motion["deformation"])
            if "occlusion_map" in motion:
                occlusion_map = motion["occlusion_map"]
                result["occlusion_map"] = occlusion_map
                if occlusion_map.shape[2:] != out.shape[2:]:
                    occlusion_map = F.interpolate(occlusion_map, size=out.shape[2:], mode="bilinear",
                                                  align_corners=False)
                out = out * occlusion_map
            result["deformed"] = self.deform_input(source_image, motion["deformation"])  # visualisation only
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        result["prediction"] = torch.sigmoid(self.final(out))  # (B, 3, 256, 256) in [0, 1]
        return result


class DiscriminatorBlock(nn.Module):
    """4x4 valid conv (optionally spectral-normed) -> InstanceNorm (optional) -> LeakyReLU 0.2 -> avg pool."""

    def __init__(self, in_features: int, out_features: int, norm: bool = False, pool: bool = False,
                 sn: bool = False):
        super().__init__()
        conv = nn.Conv2d(in_features, out_features, kernel_size=4)
        # nn.utils.spectral_norm (not the parametrization API): its keys and load pre-hook match the
        # official files, including torch-1.0 ones without weight_v
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H', W')."""
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        return F.avg_pool2d(out, (2, 2)) if self.pool else out


class Discriminator(nn.Module):
    """Pix2Pix-style patch discriminator; with use_kp, driving-keypoint Gaussians are extra input channels."""

    def __init__(self, num_channels: int = 3, block_expansion: int = 64, num_blocks: int = 4,
                 max_features: int = 512, sn: bool = False, use_kp: bool = False, num_kp: int = 10,
                 kp_variance: float = KP_VARIANCE):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DiscriminatorBlock(
                num_channels + num_kp * use_kp if i == 0 else min(max_features, block_expansion * (2**i)),
                min(max_features, block_expansion * (2 ** (i + 1))),
                norm=i != 0, pool=i != num_blocks - 1, sn=sn)
            for i in range(num_blocks)
        )
        conv = nn.Conv2d(min(max_features, block_expansion * (2**num_blocks)), 1, kernel_size=1)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.use_kp = use_kp
        self.kp_variance = kp_variance

    def forward(self, x: Tensor, kp_value: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """Image (B, 3, H, W) [+ keypoints (B, K, 2)] -> (4 feature maps, prediction map)."""
        out = x
        if self.use_kp:
            with full_precision(x):
                heatmaps = kp2gaussian(upcast(kp_value), x.shape[2:], self.kp_variance).to(x.dtype)
            out = torch.cat([out, heatmaps], dim=1)
        feature_maps = []
        for block in self.down_blocks:
            out = block(out)
            feature_maps.append(out)
        return feature_maps, self.conv(out)  # prediction map (B, 1, 26, 26) at 256², no sigmoid (LSGAN)


class MultiScaleDiscriminator(nn.Module):
    """One Discriminator per scale, under `discs.<scale with '.' -> '-'>` (scale 1 -> `discs.1`)."""

    def __init__(self, scales: Sequence[float] = (), **kwargs: Any):
        super().__init__()
        self.scales = list(scales)
        self.discs = nn.ModuleDict({scale_key(s).replace(".", "-"): Discriminator(**kwargs) for s in self.scales})

    def forward(self, pyramid: dict[str, Tensor], kp_value: Tensor | None = None) -> dict[str, tuple]:
        """{str(scale): (feature_maps, prediction_map)} for a pyramid {str(scale): image}."""
        return {key.replace("-", "."): disc(pyramid[key.replace("-", ".")], kp_value)
                for key, disc in self.discs.items()}


_KP_KEYS = {"temperature", "block_expansion", "max_features", "num_blocks", "scale_factor", "single_jacobian_map",
            "pad"}
_GEN_KEYS = {"block_expansion", "max_features", "num_down_blocks", "num_bottleneck_blocks", "estimate_occlusion_map",
             "dense_motion_params"}
_DM_KEYS = {"block_expansion", "max_features", "num_blocks", "scale_factor", "kp_variance"}
_DISC_KEYS = {"scales", "block_expansion", "max_features", "num_blocks", "sn", "use_kp", "kp_variance"}


def _known(params: dict, allowed: set[str], where: str, field: str) -> dict:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise AnimbenchError(f"{where}: {field}.{unknown[0]} is not a FOMM option (expected one of {sorted(allowed)})")
    return dict(params)


class FOMM(Method):
    """The three official networks plus FOMM's training losses and inference protocols.

    Training (the loop lives elsewhere): `losses, outputs = model.generator_step(source, driving)`; backward
    sum(losses.values()); step the generator and kp_detector optimizers; zero the discriminator's gradients
    (the generator step's feature matching leaves some there, as in the official loop); then
    `model.discriminator_step(source, driving, outputs)` and step the discriminator optimizer.
    """

    def __init__(self, kp_detector: KPDetector, generator: OcclusionAwareGenerator,
                 discriminator: MultiScaleDiscriminator, train_params: dict, num_channels: int = 3,
                 align_corners: bool = True):
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator
        self.discriminator = discriminator
        self.train_params = train_params
        self.loss_weights = train_params["loss_weights"]
        self.num_channels = num_channels
        scales = {scale_key(s): s for s in list(train_params["scales"]) + discriminator.scales}
        self.pyramid = ImagePyramide(list(scales.values()), num_channels)
        self.align_corners = align_corners
        self._perceptual: PerceptualPyramidLoss | None = None  # built on first use: inference needs no VGG

    @classmethod
    def from_config(cls, cfg: dict | str, align_corners: bool = True) -> FOMM:
        """Build from an official FOMM YAML (or our own), as a path or a load_config dict."""
        if not isinstance(cfg, dict) or "_meta" not in cfg:
            cfg = load_config(cfg, method="fomm")
        where = cfg["_meta"]["path"] or "<config>"
        common = get_path(cfg, "model_params.common_params")
        num_kp, num_channels = common["num_kp"], common["num_channels"]
        kp_params = _known(get_path(cfg, "model_params.kp_detector_params"), _KP_KEYS, where,
                           "model_params.kp_detector_params")
        gen_params = _known(get_path(cfg, "model_params.generator_params"), _GEN_KEYS, where,
                            "model_params.generator_params")
        if gen_params.get("dense_motion_params") is not None:
            gen_params["dense_motion_params"] = _known(gen_params["dense_motion_params"], _DM_KEYS, where,
                                                       "model_params.generator_params.dense_motion_params")
        disc_params = _known(get_path(cfg, "model_params.discriminator_params"), _DISC_KEYS, where,
                             "model_params.discriminator_params")
        kp_detector = KPDetector(num_kp=num_kp, num_channels=num_channels,
                                 estimate_jacobian=bool(common.get("estimate_jacobian", False)), **kp_params)
        generator = OcclusionAwareGenerator(num_channels=num_channels, num_kp=num_kp, align_corners=align_corners,
                                            **gen_params)
        discriminator = MultiScaleDiscriminator(num_kp=num_kp, num_channels=num_channels, **disc_params)
        model = cls(kp_detector, generator, discriminator, cfg["train_params"], num_channels, align_corners)
        model.config = cfg
        return model

    @property
    def uses_gan(self) -> bool:
        """True when the config trains the discriminator (loss_weights.generator_gan != 0)."""
        return self.loss_weights["generator_gan"] != 0

    @staticmethod
    def official_entries() -> list[str]:
        """The entry names of an official FOMM checkpoint file."""
        return [*NETWORK_ENTRIES, *OPTIMIZER_ENTRIES, "epoch"]

    def learning_rates(self, cfg: Mapping[str, Any], stage: str = "main") -> dict[str, float]:
        """One learning rate per network: train_params.lr_generator / lr_discriminator / lr_kp_detector."""
        try:
            return {name: float(cfg["train_params"][f"lr_{name}"]) for name in self.networks}
        except KeyError as e:
            raise AnimbenchError(f"{cfg['_meta']['path'] or '<config>'}: train_params.{e.args[0]} missing") from None

    def training_backends(self) -> dict[str, Any]:
        """The perceptual loss's network (VGG19 or the config's fallback); raises early when it is missing."""
        return {"backend": self.perceptual_loss.backend, "description": self.perceptual_loss.backend_description}

    @property
    def perceptual_loss(self) -> PerceptualPyramidLoss:
        """The perceptual pyramid loss (VGG19, or the config's fallback); raises when VGG19 is missing."""
        if self._perceptual is None:
            self._perceptual = PerceptualPyramidLoss(
                self.train_params["scales"], self.loss_weights["perceptual"], self.num_channels,
                fallback=self.train_params.get("perceptual_fallback"))
        # not a registered submodule (so no VGG in state_dict), hence it follows the generator's device by hand
        device = next(self.generator.parameters()).device
        if next(self._perceptual.buffers()).device != device:
            self._perceptual.to(device)
        return self._perceptual

    def generator_step(self, source: Tensor, driving: Tensor) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Weighted generator + keypoint losses of the config for one batch, and the generator outputs."""
        w = self.loss_weights
        # three separate detector passes (source, driving, transformed), as official: BN stats update 3 times
        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        outputs: dict[str, Any] = self.generator(source, kp_driving=kp_driving, kp_source=kp_source)
        outputs.update(kp_source=kp_source, kp_driving=kp_driving)
        prediction = outputs["prediction"]
        losses: dict[str, Tensor] = {}
        if sum(w["perceptual"]) != 0:
            losses["perceptual"] = self.perceptual_loss(prediction, driving)
        if self.uses_gan:
            pyramid_real, pyramid_generated = self.pyramid(driving), self.pyramid(prediction)
            kp_value = kp_driving["value"].detach()
            maps_generated = self.discriminator(pyramid_generated, kp_value)
            maps_real = self.discriminator(pyramid_real, kp_value)
            losses["gen_gan"] = sum(w["generator_gan"] * ((1 - upcast(maps_generated[s][1])) ** 2).mean()
                                    for s in maps_generated)
            if sum(w["feature_matching"]) != 0:
                total = prediction.new_zeros(())
                for s in maps_generated:
                    for i, (real, fake) in enumerate(zip(maps_real[s][0], maps_generated[s][0], strict=True)):
                        if w["feature_matching"][i] != 0:
                            total = total + w["feature_matching"][i] * torch.abs(upcast(real) - upcast(fake)).mean()
                losses["feature_matching"] = total
        if w["equivariance_value"] + w["equivariance_jacobian"] != 0:
            losses.update(self._equivariance_losses(driving, kp_driving, outputs))
        return losses, outputs

    def _equivariance_losses(self, driving: Tensor, kp_driving: dict, outputs: dict) -> dict[str, Tensor]:
        transform = Transform(driving.shape[0], device=driving.device, **self.train_params["transform_params"])
        with full_precision(driving):
            transformed_frame = transform.transform_frame(upcast(driving), self.align_corners)
        transformed_kp = self.kp_detector(transformed_frame)  # float32 keypoints even under autocast
        outputs.update(transformed_frame=transformed_frame, transformed_kp=transformed_kp)
        with full_precision(driving):
            return self._equivariance_terms(transform, kp_driving, transformed_kp)

    def _equivariance_terms(self, transform: Transform, kp_driving: dict, transformed_kp: dict) -> dict[str, Tensor]:
        w = self.loss_weights
        losses = {}
        if w["equivariance_value"] != 0:
            value = torch.abs(kp_driving["value"] - transform.warp_coordinates(transformed_kp["value"])).mean()
            losses["equivariance_value"] = w["equivariance_value"] * value
        if w["equivariance_jacobian"] != 0 and "jacobian" in kp_driving:
            # J_d^-1 · (∇T(kp_T) · J_T) should be the identity
            jacobian_transformed = torch.matmul(transform.jacobian(transformed_kp["value"]),
                                                transformed_kp["jacobian"])
            value = torch.matmul(torch.inverse(kp_driving["jacobian"]), jacobian_transformed)
            eye = torch.eye(2, dtype=value.dtype, device=value.device).view(1, 1, 2, 2)
            losses["equivariance_jacobian"] = w["equivariance_jacobian"] * torch.abs(eye - value).mean()
        return losses

    def discriminator_step(self, source: Tensor, driving: Tensor, outputs: dict[str, Any]) -> dict[str, Tensor]:
        """LSGAN discriminator loss on the detached prediction; {} when the config has no GAN."""
        if not self.uses_gan:
            return {}
        pyramid_real = self.pyramid(driving)
        pyramid_generated = self.pyramid(outputs["prediction"].detach())
        kp_value = outputs["kp_driving"]["value"].detach()
        maps_generated = self.discriminator(pyramid_generated, kp_value)
        maps_real = self.discriminator(pyramid_real, kp_value)
        weight = self.loss_weights["discriminator_gan"]
        total = sum(weight * ((1 - upcast(maps_real[s][1])) ** 2 + upcast(maps_generated[s][1]) ** 2).mean()
                    for s in maps_real)
        return {"disc_gan": total}

    def _inference(self):
        """eval mode (BN running statistics) and no_grad, restoring the previous modes afterwards."""
        return inference_mode(self.kp_detector, self.generator)

    def reconstruct(self, source: Tensor, driving: Tensor) -> Tensor:
        """Reconstruction protocol step: absolute keypoints of driving applied to source -> (B, 3, H, W)."""
        check_reconstruct_shapes(source, driving)
        with self._inference():
            kp_source = self.kp_detector(source)
            kp_driving = self.kp_detector(driving)
            return self.generator(source, kp_driving=kp_driving, kp_source=kp_source)["prediction"]

    def animation_mode(self, relative: bool | None = None, adapt_scale: bool | None = None) -> AnimationMode:
        """The config's animate_params.normalization_params, with the flags given (None keeps the config's)."""
        norm = ((getattr(self, "config", None) or {}).get("animate_params") or {}).get("normalization_params") or {}
        relative = bool(norm.get("use_relative_movement", False)) if relative is None else relative
        adapt_scale = bool(norm.get("adapt_movement_scale", False)) if adapt_scale is None else adapt_scale
        return AnimationMode.of(relative, adapt_scale,
                                {"relative_jacobian": bool(norm.get("use_relative_jacobian", relative))})

    def animate(self, source: Tensor, driving_video: Tensor, mode: AnimationMode | None = None,
                batch_size: int = 16) -> Tensor:
        """Animate one source image (3, H, W) or (1, 3, H, W) by a driving video (T, 3, H, W) -> (T, 3, H, W).

        As the official demo: kp_driving_initial is driving frame 0; relative mode moves the source keypoints by
        the driving displacement (scaled by the hull-area ratio with adapt_scale); absolute uses driving keypoints.
        """
        source = check_animate_shapes(source, driving_video)
        mode = self.animation_mode() if mode is None else mode
        frames = []
        with self._inference():
            kp_source = self.kp_detector(source)
            kp_driving_initial = self.kp_detector(driving_video[:1])
            for chunk in driving_video.split(batch_size):
                n = chunk.shape[0]
                kp_source_n = {k: v.expand(n, *v.shape[1:]) for k, v in kp_source.items()}
                kp_norm = normalize_kp(kp_source_n, self.kp_detector(chunk), kp_driving_initial,
                                       adapt_movement_scale=bool(mode.adapt_scale),
                                       use_relative_movement=bool(mode.relative),
                                       use_relative_jacobian=mode.option("relative_jacobian", True))
                out = self.generator(source.expand(n, *source.shape[1:]), kp_driving=kp_norm, kp_source=kp_source_n)
                frames.append(out["prediction"])
        return torch.cat(frames)


# --- the config ----------------------------------------------------------------------------------------------

# train_params.perceptual_fallback: what the FOMM perceptual loss does when vgg19-dcbb9e9d.pth is absent.

CONFIG_SCHEMA = {
    **SHARED_SECTIONS,
    "dataset_params": {"root_dir": LEAF, "frame_shape": LEAF, "id_sampling": LEAF, "pairs_list": LEAF,
                       "augmentation_params": AUGMENTATION},
    "model_params": {
        "common_params": {"num_kp": LEAF, "num_channels": LEAF, "estimate_jacobian": LEAF},
        "kp_detector_params": {k: LEAF for k in ("temperature", "block_expansion", "max_features", "num_blocks",
                                                 "scale_factor", "single_jacobian_map", "pad")},
        "generator_params": {
            **{k: LEAF for k in ("block_expansion", "max_features", "num_down_blocks", "num_bottleneck_blocks",
                                 "estimate_occlusion_map")},
            "dense_motion_params": {k: LEAF for k in ("block_expansion", "max_features", "num_blocks",
                                                      "scale_factor", "kp_variance")},
        },
        "discriminator_params": {k: LEAF for k in ("scales", "block_expansion", "max_features", "num_blocks",
                                                   "sn", "use_kp", "kp_variance")},
    },
    "train_params": {
        **TRAIN_COMMON,
        **{k: LEAF for k in ("lr_generator", "lr_discriminator", "lr_kp_detector", "scales",
                             "perceptual_fallback")},
        "transform_params": {"sigma_affine": LEAF, "sigma_tps": LEAF, "points_tps": LEAF},
        "loss_weights": {k: LEAF for k in ("generator_gan", "discriminator_gan", "feature_matching", "perceptual",
                                           "equivariance_value", "equivariance_jacobian")},
    },
    "animate_params": {"num_pairs": LEAF, "format": LEAF, "normalization_params": {
        "adapt_movement_scale": LEAF, "use_relative_movement": LEAF, "use_relative_jacobian": LEAF}},
}
REQUIRED_KEYS = (
    "model_params.common_params.num_kp",
    "model_params.common_params.num_channels",
    "model_params.common_params.estimate_jacobian",
    "model_params.kp_detector_params.temperature",
    "model_params.kp_detector_params.block_expansion",
    "model_params.kp_detector_params.max_features",
    "model_params.kp_detector_params.num_blocks",
    "model_params.kp_detector_params.scale_factor",
    "model_params.generator_params.block_expansion",
    "model_params.generator_params.max_features",
    "model_params.generator_params.num_down_blocks",
    "model_params.generator_params.num_bottleneck_blocks",
    "model_params.generator_params.dense_motion_params.block_expansion",
    "model_params.generator_params.dense_motion_params.max_features",
    "model_params.generator_params.dense_motion_params.num_blocks",
    "model_params.generator_params.dense_motion_params.scale_factor",
    "model_params.discriminator_params.scales",
    "model_params.discriminator_params.block_expansion",
    "model_params.discriminator_params.max_features",
    "model_params.discriminator_params.num_blocks",
    "train_params.scales",
    "train_params.transform_params.sigma_affine",
    "train_params.loss_weights.generator_gan",
    "train_params.loss_weights.discriminator_gan",
    "train_params.loss_weights.feature_matching",
    "train_params.loss_weights.perceptual",
    "train_params.loss_weights.equivariance_value",
    "train_params.loss_weights.equivariance_jacobian",
)


def _check_config(cfg: dict, where: str) -> None:
    for key in ("model_params.kp_detector_params.scale_factor",
                "model_params.generator_params.dense_motion_params.scale_factor"):
        scale = get_path(cfg, key)
        if not is_inverse_int(scale):
            raise AnimbenchError(f"{where}: {key} must be 1/n for an integer n >= 1, got {scale!r}")
    for key in ("train_params.scales", "model_params.discriminator_params.scales"):
        scales = get_path(cfg, key)
        if not isinstance(scales, list) or not scales or not all(is_inverse_int(s) for s in scales):
            raise AnimbenchError(f"{where}: {key} must be a non-empty list of 1/n scales (1, 0.5, 0.25...), "
                                 f"got {scales!r}")
    weights = get_path(cfg, "train_params.loss_weights")
    for key in ("perceptual", "feature_matching"):
        if not isinstance(weights[key], list):
            raise AnimbenchError(f"{where}: train_params.loss_weights.{key} must be a list, got {weights[key]!r}")
    num_blocks = get_path(cfg, "model_params.discriminator_params.num_blocks")
    if weights["generator_gan"] != 0 and len(weights["feature_matching"]) < num_blocks:
        raise AnimbenchError(
            f"{where}: train_params.loss_weights.feature_matching needs one weight per discriminator block "
            f"({num_blocks}), got {len(weights['feature_matching'])}"
        )
    if len(weights["perceptual"]) != 5:
        raise AnimbenchError(
            f"{where}: train_params.loss_weights.perceptual must have 5 weights (VGG19 relu1_1..relu5_1), "
            f"got {len(weights['perceptual'])}"
        )
    check_perceptual_fallback(cfg, where)


CONFIG_SPEC = ConfigSpec(CONFIG_SCHEMA, REQUIRED_KEYS, markers=("num_bottleneck_blocks", "num_down_blocks"),
                         hints={"transfer_params": "animate_params"},
                         official_repo="github.com/AliaksandrSiarohin/first-order-model", check=_check_config)


# --- the card ------------------------------------------------------------------------------------------------

_CONFIGS = {
    "vox": "vox-256.yaml", "vox-adv": "vox-adv-256.yaml", "taichi": "taichi-256.yaml",
    "taichi-adv": "taichi-adv-256.yaml", "fashion": "fashion-256.yaml", "mgif": "mgif-256.yaml",
    "nemo": "nemo-256.yaml", "bair": "bair-256.yaml", "tiny": "configs/fomm-tiny.yaml",
}
_CHECKPOINTS = {
    "vox-cpk.pth.tar": "vox", "vox-adv-cpk.pth.tar": "vox-adv", "taichi-cpk.pth.tar": "taichi",
    "taichi-adv-cpk.pth.tar": "taichi-adv", "nemo-cpk.pth.tar": "nemo", "mgif-cpk.pth.tar": "mgif",
    "bair-cpk.pth.tar": "bair", "fashion.pth.tar": "fashion",
}
FOMM.card = register_method(MethodCard(
    name="fomm", paper="First Order Motion Model for Image Animation (Siarohin et al., NeurIPS 2019)",
    family="keypoint-motion", build=FOMM.build, config_spec=CONFIG_SPEC, configs=_CONFIGS, checkpoints=_CHECKPOINTS,
    notes="keypoints with local affine jacobians, occlusion-aware generator"))
