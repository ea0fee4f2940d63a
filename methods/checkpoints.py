"""The official FOMM / Monkey-Net checkpoint layout: load (including torch 1.0 files), map onto our models, save.

A checkpoint is one `torch.save`d dict with an entry per network (`generator`, `discriminator`, `kp_detector`,
each a state_dict), the optimizer state_dicts (`optimizer_<network>`), `epoch`, and for Monkey-Net `it`.
The entries are the model's `networks` (a family's own names, e.g. pose2img's `face_generator`); a model without
that attribute uses FOMM's three (`NETWORK_ENTRIES`). A family whose official release is a folder of per-network
files (pose2img's `latest_net_G.pth`, ...) reads it in its `read_checkpoint`; `checkpoint_sha256` of such a folder
is a digest over its files' (name, sha256) pairs.

Old files: checkpoints written by torch 1.0 keep spectral-norm convs as `weight_orig`, `weight`, `weight_u` with
no `weight_v`. Our discriminators use `nn.utils.spectral_norm`, whose load pre-hook rebuilds `weight_v` from
those three, so such state dicts load even through a plain `load_state_dict`; `load_into` computes the same
`weight_v` itself first, because the hook's pseudo-inverse takes minutes on the official discriminator.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm

from plumbing.errors import AnimbenchError
from plumbing.files import atomic_path, sha256_file

NETWORK_ENTRIES = ("generator", "discriminator", "kp_detector")
OPTIMIZER_ENTRIES = tuple(f"optimizer_{name}" for name in NETWORK_ENTRIES)
REQUIRED_ENTRIES = ("generator", "kp_detector")  # inference needs only these; Logger.load_cpk tolerates the rest
_SHOW = 5  # how many offending keys an error message names


def network_names(model: nn.Module) -> tuple[str, ...]:
    """The checkpoint entries of a model: its `networks`, the keys of a ModuleDict, else FOMM's three."""
    names = getattr(model, "networks", None)
    if names is None and isinstance(model, nn.ModuleDict):
        names = tuple(model.keys())
    return tuple(names) if names is not None else NETWORK_ENTRIES


def load_checkpoint(
    path: str | os.PathLike,
    *,
    required: Iterable[str] = REQUIRED_ENTRIES,
    weights_only: bool = True,
    map_location: str | torch.device = "cpu",
    allow_pickle: bool = False,
    safe_globals: Iterable[Any] = (),
) -> dict:
    """Read an official-layout checkpoint holding the `required` entries; retries with full unpickling only when
    allow_pickle (trusted files). `safe_globals`: classes a weights_only load may also rebuild (read_torch_file)."""
    path = Path(path)
    if not path.is_file():
        raise AnimbenchError(f"checkpoint {path}: file not found")
    ckpt = read_torch_file(path, weights_only=weights_only, map_location=map_location, allow_pickle=allow_pickle,
                           safe_globals=safe_globals)
    if not isinstance(ckpt, Mapping):
        raise AnimbenchError(f"checkpoint {path}: expected a dict of entries, got {type(ckpt).__name__}")
    required = tuple(required)
    for entry in required:
        if entry not in ckpt:
            raise AnimbenchError(
                f"checkpoint {path}: entry {entry!r} missing (found {sorted(map(str, ckpt))}); "
                f"expected the official layout with {list(required)}"
            )
    return dict(ckpt)


def read_torch_file(
    path: str | os.PathLike,
    *,
    weights_only: bool = True,
    map_location: str | torch.device = "cpu",
    allow_pickle: bool = False,
    safe_globals: Iterable[Any] = (),
) -> Any:
    """torch.load one file (weights_only unless allow_pickle says the file is trusted); one-line errors.

    safe_globals: exactly the classes (or (class, "module.Name") pairs, for a name an older Python pickled) a
    weights_only load may rebuild beyond torch's own, e.g. the argparse.Namespace + pathlib.PosixPath of the
    latent-pose release's `args`; anything else still refuses."""
    path = Path(path)
    if not path.is_file():
        raise AnimbenchError(f"checkpoint {path}: file not found")
    allowed = list(safe_globals)
    try:
        with torch.serialization.safe_globals(allowed) if allowed and weights_only else nullcontext():
            ckpt = torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as e:
        detail = _unpickling_detail(e)
        # only a disallowed class/function is a weights_only restriction; anything else is a damaged file
        if not (weights_only and "Unsupported global" in detail):
            raise AnimbenchError(f"checkpoint {path}: cannot be read, corrupt or not a torch file ({detail})") from None
        if not allow_pickle:
            raise AnimbenchError(
                f"checkpoint {path}: not loadable with weights_only=True ({detail}); if you trust the file, "
                "pass allow_pickle=True (or --allow-pickle) to unpickle it fully"
            ) from None
        warnings.warn(
            f"checkpoint {path}: weights_only load failed ({detail}); unpickling fully because "
            "allow_pickle=True: only do this for files you trust",
            stacklevel=3,
        )
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as e2:  # a corrupt file fails in many ways; the user needs one line
            raise AnimbenchError(f"checkpoint {path}: cannot be read ({_first_line(e2)})") from None
    except (EOFError, OSError, ValueError, RuntimeError, AttributeError) as e:
        raise AnimbenchError(
            f"checkpoint {path}: cannot be read, corrupt or not a torch file ({_first_line(e)})") from None
    return ckpt


def load_into(
    model: nn.Module,
    ckpt: Mapping[str, Any],
    strict: bool = True,
    entries: Iterable[str] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Load checkpoint entries onto the model's networks (`network_names`); returns missing/unexpected keys.

    `entries` defaults to every network entry the checkpoint has (a missing `discriminator` is fine). Keys and
    shapes are checked before anything is copied, so a mismatch leaves the model untouched.
    """
    known = network_names(model)
    names = [e for e in known if e in ckpt] if entries is None else list(entries)
    report: dict[str, dict[str, list[str]]] = {}
    for name in names:
        if name not in known:
            raise AnimbenchError(f"load_into: unknown entry {name!r}; expected one of {list(known)}")
        if name not in ckpt:
            raise AnimbenchError(f"checkpoint entry {name!r} missing (found {sorted(map(str, ckpt))})")
        module = getattr(model, name, None)
        if module is None:
            raise AnimbenchError(f"checkpoint entry {name!r}: the model has no {name} to load it into")
        state = ckpt[name]
        if not isinstance(state, Mapping):
            raise AnimbenchError(f"checkpoint entry {name!r}: expected a state_dict, got {type(state).__name__}")
        report[name] = _check_keys(name, module, state, strict)
    # Copy only after every entry passed its check.
    for name in names:
        module = getattr(model, name)
        module.load_state_dict(_convert_legacy_spectral_norm(module, ckpt[name]), strict=strict)
    _load_entries(model, ckpt)
    return report


def _load_entries(model: nn.Module, ckpt: Mapping[str, Any]) -> None:
    """The model's own reading of the entries beyond networks (Method.load_entries), when it has one."""
    hook = getattr(model, "load_entries", None)
    if callable(hook):
        hook(ckpt)


def load_matching(model: nn.Module, ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """pix2pixHD's `--load_pretrain` rule: into every network the model and the checkpoint both have, copy each
    tensor whose key AND shape match; everything else keeps its value (a new stage's layers stay as initialised).

    Returns {"networks": {entry: {"loaded": n, "skipped": [checkpoint keys not copied], "not_loaded": [model
    keys left as they were]}}, "absent": [the model's networks the checkpoint lacks]}."""
    report: dict[str, Any] = {"networks": {}, "absent": []}
    for name in network_names(model):
        module = getattr(model, name, None)
        if module is None:
            continue
        if name not in ckpt:
            report["absent"].append(name)
            continue
        state = ckpt[name]
        if not isinstance(state, Mapping):
            raise AnimbenchError(f"checkpoint entry {name!r}: expected a state_dict, got {type(state).__name__}")
        state = _convert_legacy_spectral_norm(module, state)
        own = module.state_dict()
        take = {k: v for k, v in state.items()
                if k in own and torch.is_tensor(v) and tuple(v.shape) == tuple(own[k].shape)}
        module.load_state_dict(take, strict=False)
        report["networks"][name] = {"loaded": len(take), "skipped": sorted(k for k in state if k not in take),
                                    "not_loaded": sorted(k for k in own if k not in take)}
    _load_entries(model, ckpt)
    return report


def _spectral_norms(module: nn.Module) -> Iterable[tuple[str, SpectralNorm]]:
    for prefix, sub in module.named_modules():
        for hook in sub._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm):
                yield (prefix + "." if prefix else "") + hook.name, hook


def _convert_legacy_spectral_norm(module: nn.Module, state: Mapping[str, Any]) -> Mapping[str, Any]:
    """Rebuild weight_v of torch-1.0 spectral-norm entries, as spectral_norm's load pre-hook does.

    Both solve W_orig x = u and rescale so that u·W_orig·v = sigma (so outputs are identical). The pre-hook
    uses pinverse(W^T W), a (C_in·k²)² matrix: about 4 minutes for the official 512x4096 block on 2 cores, and
    numerically poor in float32 for wide W. Solving in float64 in the smaller of W W^T / W^T W takes well under
    a second and gives a v with u = normalize(W_orig v), so training resumes from a consistent power iteration.
    """
    converted = None
    for key, fn in _spectral_norms(module):
        if key + "_v" in state or key not in state or key + "_orig" not in state or key + "_u" not in state:
            continue
        if converted is None:
            converted = OrderedDict(state)
            if hasattr(state, "_metadata"):
                converted._metadata = state._metadata  # type: ignore[attr-defined]
        weight_orig, u = state[key + "_orig"].double(), state[key + "_u"].double()
        sigma = (weight_orig / state[key].double()).mean()  # W = W_orig / sigma
        w_mat = fn.reshape_weight_to_matrix(weight_orig)
        try:
            if w_mat.shape[0] <= w_mat.shape[1]:  # minimum-norm solution of W x = u
                x = w_mat.t() @ torch.linalg.solve(w_mat @ w_mat.t(), u)
            else:  # least-squares solution
                x = torch.linalg.solve(w_mat.t() @ w_mat, w_mat.t() @ u)
        except RuntimeError:  # singular: fall back to the pseudo-inverse
            x = torch.linalg.pinv(w_mat) @ u
        v = x * (sigma / torch.dot(u, w_mat @ x))
        del converted[key]
        converted[key + "_v"] = v.to(state[key + "_orig"].dtype)
    return state if converted is None else converted


def _legacy_sn_keys(module: nn.Module, state: Mapping[str, Any]) -> set[str]:
    """`<conv>.weight` keys of torch-1.0 spectral-norm convs (no weight_v): the load pre-hook converts them."""
    expected = module.state_dict()
    legacy = set()
    for key in expected:
        if key.endswith(".weight_orig") or key == "weight_orig":
            prefix = key[: -len("weight_orig")]
            if prefix + "weight_v" not in state and prefix + "weight" in state and prefix + "weight_u" in state:
                legacy.add(prefix + "weight")
    return legacy


def _check_keys(name: str, module: nn.Module, state: Mapping[str, Any], strict: bool) -> dict[str, list[str]]:
    expected = module.state_dict()
    legacy = _legacy_sn_keys(module, state)
    legacy_v = {k + "_v" for k in legacy}  # rebuilt by spectral_norm's pre-hook
    missing = [k for k in expected if k not in state and k not in legacy_v]
    unexpected = [k for k in state if k not in expected and k not in legacy]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:_SHOW])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:_SHOW])})")
        raise AnimbenchError(
            f"checkpoint entry {name!r} does not match the model: {'; '.join(parts)} "
            "(wrong config for this checkpoint?)"
        )
    bad = []
    for key, value in state.items():
        if key in expected and torch.is_tensor(value) and tuple(value.shape) != tuple(expected[key].shape):
            bad.append(f"{key} {tuple(value.shape)} != model {tuple(expected[key].shape)}")
    if bad:
        raise AnimbenchError(
            f"checkpoint entry {name!r}: {len(bad)} shape mismatches (first: {'; '.join(bad[:_SHOW])}) "
            "(wrong config for this checkpoint?)"
        )
    return {"missing": missing, "unexpected": unexpected}


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer] | None,
    epoch: int,
    extra: Mapping[str, Any] | None = None,
    optimizer_names: Iterable[str] = (),
) -> Path:
    """Write the official layout atomically (temp file + rename): one entry per network of the model
    (`network_names`), optimizers keyed by network name or by one of `optimizer_names` (a family's optimiser
    groups, e.g. latent-pose's `G` over embedder + generator), each saved as `optimizer_<name>`."""
    path = Path(path)
    names = network_names(model)
    allowed = (*names, *optimizer_names)
    payload: dict[str, Any] = {}
    for name in names:
        module = getattr(model, name, None)
        if module is not None:
            payload[name] = module.state_dict()
    for name, optimizer in (optimizers or {}).items():
        short = name.removeprefix("optimizer_")
        if short not in allowed:
            raise AnimbenchError(
                f"save_checkpoint: optimizer {name!r}: expected one of {list(allowed)} (or optimizer_<name>)"
            )
        payload[f"optimizer_{short}"] = optimizer.state_dict()
    payload["epoch"] = int(epoch)
    for key, value in (extra or {}).items():
        if key in payload:
            raise AnimbenchError(f"save_checkpoint: extra key {key!r} would overwrite an official entry")
        _check_plain(key, value)
        payload[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def _check_plain(key: str, value: Any) -> None:
    """Extra entries must load with weights_only=True: tensors, numbers, strings, and containers of them."""
    if value is None or isinstance(value, (bool, int, float, str)) or torch.is_tensor(value):
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_plain(key, v)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(key, k)
            _check_plain(key, v)
        return
    raise AnimbenchError(
        f"save_checkpoint: extra[{key!r}] contains a {type(value).__name__}; only tensors, numbers, strings, "
        "lists and dicts load with weights_only=True"
    )


def checkpoint_sha256(path: str | os.PathLike, pattern: str = "*.pth") -> str:
    """Hex sha256 of a checkpoint (recorded with every result computed from it): of the file, or for a folder of
    official per-network files (pose2img's latest_net_G.pth, ...) `folder_sha256` over its `pattern` files."""
    path = Path(path)
    if path.is_dir():
        return folder_sha256(sorted(p for p in path.glob(pattern) if p.is_file()))
    if not path.is_file():
        raise AnimbenchError(f"checkpoint {path}: file not found")
    return sha256_file(path)


def folder_sha256(files: Iterable[str | os.PathLike]) -> str:
    """A stable digest of a set of files: sha256 over the sorted lines "<file name> <sha256 of the file>\n"
    (independent of the folder's path, its listing order and the files' timestamps)."""
    pairs = sorted((Path(f).name, sha256_file(f)) for f in files)
    if not pairs:
        raise AnimbenchError("checkpoint folder: no checkpoint files to digest")
    return hashlib.sha256("".join(f"{name} {digest}\n" for name, digest in pairs).encode()).hexdigest()


def _unpickling_detail(e: BaseException) -> str:
    """The informative part of torch's long weights_only message (the WeightsUnpickler error)."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text and text.split(marker, 1)[1].strip():
        return _first_sentence(text.split(marker, 1)[1])
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    return _first_sentence(str(e)) or type(e).__name__


def _first_sentence(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].split(". ")[0].strip() if lines else ""
