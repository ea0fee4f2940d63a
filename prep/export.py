"""Export a frame store to FOMM's png layout or to mp4 files, and import FOMM's png layout back."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prep.errors import AnimbenchError
from prep.imagecodec import decode_image
from prep.store import EncodeOptions, FrameStore, FrameStoreWriter


def _selected(store: FrameStore, splits: Sequence[str] | None) -> list[str]:
    if not splits:
        return store.videos()
    unknown = set(splits) - set(store.splits())
    if unknown:
        raise AnimbenchError(f"store {store.root}: no split(s) {sorted(unknown)}; it has {store.splits()}")
    return [v for s in splits for v in store.videos(s)]


def _finish_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def export_png_layout(store_dir: str | os.PathLike, out: str | os.PathLike, *, splits: Sequence[str] | None = None,
                      suffix: str = ".mp4") -> int:
    """Write `out/<split>/<video_id><suffix>/%07d.png`, FOMM's png-folder layout; returns the video count.

    PNG frames are written as stored (no re-encoding) when the store is lossless, so the export is pixel-exact.
    """
    store = FrameStore(store_dir)
    out = Path(out)
    lossless = store.manifest["encoding"]["image_format"] == "png"
    vids = _selected(store, splits)
    for vid in vids:
        info = store.info(vid)
        final = out / str(info["split"]) / f"{vid}{suffix}"
        tmp = final.with_name(f".{final.name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for i, data in enumerate(store.read_encoded(vid)):
            if not lossless:  # JPEG stores: decode, then write a lossless PNG of what the store holds
                from prep.imagecodec import encode_image

                data = encode_image(decode_image(data), EncodeOptions("png"))
            (tmp / f"{i:07d}.png").write_bytes(data)
        _finish_dir(tmp, final)  # a folder only appears under its final name once complete
    return len(vids)


def import_png_layout(src: str | os.PathLike, out: str | os.PathLike, *, suffix: str = ".mp4",
                      recipe: str = "fomm-png", overwrite: bool = False,
                      encode: EncodeOptions | None = None) -> dict:
    """Build a store from FOMM's layout (`src/{train,test}/<name>/%07d.png`); returns the manifest."""
    src = Path(src)
    split_dirs = [d for d in sorted(src.iterdir()) if d.is_dir()] if src.is_dir() else []
    if not split_dirs:
        raise AnimbenchError(f"{src}: expected split folders (train/, test/) of per-video png folders")
    config = {"recipe": recipe, "src": str(src), "suffix": suffix}
    writer = FrameStoreWriter(out, config, encode=encode, overwrite=overwrite)
    try:
        for split_dir in split_dirs:
            for vdir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
                frames = sorted(vdir.glob("*.png"))
                if not frames:
                    writer.add_failure(vdir.name, "read", "NoFrames", f"{vdir}: no .png frames")
                    continue
                vid = vdir.name[: -len(suffix)] if suffix and vdir.name.endswith(suffix) else vdir.name
                person = vid.split("#")[0] if "#" in vid else vid
                writer.add_video(vid, (decode_image(p.read_bytes()) for p in frames), split=split_dir.name,
                                 person_id=person, source_path=str(vdir), recipe=recipe)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def export_mp4(store_dir: str | os.PathLike, out: str | os.PathLike, *, splits: Sequence[str] | None = None,
               fps: float | None = None, crf: int = 18) -> int:
    """Write `out/<split>/<video_id>.mp4` (h264, yuv420p, lossy); returns the video count."""
    import av

    store = FrameStore(store_dir)
    out = Path(out)
    vids = _selected(store, splits)
    for vid in vids:
        info = store.info(vid)
        rate = fps or float(info.get("fps") or 0) or 25.0
        final = out / str(info["split"]) / f"{vid}.mp4"
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.partial.mp4")
        h, w = int(info["height"]), int(info["width"])
        with av.open(str(tmp), mode="w") as container:
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
        os.replace(tmp, final)
    return len(vids)


def _fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)
