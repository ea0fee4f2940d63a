"""The store's optional per-frame tables beside the frames: keypoints (`poses/`), foreground masks (`masks/`) and
the latent-pose crop's face boxes (`crop_boxes/`). prep/store.py owns the store and calls these helpers; each
table is one Parquet file per frames shard (same name), one row per frame, and has a manifest section with the
hash and row count of every file and a digest per video (covered by `verify_store` and the content hash).

The masks table (`prep ... --masks synthetic|DIR|graphonomy`), one row per stored frame::

    video_id      string
    frame_index   int32     index of the stored frame
    height        int32     the stored frame's size
    width         int32
    mask          binary    height * width uint8 values, row after row (0 background .. 255 foreground; the
                            foreground probability x 255, rounded)

`np.frombuffer(t["mask"][k].as_py(), np.uint8).reshape(t["height"][k].as_py(), t["width"][k].as_py())` gives one
mask with plain pyarrow; `FrameStore.masks` gives float32 (H, W) in [0, 1], what the latent-pose family trains on.

The crop-boxes table (`prep ... --crop latentpose`), one row per stored frame::

    video_id      string
    frame_index   int32
    box           fixed_size_list<float32>[4]   the face box the crop was taken around (left, top, right,
                            bottom), in the pixels of the frame the detector saw (downscaled to 1152 px on its
                            long side when larger: `ratio` in the manifest's `crop_boxes.videos`)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from plumbing.errors import AnimbenchError
from plumbing.files import sha256_file
from prep.poses.format import FACE_POINTS, HAND_POINTS, PoseFrame, body_format_of

POSES_DIR = "poses"
POSE_COORDINATES = "store frame pixels"
POSE_OUTSIDE_RULE = ("points outside the stored frame keep their coordinates and confidence; `outside` counts "
                     "them per row (inside: -0.5 <= x < width - 0.5 and the same for y)")
MASKS = "masks"  # folder and manifest section of the masks table
CROP_BOXES = "crop_boxes"  # folder and manifest section of the latent-pose crop's boxes
FRAME_TABLES = (MASKS, CROP_BOXES)
MASK_VALUES = "uint8 foreground probability x 255 (0 background, 255 foreground), at the stored frame's size"
MASK_SCHEMA = pa.schema([("video_id", pa.string()), ("frame_index", pa.int32()), ("height", pa.int32()),
                         ("width", pa.int32()), ("mask", pa.binary())])
BOX_SCHEMA = pa.schema([("video_id", pa.string()), ("frame_index", pa.int32()), ("box", pa.list_(pa.float32(), 4))])
SCHEMAS = {MASKS: MASK_SCHEMA, CROP_BOXES: BOX_SCHEMA}


POSE_PARTS = (("body", None), ("face", FACE_POINTS), ("hand_left", HAND_POINTS), ("hand_right", HAND_POINTS))


def pose_schema(num_joints: int) -> pa.Schema:
    """The keypoints table's schema for a body of `num_joints` joints (see the module docstring)."""
    body_format_of(num_joints)
    return pa.schema([("video_id", pa.string()), ("frame_index", pa.int32())]
                     + [(name, pa.list_(pa.float32(), 3 * (n or num_joints))) for name, n in POSE_PARTS]
                     + [("outside", pa.int16())])


def count_outside(pose: PoseFrame, width: int, height: int) -> int:
    """Confident points of a pose outside a width x height frame (pixel centres at integers)."""
    pts = np.concatenate([pose.body, pose.face, pose.hand_left, pose.hand_right])
    pts = pts[pts[:, 2] > 0]
    inside = (pts[:, 0] >= -0.5) & (pts[:, 0] < width - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] < height - 0.5)
    return int((~inside).sum())


def unseen_zeroed(pose: PoseFrame) -> PoseFrame:
    """The pose with every point of confidence <= 0 set to (0, 0, 0), OpenPose's "not detected"."""
    parts = []
    for name, _ in POSE_PARTS:
        pts = getattr(pose, name).copy()
        pts[~(pts[:, 2] > 0)] = 0
        parts.append(pts)
    return PoseFrame(*parts)


def pose_digest(columns: Mapping[str, np.ndarray]) -> str:
    """sha256 of one video's pose rows (frame order): frame_index int32, the four parts float32, outside int16,
    little-endian, column after column: independent of how the rows are sharded or encoded."""
    h = hashlib.sha256()
    for name, dtype in (("frame_index", "<i4"), *((n, "<f4") for n, _ in POSE_PARTS), ("outside", "<i2")):
        h.update(np.ascontiguousarray(columns[name], dtype=dtype).tobytes())
    return h.hexdigest()


def pose_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """A pose table's columns as arrays: frame_index (n,), parts (n, P, 3), outside (n,)."""
    n = table.num_rows
    out = {"frame_index": table.column("frame_index").to_numpy(), "outside": table.column("outside").to_numpy()}
    for name, _ in POSE_PARTS:
        flat = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        out[name] = flat.astype(np.float32).reshape(n, -1, 3)
    return out


def table_shards(root: Path, folder: str, used: Sequence[str], videos: Mapping[str, Mapping[str, Any]],
                 what: str) -> tuple[list[dict[str, Any]], int]:
    """The hash, rows and bytes of every file of a side table in `folder`, and its total row count; an error when
    the files hold other than the rows the videos recorded (a file missing or stale)."""
    shards = []
    for shard in used:
        path = root / folder / shard
        if path.is_file():
            shards.append({"name": shard, "sha256": sha256_file(path),
                           "rows": pq.ParquetFile(path).metadata.num_rows, "bytes": path.stat().st_size})
    total = sum(int(v["rows"]) for v in videos.values())
    if sum(s["rows"] for s in shards) != total:
        raise AnimbenchError(f"store {root}: the {what} files hold {sum(s['rows'] for s in shards)} rows, the "
                             f"videos {total}; a {what} file is missing or stale")
    return shards, total


def pose_section(root: Path, rows: Sequence[dict[str, Any]], used: Sequence[str], poses: Mapping[str, Any]
                  ) -> dict[str, Any]:
    """The manifest's `poses` section: format, source, coordinates, per-video digests and skipped frames, and
    the hash of every pose file."""
    videos = {r["video_id"]: r.get("poses") or {"rows": 0, "sha256": pose_digest(EMPTY_POSES), "body_format":
                                                 None, "outside": 0, "skipped": {}} for r in rows}
    formats = sorted({v["body_format"] for v in videos.values() if v["body_format"]})
    if len(formats) > 1:
        raise AnimbenchError(f"store {root}: poses mix body formats {', '.join(formats)}; one store holds one "
                             "(convert BODY_25 with map_25_to_23, or prep the videos into separate stores)")
    shards, total = table_shards(root, POSES_DIR, used, videos, "pose")
    return {
        **dict(poses), "body_format": formats[0] if formats else None, "coordinates": POSE_COORDINATES,
        "outside": POSE_OUTSIDE_RULE, "num_frames": total,
        "outside_points": sum(int(v["outside"]) for v in videos.values()),
        "num_skipped": sum(len(v["skipped"]) for v in videos.values()),
        "skipped": {vid: v["skipped"] for vid, v in sorted(videos.items()) if v["skipped"]},
        "videos": {vid: {"rows": int(v["rows"]), "sha256": v["sha256"], "outside": int(v["outside"])}
                   for vid, v in sorted(videos.items())},
        "shards": shards,
    }


EMPTY_POSES = {"frame_index": np.zeros(0, np.int32), "outside": np.zeros(0, np.int16),
                **{name: np.zeros((0, 0, 3), np.float32) for name, _ in POSE_PARTS}}



# --- per-frame tables: masks and crop boxes ---------------------------------------------------------------

def frame_digest(indices: Sequence[int], payloads: Sequence[bytes]) -> str:
    """sha256 of one video's rows of a per-frame table, in frame order: each row's frame_index (int32 LE), its
    payload's length (8 bytes LE) and the payload; independent of sharding and Parquet encoding."""
    h = hashlib.sha256()
    for i, data in zip(indices, payloads, strict=True):
        h.update(int(i).to_bytes(4, "little", signed=True))
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def mask_payload(mask: np.ndarray) -> bytes:
    """The digest payload of one mask: height and width (int32 LE) then its bytes."""
    h, w = mask.shape
    return int(h).to_bytes(4, "little") + int(w).to_bytes(4, "little") + mask.tobytes()


def box_payload(box: Sequence[float]) -> bytes:
    """The digest payload of one box: four float32 LE."""
    return np.asarray(box, "<f4").reshape(4).tobytes()


def check_masks(video_id: str, masks: Sequence[np.ndarray], num_frames: int, height: int, width: int
                ) -> list[np.ndarray]:
    """One uint8 (height, width) mask per stored frame, or a one-line AnimbenchError saying what differs."""
    if len(masks) != num_frames:
        raise AnimbenchError(f"masks of video {video_id!r}: {len(masks)} masks for its {num_frames} frames "
                             "(one per stored frame)")
    out = []
    for k, mask in enumerate(masks):
        mask = np.asarray(mask)
        if mask.dtype != np.uint8 or mask.shape != (height, width):
            raise AnimbenchError(f"masks of video {video_id!r} frame {k}: {mask.dtype} {mask.shape}, expected uint8 "
                                 f"({height}, {width}), the stored frame's size")
        out.append(np.ascontiguousarray(mask))
    return out


def frame_table(name: str, video_id: str, items: Sequence[Any]) -> tuple[dict[str, Any], str]:
    """The Parquet columns of one video's rows of table `name` (item k belongs to stored frame k) and the
    video's digest."""
    n = len(items)
    idx = list(range(n))
    if name == MASKS:
        payloads = [mask_payload(m) for m in items]
        columns = {"video_id": [video_id] * n, "frame_index": idx, "height": [int(m.shape[0]) for m in items],
                   "width": [int(m.shape[1]) for m in items], "mask": [m.tobytes() for m in items]}
    else:
        payloads = [box_payload(b) for b in items]
        columns = {"video_id": [video_id] * n, "frame_index": idx,
                   "box": [[float(v) for v in np.asarray(b, np.float32)] for b in items]}
    return columns, frame_digest(idx, payloads)


def write_frame_table(name: str, parts: Sequence[Mapping[str, list]], path: Path, write) -> None:
    """Concatenate the videos' columns of table `name` into one Parquet file (`write(table, path)` is atomic)."""
    if not parts:
        return
    columns = {k: [v for p in parts for v in p[k]] for k in SCHEMAS[name].names}
    path.parent.mkdir(parents=True, exist_ok=True)
    # raw mask bytes compress well with zstd (large flat regions); boxes are small either way
    write(pa.table(columns, schema=SCHEMAS[name]), path, compression="zstd", use_dictionary=["video_id"])


def read_frame_table(path: Path, name: str, video_id: str) -> tuple[list[int], list[Any], str]:
    """One video's rows of table `name` in frame order: frame indices, items (uint8 masks or float32 boxes) and
    their recomputed digest. Raises OSError / ArrowException / ValueError on unreadable data."""
    table = pq.read_table(path, filters=[("video_id", "==", video_id)]).sort_by("frame_index")
    idx = [int(i) for i in table.column("frame_index").to_pylist()]
    if name == MASKS:
        items = [np.frombuffer(data, np.uint8).reshape(h, w) for data, h, w in zip(
            table.column("mask").to_pylist(), table.column("height").to_pylist(), table.column("width").to_pylist(),
            strict=True)]
        payloads = [mask_payload(m) for m in items]
    else:
        items = [np.asarray(b, np.float32) for b in table.column("box").to_pylist()]
        payloads = [box_payload(b) for b in items]
    return idx, items, frame_digest(idx, payloads)


def frame_table_section(root: Path, name: str, rows: Sequence[dict[str, Any]], used: Sequence[str],
                        facts: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest section of table `name`: the given facts (source, backend, ...), each video's rows and
    digest (plus the facts its writer recorded), and the hash of every file."""
    empty = {"rows": 0, "sha256": frame_digest([], [])}
    videos = {r["video_id"]: dict(r.get(name) or empty) for r in rows}
    shards, total = table_shards(root, name, used, videos, name)
    return {**dict(facts), "num_frames": total, "videos": dict(sorted(videos.items())), "shards": shards}


def verify_frame_tables(root: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Re-hash the files of every per-frame table the manifest lists (poses, masks, crop boxes)."""
    problems = []
    for name in (POSES_DIR, *FRAME_TABLES):
        for shard in (manifest.get(name) or {}).get("shards", []):
            path = root / name / shard["name"]
            if not path.is_file():
                problems.append(f"{name} {shard['name']}: missing")
            elif sha256_file(path) != shard["sha256"]:
                problems.append(f"{name} {shard['name']}: sha256 differs from the manifest")
            elif pq.ParquetFile(path).metadata.num_rows != shard["rows"]:
                problems.append(f"{name} {shard['name']}: row count differs from the manifest")
    return problems
