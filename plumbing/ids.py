"""Identifiers from files users download (video ids, person ids, splits) and the paths made from them.

One rule, checked where identifiers enter (`check_id`), and one path function every writer uses
(`safe_join`), which refuses to leave its root even if an unchecked identifier slipped through.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from plumbing.errors import AnimbenchError

MAX_ID_BYTES = 160  # one identifier (a video id, a person id, a split)
MAX_CLIP_BYTES = 200  # a clip name `person#video#start#end`: leaves room for '.mp4' and suffixes under NAME_MAX
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows filesystems
_FORBIDDEN = set('/\\\0')


def id_problem(value: object, *, allow_hash: bool = True, max_bytes: int = MAX_ID_BYTES) -> str | None:
    """Why `value` cannot be an identifier (None when it can).

    An identifier is one non-empty path component: no path separators, not '.' or '..', no leading dot
    (temporary and hidden files start with one), no control or format characters, no surrounding whitespace,
    at most `max_bytes` bytes of UTF-8. With allow_hash=False it may not hold '#', which joins the parts of
    official clip names (`person#video#start#end`). The reason never repeats the value: callers name it.
    """
    if not isinstance(value, str):
        return f"expected text, got {type(value).__name__}"
    if value == "":
        return "is empty"
    if value != value.strip():
        return "has leading or trailing whitespace"
    if value in (".", ".."):
        return "is not a name (it means this folder or the one above)"  # the caller names the value
    bad = sorted({c for c in value if c in _FORBIDDEN or unicodedata.category(c).startswith("C")})
    if bad:
        return f"contains {', '.join(repr(c) for c in bad)} (path separators and control characters are refused)"
    if value.startswith("."):
        return "starts with '.'"
    if not allow_hash and "#" in value:
        return "contains '#', which separates the parts of clip names"
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return f"is {size} bytes long (at most {max_bytes})"
    return None


def check_id(value: object, *, field: str, where: str, allow_hash: bool = True,
             max_bytes: int = MAX_ID_BYTES) -> str:
    """Return `value` if it is a valid identifier, else raise a one-line error naming where and which field."""
    problem = id_problem(value, allow_hash=allow_hash, max_bytes=max_bytes)
    if problem:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise AnimbenchError(f"{where}: {field} {shown} {problem}; expected one file name without path separators")
    return value  # type: ignore[return-value]


def safe_join(root: str | os.PathLike, *parts: str) -> Path:
    """`root/part/...`, refusing any part that is not a plain name and any result outside root.

    Parts may be up to NAME_MAX bytes (an identifier plus a suffix such as '.mp4')."""
    root_path = Path(root)
    for part in parts:
        problem = id_problem(part, max_bytes=NAME_MAX)
        if problem:
            raise AnimbenchError(f"refusing to write under {root_path}: path part {part!r} {problem}")
    joined = root_path.joinpath(*parts)
    real_root = os.path.realpath(root_path)
    real = os.path.realpath(joined)
    if os.path.commonpath([real_root, real]) != real_root:
        raise AnimbenchError(f"refusing to write {joined}: it resolves outside {root_path}")
    return joined
