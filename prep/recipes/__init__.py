"""Recipes turn a user's inputs (raw videos + official metadata, or any folder of footage) into units of work.

A unit is one source (a video file, a frame folder or a strip image) and the clips to cut from it; the
pipeline decodes each source once and writes one shard per unit. Recipes run in the driver and only read
metadata and list files; decoding happens in the workers.

Each recipe module has `NAME`, `HELP`, `DEFAULTS` (output options), `add_arguments(parser)`,
`plan(...)` (plain keyword arguments, callable from Python) and `plan_from_args(args)`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prep.decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from prep.errors import AnimbenchError

YOUTUBE_URL = "https://www.youtube.com/watch?v={video_id}"


@dataclass(frozen=True)
class Clip:
    """One output video: an id, its split, a frame range at a reference fps and a crop box at a reference size."""

    video_id: str
    split: str
    person_id: str | None = None
    start: int | None = None  # first frame, counted at ref_fps (None: the first frame)
    end: int | None = None  # one past the last frame at ref_fps (None: to the end)
    ref_fps: float | None = None  # rate start/end count in (None: the video's own)
    bbox: tuple[int, int, int, int] | None = None  # left, top, right, bottom at ref_size (None: full frame)
    ref_size: tuple[int, int] | None = None  # (width, height) bbox is given at (None: the video's own)


@dataclass(frozen=True)
class Unit:
    """One source and its clips; `key` is stable across runs and names the unit's shard."""

    key: str
    source: str
    kind: str = "video"  # video | frames | strip
    clips: tuple[Clip, ...] = ()
    url: str | None = None  # where the download stage fetches a missing source
    detect: bool = False  # clips come from face detection; clips[0] is the template (id, split, person)
    frame_width: int | None = None  # strips: the width of one frame (default: the strip's height)


def read_csv_rows(path: str | os.PathLike, required: Sequence[str], what: str) -> list[dict[str, str]]:
    """Rows of a CSV with a header, checking the required columns are present."""
    path = Path(path)
    if not path.is_file():
        raise AnimbenchError(f"{what} {path}: no such file")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise AnimbenchError(f"{what} {path}: missing column(s) {', '.join(missing)} "
                                 f"(expected {','.join(required)})")
        return [dict(row) for row in reader]


def parse_bbox(text: str, where: str) -> tuple[int, int, int, int]:
    """'left-top-right-bot' (the metadata csv format) to four ints, checked."""
    try:
        left, top, right, bot = (int(float(v)) for v in str(text).strip().split("-"))
    except ValueError:
        raise AnimbenchError(f"{where}: bbox {text!r}: expected 'left-top-right-bot' integers") from None
    if right <= left or bot <= top:
        raise AnimbenchError(f"{where}: bbox {text!r} is empty (right <= left or bottom <= top)")
    return left, top, right, bot


def find_video(src: Path, stem: str) -> Path:
    """`<stem>.mp4` in src, else another video extension with that stem; the .mp4 path when none exists."""
    mp4 = src / f"{stem}.mp4"
    if mp4.exists():
        return mp4
    for ext in VIDEO_EXTENSIONS:
        if (src / f"{stem}{ext}").exists():
            return src / f"{stem}{ext}"
    return mp4


def metadata_units(recipe: str, src: str | os.PathLike, metadata: str | os.PathLike, *, with_person: bool,
                   url_template: str | None = YOUTUBE_URL, download: bool = False) -> list[Unit]:
    """Units from a vox/taichi-format metadata csv: one unit per source video, one clip per row.

    src must exist unless the videos are to be downloaded into it."""
    if not Path(src).is_dir() and not (download and url_template):
        raise AnimbenchError(f"--src {src}: no such directory" + (" (or pass --download)" if url_template else ""))
    cols = ["video_id", "start", "end", "bbox", "fps", "width", "height", "partition"]
    if with_person:
        cols.append("person_id")
    rows = read_csv_rows(metadata, cols, "metadata")
    src = Path(src)
    by_video: dict[str, list[Clip]] = {}
    for n, row in enumerate(rows, start=2):
        where = f"metadata {metadata} line {n}"
        try:
            start, end = int(row["start"]), int(row["end"])
            ref_fps = float(row["fps"])
            ref_size = (int(row["width"]), int(row["height"]))
        except ValueError:
            raise AnimbenchError(f"{where}: start/end/fps/width/height must be numbers") from None
        if end <= start or start < 0:
            raise AnimbenchError(f"{where}: frame range [{start}, {end}) is empty")
        vid = row["video_id"].strip()
        person = row["person_id"].strip() if with_person else None
        name = "#".join(([person] if with_person else []) + [vid, f"{start:06d}", f"{end:06d}"])
        by_video.setdefault(vid, []).append(Clip(
            video_id=name, split=row["partition"].strip(), person_id=person, start=start, end=end,
            ref_fps=ref_fps, bbox=parse_bbox(row["bbox"], where), ref_size=ref_size,
        ))
    units = []
    for vid in sorted(by_video):
        url = url_template.format(video_id=vid) if url_template else None
        clips = tuple(sorted(by_video[vid], key=lambda c: c.video_id))
        units.append(Unit(key=f"{recipe}/{vid}", source=str(find_video(src, vid)), clips=clips, url=url))
    return units


def read_splits(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """A split file: csv `video_id,split[,person_id]` -> {video_id: {split, person_id}}."""
    rows = read_csv_rows(path, ["video_id", "split"], "split file")
    return {r["video_id"].strip(): {"split": r["split"].strip(), "person_id": (r.get("person_id") or "").strip()}
            for r in rows}


def media_items(folder: Path) -> list[tuple[str, Path, str]]:
    """(video_id, path, kind) for every video file, frame folder and strip image directly in folder."""
    items = []
    for p in sorted(folder.iterdir()):
        suffix = p.suffix.lower()
        if p.is_dir():
            if any(q.suffix.lower() in IMAGE_EXTENSIONS for q in p.iterdir()):
                vid = p.stem if suffix in VIDEO_EXTENSIONS else p.name  # FOMM names frame folders '<id>.mp4'
                items.append((vid, p, "frames"))
        elif suffix in VIDEO_EXTENSIONS:
            items.append((p.stem, p, "video"))
        elif suffix in IMAGE_EXTENSIONS:
            items.append((p.stem, p, "strip"))
    return items


def check_unique(units: Sequence[Unit]) -> None:
    """Unit keys and output video ids must be unique: they name shards and store rows."""
    keys, ids = set(), {}
    for u in units:
        if u.key in keys:
            raise AnimbenchError(f"two units share the key {u.key!r}")
        keys.add(u.key)
        if u.detect:
            continue
        for c in u.clips:
            if c.video_id in ids:
                raise AnimbenchError(f"video id {c.video_id!r} comes from both {ids[c.video_id]} and {u.source}")
            ids[c.video_id] = u.source


def recipes() -> dict[str, Any]:
    """Recipe modules by name."""
    from prep.recipes import fashion, folder, synthetic, taichi, vox

    return {m.NAME: m for m in (vox, taichi, fashion, folder, synthetic)}
