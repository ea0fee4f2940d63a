"""TED-talks (MRAA's ted384): raw YouTube videos named `<youtube_id>.mp4` plus ted384-metadata.csv, cut as the
MRAA README's command does (`load_videos.py ... --image_shape 384,384`), 384 px by default.

Crop rule (load_videos.py, the same as vox/taichi): `bbox` is `left-top-right-bottom` in pixels of the reference
`width` x `height`; each coordinate is divided by (reference size / frame size) of its axis and truncated to an
int; the frame is cropped to that box and resized to --size x --size as it is (anti-aliased area filter). The box
is not squared or padded, so a non-square box is stretched (the boxes of MRAA's clip list are square within
2 px); the frames kept are those with i * ref_fps in [start * fps, end * fps).

Output ids `<youtube_id>#<start:06d>#<end:06d>` (the official names); person_id is the YouTube id, the
identity the official configs sample by (`id_sampling: True`, the prefix before '#').

The only TED metadata the official repositories ship, MRAA's data/ted-metadata.csv, is not ted384-metadata.csv
(the maintainer, MRAA #17): its video_ids are clip names (`<youtube_id>#<start>#<end>`), start and end are 0 in
every row and every row is train. Here:
- start = end = 0 in every row is an error: load_videos.py keeps no frame of such a row, and the frame range in
  the name cannot be used instead: width = height on every row, so the boxes are at some intermediate square
  crop (inferred; no script is published), not at the video's frame, and no crop could be placed honestly. Some zeroed rows among good ones are skipped with
  a warning that counts them.
- no test row is a warning: the store can train but a benchmark has nothing to score. --hold-out N moves N
  whole talks (all clips of a YouTube id, so no talk is in both splits) to the test split, chosen by
  sha256(seed:id), independent of the file's order; --test-videos names them instead. The test clips are
  recorded in the store manifest (config.plan.test).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from plumbing.errors import AnimbenchError
from plumbing.ids import check_id
from prep.recipes import YOUTUBE_URL, Unit, add_download_arguments, metadata_units, parse_bbox, read_csv_rows

NAME = "ted"
HELP = "TED-talks (MRAA ted384): raw videos + ted384-metadata.csv, 384 px; reports the shipped csv's defects"
DEFAULTS = {"size": 384}
COLUMNS = ["video_id", "start", "end", "bbox", "fps", "width", "height", "partition"]
CLIP_NAME = re.compile(r"^(?P<video>[^#]+)#(?P<start>\d+)#(?P<end>\d+)$")  # <youtube_id>#start#end


@dataclass(frozen=True)
class MetadataReport:
    """What a TED metadata csv holds and what is wrong with it (line numbers are the file's)."""

    path: str
    rows: int
    videos: tuple[str, ...]  # YouTube ids (a video_id's part before '#', as load_videos.py downloads)
    partitions: dict[str, int]  # rows per partition
    fps: tuple[float, ...]  # distinct reference fps values
    zeroed_lines: tuple[int, ...]  # rows with start = end = 0: the official loader keeps no frame
    clip_name_lines: tuple[int, ...]  # rows whose video_id is a clip name, `<youtube_id>#start#end`
    named_frames: int  # frames the clip names span (sum of end - start over clip-name ids)
    non_square_boxes: int  # boxes with width != height (stretched by the resize)
    square_refs: int  # rows whose reference size is square (width = height): not a YouTube frame size

    def summary(self) -> str:
        """The figures on one line."""
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.partitions.items()))
        line = f"{self.rows} rows of {len(self.videos)} videos ({parts})"
        if self.zeroed_lines:
            line += f"; start = end = 0 on {len(self.zeroed_lines)} rows"
        if self.clip_name_lines:
            line += f"; {len(self.clip_name_lines)} video_ids are clip names ({self.named_frames} frames named)"
        return line


def _int(row: dict[str, str], key: str, where: str) -> int:
    text = row[key].strip()
    try:
        value = int(text)
    except ValueError:
        raise AnimbenchError(f"{where}: {key} {text!r} is not an integer") from None
    if value < 0:
        raise AnimbenchError(f"{where}: {key} {value} is negative")
    return value


def read_metadata(path: str | os.PathLike) -> MetadataReport:
    """Read a TED metadata csv as it is (ted384-metadata.csv or MRAA's ted-metadata.csv) and count its defects.

    Every id is checked (one plain name; '#' allowed here, as clip names hold it); numbers must be numbers."""
    rows = read_csv_rows(path, COLUMNS, "metadata")
    videos, partitions, fps = set(), Counter(), set()
    zeroed, clip_names, named, non_square, square = [], [], 0, 0, 0
    for n, row in enumerate(rows, start=2):
        where = f"metadata {path} line {n}"
        vid = check_id(row["video_id"].strip(), field="video_id", where=where)
        partitions[check_id(row["partition"].strip(), field="partition", where=where)] += 1
        start, end = _int(row, "start", where), _int(row, "end", where)
        try:
            fps.add(float(row["fps"]))
        except ValueError:
            raise AnimbenchError(f"{where}: fps {row['fps']!r} is not a number") from None
        left, top, right, bot = parse_bbox(row["bbox"], where)
        square += _int(row, "width", where) == _int(row, "height", where)
        non_square += (right - left) != (bot - top)
        videos.add(vid.split("#")[0])
        if start == 0 and end == 0:
            zeroed.append(n)
        match = CLIP_NAME.match(vid)
        if match:
            clip_names.append(n)
            named += max(0, int(match["end"]) - int(match["start"]))
    return MetadataReport(str(path), len(rows), tuple(sorted(videos)), dict(partitions), tuple(sorted(fps)),
                          tuple(zeroed), tuple(clip_names), named, non_square, square)


def held_out(videos: Sequence[str], count: int, seed: int = 0) -> list[str]:
    """`count` of the videos, the same whatever their order: the smallest sha256('<seed>:<id>')."""
    return sorted(sorted(videos, key=lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest())[:count])


def _print_warning(message: str) -> None:
    print(f"animbench: warning: {message}", file=sys.stderr, flush=True)


def plan(src: str | os.PathLike, metadata: str | os.PathLike, *, hold_out: int = 0, hold_out_seed: int = 0,
         test_videos: Sequence[str] = (), url_template: str | None = YOUTUBE_URL, download: bool = False,
         warn: Callable[[str], None] = _print_warning) -> list[Unit]:
    """One unit per YouTube video, one clip per usable metadata row; the defects above raise or `warn`."""
    report = read_metadata(metadata)
    where = f"metadata {metadata}"
    if report.rows == 0:
        raise AnimbenchError(f"{where}: no rows (expected {','.join(COLUMNS)} lines)")
    if len(report.zeroed_lines) == report.rows:
        kind = (f"its video_ids are clip names (<youtube_id>#start#end) and {report.square_refs} rows give a square "
                "width x height, so the boxes are not at the video's frame (an intermediate crop): this is MRAA's "
                "data/ted-metadata.csv, a clip list only" if report.clip_name_lines else "the frame ranges are missing")
        raise AnimbenchError(
            f"{where}: start = end = 0 on all {report.rows} rows ({len(report.videos)} videos), so load_videos.py "
            f"keeps no frame and nothing can be cut; {kind}. Use ted384-metadata.csv (attached to MRAA issue #12) "
            "or prepare a pre-processed TED384 copy with `animbench prep folder`")
    named = [n for n in report.clip_name_lines if n not in report.zeroed_lines]
    if named:
        raise AnimbenchError(f"{where} line {named[0]}: video_id is a clip name (<youtube_id>#start#end); expected "
                             "the YouTube id alone, with the range in start/end (ted384-metadata.csv)")
    if report.zeroed_lines:
        warn(f"{where}: skipping {len(report.zeroed_lines)} of {report.rows} rows with start = end = 0 (first on "
             f"line {report.zeroed_lines[0]}): load_videos.py keeps no frame of them")
    units = metadata_units(NAME, Path(src), metadata, with_person=False, url_template=url_template,
                           download=download, skip_lines=set(report.zeroed_lines))
    units = [replace(u, clips=tuple(replace(c, person_id=u.key.split("/", 1)[1]) for c in u.clips)) for u in units]
    return _split(units, report, hold_out=hold_out, seed=hold_out_seed, named=test_videos, warn=warn)


def _split(units: list[Unit], report: MetadataReport, *, hold_out: int, seed: int, named: Sequence[str],
           warn: Callable[[str], None]) -> list[Unit]:
    """Move whole videos to the test split (--hold-out or --test-videos); warn when no test clip remains."""
    where = f"metadata {report.path}"
    by_video = {u.key.split("/", 1)[1]: u for u in units}
    tests = sum(c.split == "test" for u in units for c in u.clips)
    if hold_out and named:
        raise AnimbenchError("ted: give --hold-out N or --test-videos IDS, not both")
    if hold_out < 0:
        raise AnimbenchError(f"--hold-out {hold_out}: expected a number of videos, 0 or more")
    if (hold_out or named) and tests:
        raise AnimbenchError(f"{where}: already has a test split ({tests} clips); --hold-out / --test-videos are for "
                             "a file without one (MRAA's ted-metadata.csv is all train)")
    if hold_out and hold_out >= len(by_video):
        raise AnimbenchError(f"--hold-out {hold_out}: the metadata has {len(by_video)} usable videos; hold out "
                             "fewer so that some remain for training")
    chosen = held_out(list(by_video), hold_out, seed) if hold_out else []
    for vid in named:
        check_id(vid, field="video id", where="--test-videos", allow_hash=False)
        if vid not in by_video:
            raise AnimbenchError(f"--test-videos: {vid!r} is not a video of {report.path} (expected a YouTube id)")
        chosen.append(vid)
    if len(set(chosen)) == len(by_video):
        raise AnimbenchError("--test-videos names every video; leave some for training")
    for vid in chosen:
        u = by_video[vid]
        by_video[vid] = replace(u, clips=tuple(replace(c, split="test") for c in u.clips))
    out = [by_video[k] for k in sorted(by_video)]
    if not tests and not chosen:
        clips = sum(len(u.clips) for u in out)
        warn(f"{where}: all {clips} clips ({len(out)} videos) are train, there is no test split: a benchmark on "
             "this store has nothing to score; --hold-out N holds out N whole talks as the test split")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--metadata, the test-split options and the download options."""
    p.add_argument("--metadata", required=True, help="ted384-metadata.csv (video_id,start,end,bbox,fps,width,"
                   "height,partition; MRAA's ted-metadata.csv is a clip list and is refused, see above)")
    g = p.add_argument_group("test split (for a metadata file without one)")
    g.add_argument("--hold-out", type=int, default=0, metavar="N",
                   help="move N whole videos (all their clips) to the test split, chosen by sha256(seed:id)")
    g.add_argument("--hold-out-seed", type=int, default=0, help="seed of --hold-out's choice (default 0)")
    g.add_argument("--test-videos", default="", metavar="ID,ID",
                   help="these YouTube ids' clips form the test split (instead of --hold-out)")
    add_download_arguments(p)


def plan_from_args(args: argparse.Namespace) -> list[Unit]:
    """`plan` with the parsed arguments."""
    named = [v.strip() for v in args.test_videos.split(",") if v.strip()]
    return plan(args.src, args.metadata, hold_out=args.hold_out, hold_out_seed=args.hold_out_seed,
                test_videos=named, url_template=args.url_template, download=args.download)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """PrepConfig fields: download (the test split is in the units, so the manifest's plan records it)."""
    return {"download": args.download}
