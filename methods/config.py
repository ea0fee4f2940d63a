"""YAML configs of every family (FOMM, Monkey-Net, ...): the official files as they are, and our own.

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

Each family states what its YAML may and must hold in a `ConfigSpec` on its card (in its own file); this module
holds the mechanics and knows no family: the cards' specs and dataset names come from its caller,
methods/registry.py, whose `load_config` is the one every caller uses. Every key is checked against the family's
schema: a typo in any section is an error naming the file, the key, its section and the keys expected there; a
missing required key names the file and the key.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plumbing.errors import AnimbenchError


@dataclass(frozen=True)
class ConfigSpec:
    """What one family's YAML may and must hold, and how to recognise its official files."""

    schema: Mapping[str, Any]  # every key a config may hold: a nested dict is a section, LEAF a value
    required: tuple[str, ...] = ()  # dotted paths every config must have (the networks read them without defaults)
    markers: tuple[str, ...] = ()  # generator_params keys that only this family's official configs have
    # dotted paths from the config's root that only this family's official configs have; checked before the
    # generator markers, so a successor whose generator_params look like FOMM's (MRAA, TPSMM) is still told apart
    section_markers: tuple[str, ...] = ()
    hints: Mapping[str, str] = field(default_factory=dict)  # a section's name in another family -> ours
    official_repo: str = ""  # where the official YAML files come from (we cannot ship them): its config/ folder
    check: Callable[[dict, str], None] | None = None  # the family's own checks of values: check(cfg, where)


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

# The building blocks of the families' schemas (each schema is the union of the official repository's configs and
# the options our code reads; a key outside it is a typo an official run would crash on or silently ignore).
LEAF = None
AUGMENTATION = {
    "flip_param": {"horizontal_flip": LEAF, "time_flip": LEAF},
    "rotation_param": {"degrees": LEAF},
    "resize_param": {"ratio": LEAF, "interpolation": LEAF},
    "crop_param": {"size": LEAF},
    "jitter_param": {"brightness": LEAF, "contrast": LEAF, "saturation": LEAF, "hue": LEAF},
}
SHARED_SECTIONS = {
    "method": LEAF,
    "reconstruction_params": {"num_videos": LEAF, "format": LEAF},
    "visualizer_params": {"kp_size": LEAF, "draw_border": LEAF, "colormap": LEAF},
}
TRAIN_COMMON = {"num_epochs": LEAF, "num_repeats": LEAF, "epoch_milestones": LEAF, "batch_size": LEAF,
                 "checkpoint_freq": LEAF, "adam_betas": LEAF}
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


def detect_method(cfg: Mapping[str, Any], specs: Mapping[str, ConfigSpec]) -> str | None:
    """The method of a config among `specs` (method -> ConfigSpec): its `method:` key, else the family one of
    whose section markers the config has (e.g. MRAA's model_params.region_predictor_params), else the family
    whose marker fields its generator has."""
    if isinstance(cfg.get("method"), str):
        return cfg["method"]
    by_section = [name for name, spec in specs.items()
                  if any(get_path(cfg, path, None) is not None for path in spec.section_markers)]
    if by_section:
        return by_section[0]
    gen = get_path(cfg, "model_params.generator_params", {})
    if not isinstance(gen, Mapping):
        return None
    return next((name for name, spec in specs.items() if any(k in gen for k in spec.markers)), None)


PROJECT_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def config_search_path() -> list[Path]:
    """Folders searched for a config given by name: $ANIMBENCH_CONFIGS (os.pathsep-separated), the user cache
    ~/.cache/animbench/configs, then the project's configs/. In each, METHOD/NAME (or METHOD without its
    underscore: monkeynet/) is tried before NAME."""
    env = [Path(p).expanduser() for p in os.environ.get("ANIMBENCH_CONFIGS", "").split(os.pathsep) if p]
    return [*env, Path.home() / ".cache" / "animbench" / "configs", PROJECT_CONFIGS]


def resolve_config(name: str | os.PathLike, method: str | None = None, configs: Mapping[str, str] | None = None,
                   official_repo: str = "") -> Path:
    """A config file from an explicit path, a dataset name of the method's card (`vox`: `configs` maps dataset ->
    config file) or a file name (`vox-256.yaml`); official_repo names where the official files come from."""
    given = Path(name)
    if given.is_file():
        return given
    file_name, official = str(name), set()
    if method is not None:
        configs = configs or {}
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
    if official_repo and base in official:
        origin = f" ({base} is config/{base} of {official_repo}, not shipped with animbench)"
    sub = f"{method}/" if method else ""
    raise AnimbenchError(
        f"{name}: config file not found{origin}; give its path, or place it in $ANIMBENCH_CONFIGS/{sub} or "
        f"~/.cache/animbench/configs/{sub} (searched: {', '.join(str(p) for p in config_search_path())})"
    )


def parse_config(path_or_dict: str | os.PathLike | Mapping[str, Any], specs: Mapping[str, ConfigSpec],
                 method: str | None = None, configs: Mapping[str, str] | None = None) -> dict:
    """Parse and validate a config (official or ours) of one of `specs`' families (method -> ConfigSpec;
    `configs`: the method card's dataset -> config file); adds cfg["_meta"] (path, sha256, method).
    registry.load_config passes the registered cards'."""
    if isinstance(path_or_dict, Mapping):
        where = "<dict>"
        cfg = copy.deepcopy(dict(path_or_dict))
        cfg.pop("_meta", None)
        text = json.dumps(cfg, sort_keys=True, default=str).encode()
        path = None
    else:
        repo = specs[method].official_repo if method in specs else ""
        path = resolve_config(path_or_dict, method, configs, repo)
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

    found = detect_method(cfg, specs)
    method = method or found
    if method not in specs:
        raise AnimbenchError(
            f"{where}: method: cannot tell the method (got {method!r}); expected a `method:` key with one of "
            f"{list(specs)} or the model_params of one of their official configs"
        )
    if found is not None and found != method:
        raise AnimbenchError(f"{where}: method: the config is a {found} config, expected {method}")
    _validate(cfg, specs[method], where)
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


def _validate(cfg: dict, spec: ConfigSpec, where: str) -> None:
    check_keys(cfg, spec.schema, where, hints=spec.hints)
    for dotted in spec.required:
        try:
            get_path(cfg, dotted)
        except KeyError:
            raise AnimbenchError(f"{where}: {dotted} missing") from None
    for dotted in _POSITIVE_INTS:
        value = get_path(cfg, dotted, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise AnimbenchError(f"{where}: {dotted} must be a positive integer, got {value!r}")
    if spec.check is not None:
        spec.check(cfg, where)


def is_inverse_int(scale: Any) -> bool:
    # the anti-alias downsampling strides by int(1/scale): only 1/n scales are meaningful
    return (isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale <= 1
            and abs(1 / scale - round(1 / scale)) < 1e-6)
