"""Reading user-placed .pth weight files and loading them strictly: shared by prep's pose detector and the bench's
metric backends (rtpose, OpenFace, re-id), so every such file fails the same way, in one line, naming itself.

torch is imported here only; modules that never load weights (reports, the CLI's listing) need not import this.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from plumbing.errors import AnimbenchError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state_dict (name -> tensor) from a .pth file, on CPU, `module.` prefixes (DataParallel) removed."""
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # torch 0.x pickles of these user-placed evaluation files may carry classes the safe loader rejects;
            # the original scripts torch.load'ed them as they are.
            obj = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise AnimbenchError(f"weight file {path}: not a torch checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise AnimbenchError(f"weight file {path}: expected a state_dict (name -> tensor), got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_exact(model: nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path,
               ignore_prefixes: Iterable[str] = ()) -> None:
    """Load strictly: every key and shape must match, except `num_batches_tracked` (absent in torch<0.4.1 files).

    Keys under `ignore_prefixes` may be present or absent in the file (heads a metric throws away).
    """
    ignore = tuple(ignore_prefixes)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(ignore)}
    given = {k: v for k, v in state_dict.items() if not k.startswith(ignore)}
    missing = [k for k in own if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in own]
    wrong = [f"{k} {tuple(given[k].shape)} != {tuple(own[k].shape)}" for k in own
             if k in given and given[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{len(items)} {label} (e.g. {items[0]})"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if items]
        raise AnimbenchError(f"weight file {path}: keys do not match {type(model).__name__}: {'; '.join(parts)}")
    model.load_state_dict(given, strict=False)

