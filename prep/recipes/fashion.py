"""Fashion (UBC Fashion Video, as FOMM uses it): videos listed in fashion_train.txt / fashion_test.txt
(URLs or file names, one a line), full frames padded to a square and resized. FOMM ships no crop script for
this set; padding keeps the whole body in view without distorting it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from plumbing.errors import AnimbenchError
from plumbing.ids import check_id, id_problem
from prep.recipes import Clip, Unit, add_download_arguments

NAME = "fashion"
HELP = "fashion videos: split lists of URLs or file names; full frames padded to square"
DEFAULTS = {"size": 256, "pad": True, "pad_value": 255}  # the videos have white backgrounds


def _entries(path: str | os.PathLike) -> list[tuple[int, str]]:
    """(line number, entry) for every line that is not blank or a '#' comment."""
    path = Path(path)
    if not path.is_file():
        raise AnimbenchError(f"split list {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnimbenchError(f"split list {path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.strip().startswith("#")]


def plan(src: str | os.PathLike, *, train_list: str | os.PathLike | None = None,
         test_list: str | os.PathLike | None = None) -> list[Unit]:
    """One unit (one clip, the whole video) per listed video; the file is `src/<basename of the entry>`."""
    src = Path(src)
    lists = [(s, p) for s, p in (("train", train_list), ("test", test_list)) if p is not None]
    if not lists:
        raise AnimbenchError("fashion: give --train-list and/or --test-list (fashion_train.txt, fashion_test.txt)")
    units, seen = [], {}
    for split, list_path in lists:
        for n, entry in _entries(list_path):
            where = f"split list {list_path} line {n}"
            is_url = entry.startswith(("http://", "https://"))
            name = Path(urlparse(entry).path).name if is_url else Path(entry).name
            if not name or id_problem(name):
                raise AnimbenchError(f"{where}: {entry!r} names no file")
            vid = check_id(Path(name).stem, field="video name", where=where)
            if vid in seen:
                raise AnimbenchError(f"split list {list_path} line {n}: video {vid!r} is also in {seen[vid]}")
            seen[vid] = list_path
            units.append(Unit(key=f"{NAME}/{vid}", source=str(src / name), clips=(Clip(vid, split),),
                              url=entry if is_url else None))
    return sorted(units, key=lambda u: u.key)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The split lists and --download."""
    p.add_argument("--train-list", default=None, help="fashion_train.txt (URLs or file names)")
    p.add_argument("--test-list", default=None, help="fashion_test.txt")
    add_download_arguments(p, url_template=False)


def plan_from_args(args: argparse.Namespace) -> list[Unit]:
    """`plan` with the parsed arguments."""
    return plan(args.src, train_list=args.train_list, test_list=args.test_list)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """PrepConfig fields: download."""
    return {"download": args.download}
