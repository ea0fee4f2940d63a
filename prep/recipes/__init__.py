"""Recipes turn a user's inputs (raw videos + official metadata, or any folder of footage) into units of work.

A unit is one source (a video file, a frame folder or a strip image) and the clips to cut from it; the
pipeline decodes each source once and writes one shard per unit. Recipes run in the driver and only read
metadata and list files; decoding happens in the workers.

Each recipe is one module here, found without a list: it has `NAME`, `HELP`, `DEFAULTS` (output options),
`add_arguments(parser)` (its own CLI flags), `plan(...)` (plain keyword arguments, callable from Python),
`plan_from_args(args)` and `config_from_args(args)` (the PrepConfig fields its flags set).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import math
import os
import pkgutil
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plumbing.errors import AnimbenchError
from plumbing.ids import MAX_CLIP_BYTES, check_id, id_problem
from prep.decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

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
    """Rows of a UTF-8 CSV with a header (a byte-order mark is allowed), checking the required columns are
    present and every row has one value per column; row k of the list is line k + 2 of the file."""
    path = Path(path)
    if not path.is_file():
        raise AnimbenchError(f"{what} {path}: no such file")
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            missing = [c for c in required if c not in columns]
            if missing:
                raise AnimbenchError(f"{what} {path}: missing column(s) {', '.join(missing)} "
                                     f"(expected {','.join(required)})")
            for n, row in enumerate(reader, start=2):
                if None in row or None in row.values():  # a short row gets None values, a long one a None key
                    got = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
                    raise AnimbenchError(f"{what} {path} line {n}: {got} field(s), expected {len(columns)} "
                                         f"({','.join(columns)})")
                rows.append(dict(row))
    except UnicodeDecodeError as exc:
        raise AnimbenchError(f"{what} {path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except csv.Error as exc:
        raise AnimbenchError(f"{what} {path} line {len(rows) + 2}: unreadable CSV ({exc})") from None
    return rows


def parse_bbox(text: str, where: str) -> tuple[int, int, int, int]:
    """'left-top-right-bot' (the metadata csv format) to four ints, checked."""
    try:
        left, top, right, bot = (int(float(v)) for v in str(text).strip().split("-"))
    except (ValueError, OverflowError):  # not four numbers, or inf
        raise AnimbenchError(f"{where}: bbox {text!r}: expected 'left-top-right-bot' integers") from None
    if right <= left or bot <= top:
        raise AnimbenchError(f"{where}: bbox {text!r} is empty (right <= left or bottom <= top)")
    return left, top, right, bot


def find_video(src: Path, stem: str) -> Path:
    """`<stem>.mp4` in src, else another video extension with that stem; the .mp4 path when none exists.

    stem must be a checked identifier (one file name), so the path stays in src."""
    problem = id_problem(stem)
    if problem:  # defence in depth: recipes check ids where they enter
        raise AnimbenchError(f"--src {src}: video name {stem!r} {problem}")
    mp4 = src / f"{stem}.mp4"
    if mp4.exists():
        return mp4
    for ext in VIDEO_EXTENSIONS:
        if (src / f"{stem}{ext}").exists():
            return src / f"{stem}{ext}"
    return mp4


def _number(row: dict[str, str], key: str, kind: type, where: str, positive: bool = False) -> Any:
    text = row[key].strip()
    try:
        value = kind(text)
    except ValueError:
        raise AnimbenchError(f"{where}: {key} {text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if (kind is float and not math.isfinite(value)) or (positive and value <= 0):
        raise AnimbenchError(f"{where}: {key} {text} must be a positive number")
    return value


def metadata_units(recipe: str, src: str | os.PathLike, metadata: str | os.PathLike, *, with_person: bool,
                   url_template: str | None = YOUTUBE_URL, download: bool = False,
                   skip_lines: Collection[int] = (), warn: Callable[[str], None] | None = None) -> list[Unit]:
    """Units from a vox/taichi-format metadata csv: one unit per source video, one clip per row.

    Every row is checked here: ids are plain names (video and person ids without '#', which joins the parts
    of clip names), numbers are numbers in range. A row repeating an earlier one exactly is skipped, a clip
    listed as train and as test is kept in test only (both with a counted warning: the official vox csv has 308
    and 3 of them), any other repeated clip is an error. src must exist unless the videos are to be downloaded
    into it. Rows on `skip_lines` (file line numbers) are left out: the caller has reported them."""
    warn = warn or print_warning
    if not Path(src).is_dir() and not (download and url_template):
        raise AnimbenchError(f"--src {src}: no such directory" + (" (or pass --download)" if url_template else ""))
    cols = ["video_id", "start", "end", "bbox", "fps", "width", "height", "partition"]
    if with_person:
        cols.append("person_id")
    rows = read_csv_rows(metadata, cols, "metadata")
    src = Path(src)
    by_video: dict[str, list[Clip]] = {}
    lines: dict[str, int] = {}
    firsts: dict[str, dict[str, str]] = {}  # clip name -> its first row
    repeated: list[tuple[int, int]] = []  # (line, the earlier line it repeats exactly)
    both_splits: list[tuple[int, int]] = []  # (line, the earlier line): the same clip as train and as test
    for n, row in enumerate(rows, start=2):
        if n in skip_lines:
            continue
        where = f"metadata {metadata} line {n}"
        vid = check_id(row["video_id"].strip(), field="video_id", where=where, allow_hash=False)
        person = (check_id(row["person_id"].strip(), field="person_id", where=where, allow_hash=False)
                  if with_person else None)
        split = check_id(row["partition"].strip(), field="partition", where=where)
        start, end = _number(row, "start", int, where), _number(row, "end", int, where)
        ref_fps = _number(row, "fps", float, where, positive=True)
        width = _number(row, "width", int, where, positive=True)
        height = _number(row, "height", int, where, positive=True)
        if start < 0:
            raise AnimbenchError(f"{where}: start {start} is negative")
        if end <= start:
            raise AnimbenchError(f"{where}: frame range [{start}, {end}) is empty (end must be after start)")
        name = "#".join(([person] if with_person else []) + [vid, f"{start:06d}", f"{end:06d}"])
        check_id(name, field="clip name", where=where, max_bytes=MAX_CLIP_BYTES)
        clip = Clip(video_id=name, split=split, person_id=person, start=start, end=end,
                    ref_fps=ref_fps, bbox=parse_bbox(row["bbox"], where), ref_size=(width, height))
        if name in lines:  # the official vox csv repeats 308 rows exactly and lists 3 clips as train and test
            first = firsts[name]
            if row == first:
                repeated.append((n, lines[name]))
                continue
            if {k: v for k, v in row.items() if k != "partition"} != \
                    {k: v for k, v in first.items() if k != "partition"}:
                raise AnimbenchError(f"{where}: clip {name!r} is also on line {lines[name]} with other values")
            both_splits.append((n, lines[name]))
            if split != "test":
                continue
            by_video[vid] = [c for c in by_video[vid] if c.video_id != name]  # the test row wins
        lines[name], firsts[name] = n, row
        by_video.setdefault(vid, []).append(clip)
    _report_repeats(metadata, repeated, both_splits, warn)
    units = []
    for vid in sorted(by_video):
        url = url_template.format(video_id=vid) if url_template else None
        clips = tuple(sorted(by_video[vid], key=lambda c: c.video_id))
        units.append(Unit(key=f"{recipe}/{vid}", source=str(find_video(src, vid)), clips=clips, url=url))
    return units


def print_warning(message: str) -> None:
    """A recipe's warning: one line on stderr (the run goes on)."""
    print(f"animbench: warning: {message}", file=sys.stderr, flush=True)


def _report_repeats(metadata: str | os.PathLike, repeated: list[tuple[int, int]],
                    both_splits: list[tuple[int, int]], warn: Callable[[str], None]) -> None:
    """One warning per kind of repeated clip row (counted, the first lines named)."""
    def first(pairs: list[tuple[int, int]]) -> str:
        return ", ".join(f"line {n} = line {m}" for n, m in pairs[:3]) + (", ..." if len(pairs) > 3 else "")

    if repeated:
        warn(f"metadata {metadata}: {len(repeated)} row(s) repeat an earlier row exactly ({first(repeated)}): "
             f"each clip is prepared once")
    if both_splits:
        warn(f"metadata {metadata}: {len(both_splits)} clip(s) are listed as train and as test "
             f"({first(both_splits)}): kept in test only, so no test clip is trained on (the official script "
             f"would put them in both)")


def keyed_rows(path: str | os.PathLike, required: Sequence[str], what: str) -> Iterator[tuple[str, dict, str]]:
    """(video_id, row, 'what path line N') of a CSV keyed by video_id: each id checked, a repeated id refused."""
    lines: dict[str, int] = {}
    for n, row in enumerate(read_csv_rows(path, required, what), start=2):
        where = f"{what} {path} line {n}"
        vid = check_id(row["video_id"].strip(), field="video_id", where=where)
        if vid in lines:
            raise AnimbenchError(f"{where}: video {vid!r} is also on line {lines[vid]}")
        lines[vid] = n
        yield vid, row, where


def read_splits(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """A split file: csv `video_id,split[,person_id]` -> {video_id: {split, person_id}}, every id checked."""
    table: dict[str, dict[str, str]] = {}
    for vid, r, where in keyed_rows(path, ["video_id", "split"], "split file"):
        person = (r.get("person_id") or "").strip()
        table[vid] = {"split": check_id(r["split"].strip(), field="split", where=where),
                      "person_id": check_id(person, field="person_id", where=where) if person else ""}
    return table


def media_items(folder: Path) -> list[tuple[str, Path, str]]:
    """(video_id, path, kind) for every video file, frame folder and strip image directly in folder.

    Hidden entries (names starting with '.', such as macOS's `._clip.mp4`) are not media and are skipped;
    the other names must be valid ids."""
    items = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        suffix = p.suffix.lower()
        if p.is_dir():
            if any(q.suffix.lower() in IMAGE_EXTENSIONS for q in p.iterdir()):
                vid = p.stem if suffix in VIDEO_EXTENSIONS else p.name  # FOMM names frame folders '<id>.mp4'
                items.append((check_id(vid, field="video name", where=str(p)), p, "frames"))
        elif suffix in VIDEO_EXTENSIONS:
            items.append((check_id(p.stem, field="video name", where=str(p)), p, "video"))
        elif suffix in IMAGE_EXTENSIONS:
            items.append((check_id(p.stem, field="video name", where=str(p)), p, "strip"))
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
    """Recipe modules by name: every module of this package (a new recipe is a new file)."""
    mods = (importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__))
    return {m.NAME: m for m in sorted(mods, key=lambda m: m.NAME)}


def add_download_arguments(p: argparse.ArgumentParser, *, url_template: bool = True) -> None:
    """`--download` (fetch missing sources with yt-dlp) and, for id-named sources, `--url-template`."""
    g = p.add_argument_group("download (optional, needs `pip install yt-dlp`)")
    g.add_argument("--download", action="store_true",
                   help="fetch videos missing from --src with yt-dlp" if url_template
                   else "fetch listed URLs missing from --src")
    if url_template:
        g.add_argument("--url-template", default=YOUTUBE_URL, help=f"URL of a video id (default {YOUTUBE_URL})")
