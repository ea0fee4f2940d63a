"""TPSMM's YAML: what the official configs (and ours) may and must hold (reference §2.8). The official files load
as they are through methods.registry.load_config, which tells them by `model_params.common_params.num_tps`."""

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

# --- the schema ----------------------------------------------------------------------------------------------

CONFIG_SCHEMA = {
    **SHARED_SECTIONS,
    "dataset_params": {"root_dir": LEAF, "frame_shape": LEAF, "id_sampling": LEAF, "pairs_list": LEAF,
                       "augmentation_params": AUGMENTATION},
    "model_params": {
        "common_params": {"num_tps": LEAF, "num_channels": LEAF, "bg": LEAF, "multi_mask": LEAF},
        "generator_params": {"block_expansion": LEAF, "max_features": LEAF, "num_down_blocks": LEAF},
        "dense_motion_params": {"block_expansion": LEAF, "max_features": LEAF, "num_blocks": LEAF,
                                "scale_factor": LEAF, "kp_variance": LEAF},
        "avd_network_params": {"id_bottle_size": LEAF, "pose_bottle_size": LEAF},
    },
    "train_params": {
        **TRAIN_COMMON,
        **{k: LEAF for k in ("lr_generator", "scales", "dataloader_workers", "dropout_epoch", "dropout_maxp",
                             "dropout_startp", "dropout_inc_epoch", "bg_start", "perceptual_fallback")},
        "transform_params": {"sigma_affine": LEAF, "sigma_tps": LEAF, "points_tps": LEAF},
        "loss_weights": {"perceptual": LEAF, "equivariance_value": LEAF, "warp_loss": LEAF, "bg": LEAF},
    },
    "train_avd_params": {k: LEAF for k in ("num_epochs", "num_repeats", "batch_size", "dataloader_workers",
                                           "checkpoint_freq", "epoch_milestones", "lr", "lambda_shift",
                                           "lambda_affine", "random_scale")},
}
REQUIRED_KEYS = (
    "model_params.common_params.num_tps",
    "model_params.common_params.num_channels",
    "model_params.generator_params.block_expansion",
    "model_params.generator_params.max_features",
    "model_params.generator_params.num_down_blocks",
    "model_params.dense_motion_params.block_expansion",
    "model_params.dense_motion_params.max_features",
    "model_params.dense_motion_params.num_blocks",
    "model_params.dense_motion_params.scale_factor",
    "train_params.scales",
    "train_params.dropout_epoch",
    "train_params.dropout_maxp",
    "train_params.dropout_startp",
    "train_params.dropout_inc_epoch",
    "train_params.transform_params.sigma_affine",
    "train_params.transform_params.sigma_tps",
    "train_params.transform_params.points_tps",
    "train_params.loss_weights.perceptual",
    "train_params.loss_weights.equivariance_value",
    "train_params.loss_weights.warp_loss",
    "train_params.loss_weights.bg",
)


def _check_config(cfg: dict, where: str) -> None:
    scale = get_path(cfg, "model_params.dense_motion_params.scale_factor")
    if not is_inverse_int(scale):
        raise AnimbenchError(f"{where}: model_params.dense_motion_params.scale_factor must be 1/n for an integer "
                             f"n >= 1, got {scale!r}")
    if get_path(cfg, "model_params.common_params.multi_mask", True) and round(1 / scale) not in (1, 2, 4, 8, 16):
        raise AnimbenchError(f"{where}: model_params.dense_motion_params.scale_factor: multi_mask needs a power-of-"
                             f"two scale (1, 0.5, 0.25...), got {scale!r}")
    scales = get_path(cfg, "train_params.scales")
    if not isinstance(scales, list) or not scales or not all(is_inverse_int(s) for s in scales):
        raise AnimbenchError(f"{where}: train_params.scales must be a non-empty list of 1/n scales, got {scales!r}")
    perceptual = get_path(cfg, "train_params.loss_weights.perceptual")
    if not isinstance(perceptual, list) or len(perceptual) != 5:
        raise AnimbenchError(f"{where}: train_params.loss_weights.perceptual must have 5 weights (VGG19 relu1_1.."
                             f"relu5_1), got {perceptual!r}")
    check_perceptual_fallback(cfg, where)


# the official files have no `method:` key and FOMM-like generator_params; num_tps is TPSMM's alone
CONFIG_SPEC = ConfigSpec(CONFIG_SCHEMA, REQUIRED_KEYS, section_markers=("model_params.common_params.num_tps",),
                         official_repo="github.com/yoyo-nb/Thin-Plate-Spline-Motion-Model", check=_check_config)
