"""Any folder of footage: video files (mp4, gif, mov, ...), frame folders (FOMM's png layout, a folder per
video named `<id>.mp4`) and stacked strips (.png/.jpg, frames side by side, Monkey-Net's format).

Splits come from `train/` and `test/` (and `val/`) subfolders, else from a split file or one split name.
An optional crop-box file (`video_id,bbox[,width,height]`, bbox as `left-top-right-bot`, rescaled from
width x height when given) crops each video before resizing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from plumbing.errors import AnimbenchError
from plumbing.ids import check_id
from prep.recipes import Clip, Unit, keyed_rows, media_items, parse_bbox, read_splits

NAME = "folder"
HELP = "any folder of mp4/gif/mov, png frame folders or Monkey-Net strips (train/ test/ subfolders or a split)"
DEFAULTS = {"size": 0}  # keep the frames' size unless --size is given
SPLIT_DIRS = ("train", "test", "val", "valid", "validation")


def read_boxes(path: str | os.PathLike) -> dict[str, tuple[tuple[int, int, int, int], tuple[int, int] | None]]:
    """A crop-box file: video_id -> (bbox, reference (width, height) or None)."""
    boxes = {}
    for vid, row, where in keyed_rows(path, ["video_id", "bbox"], "crop-box file"):
        ref = None
        if row.get("width") and row.get("height"):
            try:
                ref = (int(row["width"]), int(row["height"]))
            except ValueError:
                raise AnimbenchError(f"{where}: width/height must be integers") from None
            if min(ref) <= 0:
                raise AnimbenchError(f"{where}: width/height {ref[0]}x{ref[1]} must be positive")
        boxes[vid] = (parse_bbox(row["bbox"], where), ref)
    return boxes


def plan(src: str | os.PathLike, *, split: str | None = None, splits: str | os.PathLike | None = None,
         boxes: str | os.PathLike | None = None, frame_width: int | None = None) -> list[Unit]:
    """One unit per video, frame folder or strip found in src (or in its split subfolders)."""
    src = Path(src)
    if not src.is_dir():
        raise AnimbenchError(f"--src {src}: no such directory")
    if split:
        check_id(split, field="split", where="--split")
    split_dirs = [src / d for d in SPLIT_DIRS if (src / d).is_dir()]
    table = read_splits(splits) if splits else {}
    crop = read_boxes(boxes) if boxes else {}
    found: list[tuple[str, str | None, Path, str]] = []  # video id, split (None: look up), path, kind
    if split_dirs:
        if split or splits:
            raise AnimbenchError(f"--src {src} has split subfolders ({', '.join(d.name for d in split_dirs)}); "
                                 "--split/--splits apply to flat folders only")
        for d in split_dirs:
            found += [(vid, d.name, path, kind) for vid, path, kind in media_items(d)]
    else:
        if not split and not splits:
            raise AnimbenchError(f"--src {src} has no train/ or test/ subfolders: pass --split NAME (all videos) "
                                 "or --splits FILE (video_id,split)")
        found = [(vid, None, path, kind) for vid, path, kind in media_items(src)]
    units, seen = [], {}
    for vid, sub_split, path, kind in found:
        facts = table.get(vid)
        if sub_split is None and facts is None and not split:
            raise AnimbenchError(f"--splits {splits}: no row for video {vid!r} ({path})")
        the_split = sub_split or (facts["split"] if facts else split)
        if vid in seen:
            raise AnimbenchError(f"--src {src}: video id {vid!r} is both {seen[vid]} and {path}")
        seen[vid] = path
        box, ref = crop.get(vid, (None, None))
        clip = Clip(video_id=vid, split=the_split, person_id=(facts or {}).get("person_id") or None, bbox=box,
                    ref_size=ref)
        units.append(Unit(key=f"{NAME}/{path.relative_to(src).as_posix()}", source=str(path), kind=kind,
                          clips=(clip,), frame_width=frame_width if kind == "strip" else None))
    if not units:
        raise AnimbenchError(f"--src {src}: no videos, frame folders or strips found")
    unknown = set(crop) - set(seen)
    if unknown:
        raise AnimbenchError(f"--boxes {boxes}: no video named {sorted(unknown)[0]!r} in {src}")
    return units


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Split, crop-box, strip-width and padding options."""
    p.add_argument("--split", default=None, help="put every video in this split (flat folders)")
    p.add_argument("--splits", default=None, help="csv video_id,split[,person_id] (flat folders)")
    p.add_argument("--boxes", default=None, help="csv video_id,bbox[,width,height]: crop box per video")
    p.add_argument("--frame-width", type=int, default=None, help="strips: width of one frame (default: height)")
    p.add_argument("--pad", action="store_true", help="pad frames to a square before resizing")


def plan_from_args(args: argparse.Namespace) -> list[Unit]:
    """`plan` with the parsed arguments."""
    return plan(args.src, split=args.split, splits=args.splits, boxes=args.boxes, frame_width=args.frame_width)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """PrepConfig fields: none beyond the common ones (--pad is one of them)."""
    return {}
