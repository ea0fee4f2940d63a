"""YAML configs of FOMM and Monkey-Net: the official files as they are, and our own.

`load_config` returns the parsed dict with one extra key, `_meta`:

    cfg["_meta"] = {"path": "configs/fomm-tiny.yaml" or None, "sha256": <hex of the config text>,
                    "method": "fomm" | "monkey_net"}

The sha256 is of the file's bytes (for a dict: of its canonical JSON), so a run can record exactly which config
it used. The official files need nothing beyond `yaml.safe_load` (no python tags); the official `run.py` calls
`yaml.load(f)` without a Loader, which crashes on PyYAML 6, so we never do that.

A config is named by a path, a registry dataset name (`vox`, `tiny`: `animbench methods` lists them) or a file
name (`vox-256.yaml`). Names are looked up in $ANIMBENCH_CONFIGS (os.pathsep-separated folders), then
~/.cache/animbench/configs, then the project's configs/; in each folder METHOD/NAME first (`fomm/`,
`monkey_net/` or `monkeynet/`), then NAME. The official YAML files are not shipped: place them there.

Every key is checked against SCHEMA: a typo in any section is an error naming the file, the key, its section and
the keys expected there.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from plumbing.errors import AnimbenchError

METHODS = ("fomm", "monkey_net")

# Dotted paths every config of a method must have; the models read them without defaults.
REQUIRED: dict[str, tuple[str, ...]] = {
    "fomm": (
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
    ),
    "monkey_net": (
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
    ),
}

# Fields that must be positive integers when present (a float or a string here is a typo, not a choice).
_POSITIVE_INTS = (
    "model_params.common_params.num_kp",
    "model_params.common_params.num_channels",
    "model_params.kp_detector_params.block_expansion",
    "model_params.kp_detector_params.max_features",
    "model_params.kp_detector_params.num_blocks",
    "model_params.generator_params.block_expansion",
    "model_params.generator_params.max_features",
    "model_params.discriminator_params.block_expansion",
    "model_params.discriminator_params.max_features",
    "model_params.discriminator_params.num_blocks",
)

# train_params.perceptual_fallback: what the FOMM perceptual loss does when vgg19-dcbb9e9d.pth is absent.
PERCEPTUAL_FALLBACKS = ("random_vgg19", "pixel_l1")

# Every key a config may hold, per method: a nested dict is a section (its own keys checked), LEAF is a value.
# The union of the official repositories' configs and the options our code reads; a key outside it is a typo
# (an official run would crash on it or, worse, silently ignore it). tests/methods/test_config.py checks that the
# model_params sections equal what the networks' constructors accept.
LEAF = None
_AUGMENTATION = {
    "flip_param": {"horizontal_flip": LEAF, "time_flip": LEAF},
    "rotation_param": {"degrees": LEAF},
    "resize_param": {"ratio": LEAF, "interpolation": LEAF},
    "crop_param": {"size": LEAF},
    "jitter_param": {"brightness": LEAF, "contrast": LEAF, "saturation": LEAF, "hue": LEAF},
}
_SHARED_SECTIONS = {
    "method": LEAF,
    "reconstruction_params": {"num_videos": LEAF, "format": LEAF},
    "visualizer_params": {"kp_size": LEAF, "draw_border": LEAF, "colormap": LEAF},
}
_TRAIN_COMMON = {"num_epochs": LEAF, "num_repeats": LEAF, "epoch_milestones": LEAF, "batch_size": LEAF,
                 "checkpoint_freq": LEAF, "adam_betas": LEAF}
_MN_EMBEDDING = {k: LEAF for k in ("scale_factor", "use_heatmap", "use_difference", "use_deformed_source_image",
                                   "heatmap_type", "norm_const")}
SCHEMA: dict[str, dict[str, Any]] = {
    "fomm": {
        **_SHARED_SECTIONS,
        "dataset_params": {"root_dir": LEAF, "frame_shape": LEAF, "id_sampling": LEAF, "pairs_list": LEAF,
                           "augmentation_params": _AUGMENTATION},
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
            **_TRAIN_COMMON,
            **{k: LEAF for k in ("lr_generator", "lr_discriminator", "lr_kp_detector", "scales",
                                 "perceptual_fallback")},
            "transform_params": {"sigma_affine": LEAF, "sigma_tps": LEAF, "points_tps": LEAF},
            "loss_weights": {k: LEAF for k in ("generator_gan", "discriminator_gan", "feature_matching", "perceptual",
                                               "equivariance_value", "equivariance_jacobian")},
        },
        "animate_params": {"num_pairs": LEAF, "format": LEAF, "normalization_params": {
            "adapt_movement_scale": LEAF, "use_relative_movement": LEAF, "use_relative_jacobian": LEAF}},
    },
    "monkey_net": {
        **_SHARED_SECTIONS,
        "dataset_params": {"root_dir": LEAF, "image_shape": LEAF, "id_sampling": LEAF, "pairs_list": LEAF,
                           "augmentation_params": _AUGMENTATION},
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
            **_TRAIN_COMMON,
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
    },
}
# The other family's name for a section: suggested when difflib finds nothing closer.
_OTHER_FAMILY = {"fomm": {"transfer_params": "animate_params"}, "monkey_net": {"animate_params": "transfer_params"}}


def get_path(cfg: Mapping[str, Any], dotted: str, default: Any = KeyError) -> Any:
    """cfg["a"]["b"]["c"] for "a.b.c"; `default` when a level is missing (KeyError raised if none given)."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is KeyError:
                raise KeyError(dotted)
            return default
        node = node[part]
    return node


def detect_method(cfg: Mapping[str, Any]) -> str | None:
    """'fomm' or 'monkey_net' from an explicit `method:` key or the generator's fields; None if neither."""
    if isinstance(cfg.get("method"), str):
        return cfg["method"]
    gen = get_path(cfg, "model_params.generator_params", {})
    if not isinstance(gen, Mapping):
        return None
    if "num_bottleneck_blocks" in gen or "num_down_blocks" in gen:
        return "fomm"
    if "num_refinement_blocks" in gen or "kp_embedding_params" in gen:
        return "monkey_net"
    return None


# Where the official YAML files come from (we cannot ship them): each repository's config/ folder.
OFFICIAL_REPOS = {"fomm": "github.com/AliaksandrSiarohin/first-order-model",
                  "monkey_net": "github.com/AliaksandrSiarohin/monkey-net"}
PROJECT_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def config_search_path() -> list[Path]:
    """Folders searched for a config given by name: $ANIMBENCH_CONFIGS (os.pathsep-separated), the user cache
    ~/.cache/animbench/configs, then the project's configs/. In each, METHOD/NAME (or METHOD without its
    underscore: monkeynet/) is tried before NAME."""
    env = [Path(p).expanduser() for p in os.environ.get("ANIMBENCH_CONFIGS", "").split(os.pathsep) if p]
    return [*env, Path.home() / ".cache" / "animbench" / "configs", PROJECT_CONFIGS]


def resolve_config(name: str | os.PathLike, method: str | None = None) -> Path:
    """A config file from an explicit path, a registry dataset name (`vox`) or a file name (`vox-256.yaml`)."""
    given = Path(name)
    if given.is_file():
        return given
    file_name, official = str(name), set()
    if method is not None:
        from methods.registry import METHODS  # the cards name each dataset's config

        configs = METHODS[method].configs if method in METHODS else {}
        file_name = configs.get(file_name, file_name)
        official = {f for f in configs.values() if not f.startswith("configs/")}
    if file_name.startswith("configs/") and (PROJECT_CONFIGS.parent / file_name).is_file():
        return PROJECT_CONFIGS.parent / file_name  # our own configs, named relative to the project
    base = Path(file_name).name
    subdirs = [] if method is None else list(dict.fromkeys([method, method.replace("_", "")]))
    if len(given.parts) > 1 and file_name == str(name):  # a path stays a path
        raise AnimbenchError(f"{name}: config file not found")
    for folder in config_search_path():
        for candidate in [folder / sub / base for sub in subdirs] + [folder / base]:
            if candidate.is_file():
                return candidate
    origin = ""
    if method in OFFICIAL_REPOS and base in official:
        origin = f" ({base} is config/{base} of {OFFICIAL_REPOS[method]}, not shipped with animbench)"
    sub = f"{method}/" if method else ""
    raise AnimbenchError(
        f"{name}: config file not found{origin}; give its path, or place it in $ANIMBENCH_CONFIGS/{sub} or "
        f"~/.cache/animbench/configs/{sub} (searched: {', '.join(str(p) for p in config_search_path())})"
    )


def load_config(path_or_dict: str | os.PathLike | Mapping[str, Any], method: str | None = None) -> dict:
    """Parse and validate a FOMM / Monkey-Net config (official or ours); adds cfg["_meta"] (path, sha256, method)."""
    if isinstance(path_or_dict, Mapping):
        where = "<dict>"
        cfg = copy.deepcopy(dict(path_or_dict))
        cfg.pop("_meta", None)
        text = json.dumps(cfg, sort_keys=True, default=str).encode()
        path = None
    else:
        path = resolve_config(path_or_dict, method)
        where = str(path)
        text = path.read_bytes()
        try:
            cfg = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise AnimbenchError(f"{where}:{line} not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(cfg, dict):
        raise AnimbenchError(f"{where}: expected a mapping at the top level, got {type(cfg).__name__}")

    found = detect_method(cfg)
    method = method or found
    if method not in METHODS:
        raise AnimbenchError(
            f"{where}: method: cannot tell the method (got {method!r}); expected a `method:` key with one of "
            f"{list(METHODS)} or the model_params of an official FOMM / Monkey-Net config"
        )
    if found is not None and found != method:
        raise AnimbenchError(f"{where}: method: the config is a {found} config, expected {method}")
    _validate(cfg, method, where)
    cfg["_meta"] = {"path": None if path is None else str(path), "sha256": hashlib.sha256(text).hexdigest(),
                    "method": method}
    return cfg


def check_keys(node: Mapping[str, Any], schema: Mapping[str, Any], where: str, section: str = "",
               hints: Mapping[str, str] | None = None) -> None:
    """Raise AnimbenchError on the first key of `node` (recursively) that `schema` does not name."""
    for key, value in node.items():
        dotted = f"{section}.{key}" if section else str(key)
        if key not in schema:
            expected = sorted(schema)
            close = (hints or {}).get(key) or next(iter(difflib.get_close_matches(str(key), expected, n=1)), None)
            guess = f" (did you mean {close!r}?)" if close else ""
            raise AnimbenchError(f"{where}: unknown key {dotted} in {section or 'the top level'}{guess}; "
                                 f"expected one of {expected}")
        sub = schema[key]
        if sub is LEAF or value is None:
            continue
        if not isinstance(value, Mapping):
            raise AnimbenchError(f"{where}: {dotted}: expected a mapping of {sorted(sub)}, "
                                 f"got {type(value).__name__} {value!r}")
        check_keys(value, sub, where, dotted)


def _validate(cfg: dict, method: str, where: str) -> None:
    check_keys(cfg, SCHEMA[method], where, hints=_OTHER_FAMILY[method])
    for dotted in REQUIRED[method]:
        try:
            get_path(cfg, dotted)
        except KeyError:
            raise AnimbenchError(f"{where}: {dotted} missing") from None
    for dotted in _POSITIVE_INTS:
        value = get_path(cfg, dotted, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise AnimbenchError(f"{where}: {dotted} must be a positive integer, got {value!r}")
    if method == "fomm":
        _validate_fomm(cfg, where)


def _validate_fomm(cfg: dict, where: str) -> None:
    for key in ("model_params.kp_detector_params.scale_factor",
                "model_params.generator_params.dense_motion_params.scale_factor"):
        scale = get_path(cfg, key)
        if not _is_inverse_int(scale):
            raise AnimbenchError(f"{where}: {key} must be 1/n for an integer n >= 1, got {scale!r}")
    for key in ("train_params.scales", "model_params.discriminator_params.scales"):
        scales = get_path(cfg, key)
        if not isinstance(scales, list) or not scales or not all(_is_inverse_int(s) for s in scales):
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
    fallback = get_path(cfg, "train_params.perceptual_fallback", None)
    if fallback is not None and fallback not in PERCEPTUAL_FALLBACKS:
        raise AnimbenchError(
            f"{where}: train_params.perceptual_fallback must be one of {list(PERCEPTUAL_FALLBACKS)} or absent, "
            f"got {fallback!r}"
        )


def _is_inverse_int(scale: Any) -> bool:
    # the anti-alias downsampling strides by int(1/scale): only 1/n scales are meaningful
    return (isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale <= 1
            and abs(1 / scale - round(1 / scale)) < 1e-6)
