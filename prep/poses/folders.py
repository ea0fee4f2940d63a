"""Folder jobs behind `animbench pose render|normalize`: OpenPose folders in, EDN's dataset folders out.

Every output folder is built under a hidden name and renamed into place when complete, so a killed run never
leaves a folder that looks finished.
"""

from __future__ import annotations

import io
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from plumbing.errors import AnimbenchError
from plumbing.files import atomic_path, path_relation
from plumbing.ids import check_id, safe_join
from prep.poses.format import PoseFrame
from prep.poses.normalize import NormParams, fit_norm_params, normalize_poses
from prep.poses.openpose import read_openpose_folder
from prep.poses.render import OFFICIAL_CANVAS, face_box, render_label


@dataclass
class RenderSummary:
    """What a folder job wrote: label maps, face boxes, skipped frames and why, speed."""

    labels: str
    facetexts: str | None
    rendered: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    no_face_box: list[str] = field(default_factory=list)
    seconds: float = 0.0
    norm_params: str | None = None
    unwritten: int = 0  # normalize: source frames that no output stands for
    source_frames: int = 0

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        rate = self.rendered / self.seconds if self.seconds > 0 else 0.0
        out = [f"rendered {self.rendered} label maps into {self.labels} ({rate:.1f} frames/s)"]
        if self.facetexts:
            out.append(f"face boxes in {self.facetexts}" + (
                f" (none for {len(self.no_face_box)} frames without a head: {', '.join(self.no_face_box[:5])})"
                if self.no_face_box else ""))
        if self.norm_params:
            out.append(f"normalisation: {self.norm_params}")
        if self.unwritten:
            out.append(f"not written: {self.unwritten} of {self.source_frames} source frames (before the first "
                       "with head, right ankle and left ear, or within half the median window of either end)")
        out.append(f"skipped {len(self.skipped)} frames")
        out += [f"  {name}: {reason}" for name, reason in list(self.skipped.items())[:20]]
        if len(self.skipped) > 20:
            out.append(f"  ... and {len(self.skipped) - 20} more")
        return out


def facetexts_dir(labels: str | os.PathLike) -> Path:
    """Where the face boxes of a label folder go, beside it as EDN's dataset layout: `train_label` ->
    `train_facetexts128`; any other name -> `<name>_facetexts128`."""
    labels = Path(os.path.abspath(labels))
    stem = labels.name[: -len("_label")] if labels.name.endswith("_label") else labels.name
    return labels.with_name(f"{stem}_facetexts128")


_OUTPUT_SUFFIXES = (".png", ".txt", ".yml", ".yaml", ".json")  # what render / normalize write into a folder


def _check_out(path: Path, overwrite: bool, flag: str = "--out") -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise AnimbenchError(f"{flag} {path}: exists and is not a folder; expected a new or empty folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise AnimbenchError(f"{flag} {path}: folder is not empty (pass --overwrite to replace it)")
        strays = sorted(p.name for p in path.iterdir() if not (p.is_file() and p.suffix.lower() in _OUTPUT_SUFFIXES))
        if strays:  # label maps, face boxes, keypoints, norm_params: anything else is not ours to delete
            raise AnimbenchError(f"{flag} {path}: holds {strays[0]!r}, which `animbench pose` never writes, so "
                                 "--overwrite will not replace it; expected a new folder or an earlier output")


def _check_not_input(out: Path | None, flag: str, *inputs: str | os.PathLike | None) -> None:
    """--overwrite replaces the output folder whole: never when it is, or holds, one of the inputs."""
    if out is None:
        return
    for given in inputs:
        if given is not None and path_relation(out, given) in ("is", "holds"):
            raise AnimbenchError(f"{flag} {out}: would replace the input folder {given} (with everything in it); "
                                 "expected a folder of its own")


def _check_box_fits(size: tuple[int, int], optional: bool, box: int = 128) -> None:
    if box > min(size):
        raise AnimbenchError(f"--size {size[0]}x{size[1]}: the {box} px face boxes do not fit (pass "
                             f"{'--no-facetexts or ' if optional else ''}a size of at least {box}x{box})")


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _write_frame(pose: PoseFrame, name: str, labels: Path, faces: Path | None, summary: RenderSummary, *,
                 frame_size, size) -> None:
    """One frame's label map (and face box file) into the temporary folders."""
    safe_join(labels, f"{name}.png").write_bytes(_png(render_label(pose, frame_size, size)))
    if faces is not None:
        box = face_box(pose, frame_size, size)
        if box is None:
            summary.no_face_box.append(name)
        else:
            safe_join(faces, f"{name}.txt").write_text(" ".join(str(v) for v in box))
    summary.rendered += 1


def render_folder(src: str | os.PathLike, out: str | os.PathLike, *, size=(1024, 512), frame_size=OFFICIAL_CANVAS,
                  facetexts: bool = True, overwrite: bool = False) -> RenderSummary:
    """Render every frame of an OpenPose folder: `out/<name>.png` and, with facetexts, the face boxes in
    facetexts_dir(out)/<name>.txt ("miny maxy minx maxx"), as graph_train.py with its defaults."""
    out = Path(os.path.abspath(out))
    faces_out = facetexts_dir(out) if facetexts else None
    if facetexts:
        _check_box_fits(size, optional=True)
    for path, flag in ((out, "--out"), (faces_out, "face box folder")):
        _check_not_input(path, flag, src)
        if path is not None:
            _check_out(path, overwrite, flag)
    stale = facetexts_dir(out)
    if not facetexts and stale.is_dir() and any(stale.iterdir()):
        # animate pairs <out>_facetexts128 with these label maps by name: old boxes would be taken as theirs
        raise AnimbenchError(f"--no-facetexts: face box folder {stale} exists beside --out, and animate would "
                             "take its boxes for these label maps; remove it, or render with face boxes")
    folder = read_openpose_folder(src)
    if not folder.frames:
        first = next(iter(sorted(folder.skipped.items())), ("", ""))
        raise AnimbenchError(f"{src}: every frame was skipped ({len(folder.skipped)} of {len(folder.skipped)}), "
                             f"e.g. {first[0]}: {first[1]}; expected frames with one person")
    summary = RenderSummary(str(out), str(faces_out) if faces_out else None, skipped=dict(folder.skipped))
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        labels = stack.enter_context(atomic_path(out))
        labels.mkdir()
        faces = stack.enter_context(atomic_path(faces_out)) if faces_out else None
        if faces is not None:
            faces.mkdir()
        for name, pose in folder.frames.items():
            check_id(name, field="frame name", where=str(src))
            _write_frame(pose, name, labels, faces, summary, frame_size=frame_size, size=size)
    summary.seconds = time.perf_counter() - start
    return summary


def normalize_folder(source: str | os.PathLike, out: str | os.PathLike, *, target: str | os.PathLike | None = None,
                     norm_params: str | os.PathLike | None = None, seed: int = 0, size=(1024, 512),
                     frame_size=OFFICIAL_CANVAS, median_window: int = 7, overwrite: bool = False,
                     target_median_frac: float = 0.5, source_median_frac: float = 0.5) -> RenderSummary:
    """graph_posenorm.py: normalise the source folder's poses to the target subject (params fitted from `target`,
    or loaded from a norm_params.txt), smooth, render. Writes out/test_label/frame%06d.png,
    out/test_facetexts128/frame%06d.txt, out/norm_params.txt and out/frames.csv (output -> source frame)."""
    out = Path(os.path.abspath(out))
    _check_box_fits(size, optional=False)  # test_facetexts128 is always written
    _check_not_input(out, "--out", source, target, norm_params)
    _check_out(out, overwrite)
    if target is None and norm_params is None:
        raise AnimbenchError("pose normalize: --target is required to fit the normalisation (or pass "
                             "--norm-params FILE to reuse one)")
    src = read_openpose_folder(source)
    names = sorted([*src.frames, *src.skipped])
    poses = [src.frames.get(name) for name in names]
    if norm_params is not None:
        params = NormParams.load(norm_params)
    else:
        params = fit_norm_params(list(read_openpose_folder(target).frames.values()), poses, seed=seed,
                                 target_median_frac=target_median_frac, source_median_frac=source_median_frac)
    smoothed = normalize_poses(poses, params, frame_size=frame_size, median_window=median_window)
    if all(pose is None for pose in smoothed):
        raise AnimbenchError(f"pose normalize: {source}: no frame to write ({len(names)} source frames, "
                             f"--median-window {median_window}); expected more frames with head, right ankle and "
                             "left ear than the median window")
    summary = RenderSummary(str(out / "test_label"), str(out / "test_facetexts128"), skipped=dict(src.skipped))
    summary.source_frames = len(names)
    summary.unwritten = sum(pose is None for pose in smoothed) - len(src.skipped)
    summary.norm_params = " ".join(f"{k}={v:.6g}" for k, v in vars(params).items())
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        (tmp / "test_label").mkdir(parents=True)
        (tmp / "test_facetexts128").mkdir()
        rows = ["output,source"]
        for name, pose in zip(names, smoothed, strict=True):
            if pose is None:
                continue
            new_name = f"frame{len(rows) - 1:06d}"
            _write_frame(pose, new_name, tmp / "test_label", tmp / "test_facetexts128", summary,
                         frame_size=frame_size, size=size)
            rows.append(f"{new_name},{name}")
        params.save(tmp / "norm_params.txt")
        (tmp / "frames.csv").write_text("\n".join(rows) + "\n")
    summary.seconds = time.perf_counter() - start
    return summary
