"""VoxCeleb: raw YouTube videos named `<video_id>.mp4` plus vox-metadata.csv, cut as load_videos.py does;
or, with --detect (`detect=True`), any videos cut by face tubes and the official crop rules (crop_vox.py).

Output ids: `<person_id>#<video_id>#<start:06d>#<end:06d>` (metadata) and
`<video name>#<start:06d>#<end:06d>` (detected, start/end in the video's own frames).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from plumbing.errors import AnimbenchError
from plumbing.ids import check_id
from prep.detect import DETECTORS, OUT_OF_FRAME, CropRules
from prep.recipes import (
    YOUTUBE_URL,
    Clip,
    Unit,
    add_download_arguments,
    media_items,
    metadata_units,
    read_splits,
)

NAME = "vox"
HELP = "VoxCeleb: raw videos + vox-metadata.csv, or --detect to find face clips in any videos"
DEFAULTS = {"size": 256}


def plan(src: str | os.PathLike, metadata: str | os.PathLike | None = None, *, detect: bool = False,
         split: str = "train", splits: str | os.PathLike | None = None, url_template: str | None = YOUTUBE_URL,
         download: bool = False, recipe: str = NAME) -> list[Unit]:
    """Units for the vox recipe: one per source video (metadata mode) or per video file (detect mode)."""
    src = Path(src)
    if metadata is not None and detect:
        raise AnimbenchError("vox: give --metadata (official crops) or --detect (find faces), not both")
    if metadata is not None:
        return metadata_units(recipe, src, metadata, with_person=True, url_template=url_template,
                              download=download)
    if not detect:
        raise AnimbenchError("vox: give --metadata vox-metadata.csv, or --detect to find face clips")
    return detect_units(recipe, src, split=split, splits=splits)


def detect_units(recipe: str, src: Path, *, split: str, splits: str | os.PathLike | None) -> list[Unit]:
    """One detect-mode unit per video file in src; split (and person) from a split file or `split`."""
    if not src.is_dir():
        raise AnimbenchError(f"--src {src}: no such directory")
    check_id(split, field="split", where="--split")
    table = read_splits(splits) if splits else {}
    units = []
    for vid, path, kind in media_items(src):
        if kind != "video":
            continue
        facts = table.get(vid, {"split": split, "person_id": ""})
        template = Clip(video_id=vid, split=facts["split"], person_id=facts["person_id"] or None)
        units.append(Unit(key=f"{recipe}-detect/{vid}", source=str(path), clips=(template,), detect=True))
    return units


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--metadata, the detect-mode options and the download options."""
    p.add_argument("--metadata", default=None, help="vox-metadata.csv "
                   "(video_id,start,end,bbox,fps,width,height,partition,person_id)")
    rules = CropRules()
    g = p.add_argument_group("detect mode (no metadata): face tubes and the official crop rules")
    g.add_argument("--detect", action="store_true", help="find face clips instead of reading --metadata")
    g.add_argument("--detector", choices=DETECTORS, default="dlib",
                   help="s3fd (face-alignment; needs its weight file) or dlib's HOG / CNN (offline)")
    g.add_argument("--detector-weights", default=None, help="an explicit S3FD weight file")
    g.add_argument("--min-size", type=int, default=rules.min_size, help=f"min face tube side (default {rules.min_size})")
    g.add_argument("--min-frames", type=int, default=rules.min_frames, help=f"default {rules.min_frames}")
    g.add_argument("--max-frames", type=int, default=rules.max_frames, help=f"default {rules.max_frames}")
    g.add_argument("--max-gap", type=int, default=rules.max_gap,
                   help="frames without a detection a face tube bridges with interpolated boxes (default 0: a "
                        "missed frame ends the tube, as the official crop does)")
    g.add_argument("--out-of-frame", choices=OUT_OF_FRAME, default=rules.out_of_frame,
                   help="an enlarged face box that leaves the frame: drop the clip (default, official), shift the "
                        "box inside, or pad the missing pixels (pad-constant: --pad-value, pad-replicate: edge)")
    g.add_argument("--pad-value", type=int, default=0, help="grey level of pad-constant (default 0)")
    g.add_argument("--split", default="train", help="split of the detected clips (default train)")
    g.add_argument("--splits", default=None, help="csv video_id,split[,person_id] per video file")
    add_download_arguments(p)


def plan_from_args(args: argparse.Namespace) -> list[Unit]:
    """`plan` with the parsed arguments."""
    return plan(args.src, args.metadata, detect=args.detect, split=args.split, splits=args.splits,
                url_template=args.url_template, download=args.download)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """PrepConfig fields: download, and in detect mode the detector and the crop rules."""
    config: dict[str, Any] = {"download": args.download}
    if args.detect:
        config.update(detector=args.detector, detector_weights=args.detector_weights,
                      rules=CropRules(min_size=args.min_size, min_frames=args.min_frames,
                                      max_frames=args.max_frames, max_gap=args.max_gap,
                                      out_of_frame=args.out_of_frame))
    return config
