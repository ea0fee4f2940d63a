"""Manifests written last, read first: the shared mechanics of the frame store and the results format.

Each format (prep.store, bench.results) owns its own schema; this module only owns how a manifest is written
atomically and how a missing or foreign one is reported, so both formats fail the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from plumbing.errors import AnimbenchError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes (shards, tables, checkpoints, weight files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_tables(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Re-hash each file of the manifest's `tables`; one message per missing or changed file."""
    problems = []
    for name, meta in manifest.get("tables", {}).items():
        path = root / name
        if not path.is_file():
            problems.append(f"table {name}: missing")
        elif sha256_file(path) != meta["sha256"]:
            problems.append(f"table {name}: sha256 differs from the manifest")
    return problems


def tmp_name(path: Path) -> Path:
    """A hidden temporary name beside `path` (renamed into place once complete)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_text(text: str, path: Path) -> None:
    """Write a text file under a temporary name, fsync it, then rename it into place."""
    atomic_write_bytes(text.encode(), path)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write a file under a temporary name, fsync it, then rename it into place."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside `path` for the caller to write (a file or a folder); renamed into place when the
    block succeeds, removed when it fails, so `path` only ever holds complete output. `suffix` keeps an
    extension writers need (e.g. '.mp4' for a muxer that picks the format by name). An existing folder at
    `path` is replaced only after the new one is complete."""
    path = Path(path)
    tmp = tmp_name(path).with_name(tmp_name(path).name + suffix)
    _remove(tmp)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a completed file or folder into place (a folder already there is swapped out, then removed)."""
    tmp, path = Path(tmp), Path(path)
    if path.is_dir() and not path.is_symlink():
        old = tmp_name(path).with_name(tmp_name(path).name + ".old")
        _remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def manifest_format(path: str | os.PathLike) -> str | None:
    """The `format` a manifest file declares, without checking more ('unreadable' when it is not a JSON object);
    None when there is no file. Lets a command tell its own output from anything else before deleting it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return "unreadable"
    return str(manifest.get("format")) if isinstance(manifest, dict) else "unreadable"


def path_relation(path: str | os.PathLike, other: str | os.PathLike) -> str | None:
    """How `path` stands to `other`, links resolved: "is", "holds" (other lies below it), "lies inside" (it lies
    below other), or None when they are apart. An output is checked against the inputs with it."""
    a, b = Path(os.path.realpath(path)), Path(os.path.realpath(other))
    if a == b:
        return "is"
    if a in b.parents:
        return "holds"
    return "lies inside" if b in a.parents else None


def load_manifest(root: str | os.PathLike, *, label: str, filename: str, format_name: str,
                  schema_version: int | tuple[int, ...], missing_hint: str) -> dict[str, Any]:
    """Load a JSON manifest and check its format and schema version (one, or a tuple of readable ones);
    one-line errors name file and field."""
    root = Path(root)
    if not root.is_dir():
        raise AnimbenchError(f"{label} {root}: no such directory")
    path = root / filename
    if not path.is_file():
        raise AnimbenchError(f"{label} {root}: {filename} is missing, so {missing_hint}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnimbenchError(f"{label} {root}: {filename} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise AnimbenchError(f"{label} {root}: {filename} field 'format' is {got!r}, expected {format_name!r}")
    readable = schema_version if isinstance(schema_version, tuple) else (schema_version,)
    if manifest.get("schema_version") not in readable:
        raise AnimbenchError(f"{label} {root}: {filename} field 'schema_version' is "
                             f"{manifest.get('schema_version')!r}, expected {' or '.join(map(str, readable))}")
    return manifest
