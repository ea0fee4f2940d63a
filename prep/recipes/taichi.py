"""TaiChi-HD: raw YouTube videos named `<video_id>.mp4` plus taichi-metadata.csv, cut as load_videos.py does.

Output ids: `<video_id>#<start:06d>#<end:06d>`; the metadata has no person ids.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from prep.recipes import YOUTUBE_URL, Unit, add_download_arguments, metadata_units

NAME = "taichi"
HELP = "TaiChi-HD: raw videos + taichi-metadata.csv"
DEFAULTS = {"size": 256}


def plan(src: str | os.PathLike, metadata: str | os.PathLike, *, url_template: str | None = YOUTUBE_URL,
         download: bool = False) -> list[Unit]:
    """One unit per source video, one clip per metadata row (src may be missing when downloading)."""
    return metadata_units(NAME, Path(src), metadata, with_person=False, url_template=url_template,
                          download=download)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--metadata and the download options."""
    p.add_argument("--metadata", required=True, help="taichi-metadata.csv "
                   "(video_id,start,end,bbox,fps,width,height,partition)")
    add_download_arguments(p)


def plan_from_args(args: argparse.Namespace) -> list[Unit]:
    """`plan` with the parsed arguments."""
    return plan(args.src, args.metadata, url_template=args.url_template, download=args.download)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """PrepConfig fields: download."""
    return {"download": args.download}
