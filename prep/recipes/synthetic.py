"""`animbench synth` output (OUT/videos/<id>.mp4 + OUT/metadata.csv in the vox format): the vox path."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from plumbing.errors import AnimbenchError
from prep.recipes import Unit, metadata_units

NAME = "synthetic"
HELP = "a synthetic set made by `animbench synth` (vox-format metadata)"
DEFAULTS = {"size": 256}
SYNTH_JSON = "synth.json"  # written last by `animbench synth`: without it the set is incomplete


def plan(src: str | os.PathLike) -> list[Unit]:
    """One unit per synthetic video, cut by its metadata row."""
    src = Path(src)
    if not (src / "metadata.csv").is_file() or not (src / "videos").is_dir():
        raise AnimbenchError(f"--src {src}: expected `animbench synth` output (videos/ and metadata.csv)")
    if not (src / SYNTH_JSON).is_file():
        raise AnimbenchError(f"--src {src}: {SYNTH_JSON} is missing, so the synthetic set is incomplete "
                             "(its writer did not finish); run `animbench synth` again")
    return metadata_units(NAME, src / "videos", src / "metadata.csv", with_person=True, url_template=None)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """No options beyond the common ones."""


def plan_from_args(args: argparse.Namespace) -> list[Unit]:
    """`plan` with the parsed arguments."""
    return plan(args.src)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """PrepConfig fields: none beyond the common ones."""
    return {}
