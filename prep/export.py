"""Export a frame store to FOMM's png layout or to mp4 files, and import FOMM's png layout back."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from plumbing.errors import AnimbenchError
from plumbing.files import path_relation, publish
from plumbing.ids import NAME_MAX, check_id, id_problem, safe_join
from prep.imagecodec import decode_image, encode_image
from prep.store import EncodeOptions, FrameStore, FrameStoreWriter


def _selected(store: FrameStore, splits: Sequence[str] | None) -> list[str]:
    if not splits:
        return store.videos()
    splits = list(dict.fromkeys(splits))  # `--split train --split train` exports train once
    unknown = set(splits) - set(store.splits())
    if unknown:
        raise AnimbenchError(f"store {store.root}: no split(s) {sorted(unknown)}; it has {store.splits()}")
    return [v for s in splits for v in store.videos(s)]


SPLITS = ("train", "test", "val", "validation")  # split folders an earlier export may hold


def _begin(store: FrameStore, out: str | os.PathLike, overwrite: bool) -> tuple[Path, Path]:
    """Check --out and make the hidden folder beside it that the export is built in; return (out, tmp)."""
    out = Path(os.path.abspath(out))
    relation = path_relation(out, store.root)
    if relation is not None:
        how = "lies inside" if relation == "lies inside" else "holds"
        raise AnimbenchError(f"--out {out} {how} the store {store.root}; export to another folder")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise AnimbenchError(f"--out {out}: exists and is not a folder; expected a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise AnimbenchError(f"--out {out}: folder is not empty (pass --overwrite to replace it)")
        strays = sorted(p.name for p in out.iterdir() if not (p.is_dir() and p.name in {*store.splits(), *SPLITS}))
        if strays:  # an export holds split folders only: anything else is not ours to delete
            raise AnimbenchError(f"--out {out}: holds {strays[0]!r}, which no export writes (an export holds split "
                                 "folders), so --overwrite will not replace it; expected a new folder or an earlier "
                                 "export")
    tmp = out.parent / f".{out.name}.export-partial"
    try:
        if tmp.exists():  # left by an export that was killed
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise AnimbenchError(f"--out {out}: cannot create it ({exc.strerror})") from None
    return out, tmp


def _finish(tmp: Path, out: Path) -> None:
    """Put the finished export in place of --out (replacing what was there, which --overwrite allowed)."""
    publish(tmp, out)


def _target(store: FrameStore, vid: str, name: str, tmp: Path, out: Path) -> Path:
    """`tmp/<split>/<name>`, refusing split or file names that are not one plain name (stores written by
    other tools may hold any id) and paths that would land outside the export."""
    split = str(store.info(vid)["split"])
    for what, part in (("split", split), ("file name", name)):
        problem = id_problem(part, max_bytes=NAME_MAX)
        if problem:
            raise AnimbenchError(f"store {store.root}: refusing to write video {vid!r} under --out {out}: "
                                 f"its {what} {part!r} {problem}")
    path = safe_join(tmp, split, name)
    if path.exists():  # two ids equal on a case-insensitive filesystem
        raise AnimbenchError(f"store {store.root}: video {vid!r} exports to {split}/{name}, which another "
                             "video of the store already wrote")
    path.parent.mkdir(exist_ok=True)
    return path


def _export(store_dir: str | os.PathLike, out: str | os.PathLike, splits: Sequence[str] | None, overwrite: bool,
            write: Callable[[FrameStore, str, Path], None], name: Callable[[str], str]) -> int:
    """Write every selected video into a hidden folder beside --out, then rename it into place: an export
    that fails or is interrupted leaves --out as it was and nothing that looks complete."""
    store = FrameStore(store_dir)
    vids = _selected(store, splits)
    out, tmp = _begin(store, out, overwrite)
    try:
        try:
            for vid in vids:
                write(store, vid, _target(store, vid, name(vid), tmp, out))
            _finish(tmp, out)
        except OSError as exc:
            where = exc.filename or out
            raise AnimbenchError(f"--out {out}: cannot write {where} ({exc.strerror or exc})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(vids)


def export_png_layout(store_dir: str | os.PathLike, out: str | os.PathLike, *, splits: Sequence[str] | None = None,
                      suffix: str = ".mp4", overwrite: bool = False) -> int:
    """Write `out/<split>/<video_id><suffix>/%07d.png`, FOMM's png-folder layout; returns the video count.

    --out must be new or empty unless `overwrite` (then it is replaced as a whole). PNG frames are written as
    stored (no re-encoding) when the store is lossless, so the export is pixel-exact.
    """

    def write(store: FrameStore, vid: str, folder: Path) -> None:
        lossless = store.manifest["encoding"]["image_format"] == "png"
        folder.mkdir()
        for i, data in enumerate(store.read_encoded(vid)):  # checked against the video's frame hash
            if not lossless:  # JPEG and JPEG XL stores: decode, then write a lossless PNG of what the store holds
                data = encode_image(decode_image(data), EncodeOptions("png"))
            (folder / f"{i:07d}.png").write_bytes(data)

    return _export(store_dir, out, splits, overwrite, write, lambda vid: f"{vid}{suffix}")


def import_png_layout(src: str | os.PathLike, out: str | os.PathLike, *, suffix: str = ".mp4",
                      recipe: str = "fomm-png", overwrite: bool = False,
                      encode: EncodeOptions | None = None) -> dict:
    """Build a store from FOMM's layout (`src/{train,test}/<name>/%07d.png`); returns the manifest.

    Folder names become split and video ids and are checked as such; hidden folders are skipped."""
    src = Path(src)
    split_dirs = [d for d in sorted(src.iterdir()) if d.is_dir() and not d.name.startswith(".")] \
        if src.is_dir() else []
    if not split_dirs:
        raise AnimbenchError(f"{src}: expected split folders (train/, test/) of per-video png folders")
    config = {"recipe": recipe, "src": str(src), "suffix": suffix}
    videos = []
    for split_dir in split_dirs:
        split = check_id(split_dir.name, field="split", where=str(split_dir))
        for vdir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            vid = vdir.name[: -len(suffix)] if suffix and vdir.name.endswith(suffix) else vdir.name
            videos.append((split, check_id(vid, field="video_id", where=str(vdir)), vdir))
    writer = FrameStoreWriter(out, config, encode=encode, overwrite=overwrite)
    try:
        for split, vid, vdir in videos:
            frames = sorted(vdir.glob("*.png"))
            if not frames:
                writer.add_failure(vid, "read", "NoFrames", f"{vdir}: no .png frames")
                continue
            person = vid.split("#")[0] if "#" in vid else vid
            writer.add_video(vid, (_read_png(p) for p in frames), split=split, person_id=person,
                             source_path=str(vdir), recipe=recipe)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def _read_png(path: Path) -> np.ndarray:
    try:
        return decode_image(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - OpenCV raises its own error type on empty input
        raise AnimbenchError(f"{path}: not a readable image ({' '.join(str(exc).split())[:200]})") from None


def export_mp4(store_dir: str | os.PathLike, out: str | os.PathLike, *, splits: Sequence[str] | None = None,
               fps: float | None = None, crf: int = 18, overwrite: bool = False) -> int:
    """Write `out/<split>/<video_id>.mp4` (h264, yuv420p, lossy); returns the video count.

    --out must be new or empty unless `overwrite` (then it is replaced as a whole)."""
    import av

    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise AnimbenchError(f"--fps {fps:g}: expected a positive frame rate")
    if not 0 <= crf <= 51:
        raise AnimbenchError(f"crf {crf}: expected 0..51 (libx264)")

    def write(store: FrameStore, vid: str, path: Path) -> None:
        info = store.info(vid)
        stored = float(info.get("fps") or 0)
        rate = fps or (stored if math.isfinite(stored) and stored > 0 else 25.0)
        h, w = int(info["height"]), int(info["width"])
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264", rate=_fraction(rate))
            stream.width, stream.height = w + (w % 2), h + (h % 2)  # yuv420p needs even sizes
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in store.iter_frames(vid):
                if frame.shape[:2] != (stream.height, stream.width):
                    frame = np.pad(frame, ((0, stream.height - h), (0, stream.width - w), (0, 0)), mode="edge")
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    return _export(store_dir, out, splits, overwrite, write, lambda vid: f"{vid}.mp4")


def _fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)
