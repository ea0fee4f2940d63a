"""MRAA's config: what its YAML may and must hold (the official files as they are, and ours).

The official files have no `method:` key and their generator_params (num_down_blocks, ...) look like FOMM's;
the section marker `model_params.region_predictor_params` tells methods.config.detect_method they are MRAA's.
"""

from __future__ import annotations

from methods.config import (
    AUGMENTATION,
    LEAF,
    SHARED_SECTIONS,
    TRAIN_COMMON,
    ConfigSpec,
    get_path,
    is_inverse_int,
)
from methods.losses import check_perceptual_fallback
from plumbing.errors import AnimbenchError

BG_TYPES = {"zero": 0, "shift": 2, "affine": 6, "perspective": 8}  # bg_type -> outputs of its fc layer
ANIMATION_MODES = ("standard", "relative", "avd")

# --- the config ----------------------------------------------------------------------------------------------


CONFIG_SCHEMA = {
    **SHARED_SECTIONS,
    "visualizer_params": {"kp_size": LEAF, "draw_border": LEAF, "colormap": LEAF, "region_bg_color": LEAF},
    "dataset_params": {"root_dir": LEAF, "frame_shape": LEAF, "id_sampling": LEAF, "pairs_list": LEAF,
                       "augmentation_params": AUGMENTATION},
    "model_params": {
        **{k: LEAF for k in ("num_regions", "num_channels", "estimate_affine", "revert_axis_swap")},
        "bg_predictor_params": {k: LEAF for k in ("block_expansion", "max_features", "num_blocks", "bg_type")},
        "region_predictor_params": {k: LEAF for k in ("temperature", "block_expansion", "max_features",
                                                      "scale_factor", "num_blocks", "pca_based", "fast_svd", "pad")},
        "generator_params": {
            **{k: LEAF for k in ("block_expansion", "max_features", "num_down_blocks", "num_bottleneck_blocks",
                                 "skips")},
            "pixelwise_flow_predictor_params": {k: LEAF for k in (
                "block_expansion", "max_features", "num_blocks", "scale_factor", "use_deformed_source",
                "use_covar_heatmap", "estimate_occlusion_map", "region_var")},
        },
        "avd_network_params": {"id_bottle_size": LEAF, "pose_bottle_size": LEAF},
    },
    "train_params": {
        **TRAIN_COMMON,
        **{k: LEAF for k in ("lr", "use_sync_bn", "dataloader_workers", "scales", "perceptual_fallback")},
        "transform_params": {"sigma_affine": LEAF, "sigma_tps": LEAF, "points_tps": LEAF},
        "loss_weights": {"perceptual": LEAF, "equivariance_shift": LEAF, "equivariance_affine": LEAF},
    },
    "train_avd_params": {k: LEAF for k in ("num_epochs", "num_repeats", "batch_size", "dataloader_workers",
                                           "checkpoint_freq", "epoch_milestones", "lr", "random_scale",
                                           "lambda_shift", "lambda_affine")},
    "animate_params": {"num_pairs": LEAF, "format": LEAF, "mode": LEAF},
}
REQUIRED_KEYS = tuple(f"model_params.{k}" for k in (
    "num_regions", "num_channels", "region_predictor_params.temperature", "region_predictor_params.block_expansion",
    "region_predictor_params.max_features", "region_predictor_params.num_blocks",
    "bg_predictor_params.block_expansion", "bg_predictor_params.max_features", "bg_predictor_params.num_blocks",
    "generator_params.block_expansion", "generator_params.max_features", "generator_params.num_down_blocks",
    "generator_params.num_bottleneck_blocks", "generator_params.pixelwise_flow_predictor_params.block_expansion",
    "generator_params.pixelwise_flow_predictor_params.max_features",
    "generator_params.pixelwise_flow_predictor_params.num_blocks")) + (
    "train_params.scales", "train_params.transform_params.sigma_affine", "train_params.loss_weights.perceptual")


def _check_config(cfg: dict, where: str) -> None:
    for key in ("model_params.region_predictor_params.scale_factor",
                "model_params.generator_params.pixelwise_flow_predictor_params.scale_factor"):
        scale = get_path(cfg, key, 1)
        if not is_inverse_int(scale):
            raise AnimbenchError(f"{where}: {key} must be 1/n for an integer n >= 1, got {scale!r}")
    scales = get_path(cfg, "train_params.scales")
    if not isinstance(scales, list) or not scales or not all(is_inverse_int(s) for s in scales):
        raise AnimbenchError(f"{where}: train_params.scales must be a non-empty list of 1/n scales, got {scales!r}")
    perceptual = get_path(cfg, "train_params.loss_weights.perceptual")
    if not isinstance(perceptual, list) or len(perceptual) != 5:
        raise AnimbenchError(f"{where}: train_params.loss_weights.perceptual must be a list of 5 weights (VGG19 "
                             f"relu1_1..relu5_1), got {perceptual!r}")
    bg_type = get_path(cfg, "model_params.bg_predictor_params.bg_type", "zero")
    if bg_type not in BG_TYPES:
        raise AnimbenchError(f"{where}: model_params.bg_predictor_params.bg_type must be one of {list(BG_TYPES)}, "
                             f"got {bg_type!r}")
    check_perceptual_fallback(cfg, where)
    mode = get_path(cfg, "animate_params.mode", "avd")
    if mode not in ANIMATION_MODES:
        raise AnimbenchError(f"{where}: animate_params.mode must be one of {list(ANIMATION_MODES)}, got {mode!r}")


CONFIG_SPEC = ConfigSpec(CONFIG_SCHEMA, REQUIRED_KEYS, markers=("pixelwise_flow_predictor_params", "skips"),
                         section_markers=("model_params.region_predictor_params",),
                         official_repo="github.com/snap-research/articulated-animation", check=_check_config)
