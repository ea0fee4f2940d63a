"""The method registry: a decorator and a dict, one card per method (timm-style).

A `MethodCard` says what a method is (paper, family), which configs it comes with (dataset -> config file: bare
names are the official repository's `config/` files, paths under `configs/` are ours), which official checkpoint
files it loads (file name -> the dataset whose config it needs), and how to build it from a config.

    model, provenance = load_model("fomm", checkpoint="vox-cpk.pth.tar", config="vox-256.yaml")

The checkpoint is read by the method (`read_checkpoint`: an official-layout file, or a folder of official files
for a family that ships them so) and loaded strictly into its networks; every network inference needs (all but
the `discriminators`) must be in it.

Each family registers its card at the bottom of its own file (methods/fomm.py, methods/monkey_net.py,
methods/baselines.py); this module imports every module of methods/ that does, so a new family is one new file.
The interface every family implements is methods/interface.py.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from methods.config import ConfigSpec, parse_config
from methods.interface import Method
from plumbing.errors import AnimbenchError

# The grid_sample convention of the official weights (torch 1.0 semantics, reference §1.8.1).
DEFAULT_ALIGN_CORNERS = True

Builder = Callable[[dict | None, bool], Method]


@dataclass(frozen=True)
class MethodCard:
    """What a method is, which configs and official checkpoints it has, and how to build it."""

    name: str
    paper: str
    family: str
    build: Builder = field(repr=False, compare=False)
    configs: Mapping[str, str] = field(default_factory=dict)  # dataset -> config file
    checkpoints: Mapping[str, str] = field(default_factory=dict)  # official file name -> dataset of its config
    config_spec: ConfigSpec | None = field(default=None, repr=False, compare=False)  # what its YAML holds
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

    @property
    def driven_by(self) -> str:
        """"video" or "poses": the inputs the method animates from (its class's `driven_by`, known before building
        it when the card's builder is the class's `build`)."""
        owner = getattr(self.build, "__self__", None)
        return str(getattr(owner, "driven_by", "video")) if isinstance(owner, type) else "video"

    def as_dict(self) -> dict[str, Any]:
        """The card as plain data (what `animbench methods --json` prints)."""
        return {"name": self.name, "paper": self.paper, "family": self.family, "trainable": self.trainable,
                "needs_config": self.needs_config, "driven_by": self.driven_by, "configs": dict(self.configs),
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


def config_specs() -> dict[str, ConfigSpec]:
    """Method name -> ConfigSpec of every registered family that is built from a config."""
    return {name: card.config_spec for name, card in sorted(METHODS.items()) if card.config_spec is not None}


def load_config(path_or_dict: str | Path | Mapping[str, Any], method: str | None = None) -> dict:
    """Parse and validate a config of a registered family (official or ours), named by a path, a dataset name of
    the method's card (`vox`) or a file name; adds cfg["_meta"] (path, sha256, method). See methods/config.py."""
    configs = METHODS[method].configs if method is not None and method in METHODS else None
    return parse_config(path_or_dict, config_specs(), method, configs)


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
) -> tuple[Method, dict[str, Any]]:
    """Build a registered method from its config, load an official-layout checkpoint, move to device, eval mode.

    Returns the model and its provenance: method, config path + sha256, checkpoint path + sha256, the
    grid_sample convention (align_corners), device and dtype. Record it with every output.
    """
    from methods.checkpoints import checkpoint_sha256, load_into

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
        ckpt = model.read_checkpoint(checkpoint)
        needed = [n for n in model.networks if n not in model.discriminators and n not in ckpt]
        if needed:
            raise AnimbenchError(f"checkpoint {checkpoint}: has no {needed[0]!r} entry, which this config's model "
                                 f"needs (found {sorted(k for k in map(str, ckpt) if not k.startswith('optimizer'))})")
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


# --- discovery ---------------------------------------------------------------------------------------------


def _family_modules() -> list[str]:
    """Modules of methods/ that register a card (a family file, or the baselines): found, not listed by hand."""
    here = Path(__file__).resolve().parent
    found = []
    for info in pkgutil.iter_modules([str(here)]):
        if info.name == "registry" or info.ispkg:
            continue
        text = (here / f"{info.name}.py").read_text(encoding="utf-8")
        if re.search(r"^\S.*\bregister_method\(", text, re.MULTILINE):  # a top-level registration
            found.append(f"methods.{info.name}")
    return sorted(found)


for _module in _family_modules():
    importlib.import_module(_module)
