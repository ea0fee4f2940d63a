"""The optional download stage: fetch a missing source video with yt-dlp (`pip install yt-dlp`).

A video that cannot be fetched (removed, private, HTTP error, yt-dlp missing) becomes a failure row with
stage "download"; the run goes on. Files land under a temporary folder and are renamed into place, so a
killed download never looks like a video.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from plumbing.files import publish

_UNAVAILABLE = re.compile(r"HTTP Error (403|404|410|451)|unavailable|private video|removed|terminated|not found",
                          re.IGNORECASE)


class DownloadError(Exception):
    """A source that could not be fetched: `kind` names the reason class, `message` the details."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class _QuietLogger:
    """yt-dlp logger that keeps the worker's output clean; errors come back as exceptions."""

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        pass


def download_video(url: str, dest: str | os.PathLike, *, fmt: str = "bv*[ext=mp4]/b[ext=mp4]/bv*/b",
                   timeout: float = 60.0) -> Path:
    """Download `url` to `dest` (its suffix may change to the container yt-dlp got); return the final path."""
    try:
        import yt_dlp
    except ImportError:
        raise DownloadError("MissingDependency", "the download stage needs yt-dlp: pip install yt-dlp") from None
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = dest.parent / f".{dest.stem}.download-{os.getpid()}"
    shutil.rmtree(tmpdir, ignore_errors=True)
    options = {
        "format": fmt, "outtmpl": str(tmpdir / "video.%(ext)s"), "quiet": True, "no_warnings": True,
        "noprogress": True, "socket_timeout": timeout, "retries": 2, "fragment_retries": 2, "noplaylist": True,
        "cachedir": False, "logger": _QuietLogger(),
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            ydl.download([url])
        files = [p for p in tmpdir.glob("video.*") if not p.name.endswith((".part", ".ytdl"))]
        if not files:
            raise DownloadError("DownloadError", f"{url}: yt-dlp finished but wrote no file")
        final = dest.with_suffix(files[0].suffix)
        publish(files[0], final)
        return final
    except DownloadError:
        raise
    except Exception as exc:  # noqa: BLE001 - yt-dlp raises many types; all mean "not fetched"
        message = " ".join(str(exc).split())
        message = re.sub(r"^ERROR:\s*", "", message)[:500]
        kind = "Unavailable" if _UNAVAILABLE.search(message) else "DownloadError"
        raise DownloadError(kind, f"{url}: {message}") from exc
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
