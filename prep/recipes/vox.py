"""VoxCeleb: raw YouTube videos named `<video_id>.mp4` plus vox-metadata.csv, cut as load_videos.py does;
or, with --detect (`detect=True`), any videos cut by face tubes and the official crop rules (crop_vox.py).

Output ids: `<person_id>#<video_id>#<start:06d>#<end:06d>` (metadata) and
`<video name>#<start:06d>#<end:06d>` (detected, start/end in the video's own frames).
"""

from __future__ import annotations

import os
from pathlib import Path

from plumbing.errors import AnimbenchError
from plumbing.ids import check_id
from prep.recipes import YOUTUBE_URL, Clip, Unit, media_items, metadata_units, read_splits

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
