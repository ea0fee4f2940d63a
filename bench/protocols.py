"""The evaluation protocols: which frames a method is given, what its output is compared with, and how.

- reconstruction (FOMM `run.py --mode reconstruction`, reference §5.1): for each test video the source is
  frame 0, and every frame t, t = 0 included, drives the model with absolute keypoints; the prediction of
  frame t is compared with frame t. No cap on the number of videos (FOMM's `it > num_videos` off-by-one is
  not reproduced).
- animation (FOMM `--mode animate`): cross-identity pairs from a CSV like FOMM's taichi256.csv
  (`distance,source,driving,frame`; `distance` is unused, as in FOMM) or seeded random pairs; the source is
  frame `frame` of the source video (0 in every FOMM pairs file), the whole driving video drives it in the
  method's configured animation mode (FOMM animate_params: relative keypoints and jacobians). There is no
  ground truth, so only distribution (FID) and identity metrics apply; identity metrics compare each
  generated frame with the source frame.
- pose-transfer (Everybody Dance Now's evaluation, reference §1.12): for each test video of a store with poses
  (the trained subject's held-out frames), every frame with a pose is generated from its OWN pose by a pose-driven
  method (methods.infer_pose.store_pose_frames: the method's label map and face box of the pose, generated in frame
  order, each frame conditioned on the previous output) and compared with the real frame brought to the
  generator's resolution by the method (pose_target). Frames without a pose are not generated. There is no source
  frame (the subject lives in the trained weights): rows carry source_frame -1. Metrics that need the input
  pose get it in the prediction's pixels: the keypoints (stored-frame pixels mapped through the method's own
  letterbox and resize, measured by `target_geometry`) and the face boxes the method used.
- reenactment (latent-pose reenactment's compute_pose_identity_error.py, reference §2.12): each test video is one
  identity. Its first K frames (default 8; the official test set's `identity/` folder) are the identity images and
  its last D frames (default 32; the `driver/` folder, "a different part of the same video": disjoint from the
  identity frames, so a video needs K + D frames) are its driver frames. Every avatar is driven by every driver's D
  frames (N^2 generated items for N videos). The method gets its identity through the one method interface: a
  family that pools a set of source images (source_images "set", e.g. a latent-pose meta checkpoint) gets all K
  identity images, any other family the first one, animated in the method's configured animation mode (FOMM:
  relative keypoints), so every video-driven method ranks on one leaderboard. A checkpoint holding a fine-tuned
  identity is refused (every avatar must take its identity from its own images). Self-driving items (avatar = driver video) are
  scored against the driver frames (their ground truth): the pose reconstruction error and any ground-truth metric.
  Cross-driving items are scored against the avatar's K identity images: the identity error (metrics matching
  REENACTMENT_CROSS_METRICS), self-driving excluded as in the official script. Pairs are by video, as the official
  30-video set is (two of its videos share a person and still count as cross pairs). Set metrics (FID) do not apply.

Predictions are quantised as the official code saves them, floor(255 * pred), before any metric: the papers'
pose and identity metrics read those PNGs, and the frame store holds uint8 frames too. The quantisation is
recorded on every result row. FOMM computed its L1 on the float predictions: flooring lowers each value by
0.5/255 (about 0.002) on average, so L1 here can differ from FOMM's by up to that much.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.pose_transfer import GEOMETRY_RULE
from plumbing.errors import AnimbenchError
from prep.recipes import read_csv_rows
from prep.store import FrameStore

PROTOCOLS = ("reconstruction", "animation", "pose-transfer", "reenactment")
# which methods each protocol runs: Method.driven_by
DRIVEN_BY = {"reconstruction": "video", "animation": "video", "pose-transfer": "poses", "reenactment": "video"}
NO_SOURCE_FRAME = -1  # pose-transfer rows: the method holds the subject, no source frame is given
VARIANTS = ("legacy", "clean")
QUANTISATION = (
    "floor(255*clip(pred,0,1)) to uint8, as the official code's (255*x).astype(uint8) PNGs, for every metric except "
    "those scored on the float output (float_input: l1, as FOMM computed it)"
)
# No ground truth in animation: only distances between frame sets and identity against the source frame.
ANIMATION_METRICS = ("fid*", "aed*", "identity*")
# reenactment: metrics scored on cross-driving items against the identity images; every other paired metric is
# scored on self-driving items against the driver frames
REENACTMENT_CROSS_METRICS = ("identity_error*",)
IDENTITY_FRAMES, DRIVER_FRAMES = 8, 32  # the official test set: identity/ images, 32 driver/ frames per video
REENACTMENT_RULE = ("identity images = the first K frames of each test video; driver frames = its last D frames "
                    "(disjoint: a video needs K + D frames); every avatar driven by every driver; sources = the K "
                    "identity images for a family that pools a set, else the first identity image")
PAIR_COLUMNS = ("source", "driving")
VIDEO_SUFFIXES = (".mp4", ".png", ".gif", ".avi", ".mov", ".mkv", ".webm", ".jpg")


@dataclass(frozen=True)
class Item:
    """One generated video: a source frame animated by a driving video (its own video in reconstruction)."""

    video_id: str  # the row key: the test video (reconstruction), "pair-NNNN" (animation), "self-NNNN" /
    # "cross-NNNN" (reenactment)
    source_video: str
    source_frame: int
    driving_video: str
    identity_frames: tuple[int, ...] = ()  # reenactment: the avatar's identity images (source_video frames)
    driving_frames: tuple[int, ...] = ()  # reenactment: the driver frames of driving_video; () = every frame

    @property
    def self_driven(self) -> bool:
        """Reenactment: the avatar driven by its own video's driver frames (pose reconstruction)."""
        return self.source_video == self.driving_video


def check_protocol(protocol: str) -> str:
    """Return the protocol (one of PROTOCOLS), or raise a one-line error naming it."""
    if protocol not in PROTOCOLS:
        raise AnimbenchError(f"--protocol {protocol!r}: expected one of {list(PROTOCOLS)}")
    return protocol


def check_variant(variant: str, where: str = "--protocol-variant") -> str:
    """Return the metric variant (legacy: as the papers' scripts; clean: fixed), or raise a one-line error."""
    if variant not in VARIANTS:
        raise AnimbenchError(f"{where} {variant!r}: expected one of {list(VARIANTS)}")
    return variant


def check_driven_by(protocol: str, method: str, driven_by: str) -> None:
    """A pose-driven method runs under pose-transfer only, a video-driven one never: a one-line error naming both."""
    if DRIVEN_BY[protocol] != driven_by:
        fits = [p for p, d in DRIVEN_BY.items() if d == driven_by]
        raise AnimbenchError(f"method {method} is driven by {driven_by} and cannot run under the {protocol} "
                             f"protocol (its protocols: {fits or 'none'})")


def check_metrics(protocol: str, metrics: list[str], inputs: dict[str, tuple[str, ...]] | None = None,
                  kinds: dict[str, str] | None = None) -> None:
    """Animation has no ground truth: refuse metrics that would need one, naming them. `inputs` (metric -> the
    per-frame inputs it needs besides the frames): only pose-transfer has the input poses. `kinds` (metric ->
    paired / set): reenactment scores paired metrics only."""
    if not metrics:
        raise AnimbenchError("--metrics: give at least one metric")
    sets = sorted(m for m, kind in (kinds or {}).items() if kind == "set")
    if sets and protocol == "reenactment":
        raise AnimbenchError(f"--metrics {','.join(sets)}: the reenactment protocol scores paired metrics only "
                             f"(identity error on cross-driving, pose error on self-driving items), not frame sets")
    needy = sorted(m for m, needs in (inputs or {}).items() if needs)
    if needy and protocol != "pose-transfer":
        raise AnimbenchError(f"--metrics {','.join(needy)}: need the input poses, which only the pose-transfer "
                             f"protocol has (not {protocol})")
    if protocol == "animation":
        bad = [m for m in metrics if not any(fnmatch.fnmatch(m, p) for p in ANIMATION_METRICS)]
        if bad:
            raise AnimbenchError(f"--metrics {','.join(bad)}: the animation protocol has no ground truth; "
                                 f"use metrics matching {list(ANIMATION_METRICS)}")


def animation_inputs(store: FrameStore, item: Item, frame_size: tuple[int, int] | None) -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """(source frame (1, h, w, 3), driving frames (T, h, w, 3)) of an animation item, uint8, resized to the
    method's frame size (None: the store's) as the official loader's frame_shape does."""
    from methods.data import resize_frames  # bench's layer may import methods; keep it off module import

    source = store.read(item.source_video, [item.source_frame])
    driving = store.read(item.driving_video)
    if frame_size is not None:
        source, driving = resize_frames(source, frame_size), resize_frames(driving, frame_size)
    return source, driving


def _split_videos(store: FrameStore, split: str) -> list[str]:
    vids = sorted(store.videos(split))
    if not vids:
        raise AnimbenchError(f"store {store.root}: split {split!r} has no videos (splits: {store.splits()})")
    return vids


def reconstruction_items(store: FrameStore, split: str = "test", limit: int | None = None) -> list[Item]:
    """One item per video of the split (sorted ids): source frame 0, driven by its own frames."""
    vids = _split_videos(store, split)[:limit]
    return [Item(v, v, 0, v) for v in vids]


def pose_transfer_items(store: FrameStore, split: str = "test", limit: int | None = None) -> list[Item]:
    """One item per video of the split (sorted ids), each generated from its own poses; the store must have poses."""
    if store.pose_info is None:
        raise AnimbenchError(f"store {store.root}: has no poses, and the pose-transfer protocol generates every frame "
                             "from its pose (prep it with --poses DIR|synthetic|rtpose|dwpose)")
    vids = _split_videos(store, split)[:limit]
    return [Item(v, v, NO_SOURCE_FRAME, v) for v in vids]


def reenactment_items(store: FrameStore, split: str = "test", limit: int | None = None,
                      identity_frames: int = IDENTITY_FRAMES, driver_frames: int = DRIVER_FRAMES) -> list[Item]:
    """Every avatar (a video of the split, sorted ids, the first `limit`) driven by every driver: N^2 items, in
    avatar-major order; self-driving items are "self-NNNN", the others "cross-NNNN" (module docstring)."""
    for flag, value in (("--identity-frames", identity_frames), ("--driver-frames", driver_frames)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AnimbenchError(f"{flag} {value!r}: expected a positive integer")
    vids = _split_videos(store, split)[:limit]
    if len(vids) < 2:
        raise AnimbenchError(f"store {store.root}: split {split!r} has one video; the reenactment protocol needs "
                             "two or more (identity error is measured on cross-driving pairs)")
    need = identity_frames + driver_frames
    for v in vids:
        n = store.num_frames(v)
        if n < need:
            raise AnimbenchError(f"store {store.root}: video {v!r} has {n} frames; the reenactment protocol takes "
                                 f"{identity_frames} identity frames and {driver_frames} driver frames from "
                                 f"different parts of each video, so it needs {need} (--identity-frames, "
                                 "--driver-frames)")
    identity = tuple(range(identity_frames))
    drivers = {v: tuple(range(store.num_frames(v) - driver_frames, store.num_frames(v))) for v in vids}
    items = []
    for avatar in vids:
        for driver in vids:
            kind = "self" if avatar == driver else "cross"
            items.append(Item(f"{kind}-{len(items):04d}", avatar, identity[0], driver, identity, drivers[driver]))
    return items


def reenactment_scope(metric: str) -> str:
    """Which reenactment items a metric scores: "cross" (identity error, against the identity images) or "self"
    (every other paired metric, against the driver frames)."""
    return "cross" if any(fnmatch.fnmatch(metric, p) for p in REENACTMENT_CROSS_METRICS) else "self"


def reenactment_inputs(store: FrameStore, item: Item, frame_size: tuple[int, int] | None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(identity images (K, h, w, 3), driver frames (D, h, w, 3)) of a reenactment item, uint8, resized to the
    method's frame size (None: the store's) as animation_inputs does."""
    from methods.data import resize_frames  # bench's layer may import methods; keep it off module import

    identity = store.read(item.source_video, list(item.identity_frames))
    driving = store.read(item.driving_video, list(item.driving_frames))
    if frame_size is not None:
        identity, driving = resize_frames(identity, frame_size), resize_frames(driving, frame_size)
    return identity, driving


def _resolve(name: str, ids: set[str]) -> str | None:
    if name in ids:
        return name
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in VIDEO_SUFFIXES and stem in ids else None


def read_pairs_csv(path: str | os.PathLike, store: FrameStore, split: str = "test", *,
                   skip_missing: bool = False) -> tuple[list[Item], int]:
    """Pairs from a FOMM-style CSV (`[distance,]source,driving[,frame]`); returns (items, pairs skipped).

    Names may carry a video suffix (`abc#000261#000596.mp4` matches the store id `abc#000261#000596`).
    A pair naming a video the split lacks is an error, or is skipped with skip_missing (FOMM filters them).
    """
    path = Path(path)
    rows = read_csv_rows(path, PAIR_COLUMNS, "pairs file")
    ids = set(_split_videos(store, split))
    items, skipped = [], 0
    for line, row in enumerate(rows, start=2):
        source, driving = _resolve(row["source"], ids), _resolve(row["driving"], ids)
        if source is None or driving is None:
            if skip_missing:
                skipped += 1
                continue
            name = row["source"] if source is None else row["driving"]
            raise AnimbenchError(f"pairs file {path} line {line}: video {name!r} is not in split {split!r} of "
                                 f"store {store.root} (pass --skip-missing-pairs to drop such pairs)")
        try:
            frame = int(row.get("frame") or 0)
        except ValueError:
            raise AnimbenchError(f"pairs file {path} line {line}: field 'frame' is {row['frame']!r}, "
                                 "expected an integer") from None
        if not 0 <= frame < store.num_frames(source):
            raise AnimbenchError(f"pairs file {path} line {line}: frame {frame} is outside video {source!r} "
                                 f"({store.num_frames(source)} frames)")
        items.append(Item(f"pair-{len(items):04d}", source, frame, driving))
    if not items:
        raise AnimbenchError(f"pairs file {path}: no pair names two videos of split {split!r}")
    return items, skipped


def random_pairs(store: FrameStore, split: str = "test", num_pairs: int | None = None, seed: int = 0) -> list[Item]:
    """Seeded cross-identity pairs: each source (a shuffled cycle of the split) gets a driving video of another
    person (another video when the store has no person ids); source frame 0. Default: one pair per video."""
    vids = _split_videos(store, split)
    if len(vids) < 2:
        raise AnimbenchError(f"store {store.root}: split {split!r} has one video; animation pairs need two")
    table = store.videos_table.set_index("video_id")
    person = {v: (table.at[v, "person_id"] if isinstance(table.at[v, "person_id"], str) else v) for v in vids}
    rng = np.random.default_rng(seed)
    order = [vids[i] for i in rng.permutation(len(vids))]
    n = len(vids) if num_pairs is None else int(num_pairs)
    items = []
    for i in range(n):
        source = order[i % len(order)]
        others = [v for v in vids if person[v] != person[source]] or [v for v in vids if v != source]
        items.append(Item(f"pair-{i:04d}", source, 0, others[int(rng.integers(len(others)))]))
    return items


def describe(protocol: str, variant: str, *, pairs: str | None = None, skipped_pairs: int = 0, seed: int = 0,
             items: list[Item] | None = None) -> dict[str, Any]:
    """What the manifest records about the protocol (`items`: reenactment's, counted by kind)."""
    d: dict[str, Any] = {"name": protocol, "variant": variant, "quantisation": QUANTISATION}
    if protocol == "reenactment":
        items = items or []
        d["frames"] = REENACTMENT_RULE
        d["identity_frames"] = len(items[0].identity_frames) if items else None
        d["driver_frames"] = len(items[0].driving_frames) if items else None
        d["self_driving_items"] = sum(it.self_driven for it in items)
        d["cross_driving_items"] = sum(not it.self_driven for it in items)
        d["compared_with"] = {
            "cross": f"metrics matching {list(REENACTMENT_CROSS_METRICS)}: the avatar's identity images, on "
                     "cross-driving items only (self-driving excluded, as compute_pose_identity_error.py)",
            "self": "every other paired metric: the driver frames (ground truth), on self-driving items only"}
    elif protocol == "reconstruction":
        d["frames"] = "source = frame 0 of each video; every frame t (t = 0 included) driven, absolute keypoints"
        d["compared_with"] = "the ground-truth frame t"
    elif protocol == "pose-transfer":
        d["frames"] = ("every frame of each test video that has a pose, generated from its own pose in frame order "
                       "(methods.infer_pose.store_pose_frames: label map + face box, each frame conditioned on the "
                       "previous output); no source frame (source_frame -1)")
        d["compared_with"] = ("the real frame at the generator's resolution (the method's pose_target), rounded to "
                              "uint8; crop and pose metrics get the input keypoints in the prediction's pixels and "
                              "the method's face boxes")
        d["keypoint_mapping"] = GEOMETRY_RULE
    else:
        d["frames"] = ("source = frame `frame` of the source video; every frame of the driving video driven, in "
                       "the method's configured animation mode (recorded per method)")
        d["compared_with"] = "identity metrics: the source frame; set metrics (FID): the driving frames"
        d["pairs"] = pairs or f"seeded random cross-identity pairs (seed {seed})"
        d["pairs_skipped"] = skipped_pairs
    return d
