"""The frame store: the single source of truth for its schema, writers, reader and verification.

Layout of a store directory (readable with plain pyarrow, pandas, DuckDB, Hugging Face `datasets` and Ray Data,
none of which needs animbench)::

    STORE/
      frames/*.parquet     one row per frame: video_id, frame_index, image, sha256 (of the image bytes; schema
                           v2); a video's frames are contiguous and in order inside one shard; row groups of
                           `row_group_size` frames, so one frame never decodes a whole shard
      videos.parquet       one row per video: split, person id, source, fps, original size, crop box, ...
      failures.parquet     one row per unit of work that failed: video id, stage, error class, message
      poses/*.parquet      optional keypoints table, one file per frames shard (same name): one row per frame
                           that has a pose (see below)
      masks/*.parquet      optional foreground masks, one file per frames shard: one row per frame
      crop_boxes/*.parquet optional latent-pose crop face boxes, one file per frames shard: one row per frame
      manifest.json        written last: schema version, config, per-shard hash and row counts, versions,
                           and the `poses` / `masks` / `crop_boxes` sections of the optional tables

The frames' `image` column (schema v3) follows Hugging Face datasets' `Image` feature: a struct {bytes: binary
(the encoded PNG / JPEG), path: string (a name only, "<video_id>/<frame_index:07d>.png", nothing on disk)}, and
every shard's Parquet schema metadata carries the features under the key "huggingface" as
`{"info": {"features": {...}}}` (what `datasets.Features.from_arrow_schema` reads), so
`load_dataset("parquet", data_files="STORE/frames/*.parquet")` decodes `image` to PIL images and
`ray.data.read_parquet("STORE/frames")` gives rows whose `image["bytes"]` any image library opens. Stores of
schema v1 and v2 hold the encoded bytes in a plain binary `image` column; they still open and verify.

The masks and crop-boxes tables are described in prep/store_tables.py (their schemas and helpers live there).

Every file is written under a temporary name and renamed into place, and the manifest is written last, so
a store whose writer died never opens as complete.

Reads check what they read: every frame against its sha256 (schema v2), and every whole video (one call or
`iter_frames`) against the video's frames_sha256, which schema v1 stores also have. A damaged shard is an
AnimbenchError naming the store, shard, video and frame, never a silently wrong image.

The keypoints table (`prep ... --poses`): one row per frame with a pose, columns

    video_id      string
    frame_index   int32     index of the stored frame
    body          fixed_size_list<float32>[J*3]   J = 18 (COCO_18), 23 (BODY_23) or 25 (BODY_25), as x, y,
                            confidence per joint, joint after joint
    face          fixed_size_list<float32>[70*3]   OpenPose's 70 face points (all zeros when undetected)
    hand_left     fixed_size_list<float32>[21*3]
    hand_right    fixed_size_list<float32>[21*3]
    outside       int16     confident points of the row that lie outside the stored frame

Coordinates are the STORED frame's pixels (pixel centres at integers): the crop, pad and resize the frame got
were applied to the points. A point outside the stored frame keeps its coordinates and confidence (a limb that
leaves the crop is still drawn up to the edge) and is counted in `outside`; a point with confidence 0 is
stored as (0, 0, 0), OpenPose's "not detected". Frames without a pose (OpenPose skipped them, no person was
detected) have no row and are listed under the manifest's `poses.skipped`. `pq.read_table(STORE / "poses")`
reads the whole table; `np.stack(t["body"].to_numpy(zero_copy_only=False)).reshape(len(t), J, 3)` gives the
joints. The manifest's `poses` section records the body format, the source, the coordinate space, each pose
file's hash and each video's pose digest; the store's content_hash covers the poses, and reads check them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from plumbing.errors import AnimbenchError
from plumbing.files import (
    atomic_path,
    atomic_write_text,
    load_manifest,
    manifest_format,
    publish,
    sha256_file,
    tmp_name,
    verify_tables,
)
from plumbing.provenance import package_versions
from prep.imagecodec import EncodeOptions, decode_image, encode_image
from prep.poses.format import PoseFrame, body_format_of
from prep.store_tables import (  # noqa: F401 - pose_schema, count_outside, POSE_* are part of the store's API
    CROP_BOXES,
    EMPTY_POSES,
    FRAME_TABLES,
    MASK_VALUES,
    MASKS,
    POSE_COORDINATES,
    POSE_OUTSIDE_RULE,
    POSE_PARTS,
    POSES_DIR,
    check_masks,
    count_outside,
    frame_table,
    frame_table_section,
    pose_columns,
    pose_digest,
    pose_schema,
    pose_section,
    read_frame_table,
    unseen_zeroed,
    verify_frame_tables,
    write_frame_table,
)

# v2 added the per-frame sha256 column (the optional poses table needs no new version); v3 made `image` the
# Hugging Face Image struct {bytes, path} with the HF features in the shards' schema metadata (the bytes, their
# digests and the content hash are as in v2)
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # v1 stores open; their frames are checked per whole video only
FORMAT_NAME = "animbench-frame-store"
FRAMES_DIR = "frames"
VIDEOS_FILE = "videos.parquet"
FAILURES_FILE = "failures.parquet"
MANIFEST_FILE = "manifest.json"
DEFAULT_ROW_GROUP = 16
DIGEST_PREFIX = 8  # bytes of each frame's sha256 a reader compares: a random corruption passes with p = 2^-64

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # HF datasets' Image storage
# The HF features of the frame columns, as `datasets.Features.to_dict()` writes them (sha256 is left out: HF
# infers fixed_size_binary[32] from the Arrow type, and a Value it cannot parse would drop every feature).
HF_FEATURES = {"video_id": {"dtype": "string", "_type": "Value"}, "frame_index": {"dtype": "int32", "_type": "Value"},
               "image": {"_type": "Image"}}
FRAME_SCHEMA = pa.schema(
    [("video_id", pa.string()), ("frame_index", pa.int32()), ("image", IMAGE_TYPE), ("sha256", pa.binary(32))],
    metadata={b"huggingface": json.dumps({"info": {"features": HF_FEATURES}}).encode()},
)
IMAGE_EXTENSIONS = {"png": ".png", "jpeg": ".jpg"}  # the `path` names' suffix; another format: "." + its name


def image_path(video_id: str, frame_index: int, image_format: str) -> str:
    """The `image.path` of a stored frame: a stable name, "<video_id>/<frame_index:07d>.<ext>" (no file)."""
    return f"{video_id}/{int(frame_index):07d}{IMAGE_EXTENSIONS.get(image_format, '.' + image_format)}"
VIDEO_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("split", pa.string()),
        ("person_id", pa.string()),
        ("source_path", pa.string()),
        ("fps", pa.float64()),
        ("orig_width", pa.int32()),
        ("orig_height", pa.int32()),
        ("crop_box", pa.list_(pa.int32())),  # left, top, right, bottom in original pixels; null = full frame
        ("start", pa.int64()),  # first source frame index (reference fps), null when not a clip
        ("end", pa.int64()),
        ("num_frames", pa.int32()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("recipe", pa.string()),
        ("shard", pa.string()),
        ("first_row", pa.int64()),
        ("frames_sha256", pa.string()),
    ]
)
FAILURE_SCHEMA = pa.schema(
    [("video_id", pa.string()), ("stage", pa.string()), ("error", pa.string()), ("message", pa.string())]
)
# Per-video facts a recipe supplies; the writer fills the rest (shard, rows, size, hash).
VIDEO_FACTS = ("split", "person_id", "source_path", "fps", "orig_width", "orig_height", "crop_box", "start",
               "end", "recipe")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _atomic_write_table(table: pa.Table, path: Path, **kwargs: Any) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def failure_row(video_id: str, stage: str, error: BaseException | str, message: str = "") -> dict[str, str]:
    """A failures-table row; an exception gives its class and its message on one line (500 characters at most)."""
    err = type(error).__name__ if isinstance(error, BaseException) else str(error)
    if isinstance(error, BaseException) and not message:
        message = " ".join(str(error).split())[:500]
    return {"video_id": video_id, "stage": stage, "error": err, "message": message}


def _check_frame(frame: np.ndarray, video_id: str, index: int, shape: tuple[int, ...] | None) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise AnimbenchError(
            f"video {video_id!r} frame {index}: expected uint8 HxWx3 RGB, got {frame.dtype} {frame.shape}"
        )
    if shape is not None and frame.shape != shape:
        raise AnimbenchError(f"video {video_id!r} frame {index}: size {frame.shape} differs from frame 0 {shape}")




class _Writer:
    """What both store writers share: as a context manager, close on success and abort on an error."""

    def close(self) -> Any:  # pragma: no cover - each writer defines it
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class ShardWriter(_Writer):
    """Write whole videos into one Parquet shard, atomically (temporary name, renamed on close).

    Pipelines give each unit of work its own ShardWriter; `finalize_store` then ties the shards together.
    """

    def __init__(self, path: str | os.PathLike, encode: EncodeOptions | None = None,
                 row_group_size: int = DEFAULT_ROW_GROUP, timer: Callable[[str], Any] | None = None) -> None:
        self.path = Path(path)
        self._timed = timer or (lambda stage: nullcontext())  # a StageTimer measures the Parquet writes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.encode = encode or EncodeOptions()
        self.row_group_size = int(row_group_size)
        self._tmp = tmp_name(self.path)
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[tuple[str, int, bytes, bytes]] = []
        self._rows = 0
        self.videos: list[dict[str, Any]] = []
        self._closed = False
        self._pose_rows: list[tuple[str, int, PoseFrame, int]] = []
        self._pose_path = self.path.parent.parent / POSES_DIR / self.path.name
        self._pose_joints: int | None = None
        self._frame_parts: dict[str, list[dict[str, list]]] = {name: [] for name in FRAME_TABLES}

    def add_video(self, video_id: str, frames: Iterable[np.ndarray], **facts: Any) -> dict[str, Any]:
        """Encode and append all frames of one video; return its row for the videos table."""
        unknown = set(facts) - set(VIDEO_FACTS)
        if unknown:
            raise AnimbenchError(f"video {video_id!r}: unknown video fields {sorted(unknown)}")
        first_row = self._rows
        digest = hashlib.sha256()
        shape = None
        n = 0
        for n, frame in enumerate(frames):  # noqa: B007
            frame = np.asarray(frame)
            _check_frame(frame, video_id, n, shape)
            shape = frame.shape
            data = encode_image(frame, self.encode)
            _update_video_digest(digest, data)
            self._buffer.append((video_id, n, data, hashlib.sha256(data).digest()))
            self._rows += 1
            if len(self._buffer) >= self.row_group_size:
                with self._timed("write"):
                    self._flush()
        if shape is None:
            raise AnimbenchError(f"video {video_id!r}: no frames")
        row = {name: facts.get(name) for name in VIDEO_FACTS}
        row.update(
            video_id=video_id, num_frames=n + 1, height=shape[0], width=shape[1], shard=None,
            first_row=first_row, frames_sha256=digest.hexdigest(),
        )
        self.videos.append(row)
        return row

    def add_poses(self, video_id: str, poses: Mapping[int, PoseFrame], skipped: Mapping[int, str] | None = None
                  ) -> None:
        """Keypoints of a video added before (stored frame index -> pose in the stored frame's pixels) and the
        frames that have none, with the reason; the pose facts go into the video's row under "poses"."""
        row = next((r for r in self.videos if r["video_id"] == video_id), None)
        if row is None:
            raise AnimbenchError(f"poses of video {video_id!r}: add the video's frames first")
        n, height, width = int(row["num_frames"]), int(row["height"]), int(row["width"])
        skipped = skipped or {}
        bad = [i for i in [*poses, *skipped] if not 0 <= int(i) < n]
        if bad:
            raise AnimbenchError(f"poses of video {video_id!r}: frame {bad[0]} outside its {n} frames")
        rows = []
        for i in sorted(poses):
            pose = unseen_zeroed(poses[i])
            joints = pose.body.shape[0]
            if self._pose_joints is not None and joints != self._pose_joints:
                raise AnimbenchError(f"poses of video {video_id!r} frame {i}: {pose.body_format}, but this shard "
                                     f"holds {body_format_of(self._pose_joints)} bodies (one store, one format)")
            self._pose_joints = joints
            rows.append((video_id, int(i), pose, count_outside(pose, width, height)))
        self._pose_rows.extend(rows)
        columns = {"frame_index": np.array([r[1] for r in rows], np.int32),
                   "outside": np.array([r[3] for r in rows], np.int16),
                   **{name: np.array([getattr(r[2], name) for r in rows], np.float32) for name, _ in POSE_PARTS}}
        row["poses"] = {"rows": len(rows), "sha256": pose_digest(columns),
                        "body_format": rows[0][2].body_format if rows else None,
                        "outside": int(columns["outside"].sum()),
                        "skipped": {str(int(i)): str(why) for i, why in sorted(skipped.items())}}

    def _video_row(self, video_id: str, what: str) -> dict[str, Any]:
        row = next((r for r in self.videos if r["video_id"] == video_id), None)
        if row is None:
            raise AnimbenchError(f"{what} of video {video_id!r}: add the video's frames first")
        return row

    def add_masks(self, video_id: str, masks: Sequence[np.ndarray]) -> None:
        """Foreground masks of a video added before: one uint8 (H, W) mask per stored frame, in frame order,
        at the stored frame's size (0 background .. 255 foreground)."""
        row = self._video_row(video_id, "masks")
        masks = check_masks(video_id, masks, int(row["num_frames"]), int(row["height"]), int(row["width"]))
        columns, digest = frame_table(MASKS, video_id, masks)
        self._frame_parts[MASKS].append(columns)
        row[MASKS] = {"rows": len(masks), "sha256": digest}

    def add_crop_boxes(self, video_id: str, boxes: Sequence[Sequence[float]], ratio: float = 1.0) -> None:
        """The face box each stored frame of a video was cropped around (--crop latentpose), in the pixels of
        the frame the detector saw, which was the source frame scaled by `ratio`."""
        row = self._video_row(video_id, "crop boxes")
        if len(boxes) != int(row["num_frames"]):
            raise AnimbenchError(f"crop boxes of video {video_id!r}: {len(boxes)} boxes for {row['num_frames']} "
                                 "frames")
        columns, digest = frame_table(CROP_BOXES, video_id, boxes)
        self._frame_parts[CROP_BOXES].append(columns)
        row[CROP_BOXES] = {"rows": len(boxes), "sha256": digest, "ratio": float(ratio)}

    def _write_poses(self) -> None:
        if not self._pose_rows:
            return
        rows = self._pose_rows
        data: dict[str, Any] = {"video_id": [r[0] for r in rows],
                                "frame_index": pa.array([r[1] for r in rows], pa.int32()),
                                "outside": pa.array([r[3] for r in rows], pa.int16())}
        schema = pose_schema(int(self._pose_joints))
        for name, _ in POSE_PARTS:
            flat = np.stack([getattr(r[2], name) for r in rows]).astype(np.float32).reshape(-1)
            data[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat), schema.field(name).type.list_size)
        self._pose_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_table(pa.table(data, schema=schema), self._pose_path, compression="zstd")

    def _flush(self) -> None:
        if not self._buffer:
            return
        ids, idx, data, digests = zip(*self._buffer, strict=True)
        fmt = self.encode.image_format
        image = pa.StructArray.from_arrays(
            [pa.array(data, pa.binary()), pa.array([image_path(v, i, fmt) for v, i in zip(ids, idx, strict=True)])],
            fields=list(IMAGE_TYPE))
        table = pa.table(
            {"video_id": list(ids), "frame_index": pa.array(idx, pa.int32()), "image": image,
             "sha256": list(digests)},
            schema=FRAME_SCHEMA,
        )
        if self._writer is None:
            # PNG/JPEG bytes are already compressed and digests are random: store them raw;
            # dictionary-encode the repeated ids.
            self._writer = pq.ParquetWriter(
                self._tmp, FRAME_SCHEMA,
                compression={"video_id": "zstd", "frame_index": "zstd", "image.bytes": "none", "image.path": "zstd",
                             "sha256": "none"},
                use_dictionary=["video_id"], write_statistics=["video_id", "frame_index"],
            )
        self._writer.write_table(table, row_group_size=self.row_group_size)
        self._buffer.clear()

    @property
    def num_rows(self) -> int:
        """Frames written so far."""
        return self._rows

    def close(self) -> list[dict[str, Any]]:
        """Flush, close and rename into place; return the video rows (with their shard name)."""
        if self._closed:
            return self.videos
        self._flush()
        if self._writer is None:
            raise AnimbenchError(f"shard {self.path}: no frames were written")
        self._writer.close()
        self._write_poses()  # before the frames shard: a unit is done once its stats file exists anyway
        for name, parts in self._frame_parts.items():
            write_frame_table(name, parts, self.path.parent.parent / name / self.path.name, _atomic_write_table)
        publish(self._tmp, self.path)
        self._closed = True
        for row in self.videos:
            row["shard"] = self.path.name
        return self.videos

    def abort(self) -> None:
        """Drop the partial shard."""
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)
        self._closed = True


def _update_video_digest(digest: Any, data: bytes) -> None:
    """Add one frame's encoded bytes to a video's frames_sha256 (length-prefixed, so frames cannot shift)."""
    digest.update(len(data).to_bytes(8, "little"))
    digest.update(data)


def content_hash(video_rows: Iterable[dict[str, Any]], poses: Mapping[str, Mapping[str, Any]] | None = None,
                 **tables: Mapping[str, Mapping[str, Any]] | None) -> str:
    """A fingerprint of frame content (ids and encoded bytes) and, when the store has them, of the poses and of
    the per-frame tables (`masks=`, `crop_boxes=`: each video's digest); independent of sharding and order. A
    store without them hashes as it always did."""
    h = hashlib.sha256()
    for vid, digest in sorted((r["video_id"], r["frames_sha256"]) for r in video_rows):
        h.update(f"{vid}\t{digest}\n".encode())
    for vid, facts in sorted((poses or {}).items()):
        h.update(f"poses\t{vid}\t{facts['sha256']}\n".encode())
    for name in sorted(tables):
        for vid, facts in sorted((tables[name] or {}).items()):
            h.update(f"{name}\t{vid}\t{facts['sha256']}\n".encode())
    return h.hexdigest()



def finalize_store(
    root: str | os.PathLike,
    videos: Sequence[dict[str, Any]],
    *,
    config: dict[str, Any],
    encode: EncodeOptions,
    row_group_size: int = DEFAULT_ROW_GROUP,
    failures: Sequence[dict[str, Any]] = (),
    timings: dict[str, float] | None = None,
    run: dict[str, Any] | None = None,
    poses: Mapping[str, Any] | None = None,
    masks: Mapping[str, Any] | None = None,
    crop_boxes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the videos and failures tables, hash every shard, then write the manifest (last). `run` records
    how the writer ran (e.g. the pipeline's Ray nodes and retried units). `poses` (e.g. {"source": ...}) marks
    a store with a keypoints table: the video rows carry their pose facts (ShardWriter.add_poses); `masks` and
    `crop_boxes` (their manifest facts) mark a store with those tables (ShardWriter.add_masks /
    add_crop_boxes)."""
    root = Path(root)
    frames_dir = root / FRAMES_DIR
    seen: set[str] = set()
    for row in videos:
        if row["video_id"] in seen:
            raise AnimbenchError(f"store {root}: video id {row['video_id']!r} appears twice")
        seen.add(row["video_id"])
        if not (frames_dir / str(row["shard"])).is_file():
            raise AnimbenchError(f"store {root}: shard {row['shard']!r} of video {row['video_id']!r} is missing")
    rows = sorted(videos, key=lambda r: (str(r.get("split")), r["video_id"]))
    vtable = pa.Table.from_pylist([{k: r.get(k) for k in VIDEO_SCHEMA.names} for r in rows], schema=VIDEO_SCHEMA)
    _atomic_write_table(vtable, root / VIDEOS_FILE)
    ftable = pa.Table.from_pylist(
        [{k: (None if f.get(k) is None else str(f.get(k))) for k in FAILURE_SCHEMA.names} for f in failures],
        schema=FAILURE_SCHEMA,
    )
    _atomic_write_table(ftable, root / FAILURES_FILE)

    shards = []
    used = sorted({str(r["shard"]) for r in rows})
    for name in used:
        path = frames_dir / name
        shards.append({"name": name, "sha256": sha256_file(path), "rows": pq.ParquetFile(path).metadata.num_rows,
                       "bytes": path.stat().st_size})
    splits: dict[str, int] = {}
    for r in rows:
        splits[str(r.get("split"))] = splits.get(str(r.get("split")), 0) + 1
    poses_facts = pose_section(root, rows, used, poses) if poses is not None else None
    tables = {name: frame_table_section(root, name, rows, used, facts)
              for name, facts in ((MASKS, masks), (CROP_BOXES, crop_boxes)) if facts is not None}
    manifest = {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "encoding": encode.as_dict(),
        "row_group_size": int(row_group_size),
        "num_videos": len(rows),
        "num_frames": int(sum(int(r["num_frames"]) for r in rows)),
        "num_failures": len(failures),
        "splits": splits,
        "content_hash": content_hash(rows, poses_facts and poses_facts["videos"],
                                     **{name: t["videos"] for name, t in tables.items()}),
        "shards": shards,
        "tables": {
            name: {"sha256": sha256_file(root / name), "rows": n}
            for name, n in ((VIDEOS_FILE, len(rows)), (FAILURES_FILE, len(failures)))
        },
        "timings": timings or {},
        "run": run or {},
        "package_versions": package_versions(),
    }
    if poses_facts is not None:
        manifest["poses"] = poses_facts
    manifest.update(tables)
    atomic_write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", root / MANIFEST_FILE)
    return manifest


def is_store_dir(root: str | os.PathLike) -> bool:
    """Whether `root` holds a frame store's manifest (by its `format`; its contents are not checked here)."""
    return manifest_format(Path(root) / MANIFEST_FILE) == FORMAT_NAME


def _prepare_root(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise AnimbenchError(f"store {root}: is a file, expected a directory (a new or empty one)")
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise AnimbenchError(f"store {root}: directory is not empty (pass --overwrite to replace it)")
        if not (is_store_dir(root) or (root / FRAMES_DIR).is_dir()):  # a store, or one a killed writer left
            raise AnimbenchError(f"store {root}: not a frame store (no store {MANIFEST_FILE}, no {FRAMES_DIR}/), so "
                                 "--overwrite will not delete it; expected a new folder or an earlier store")
        import shutil

        shutil.rmtree(root)
    (root / FRAMES_DIR).mkdir(parents=True, exist_ok=True)


class FrameStoreWriter(_Writer):
    """Single-process writer: add videos, shards roll over by frame count, `close()` writes the manifest."""

    def __init__(self, root: str | os.PathLike, config: dict[str, Any] | None = None, *,
                 encode: EncodeOptions | None = None, row_group_size: int = DEFAULT_ROW_GROUP,
                 shard_frames: int = 4096, overwrite: bool = False, poses_source: str | None = None,
                 masks: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root)
        self.poses_source = poses_source  # set: the store has a keypoints table (videos without poses have none)
        # set (the manifest facts, e.g. {"source": ..., "backend": ...}): every video has a mask per frame
        self.masks_facts = None if masks is None else {**masks, "values": MASK_VALUES}
        _prepare_root(self.root, overwrite)
        self.config = dict(config or {})
        self.encode = encode or EncodeOptions()
        self.row_group_size = row_group_size
        self.shard_frames = shard_frames
        self._shard: ShardWriter | None = None
        self._shard_no = 0
        self.videos: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self._t0 = time.perf_counter()

    def add_video(self, video_id: str, frames: Iterable[np.ndarray], *, poses: Mapping[int, PoseFrame] | None = None,
                  pose_skipped: Mapping[int, str] | None = None, masks: Sequence[np.ndarray] | None = None,
                  **facts: Any) -> dict[str, Any]:
        """Append one video (all its frames) to the current shard, with its poses (stored frame index -> pose in
        the stored frame's pixels) when the store has a keypoints table, and its masks (one uint8 (H, W) per
        frame) when it has a masks table."""
        if (poses is not None or pose_skipped) and self.poses_source is None:
            raise AnimbenchError(f"video {video_id!r}: poses given to a store writer made without poses_source")
        if (masks is None) != (self.masks_facts is None):
            raise AnimbenchError(f"video {video_id!r}: " + ("masks given to a store writer made without masks"
                                                            if masks is not None else "no masks given to a store "
                                                            "writer made with masks (every video needs them)"))
        if self._shard is None:
            name = f"shard-{self._shard_no:05d}.parquet"
            self._shard = ShardWriter(self.root / FRAMES_DIR / name, self.encode, self.row_group_size)
            self._shard_no += 1
        row = self._shard.add_video(video_id, frames, **facts)
        if self.poses_source is not None:
            self._shard.add_poses(video_id, poses or {}, pose_skipped or {})
        if masks is not None:
            self._shard.add_masks(video_id, masks)
        if self._shard.num_rows >= self.shard_frames:
            self.videos.extend(self._shard.close())
            self._shard = None
        return row

    def add_failure(self, video_id: str, stage: str, error: BaseException | str, message: str = "") -> None:
        """Record a unit of work that failed (it is kept out of the frames)."""
        self.failures.append(failure_row(video_id, stage, error, message))

    def close(self) -> dict[str, Any]:
        """Close the last shard and write the manifest; return it."""
        if self._shard is not None:
            self.videos.extend(self._shard.close())
            self._shard = None
        return finalize_store(
            self.root, self.videos, config=self.config, encode=self.encode, row_group_size=self.row_group_size,
            failures=self.failures, timings={"write_s": round(time.perf_counter() - self._t0, 3)},
            poses=None if self.poses_source is None else {"source": self.poses_source}, masks=self.masks_facts,
        )

    def abort(self) -> None:
        """Drop the open shard; no manifest is written, so the store stays incomplete."""
        if self._shard is not None:
            self._shard.abort()


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """Load and check the manifest; a store without a valid one is incomplete and does not open."""
    return load_manifest(root, label="store", filename=MANIFEST_FILE, format_name=FORMAT_NAME,
                         schema_version=READABLE_VERSIONS,
                         missing_hint="the store is incomplete (its writer did not finish); rebuild or resume it")


@dataclass
class ReadStats:
    """Counters of what the reader touched: used by tests and benchmarks."""

    row_groups_read: int = 0
    bytes_read: int = 0
    frames_decoded: int = 0


@dataclass
class _ShardIndex:
    file: pq.ParquetFile
    offsets: np.ndarray  # first row of each row group, plus the total at the end
    sizes: list[int] = field(default_factory=list)
    # the first DIGEST_PREFIX bytes of each row's sha256, row after row (schema v2; None for v1 shards): read
    # once per shard, so a random read fetches no second column (8 bytes a frame stay in memory, not 32)
    digests: bytes | None = None
    image_column: str = "image"  # the encoded bytes: "image.bytes" in schema v3 shards, "image" before


class FrameStore:
    """Read a complete frame store: list videos, read frames by (video, indices), iterate."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        try:
            table = pq.read_table(self.root / VIDEOS_FILE)
        except (OSError, pa.ArrowException) as exc:
            raise AnimbenchError(f"store {self.root}: {VIDEOS_FILE} cannot be read ({_one_line(exc)}); "
                                 f"`animbench store verify {self.root}` checks every file") from exc
        self.videos_table = table.to_pandas()
        # one row dict per video, plain Python values (None for nulls, lists for crop boxes): the hot path of
        # random reads looks videos up here, never in pandas
        self._rows = {row["video_id"]: row for row in table.to_pylist()}
        self._shards: dict[str, _ShardIndex] = {}
        self.stats = ReadStats()

    # Parquet handles are per process: drop them when pickled into DataLoader / Ray workers.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_shards"] = {}
        return state

    @property
    def fingerprint(self) -> str:
        """The store's content hash (frame bytes and video ids), used as the data fingerprint."""
        return str(self.manifest["content_hash"])

    @property
    def pose_info(self) -> dict[str, Any] | None:
        """The manifest's `poses` section (body format, source, coordinates, skipped frames, ...); None when the
        store has no keypoints table."""
        return self.manifest.get("poses")

    def poses(self, video_id: str) -> dict[int, PoseFrame]:
        """Stored frame index -> pose in the stored frame's pixels; frames without a pose are absent. The rows
        read are checked against the video's pose digest."""
        info = self.pose_info
        if info is None:
            raise AnimbenchError(f"store {self.root}: has no poses (prep it with --poses DIR|synthetic|rtpose|dwpose)")
        shard = self._row(video_id)["shard"]
        expected = info["videos"].get(video_id)
        if expected is None or int(expected["rows"]) == 0:
            return {}
        path = self.root / POSES_DIR / shard
        try:
            table = pq.read_table(path, filters=[("video_id", "==", video_id)])
            columns = pose_columns(table.sort_by("frame_index"))
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise self._damaged(f"{POSES_DIR}/{shard}", video_id, None,
                                f"cannot read its poses ({_one_line(exc)})") from exc
        if len(columns["frame_index"]) != int(expected["rows"]) or pose_digest(columns) != expected["sha256"]:
            raise self._damaged(f"{POSES_DIR}/{shard}", video_id, None,
                                "its poses do not match the manifest's pose digest")
        return {int(i): PoseFrame(columns["body"][k], columns["face"][k], columns["hand_left"][k],
                                  columns["hand_right"][k]) for k, i in enumerate(columns["frame_index"])}

    @property
    def mask_info(self) -> dict[str, Any] | None:
        """The manifest's `masks` section (source, backend, weights sha256, values, per-video digests); None
        when the store has no masks table."""
        return self.manifest.get(MASKS)

    def masks(self, video_id: str) -> dict[int, np.ndarray]:
        """Stored frame index -> foreground mask, float32 (H, W) in [0, 1] (the stored uint8 / 255) at the
        stored frame's size; the rows read are checked against the video's mask digest."""
        if self.mask_info is None:
            raise AnimbenchError(f"store {self.root}: has no masks (prep it with --masks synthetic|DIR|graphonomy)")
        idx, items = self._frame_table(MASKS, video_id)
        return {i: m.astype(np.float32) / np.float32(255.0) for i, m in zip(idx, items, strict=True)}

    def crop_boxes(self, video_id: str) -> np.ndarray:
        """float32 (T, 4): the face box (left, top, right, bottom) each stored frame was cropped around by
        --crop latentpose, in the pixels of the frame the detector saw (the source frame x the video's `ratio`
        in `manifest["crop_boxes"]["videos"]`)."""
        if self.manifest.get(CROP_BOXES) is None:
            raise AnimbenchError(f"store {self.root}: has no crop boxes (prep it with --crop latentpose)")
        _, items = self._frame_table(CROP_BOXES, video_id)
        return np.stack(items) if items else np.zeros((0, 4), np.float32)

    def _frame_table(self, name: str, video_id: str) -> tuple[list[int], list[Any]]:
        shard = self._row(video_id)["shard"]
        expected = self.manifest[name]["videos"].get(video_id)
        if expected is None or int(expected["rows"]) == 0:
            return [], []
        try:
            idx, items, digest = read_frame_table(self.root / name / shard, name, video_id)
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise self._damaged(f"{name}/{shard}", video_id, None, f"cannot read its {name} ({_one_line(exc)})"
                                ) from exc
        if len(idx) != int(expected["rows"]) or digest != expected["sha256"]:
            raise self._damaged(f"{name}/{shard}", video_id, None, f"its {name} do not match the manifest's digest")
        return idx, items

    def videos(self, split: str | None = None) -> list[str]:
        """Video ids, optionally of one split, in stored order."""
        t = self.videos_table
        if split is not None:
            t = t[t["split"] == split]
        return list(t["video_id"])

    def splits(self) -> list[str]:
        """The splits present in the store."""
        return sorted(self.videos_table["split"].astype(str).unique())

    def info(self, video_id: str) -> dict[str, Any]:
        """The videos-table row of one video, as plain Python values (None for missing facts)."""
        return dict(self._row(video_id))

    def num_frames(self, video_id: str) -> int:
        """Frame count of one video."""
        return self._row(video_id)["num_frames"]

    def _row(self, video_id: str) -> dict[str, Any]:
        try:
            return self._rows[video_id]
        except KeyError:
            raise AnimbenchError(f"store {self.root}: no video {video_id!r}") from None

    def failures(self):
        """The failures table as a pandas DataFrame."""
        return pq.read_table(self.root / FAILURES_FILE).to_pandas()

    def _shard(self, name: str, video_id: str) -> _ShardIndex:
        idx = self._shards.get(name)
        if idx is None:
            try:
                # memory-mapped, no pre-buffering: a row-group read then costs tens of microseconds
                pf = pq.ParquetFile(self.root / FRAMES_DIR / name, memory_map=True, pre_buffer=False)
            except (OSError, pa.ArrowException) as exc:
                raise self._damaged(name, video_id, None, f"cannot read the shard ({_one_line(exc)})") from exc
            md = pf.metadata
            counts = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
            sizes = [md.row_group(i).total_byte_size for i in range(md.num_row_groups)]
            digests = None
            if "sha256" in pf.schema_arrow.names:
                try:
                    col = pf.read(columns=["sha256"], use_threads=False).column(0).combine_chunks()
                except (OSError, pa.ArrowException) as exc:
                    raise self._damaged(name, video_id, None, f"cannot read its digests ({_one_line(exc)})") from exc
                if col.null_count or len(col) != md.num_rows:
                    raise self._damaged(name, video_id, None, "its sha256 column has missing values")
                raw = np.frombuffer(col.buffers()[1], np.uint8, count=32 * len(col), offset=32 * col.offset)
                digests = raw.reshape(-1, 32)[:, :DIGEST_PREFIX].tobytes()
            image = pf.schema_arrow.field("image").type if "image" in pf.schema_arrow.names else None
            column = "image.bytes" if isinstance(image, pa.StructType) else "image"
            idx = _ShardIndex(pf, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), sizes, digests, column)
            self._shards[name] = idx
        return idx

    def _damaged(self, shard: str, video_id: str, frame: int | None, what: str) -> AnimbenchError:
        """The one-line error for data that does not read back as written."""
        at = f", frame {frame}" if frame is not None else ""
        return AnimbenchError(f"store {self.root}: shard {shard}, video {video_id!r}{at}: {what}; the store is "
                              f"damaged (`animbench store verify {self.root}` checks every file)")

    def _read_rows(self, video_id: str, wanted: np.ndarray) -> list[bytes]:
        """Encoded bytes of frames `wanted` of one video, each checked against its sha256 when the shard has
        digests (schema v2): a random read checks exactly the frames it returns."""
        row = self._row(video_id)
        shard_name, first_row = row["shard"], row["first_row"]
        shard = self._shard(shard_name, video_id)
        rows = first_row + wanted
        groups = np.searchsorted(shard.offsets, rows, side="right") - 1
        unique = np.unique(groups)
        # one call for all row groups touched (each holds row_group_size frames), single-threaded: the
        # thread-pool hand-off costs more than reading a few frames
        try:
            # v3 reads only the struct's bytes child; flatten() turns it into a plain binary column
            images = shard.file.read_row_groups([int(g) for g in unique], columns=[shard.image_column],
                                                use_threads=False).flatten().column(0)
        except (OSError, pa.ArrowException) as exc:
            frames = int(wanted[0]) if len(wanted) == 1 else None
            raise self._damaged(shard_name, video_id, frames, f"cannot read ({_one_line(exc)})") from exc
        self.stats.row_groups_read += len(unique)
        self.stats.bytes_read += sum(shard.sizes[int(g)] for g in unique)
        digests, k = shard.digests, DIGEST_PREFIX
        counts = shard.offsets[unique + 1] - shard.offsets[unique]
        start_in_col = dict(zip(unique.tolist(), (np.cumsum(counts) - counts).tolist(), strict=True))
        out: list[bytes] = []
        for frame, g, r in zip(wanted.tolist(), groups.tolist(), rows.tolist(), strict=True):
            at = start_in_col[g] + r - int(shard.offsets[g])
            data = images[at].as_py()
            if digests is not None and hashlib.sha256(data).digest()[:k] != digests[r * k:(r + 1) * k]:
                raise self._damaged(shard_name, video_id, frame, "stored bytes do not match their sha256")
            out.append(data)
        return out

    def _check_video(self, video_id: str, digest: Any) -> None:
        """A whole video was read: its bytes must give the videos table's frames_sha256."""
        row = self._row(video_id)
        if digest.hexdigest() != row["frames_sha256"]:
            raise self._damaged(row["shard"], video_id, None,
                                "its frames do not match the video's frames_sha256 (a frame or the row map is "
                                "corrupt)")

    def _wanted(self, video_id: str, indices: Sequence[int] | None) -> np.ndarray:
        n = self._row(video_id)["num_frames"]
        wanted = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if wanted.size and (wanted.min() < 0 or wanted.max() >= n):
            raise AnimbenchError(f"store {self.root}: video {video_id!r} has {n} frames, asked for {wanted.tolist()}")
        return wanted

    def read_encoded(self, video_id: str, indices: Sequence[int] | None = None) -> list[bytes]:
        """Encoded image bytes of the given frames (all frames when indices is None), in the order asked,
        checked against their digests (a damaged frame is an AnimbenchError naming it)."""
        data = self._read_rows(video_id, self._wanted(video_id, indices))
        if indices is None:
            digest = hashlib.sha256()
            for b in data:
                _update_video_digest(digest, b)
            self._check_video(video_id, digest)
        return data

    def _decode(self, video_id: str, frames: Sequence[int], data: Sequence[bytes]) -> list[np.ndarray]:
        out = []
        for frame, b in zip(frames, data, strict=True):
            try:
                out.append(decode_image(b))
            except AnimbenchError:
                raise self._damaged(self._row(video_id)["shard"], video_id, int(frame),
                                    "the stored image does not decode") from None
        self.stats.frames_decoded += len(out)
        return out

    def read(self, video_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """Frames as uint8 (T, H, W, 3), in the order of `indices` (all frames when None)."""
        data = self.read_encoded(video_id, indices)
        if not data:
            info = self.info(video_id)
            return np.zeros((0, int(info["height"]), int(info["width"]), 3), np.uint8)
        frames = np.arange(len(data)) if indices is None else np.asarray(indices).reshape(-1)
        return np.stack(self._decode(video_id, frames.tolist(), data))

    def iter_frames(self, video_id: str, chunk: int = 64) -> Iterator[np.ndarray]:
        """Yield the frames of one video in order, reading `chunk` frames at a time; the video's
        frames_sha256 is checked before its last chunk is yielded."""
        n = self.num_frames(video_id)
        digest = hashlib.sha256()
        for start in range(0, n, chunk):
            wanted = np.arange(start, min(n, start + chunk))
            data = self._read_rows(video_id, wanted)
            for b in data:
                _update_video_digest(digest, b)
            if start + chunk >= n:
                self._check_video(video_id, digest)
            yield from self._decode(video_id, wanted.tolist(), data)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for vid in self.videos():
            yield vid, self.read(vid)

    def __len__(self) -> int:
        return len(self.videos_table)


def verify_store(root: str | os.PathLike) -> list[str]:
    """Re-hash every file named in the manifest; return one message per problem (empty = intact)."""
    root = Path(root)
    try:
        manifest = read_manifest(root)
    except AnimbenchError as exc:
        return [str(exc)]
    problems = []
    for shard in manifest.get("shards", []):
        path = root / FRAMES_DIR / shard["name"]
        if not path.is_file():
            problems.append(f"shard {shard['name']}: missing")
            continue
        digest = sha256_file(path)
        if digest != shard["sha256"]:
            problems.append(f"shard {shard['name']}: sha256 {digest[:12]}... != manifest {shard['sha256'][:12]}...")
            continue
        rows = pq.ParquetFile(path).metadata.num_rows
        if rows != shard["rows"]:
            problems.append(f"shard {shard['name']}: {rows} rows != manifest {shard['rows']}")
    problems += verify_tables(root, manifest)
    problems += verify_frame_tables(root, manifest)
    if not problems:
        table = pq.read_table(root / VIDEOS_FILE).to_pylist()
        poses = manifest.get("poses")
        tables = {name: manifest[name]["videos"] for name in FRAME_TABLES if manifest.get(name)}
        if content_hash(table, poses and poses["videos"], **tables) != manifest.get("content_hash"):
            problems.append("content_hash: the videos table (or the pose / mask / box digests) does not match the "
                            "manifest")
    return problems
