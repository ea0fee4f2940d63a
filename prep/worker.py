"""What a worker does with one unit of work: fetch, decode, (detect), crop, resize, encode, write one shard.

The stages themselves (fetch, crop/pad/resize) and the timer live in prep/stages.py; this module chains them
over a unit's clips: stream every clip (decoding only its frames, from the key frame before it; overlapping
clips go in separate passes, so memory does not grow with clip or video length), redo a unit whose clip
failed half-written. Clip-level problems become failure rows; only the pipeline decides about timeouts and
crashed workers.
Frames are selected and cropped exactly as video-preprocessing's load_videos.py does, and resized with an area
filter in place of scikit-image's anti-aliased resize (tests/prep/test_recipes.py measures the difference): by
default the decoder's frame is cut and scaled in its own YUV by FFmpeg (prep/cropscale.py, --scaler ffmpeg),
so only the stored pixels are converted to RGB; --scaler opencv converts the whole frame and uses
cv2.INTER_AREA, as stores made before --scaler were. With `--crop latentpose` each frame is instead cut around its own largest detected face
(prep/latentpose_crop.py, the official per-frame crop of Neural Head Reenactment with Latent Pose Descriptors;
the recipe's crop box is not used) and the box is kept in the store's crop-boxes table. With `--masks`, each
stored frame's foreground mask is taken alongside (prep/masks/) and cut like its frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from plumbing.errors import AnimbenchError
from prep.config import PrepConfig
from prep.cropscale import SCALERS, Frame
from prep.decode import DecodeStopped, FrameSource, frame_range, open_source
from prep.detect import (
    DROP_REASONS,
    detect_frame,
    make_detector,
    no_clip_reason,
    track_tubes,
    tube_clips,
)
from prep.latentpose_crop import (
    LATENTPOSE_SIZE,
    crop_frame_mask,
    downscale_for_detection,
    largest_box,
    latentpose_crop,
)
from prep.recipes import Clip, Unit
from prep.stages import StageTimer, crop_pad_resize, cut_box, direct_box, fetch, stored_affine
from prep.store import ShardWriter, failure_row

Report = Callable[[str, int], None]  # (stage, frames done): the worker's heartbeat
SEEK_GAP = 250  # frames between clips decoded through rather than seeked over: a long (10 s) GOP


class _Redo(Exception):
    """A clip failed after some of its frames reached the shard: rewrite the unit knowing the failure."""

    def __init__(self, failures: dict[str, dict[str, str]], stop: DecodeStopped | None = None) -> None:
        super().__init__("redo")
        self.failures = failures
        self.stop = stop


def unit_video_ids(unit: Unit) -> list[str]:
    """The ids a unit's failure rows are filed under (its clips, or the video name in detect mode)."""
    return [c.video_id for c in unit.clips]


def _short(clip: Clip, lo: int, hi: int | None, stop: DecodeStopped) -> str:
    """Why a clip whose source frames [lo, hi) were not all decoded fails, with the numbers. A clip that runs
    past the end of its video is refused rather than kept short: its name promises [start, end)."""
    asked = f"clip [{clip.start}, {clip.end})" if clip.start is not None and clip.end is not None else "clip"
    if (lo, hi) != (clip.start, clip.end):
        asked += f" (source frames [{lo}, {hi}))"
    if stop.cause is not None:
        return f"{asked} needs source frames up to {hi} but {stop}"
    where = "starts after" if lo >= stop.count else "runs past"
    return f"{asked} {where} the end of the video ({stop.count} frames)"


Plan = list[tuple[Clip, int, int | None]]  # (clip, first source frame, one past the last or None: to the end)


def _lanes(plan: Plan) -> list[Plan]:
    """Clips sorted by first frame -> lanes of disjoint clips in frame order, each clip in the first lane it
    fits: a lane streams, so overlapping clips (2% of VoxCeleb's) are decoded again rather than buffered."""
    lanes: list[Plan] = []
    for item in plan:
        lane = next((ln for ln in lanes if ln[-1][2] is not None and ln[-1][2] <= item[1]), None)
        if lane is None:
            lanes.append([item])
        else:
            lane.append(item)
    return lanes


def _runs(lane: Plan) -> list[Plan]:
    """A lane's clips -> runs decoded in one pass: a clip starting more than SEEK_GAP frames after the one
    before it ends starts a new run (seeking there costs at most a GOP; decoding the gap would cost more)."""
    runs: list[Plan] = []
    for item in lane:
        if runs and item[1] - runs[-1][-1][2] <= SEEK_GAP:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


class UnitProcessor:
    """Turns units into shards; holds the face detector, loaded once on first use (one per worker)."""

    def __init__(self, config: PrepConfig) -> None:
        self.config = config
        self._detector = None
        self._border: str | None = None
        self._pose_source = None  # the --poses source (holds a loaded pose detector), made on first use
        self._clip_poses: dict = {}  # video id -> ClipPoses of the clips being written
        self._mask_source = None  # the --masks source (holds a loaded segmentation model), made on first use
        self._clip_masks: dict = {}  # video id -> ClipMasks of the clips being written
        self._clip_boxes: dict[str, list] = {}  # video id -> [latent-pose crop boxes, detection ratio]

    @property
    def detector(self):
        """The face detector, loaded on first use."""
        if self._detector is None:
            self._detector = make_detector(self.config.detector, self.config.detector_weights)
        return self._detector

    def run(self, unit: Unit, shard_path: Path, report: Report = lambda stage, n: None) -> dict[str, Any]:
        """Process one unit; return its stats: shard, video rows, failure rows, per-stage timings, counts.
        The stages: fetch -> (detect) -> decode -> crop/pad/resize -> encode -> write."""
        self._timer = StageTimer()
        self._decoded = 0
        self._scaled = dict.fromkeys(SCALERS, 0)  # stored frames by the scaler that made them
        self._report = report
        result: dict[str, Any] = {"key": unit.key, "shard": None, "videos": [], "failures": [], "decoder": None}
        if not Path(unit.source).exists() and self.config.download and unit.url:
            report("download", 0)
        with self._timer("download"):
            path, result["failures"] = fetch(unit, self.config)
        if path is None:
            return self._finish(result)
        self._path = str(path)
        clips = list(unit.clips)
        # detect mode may keep boxes that leave the frame and pad them; every other crop is clamped to the frame
        out_of_frame = self.config.rules.out_of_frame
        self._border = out_of_frame if unit.detect and out_of_frame.startswith("pad") else None
        if unit.detect:
            clips, problem = self._detect_clips(unit, path, result)
            if problem is not None:
                result["failures"] = [problem]
                return self._finish(result)
        result["videos"], result["failures"] = self._cut(unit, path, clips, shard_path, result)
        if result["videos"]:
            result["shard"] = shard_path.name
        return self._finish(result)

    def _finish(self, result: dict[str, Any]) -> dict[str, Any]:
        result["timings"] = self._timer.as_dict()
        result["frames"] = int(sum(v["num_frames"] for v in result["videos"]))
        result["decoded"] = self._decoded
        result["scaled"] = {k: v for k, v in self._scaled.items() if v}
        return result

    def _open(self, unit: Unit, path: Path) -> FrameSource:
        with self._timer("decode"):
            return open_source(path, unit.kind, self.config.decoder, unit.frame_width)

    def _timed(self, frames: Iterator[tuple[int, Any]], stage: str = "decode") -> Iterator[tuple[int, Any]]:
        """Count decode time and beat the heartbeat (as `stage`: the detect pass decodes too)."""
        while True:
            with self._timer("decode"):
                item = next(frames, None)
            if item is None:
                return
            self._decoded += 1
            self._report(stage, self._decoded)
            yield item

    # --- detect mode ---------------------------------------------------------------------------------------

    def _detect_clips(self, unit: Unit, path: Path, result: dict[str, Any]) -> tuple[list[Clip], dict | None]:
        template = unit.clips[0]
        rules = self.config.rules
        self._report("detect", 0)
        try:
            with self._timer("detect"):
                detector = self.detector
        except Exception as exc:  # noqa: BLE001 - reported, not raised: the run goes on
            return [], failure_row(template.video_id, "detect", exc)
        try:
            source = self._open(unit, path)
        except Exception as exc:  # noqa: BLE001 - one bad video is a failure row
            return [], failure_row(template.video_id, "decode", exc)
        result["decoder"] = source.backend
        boxes, size = [], (0, 0)
        try:
            for _, frame in self._timed(source.frames(0, None), "detect"):
                size = (frame.shape[1], frame.shape[0])
                with self._timer("detect"):
                    boxes.append(detect_frame(detector, frame, rules.detect_height))
        except DecodeStopped as stop:
            return [], failure_row(template.video_id, "decode", stop.cause or "ShortVideo", str(stop))
        finally:
            source.close()
        found, counts = tube_clips(track_tubes(boxes, rules), size[0], size[1], rules)
        result["detect"] = {"frames": len(boxes), "clips": len(found),
                            "dropped": {k: counts[k] for k in DROP_REASONS},
                            **{k: counts[k] for k in ("bridged_frames", "shifted", "padded")}}
        if not found:
            return [], failure_row(template.video_id, "detect", "NoClips", no_clip_reason(counts, len(boxes), rules))
        clips, seen = [], {}
        for start, end, box in found:
            name = f"{template.video_id}#{start:06d}#{end:06d}"
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:  # two faces tracked over the same frames
                name = f"{name}#{seen[name] - 1}"
            clips.append(Clip(video_id=name, split=template.split, person_id=template.person_id, start=start,
                              end=end, bbox=box))
        return clips, None

    # --- cutting clips ---------------------------------------------------------------------------------------

    def _cut(self, unit: Unit, path: Path, clips: list[Clip], shard_path: Path, result: dict[str, Any]
             ) -> tuple[list[dict], list[dict]]:
        known: dict[str, dict[str, str]] = {}
        stop: DecodeStopped | None = None
        for _ in range(len(clips) + 2):  # every redo adds a known failure, so this ends
            self._scaled = dict.fromkeys(SCALERS, 0)  # count only the attempt whose frames are kept
            try:
                source = self._open(unit, path)
            except Exception as exc:  # noqa: BLE001 - unreadable file: every clip fails at decode
                return [], [failure_row(c.video_id, "decode", exc) for c in clips]
            result["decoder"] = source.backend
            plan = []
            for clip in clips:
                if clip.video_id in known:
                    continue
                lo, hi = frame_range(clip.start, clip.end, source.fps, clip.ref_fps)
                why = self._doomed(lo, hi, stop, clip)
                if why is not None:
                    known[clip.video_id] = failure_row(clip.video_id, "decode", *why)
                else:
                    plan.append((clip, lo, hi))
            writer = ShardWriter(shard_path, self.config.encode, self.config.row_group_size, timer=self._timer)
            try:
                self._open_poses(unit, plan)
                self._open_masks(unit, plan)
                self._write(source, plan, writer)
                result["seek"] = source.seek_mode  # how clips were reached (a VFR video decodes from frame 0)
            except _Redo as redo:
                writer.abort()
                known.update(redo.failures)
                stop = redo.stop or stop
                continue
            except BaseException:
                writer.abort()
                raise
            finally:
                source.close()
            with self._timer("write"):
                if writer.num_rows:
                    self._report("write", writer.num_rows)
                    videos = writer.close()
                else:
                    writer.abort()
                    videos = []
            return videos, sorted(known.values(), key=lambda f: f["video_id"])
        raise RuntimeError(f"unit {unit.key}: clip failures did not converge")  # pragma: no cover

    def _doomed(self, lo: int, hi: int | None, stop: DecodeStopped | None, clip: Clip
                ) -> tuple[str, str] | None:
        """Why a clip cannot be made, known before decoding (None: try it)."""
        if hi is not None and hi - lo < self.config.min_frames:
            return "TooFewFrames", f"source frames [{lo}, {hi}) give fewer than {self.config.min_frames} frames"
        if stop is None:
            return None
        if hi is None and stop.cause is not None:
            return type(stop.cause).__name__, str(stop)
        if hi is not None and hi > stop.count:
            err = type(stop.cause).__name__ if stop.cause is not None else "ShortVideo"
            return err, _short(clip, lo, hi, stop)
        return None

    def _latentpose(self, frame: np.ndarray, clip: Clip) -> tuple[np.ndarray, object]:
        """prep.latentpose_crop.crop_frame, with detect and crop timed apart; the box goes to the clip's list."""
        small = downscale_for_detection(frame)
        with self._timer("detect"):
            box = largest_box(self.detector(small))
        with self._timer("crop"):
            out = latentpose_crop(small, box, self.config.size or LATENTPOSE_SIZE)
        boxes = self._clip_boxes.setdefault(clip.video_id, [[], small.shape[0] / frame.shape[0]])
        boxes[0].append(box)

        def to_stored(mask: np.ndarray) -> np.ndarray:
            return crop_frame_mask(mask, box, self.config.size or LATENTPOSE_SIZE)

        return out, to_stored

    def _transform(self, decoded: Frame, clip: Clip) -> np.ndarray:
        """The crop stage, timed; an empty crop aborts the clip (ValueError), as a half-written clip must. With
        --poses / --masks, the stored frame's pose / mask is taken here too (source and stored frame in hand).
        A frame whose stored pixels are a box of it resized (direct_box) is cropped and scaled by its decoder's
        scaler (--scaler ffmpeg: PyAV frames in YUV) without converting the whole frame to RGB."""
        if self.config.crop == "latentpose":
            frame = decoded.rgb()
            out, to_stored = self._latentpose(frame, clip)
        else:
            box = None
            if self.config.scaler == "ffmpeg":
                box = direct_box(clip, *decoded.size, self.config, self._border)
            with self._timer("crop"):
                if box is not None:
                    out = decoded.crop_scale(box, (self.config.size, self.config.size))
                    self._scaled[decoded.scaler] += 1
                else:
                    out, error = crop_pad_resize(decoded.rgb(), clip, self.config, self._border)
                    if error is not None:
                        raise ValueError(error)
                    self._scaled["opencv"] += 1

            def to_stored(mask: np.ndarray) -> np.ndarray:
                return crop_pad_resize(mask, clip, self.config, self._border, mask=True)[0]

        masks = self._clip_masks.get(clip.video_id)
        if masks is not None:
            with self._timer("masks"):
                try:
                    masks.add(decoded.rgb(), out, to_stored)
                except AnimbenchError as exc:  # an unreadable mask file: this video fails, the others go on
                    raise _Redo({clip.video_id: failure_row(clip.video_id, "masks", exc)}) from exc
        poses = self._clip_poses.get(clip.video_id)
        if poses is not None:
            with self._timer("poses"):
                try:
                    poses.add(decoded.rgb(), out)
                except AnimbenchError as exc:  # an unreadable pose file: this video fails, the others go on
                    raise _Redo({clip.video_id: failure_row(clip.video_id, "poses", exc)}) from exc
        return out

    def _open_poses(self, unit: Unit, plan: list[tuple[Clip, int, int | None]]) -> None:
        """A pose reader per planned clip (fresh for every attempt at the unit)."""
        self._clip_poses = {}
        if self.config.poses is None:
            return
        if self._pose_source is None:
            from prep.poses.sources import PoseSource

            self._pose_source = PoseSource(self.config.poses, self.config.pose_device)
        for clip, lo, _ in plan:
            def affine(w: int, h: int, clip: Clip = clip) -> tuple[float, float, float, float]:
                return stored_affine(w, h, clip, self.config, self._border)

            with self._timer("poses"):
                try:
                    self._clip_poses[clip.video_id] = self._pose_source.open_clip(unit, clip, lo, affine)
                except AnimbenchError as exc:  # e.g. a malformed pose file: this clip fails, the others go on
                    raise _Redo({clip.video_id: failure_row(clip.video_id, "poses", exc)}) from exc

    def _open_masks(self, unit: Unit, plan: list[tuple[Clip, int, int | None]]) -> None:
        """A mask reader per planned clip and empty box lists (fresh for every attempt at the unit)."""
        self._clip_masks, self._clip_boxes = {}, {}
        if self.config.masks is None:
            return
        if self._mask_source is None:
            from prep.masks.sources import MaskSource

            self._mask_source = MaskSource(self.config.masks, self.config.mask_device)
        for clip, lo, _ in plan:
            with self._timer("masks"):
                try:
                    self._clip_masks[clip.video_id] = self._mask_source.open_clip(unit, clip, lo)
                except AnimbenchError as exc:
                    raise _Redo({clip.video_id: failure_row(clip.video_id, "masks", exc)}) from exc

    def _attach_masks(self, writer: ShardWriter, clip: Clip, num_frames: int) -> None:
        """Hand a written clip's masks and latent-pose boxes to the shard; a mask count that does not match its
        frames redoes the unit without the clip (a failure row, stage "masks")."""
        masks = self._clip_masks.get(clip.video_id)
        if masks is not None:
            why = masks.problem(num_frames)
            if why is not None:
                raise _Redo({clip.video_id: failure_row(clip.video_id, "masks", "MaskCountMismatch", why)})
            writer.add_masks(clip.video_id, masks.masks)
        if self.config.crop == "latentpose":
            boxes, ratio = self._clip_boxes.get(clip.video_id, [[], 1.0])
            writer.add_crop_boxes(clip.video_id, boxes, ratio)

    def _attach_poses(self, writer: ShardWriter, clip: Clip, num_frames: int) -> None:
        """Hand a written clip's poses to the shard; a pose count that does not match its frames redoes the
        unit without the clip (a failure row, stage "poses")."""
        poses = self._clip_poses.get(clip.video_id)
        if poses is None:
            return
        why = poses.problem(num_frames)
        if why is not None:
            raise _Redo({clip.video_id: failure_row(clip.video_id, "poses", "PoseCountMismatch", why)})
        writer.add_poses(clip.video_id, poses.poses, poses.skipped)

    def _facts(self, clip: Clip, source: FrameSource, frame_shape: tuple[int, ...], lo: int) -> dict[str, Any]:
        h, w = frame_shape[:2]
        box = None
        if clip.bbox is not None and self.config.crop is None:
            box = list(cut_box(clip, w, h, self._border))  # clamped to the frame; a padded crop keeps its box
        return {"split": clip.split, "person_id": clip.person_id, "fps": source.fps, "orig_width": w,
                "orig_height": h, "crop_box": box, "start": clip.start if clip.start is not None else lo,
                "end": clip.end, "recipe": self.config.recipe}

    def _add(self, writer: ShardWriter, clip: Clip, frames, source: FrameSource, lo: int) -> dict[str, Any]:
        """Write one clip from its source frames (transformed here) and fill in its facts. Encoding time is what
        add_video spends beyond pulling frames and writing Parquet."""
        shapes = []

        def transformed():
            for f in frames:
                if not shapes:
                    shapes.append(f.size[::-1])
                yield self._transform(f, clip)

        def beating(items):  # a long clip's encoding must not look like a hang
            for k, item in enumerate(items):
                self._report("encode", k)
                yield item

        with self._timer("encode"):  # pulling frames (decode, crop) and Parquet writes time as their own stages
            row = writer.add_video(clip.video_id, beating(transformed()), source_path=self._path)
        self._attach_poses(writer, clip, int(row["num_frames"]))
        self._attach_masks(writer, clip, int(row["num_frames"]))
        row.update(self._facts(clip, source, shapes[0], lo))
        if row["end"] is None:
            row["end"] = int(row["start"]) + int(row["num_frames"])
        return row

    def _write(self, source: FrameSource, plan: Plan, writer: ShardWriter) -> None:
        """Write every planned clip, streamed: lane by lane, each run of nearby clips decoded in one pass from
        its first frame (the source seeks there). A clip that fails redoes the unit without it (_Redo)."""
        for lane in _lanes(sorted(plan, key=lambda p: (p[1], p[0].video_id))):
            for run in _runs(lane):
                frames = self._timed(source.decoded(run[0][1], run[-1][2]))
                self._write_streaming(source, run, frames, writer)

    def _write_streaming(self, source, plan, frames, writer) -> None:
        """Clips in frame order straight into the shard (constant memory); a late failure redoes the unit."""
        for clip, lo, hi in plan:
            def clip_frames(lo=lo, hi=hi):
                for i, frame in frames:
                    if i < lo:
                        continue
                    yield frame
                    if hi is not None and i == hi - 1:
                        return  # leave the next frame for the next clip
            try:
                row = self._add(writer, clip, clip_frames(), source, lo)
            except DecodeStopped as stop:
                raise _Redo({}, stop) from stop
            except ValueError as exc:  # an empty crop
                raise _Redo({clip.video_id: failure_row(clip.video_id, "crop", exc)}) from exc
            except AnimbenchError as exc:  # no frame in the clip's range, or frames of changing size
                raise _Redo({clip.video_id: failure_row(clip.video_id, "decode", exc)}) from exc
            if row["num_frames"] < self.config.min_frames:
                raise _Redo({clip.video_id: failure_row(
                    clip.video_id, "decode", "TooFewFrames",
                    f"the video has {row['num_frames']} frame(s), fewer than {self.config.min_frames}")})
