"""Motion Representations for Articulated Animation (Siarohin et al., CVPR 2021), as the official code builds it.

Reference: mraa-tpsmm.md §1 and §3 (differences from FOMM). Four networks under the official checkpoint entries:
`region_predictor` (FOMM's keypoint hourglass, K regions with a PCA affine each), `bg_predictor` (one affine of the
whole frame), `generator` (FOMM's generator with warped-skip blends, holding the `pixelwise_flow_predictor`) and
`avd_network` (the animation-via-disentanglement MLP of the second training stage, `--stage avd`).

Shapes are for the official 256² configs (K = num_regions = 10). Region parameters are the dicts described in
methods/mraa_regions.py. The grid_sample convention is a per-method constant: align_corners=False at every
sampling site (the official code passes none, under its pinned torch 1.4; §1.8.1), recorded with every output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
    Encoder,
    Hourglass,
    add_generator_trunk,
    full_precision,
    make_coordinate_grid,
    resize_deformation,
    upcast,
    warp,
)
from methods.losses import PerceptualPyramidLoss, Transform
from methods.mraa_config import ANIMATION_MODES, BG_TYPES, CONFIG_SPEC
from methods.mraa_regions import (
    embedding_to_region_params,
    from_homogeneous,
    pca_affine,
    random_scale,
    region2gaussian,
    region_moments,
    region_params_to_embedding,
    region_transform,
    relative_region_params,
    revert_axis_swap,
    to_homogeneous,
)
from methods.registry import MethodCard, load_config, register_method
from plumbing.errors import AnimbenchError

ALIGN_CORNERS = False  # the official code's grid_sample calls under torch 1.4 (§1.8.1): every site, every mode
REGION_VAR = 0.01  # the flow predictor's isotropic variance when use_covar_heatmap is False (no config sets it)
MAIN_NETWORKS = ("generator", "bg_predictor", "region_predictor")  # official entry order
AVD = "avd_network"


class RegionPredictor(nn.Module):
    """Image -> K regions: softmax heatmaps, their centres, covariances and PCA affines (§1.2)."""

    def __init__(self, block_expansion: int, num_regions: int, num_channels: int, max_features: int,
                 num_blocks: int, temperature: float, estimate_affine: bool = False, scale_factor: float = 1,
                 pca_based: bool = False, fast_svd: bool = False, pad: int = 3):
        super().__init__()
        if fast_svd:
            raise AnimbenchError("region_predictor_params.fast_svd: True needs the external torch_batch_svd "
                                 "package, which the official requirements do not list; set it to False")
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        # pad is per config: 3 (vox, key absent) keeps 64x64 heatmaps, 0 gives 58x58 and rescales the grid (§1.2)
        self.regions = nn.Conv2d(self.predictor.out_filters, num_regions, kernel_size=(7, 7), padding=pad)
        self.jacobian: nn.Conv2d | None = None
        if estimate_affine and not pca_based:  # FOMM-style regression head; no official config uses it
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4, kernel_size=(7, 7), padding=pad)
            with torch.no_grad():
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]))
        self.temperature = temperature
        self.scale_factor = scale_factor
        self.pca_based = pca_based
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """(B, 3, H, W) in [0, 1] -> {"shift" (B, K, 2), "covar", "affine" (B, K, 2, 2), "u", "d", "heatmap"}."""
        x = self.down(image) if self.scale_factor != 1 else image  # (B, 3, 64, 64)
        feature_map = self.predictor(x)  # (B, 35, 64, 64)
        logits = self.regions(feature_map)  # (B, K, 64, 64) with pad 3, (B, K, 58, 58) with pad 0
        jacobian_map = self.jacobian(feature_map) if self.jacobian is not None else None
        b, k, h, w = logits.shape
        with full_precision(logits):  # region statistics and the SVD in float32 even under autocast
            heatmap = F.softmax(upcast(logits).view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)
            params = region_moments(heatmap) if self.pca_based else {"shift": region_moments(heatmap)["shift"]}
            params["heatmap"] = heatmap
            if jacobian_map is not None:
                jacobian = (heatmap.unsqueeze(2) * upcast(jacobian_map).view(b, 1, 4, h, w)).view(b, k, 4, -1)
                params["affine"] = jacobian.sum(-1).view(b, k, 2, 2)
                params["covar"] = torch.matmul(params["affine"], params["affine"].transpose(-1, -2))
            elif self.pca_based:
                params.update(pca_affine(params["covar"]))
        return params


class BGMotionPredictor(nn.Module):
    """Source and driving frames -> one 3x3 matrix per sample mapping driving to source coordinates (§1.3)."""

    def __init__(self, block_expansion: int, num_channels: int, max_features: int, num_blocks: int,
                 bg_type: str = "zero"):
        super().__init__()
        if bg_type not in BG_TYPES:
            raise AnimbenchError(f"bg_predictor_params.bg_type: expected one of {list(BG_TYPES)}, got {bg_type!r}")
        self.bg_type = bg_type
        if bg_type != "zero":  # "zero" has no parameters at all (mgif256's empty state_dict)
            self.encoder = Encoder(block_expansion, 2 * num_channels, num_blocks, max_features)
            self.fc = nn.Linear(min(max_features, block_expansion * 2**num_blocks), BG_TYPES[bg_type])
            identity = {"shift": [0, 0], "affine": [1, 0, 0, 0, 1, 0], "perspective": [1, 0, 0, 0, 1, 0, 0, 0]}
            with torch.no_grad():
                self.fc.weight.zero_()
                self.fc.bias.copy_(torch.tensor(identity[bg_type], dtype=torch.float))

    def forward(self, source: Tensor, driving: Tensor) -> Tensor:
        """(B, 3, H, W) x 2 -> (B, 3, 3)."""
        b = source.shape[0]
        out = torch.eye(3, dtype=source.dtype, device=source.device).repeat(b, 1, 1)
        if self.bg_type == "zero":
            return out
        features = self.encoder(torch.cat([source, driving], dim=1))[-1]  # (B, 1024, 8, 8) at 256²
        prediction = self.fc(features.mean(dim=(2, 3))).to(out.dtype)
        if self.bg_type == "shift":
            out[:, :2, 2] = prediction
        else:
            out[:, :2, :] = prediction[:, :6].view(b, 2, 3)
            if self.bg_type == "perspective":
                out[:, 2, :2] = prediction[:, 6:]
        return out


class PixelwiseFlowPredictor(nn.Module):
    """Region params (+ bg matrix) -> dense backward flow (driving -> source) and occlusion, at 1/4 size (§1.4)."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_regions: int,
                 num_channels: int, estimate_occlusion_map: bool = False, scale_factor: float = 1,
                 region_var: float = REGION_VAR, use_covar_heatmap: bool = False, use_deformed_source: bool = True,
                 revert_axis_swap: bool = False, align_corners: bool = ALIGN_CORNERS):
        super().__init__()
        per_slot = num_channels * use_deformed_source + 1
        self.hourglass = Hourglass(block_expansion, (num_regions + 1) * per_slot, num_blocks, max_features)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_regions + 1, kernel_size=(7, 7), padding=(3, 3))
        self.occlusion: nn.Conv2d | None = None
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3))
        self.num_regions = num_regions
        self.scale_factor = scale_factor
        self.region_var = region_var
        self.use_covar_heatmap = use_covar_heatmap
        self.use_deformed_source = use_deformed_source
        self.revert_axis_swap = revert_axis_swap
        self.align_corners = align_corners
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def heatmaps(self, size: tuple[int, int], driving: Mapping[str, Tensor], source: Mapping[str, Tensor]) -> Tensor:
        """Gaussian(driving) − Gaussian(source) with each region's own covariance, zero bg slot first:
        (B, K+1, 1, h, w)."""
        cov_d = driving["covar"] if self.use_covar_heatmap else self.region_var
        cov_s = source["covar"] if self.use_covar_heatmap else self.region_var
        heatmap = region2gaussian(driving["shift"], cov_d, size) - region2gaussian(source["shift"], cov_s, size)
        zeros = heatmap.new_zeros(heatmap.shape[0], 1, *heatmap.shape[2:])
        return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)

    def sparse_motions(self, size: tuple[int, int], driving: Mapping[str, Tensor], source: Mapping[str, Tensor],
                       bg_params: Tensor | None) -> Tensor:
        """T_k(z) = μ_s + M_k(z − μ_d), M_k = A_s A_d⁻¹ sign-fixed; slot 0 the bg matrix (or identity):
        (B, K+1, h, w, 2)."""
        h, w = size
        b, k = source["shift"].shape[:2]
        identity = make_coordinate_grid((h, w), source["shift"].dtype, source["shift"].device).view(1, 1, h, w, 2)
        grid = identity - driving["shift"].view(b, k, 1, 1, 2)
        if "affine" in driving:
            matrix = region_transform(source, driving, self.revert_axis_swap)  # (B, K, 2, 2)
            grid = torch.matmul(matrix[:, :, None, None], grid.unsqueeze(-1)).squeeze(-1)
        driving_to_source = grid + source["shift"].view(b, k, 1, 1, 2)
        background = identity.expand(b, 1, h, w, 2)
        if bg_params is not None:
            background = from_homogeneous(torch.matmul(bg_params.view(b, 1, 1, 1, 3, 3),
                                                       to_homogeneous(background).unsqueeze(-1)).squeeze(-1))
        return torch.cat([background, driving_to_source], dim=1)

    def forward(self, source_image: Tensor, driving: Mapping[str, Tensor], source: Mapping[str, Tensor],
                bg_params: Tensor | None = None) -> dict[str, Tensor]:
        """-> {"optical_flow": (B, h, w, 2), "occlusion_map": (B, 1, h, w)} at the 1/4-size grid."""
        image = self.down(source_image) if self.scale_factor != 1 else source_image  # (B, 3, 64, 64)
        b, c, h, w = image.shape
        with full_precision(image):  # motion in float32 under autocast (2x2 inverses, coordinates)
            driving = {key: upcast(v) for key, v in driving.items()}
            source = {key: upcast(v) for key, v in source.items()}
            bg_params = None if bg_params is None else upcast(bg_params)
            heatmap = self.heatmaps((h, w), driving, source)
            sparse_motion = self.sparse_motions((h, w), driving, source, bg_params)
        slots = self.num_regions + 1
        parts = [heatmap]
        if self.use_deformed_source:
            repeated = image.unsqueeze(1).expand(b, slots, c, h, w).reshape(b * slots, c, h, w)
            deformed = warp(repeated, sparse_motion.reshape(b * slots, h, w, 2).to(image.dtype), self.align_corners)
            parts.append(deformed.view(b, slots, c, h, w))
        # per slot [heat, R, G, B], background slot first: 44 channels for K = 10, 84 for K = 20
        prediction = self.hourglass(torch.cat(parts, dim=2).view(b, -1, h, w))
        mask = F.softmax(upcast(self.mask(prediction)), dim=1).unsqueeze(2)  # (B, K+1, 1, h, w)
        flow = (sparse_motion.permute(0, 1, 4, 2, 3) * mask).sum(dim=1).permute(0, 2, 3, 1)
        out = {"optical_flow": flow}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))
        return out


class Generator(nn.Module):
    """FOMM's encoder / bottleneck / decoder with the flow's warped skips blended in at every level and the
    output blended with the warped source (§1.5)."""

    def __init__(self, num_channels: int, num_regions: int, block_expansion: int, max_features: int,
                 num_down_blocks: int, num_bottleneck_blocks: int, pixelwise_flow_predictor_params: dict | None = None,
                 skips: bool = False, revert_axis_swap: bool = True, align_corners: bool = ALIGN_CORNERS):
        super().__init__()
        self.pixelwise_flow_predictor: PixelwiseFlowPredictor | None = None
        if pixelwise_flow_predictor_params is not None:
            self.pixelwise_flow_predictor = PixelwiseFlowPredictor(
                num_regions=num_regions, num_channels=num_channels, revert_axis_swap=revert_axis_swap,
                align_corners=align_corners, **pixelwise_flow_predictor_params)
        add_generator_trunk(self, num_channels, block_expansion, max_features, num_down_blocks, num_bottleneck_blocks)
        self.num_channels = num_channels
        self.skips = skips
        self.align_corners = align_corners

    def deform_input(self, x: Tensor, flow: Tensor) -> Tensor:
        """Warp x by the flow, bilinearly resized first (align_corners=False, as torch 1.4's default) if needed."""
        return warp(x, resize_deformation(flow, x.shape[2:]).to(x.dtype), self.align_corners)

    def blend(self, skip: Tensor, previous: Tensor | None, motion: Mapping[str, Tensor] | None) -> Tensor:
        """warp(skip)·O + previous·(1 − O), O resized to skip's size (warp(skip)·O without a previous)."""
        if motion is None:
            return previous if previous is not None else skip
        warped = self.deform_input(skip, motion["optical_flow"])
        occlusion = motion.get("occlusion_map")
        if occlusion is None:
            return warped
        if occlusion.shape[2:] != warped.shape[2:]:
            occlusion = F.interpolate(occlusion, size=warped.shape[2:], mode="bilinear", align_corners=False)
        occlusion = occlusion.to(warped.dtype)
        return warped * occlusion if previous is None else warped * occlusion + previous * (1 - occlusion)

    def forward(self, source_image: Tensor, driving: Mapping[str, Tensor], source: Mapping[str, Tensor],
                bg_params: Tensor | None = None) -> dict[str, Tensor]:
        """Source (B, 3, H, W) and region params -> {"prediction": (B, 3, H, W) in [0, 1], "deformed",
        "occlusion_map"}."""
        out = self.first(source_image)  # (B, 64, 256, 256)
        skips = [out]
        for block in self.down_blocks:
            out = block(out)
            skips.append(out)  # (B, 128, 128, 128), (B, 256, 64, 64)
        result: dict[str, Tensor] = {}
        motion = None
        if self.pixelwise_flow_predictor is not None:
            motion = self.pixelwise_flow_predictor(source_image, driving, source, bg_params)
            result["deformed"] = self.deform_input(source_image, motion["optical_flow"])
            if "occlusion_map" in motion:
                result["occlusion_map"] = motion["occlusion_map"]
        out = self.bottleneck(self.blend(out, None, motion))
        for i, block in enumerate(self.up_blocks):
            if self.skips:
                out = self.blend(skips[-(i + 1)], out, motion)
            out = block(out)
        if self.skips:
            out = self.blend(skips[0], out, motion)
        out = torch.sigmoid(self.final(out))
        if self.skips:  # the output is a convex blend with the warped source image
            out = self.blend(source_image, out, motion)
        result["prediction"] = out  # (B, 3, 256, 256) in [0, 1]
        return result


class AVDNetwork(DisentanglingAutoencoder):
    """Animation via disentanglement: identity (source) and pose (driving) region params -> new params (§1.6)."""

    def __init__(self, num_regions: int, id_bottle_size: int = 64, pose_bottle_size: int = 64,
                 revert_axis_swap: bool = True):
        super().__init__(6 * num_regions, id_bottle_size, pose_bottle_size)  # per region [μx, μy, a00..a11]
        self.num_regions = num_regions
        self.revert_axis_swap = revert_axis_swap

    def forward(self, x_id: Mapping[str, Tensor], x_pose: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """{"shift" (B, K, 2), "affine" (B, K, 2, 2)} x 2 -> {"shift", "affine", "covar" = A·Aᵀ}."""
        if self.revert_axis_swap:  # the identity's affines turned to the pose's SVD orientation
            sign = torch.sign(torch.matmul(x_id["affine"], torch.inverse(x_pose["affine"]))[:, :, 0:1, 0:1])
            x_id = {"shift": x_id["shift"], "affine": x_id["affine"] * sign}
        out = self.transfer(region_params_to_embedding(x_id), region_params_to_embedding(x_pose))
        return embedding_to_region_params(out, self.num_regions)


class MRAA(Method):
    """The official networks, MRAA's two training stages and its three animation modes.

    Stage "main" (official `--mode train`) trains generator + region_predictor + bg_predictor with one Adam;
    stage "avd" (`--mode train_avd`, `animbench train mraa --stage avd --init-from MAIN_CHECKPOINT`) trains only the
    avd_network, the others frozen. A checkpoint holds avd_network only once the AVD stage has run.
    """

    stages: ClassVar[tuple[str, ...]] = ("main", "avd")
    discriminators: ClassVar[tuple[str, ...]] = ()
    required_entries: ClassVar[tuple[str, ...]] = MAIN_NETWORKS
    supports_avd: ClassVar[bool] = True
    grid_convention: ClassVar[bool | None] = ALIGN_CORNERS

    def __init__(self, region_predictor: RegionPredictor, bg_predictor: BGMotionPredictor, generator: Generator,
                 avd_network: AVDNetwork, config: dict, align_corners: bool = ALIGN_CORNERS):
        super().__init__()
        self.generator = generator
        self.bg_predictor = bg_predictor
        self.region_predictor = region_predictor
        self.avd_network = avd_network
        self.config = config
        self.networks = MAIN_NETWORKS  # + avd_network once a checkpoint holds it or the AVD stage trains it
        self.stage = "main"
        self.revert = bool(get_path(config, "model_params.revert_axis_swap", False))
        self.align_corners = align_corners
        self._perceptual: PerceptualPyramidLoss | None = None  # built on first use: inference needs no VGG

    @classmethod
    def from_config(cls, cfg: dict | str, align_corners: bool = ALIGN_CORNERS) -> MRAA:
        """Build from an official MRAA YAML (or our own), as a path or a load_config dict."""
        if not isinstance(cfg, dict) or "_meta" not in cfg:
            cfg = load_config(cfg, method="mraa")
        mp = cfg["model_params"]
        k, channels, revert = mp["num_regions"], mp["num_channels"], bool(mp.get("revert_axis_swap", False))
        region_predictor = RegionPredictor(num_regions=k, num_channels=channels,
                                           estimate_affine=bool(mp.get("estimate_affine", False)),
                                           **mp["region_predictor_params"])
        bg_predictor = BGMotionPredictor(num_channels=channels, **mp["bg_predictor_params"])
        generator = Generator(num_channels=channels, num_regions=k, revert_axis_swap=revert,
                              align_corners=align_corners, **mp["generator_params"])
        avd_network = AVDNetwork(k, revert_axis_swap=revert, **(mp.get("avd_network_params") or {}))
        return cls(region_predictor, bg_predictor, generator, avd_network, cfg, align_corners)

    @classmethod
    def build(cls, cfg: dict | None, align_corners: bool) -> MRAA:
        """The card's builder: MRAA's grid_sample convention is fixed (§1.8.1), whatever the caller's default."""
        return cls.from_config(cfg, align_corners=ALIGN_CORNERS)

    # --- checkpoints ---
    def read_checkpoint(self, path: Any) -> dict[str, Any]:
        """An official `.pth` (stage 1 or 2) or ours; `epoch_reconstruction` / `epoch_avd` read as `epoch`, and
        avd_network joins the networks when the file holds it."""
        ckpt = super().read_checkpoint(path)
        if "epoch" not in ckpt:
            epoch = ckpt.get("epoch_avd", ckpt.get("epoch_reconstruction"))
            if epoch is not None:
                ckpt["epoch"] = epoch
        if AVD in ckpt and AVD not in self.networks:
            self.networks = (*self.networks, AVD)
        return ckpt

    def epoch_entries(self, epoch: int) -> dict[str, Any]:
        """The official epoch entry of the stage: epoch_reconstruction (main) or epoch_avd (§1.9)."""
        return {"epoch_avd" if self.stage == "avd" else "epoch_reconstruction": int(epoch)}

    @property
    def has_avd(self) -> bool:
        """True when the AVD network is trained or loaded (a stage-1 checkpoint has none)."""
        return AVD in self.networks

    # --- training hooks ---
    def set_training_stage(self, stage: str) -> None:
        """Stage "avd" adds avd_network to the networks (saved, trained); "main" trains the other three."""
        self.stage = stage
        if stage == "avd" and AVD not in self.networks:
            self.networks = (*self.networks, AVD)

    def stage_config(self, cfg: Mapping[str, Any], stage: str) -> dict[str, Any]:
        """The AVD stage's schedule is train_avd_params (epochs, repeats, batch, milestones, checkpoint_freq).

        Its milestones move one epoch later: train_avd.py calls `scheduler.step(epoch)` after epoch e, which sets
        the closed-form rate of e (not e + 1), so milestone 20 first applies to epoch 21 there."""
        if stage != "avd":
            return dict(cfg)
        where = (cfg.get("_meta") or {}).get("path") or "<config>"
        if not isinstance(cfg.get("train_avd_params"), Mapping):
            raise AnimbenchError(f"{where}: train_avd_params missing; the AVD stage trains from it")
        params = dict(cfg["train_avd_params"])
        params["epoch_milestones"] = [int(m) + 1 for m in params.get("epoch_milestones") or []]
        return {**cfg, "train_params": params}

    def learning_rates(self, cfg: Mapping[str, Any], stage: str = "main") -> dict[str, float]:
        """main: train_params.lr for generator, region and bg predictors; avd: train_avd_params.lr for the AVD."""
        section = "train_avd_params" if stage == "avd" else "train_params"
        try:
            lr = float(cfg[section]["lr"])
        except (KeyError, TypeError):
            raise AnimbenchError(f"{cfg['_meta']['path'] or '<config>'}: {section}.lr missing") from None
        return {AVD: lr} if stage == "avd" else {name: lr for name in MAIN_NETWORKS}

    def optimizer_groups(self, cfg: Mapping[str, Any], stage: str = "main") -> dict[str, tuple[str, ...]]:
        """One Adam per stage, as official: `reconstruction` over generator + region + bg (in that order), `avd`."""
        if stage == "avd":
            return {"avd": (AVD,)}
        return {"reconstruction": ("generator", "region_predictor", "bg_predictor")}

    def training_backends(self) -> dict[str, Any] | None:
        """The perceptual loss's network (main stage only); raises early when it is missing."""
        if self.stage == "avd":
            return None
        return {"backend": self.perceptual_loss.backend, "description": self.perceptual_loss.backend_description}

    @property
    def perceptual_loss(self) -> PerceptualPyramidLoss:
        """FOMM's perceptual pyramid (VGG19, or the config's fallback); raises when VGG19 is missing."""
        tp = self.config["train_params"]
        if self._perceptual is None:
            self._perceptual = PerceptualPyramidLoss(tp["scales"], tp["loss_weights"]["perceptual"],
                                                     self.generator.num_channels,
                                                     fallback=tp.get("perceptual_fallback"))
        device = next(self.generator.parameters()).device  # not a submodule (no VGG in state_dict): follow by hand
        if next(self._perceptual.buffers()).device != device:
            self._perceptual.to(device)
        return self._perceptual

    def generator_step(self, source: Tensor, driving: Tensor) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """One batch's weighted losses of the current stage (§1.10) and the outputs."""
        if self.stage == "avd":
            return self._avd_step(source, driving)
        weights = self.config["train_params"]["loss_weights"]
        # three region passes (source, driving, transformed driving), as official: BN statistics update 3 times
        source_params = self.region_predictor(source)
        driving_params = self.region_predictor(driving)
        bg_params = self.bg_predictor(source, driving)
        outputs: dict[str, Any] = self.generator(source, driving_params, source_params, bg_params)
        outputs.update(source_region_params=source_params, driving_region_params=driving_params)
        losses: dict[str, Tensor] = {}
        if sum(weights["perceptual"]) != 0:
            losses["perceptual"] = self.perceptual_loss(outputs["prediction"], driving)
        if weights.get("equivariance_shift", 0) + weights.get("equivariance_affine", 0) != 0:
            losses.update(self._equivariance(driving, driving_params, weights, outputs))
        return losses, outputs

    def _equivariance(self, driving: Tensor, driving_params: dict, weights: Mapping[str, Any],
                      outputs: dict[str, Any]) -> dict[str, Tensor]:
        transform = Transform(driving.shape[0], device=driving.device,
                              **self.config["train_params"]["transform_params"])
        with full_precision(driving):
            transformed_frame = transform.transform_frame(upcast(driving), self.align_corners)
        transformed = self.region_predictor(transformed_frame)
        outputs.update(transformed_frame=transformed_frame, transformed_region_params=transformed)
        losses = {}
        with full_precision(driving):
            if weights.get("equivariance_shift", 0) != 0:
                value = torch.abs(driving_params["shift"] - transform.warp_coordinates(transformed["shift"])).mean()
                losses["equivariance_shift"] = weights["equivariance_shift"] * value
            if weights.get("equivariance_affine", 0) != 0:
                # A_d⁻¹ · (∇T(μ_T) · A_T), sign-fixed, should be the identity
                affine_transformed = torch.matmul(transform.jacobian(transformed["shift"]), transformed["affine"])
                value = torch.matmul(torch.inverse(driving_params["affine"]), affine_transformed)
                if self.revert:
                    value = revert_axis_swap(value)
                eye = torch.eye(2, dtype=value.dtype, device=value.device).view(1, 1, 2, 2)
                losses["equivariance_affine"] = weights["equivariance_affine"] * torch.abs(eye - value).mean()
        return losses

    def _avd_step(self, source: Tensor, driving: Tensor) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """train_avd.py: regions of the pair without gradients, the pose randomly rescaled, L1 to the true pose."""
        tp = self.config["train_avd_params"]
        with torch.no_grad():  # the region predictor stays in train mode, as official (its BN statistics move)
            identity = self.region_predictor(source)
            pose_true = self.region_predictor(driving)
            pose = random_scale(pose_true, float(tp["random_scale"]))
        rec = self.avd_network(identity, pose)
        losses = {"rec_shift": tp["lambda_shift"] * torch.abs(pose_true["shift"] - rec["shift"]).mean(),
                  "rec_affine": tp["lambda_affine"] * torch.abs(pose_true["affine"] - rec["affine"]).mean()}
        return losses, {"avd_params": rec}

    # --- inference ---
    def _inference(self):
        return inference_mode(self.region_predictor, self.bg_predictor, self.generator, self.avd_network)

    def reconstruct(self, source: Tensor, driving: Tensor) -> Tensor:
        """Reconstruction protocol (§1.12): absolute driving regions AND the bg affine of (source, driving)."""
        check_reconstruct_shapes(source, driving)
        with self._inference():
            source_params = self.region_predictor(source)
            driving_params = self.region_predictor(driving)
            bg_params = self.bg_predictor(source, driving)
            return self.generator(source, driving_params, source_params, bg_params)["prediction"]

    def animation_mode(self, relative: bool | None = None, adapt_scale: bool | None = None) -> AnimationMode:
        """standard (--absolute), relative (--relative; the hull scale always applied, as official) or avd.
        Without a flag: the config's animate_params.mode ('avd' in every official config); 'avd' falls back to
        relative when no AVD network is loaded (the mode used is what is recorded)."""
        if relative is None:
            name = get_path(self.config, "animate_params.mode", "avd")
            if name not in ANIMATION_MODES:
                raise AnimbenchError(f"{self.config['_meta']['path'] or '<config>'}: animate_params.mode: expected "
                                     f"one of {list(ANIMATION_MODES)}, got {name!r}")
            if name == "avd" and not self.has_avd:
                name = "relative"
            relative = name == "relative"
            avd = name == "avd"
        else:
            avd = False
        return AnimationMode.of(bool(relative), bool(relative), {"avd": avd})

    def animation_params(self, source: dict, driving: dict, driving_initial: dict, mode: AnimationMode) -> dict:
        """get_animation_region_params (§1.11): the driving regions as the generator is given them."""
        if mode.option("avd", False):
            return self.avd_network(source, driving)
        if mode.relative:
            return relative_region_params(source, driving, driving_initial)
        return dict(driving)

    def animate(self, source: Tensor, driving_video: Tensor, mode: AnimationMode | None = None,
                batch_size: int = 16) -> Tensor:
        """Animate one source (3, H, W) or (1, 3, H, W) by a driving video (T, 3, H, W) -> (T, 3, H, W); the
        reference of relative motion is driving frame 0; no bg motion in any mode (§1.8.4)."""
        source = check_animate_shapes(source, driving_video)
        mode = self.animation_mode() if mode is None else mode
        self.check_mode(mode)
        frames = []
        with self._inference():
            source_params = self.region_predictor(source)
            initial = self.region_predictor(driving_video[:1])
            for chunk in driving_video.split(batch_size):
                n = chunk.shape[0]
                source_n = {k: v.expand(n, *v.shape[1:]) for k, v in source_params.items() if k in ("shift", "affine",
                                                                                                    "covar")}
                new = self.animation_params(source_n, self.region_predictor(chunk), initial, mode)
                out = self.generator(source.expand(n, *source.shape[1:]), new, source_n, None)
                frames.append(out["prediction"])
        return torch.cat(frames)


# --- the card ------------------------------------------------------------------------------------------------

_CONFIGS = {
    "vox": "vox256.yaml", "taichi": "taichi256.yaml", "ted": "ted384.yaml", "ted-youtube": "ted-youtube384.yaml",
    "mgif": "mgif256.yaml", "tiny": "configs/mraa-tiny.yaml", "actions": "configs/mraa-actions64.yaml",
}
# the released files (git-LFS objects of commit 451f7da, now on Google Drive; §1.9), all trained for both stages
_CHECKPOINTS = {"vox256.pth": "vox", "taichi256.pth": "taichi", "ted384.pth": "ted",
                "ted-youtube384.pth": "ted-youtube", "mgif256.pth": "mgif"}
MRAA.card = register_method(MethodCard(
    name="mraa", paper="Motion Representations for Articulated Animation (Siarohin et al., CVPR 2021)",
    family="region-motion", build=MRAA.build, config_spec=CONFIG_SPEC, configs=_CONFIGS, checkpoints=_CHECKPOINTS,
    notes="PCA regions + background affine, skip generator; animation modes standard / relative / avd "
          "(--stage avd trains the AVD network); grid_sample align_corners=False"))
