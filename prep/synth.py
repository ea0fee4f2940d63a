"""`animbench synth`: seeded synthetic videos (talking heads or tai-chi bodies) with ground-truth keypoints.

Layout of the output folder::

    OUT/videos/<video_id>.mp4      h264 (libx264, yuv420p, one thread, fixed GOP and crf): byte-reproducible
    OUT/keypoints/<video_id>.npy   float32 (num_frames, K, 2): x, y in full-frame pixels (pixel centres at
                                   integers); faces K=68 (iBUG order), bodies K=18 (OpenPose order)
    OUT/masks/<video_id>.npy       faces only: uint8 (num_frames, height, width), the foreground of each frame
                                   (255 on the person drawn: shoulders, neck, ears, face, hair; 0 on the
                                   background; antialiased like the frame)
    OUT/metadata.csv               the official vox-metadata format, one row (clip) per video
    OUT/synth.json                 written last: arguments, keypoint layout, identities, videos, file hashes

A folder without synth.json is incomplete. The same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from plumbing.errors import AnimbenchError
from plumbing.files import atomic_path, sha256_file
from plumbing.provenance import package_versions
from prep.synth_body import JOINTS, BodySubject, sample_body_look, sample_body_motion
from prep.synth_draw import background
from prep.synth_face import FaceSubject, sample_face_look, sample_face_motion

SYNTH_VERSION = 1
GENERATOR = "animbench synth"
SYNTH_JSON = "synth.json"
METADATA_CSV = "metadata.csv"
PARTIAL_MARKER = ".synth-partial"
METADATA_COLUMNS = ("video_id", "start", "end", "bbox", "fps", "width", "height", "partition", "person_id")
KINDS = {"faces": 1, "bodies": 2}
MASK_VALUES = "uint8 foreground: 255 person (shoulders, neck, ears, face, hair), 0 background, antialiased"  # the kind is part of every random stream's key
ENCODING = {"codec": "libx264", "pix_fmt": "yuv420p", "crf": 18, "preset": "fast", "gop_seconds": 2,
            "threads": 1}
CROP_INCREASE = 0.1  # the crop box grows by this fraction on each side, as the official crop scripts do
FACE_LAYOUT = {
    "name": "ibug68",
    "groups": {"jaw": [0, 17], "right_eyebrow": [17, 22], "left_eyebrow": [22, 27], "nose_bridge": [27, 31],
               "nose_lower": [31, 36], "right_eye": [36, 42], "left_eye": [42, 48], "outer_lips": [48, 60],
               "inner_lips": [60, 68]},
}
BODY_LAYOUT = {"name": "openpose18", "names": list(JOINTS)}
_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


def _stream(seed: int, kind: str, *key: int) -> np.random.Generator:
    """An independent random stream per (seed, kind, purpose, index): adding videos never changes others."""
    return np.random.default_rng([seed, KINDS[kind], *key])


def _validate(kind: str, num_videos: int, num_frames: int, identities: int | None, width: int, height: int,
              fps: float, test_fraction: float, seed: int) -> int:
    if kind not in KINDS:
        raise AnimbenchError(f"synth kind {kind!r}: expected one of {sorted(KINDS)}")
    checks = [
        (num_videos, "videos", 1), (num_frames, "frames", 2), (seed, "seed", 0),
    ]
    for value, name, low in checks:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise AnimbenchError(f"synth {name} {value!r}: expected an integer >= {low}")
    for value, name in ((width, "width"), (height, "height")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 64 or value % 2 \
                or value > 4096:
            raise AnimbenchError(f"synth {name} {value!r}: expected an even integer in 64..4096 "
                                 "(h264 yuv420p)")
    if not isinstance(fps, (int, float)) or not 1 <= fps <= 240:
        raise AnimbenchError(f"synth fps {fps!r}: expected a number in 1..240")
    if not isinstance(test_fraction, (int, float)) or not 0 <= test_fraction < 1:
        raise AnimbenchError(f"synth test fraction {test_fraction!r}: expected a number in [0, 1)")
    k = max(1, num_videos // 2) if identities is None else identities
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_videos:
        raise AnimbenchError(f"synth identities {identities!r}: expected an integer in 1..{num_videos} "
                             "(every identity needs a video)")
    return int(k)


def _held_out(held_out_videos: int, num_videos: int, num_identities: int) -> int:
    """The checked number of videos each identity holds out for test (0: split by identity)."""
    fewest = num_videos // num_identities
    if isinstance(held_out_videos, bool) or not isinstance(held_out_videos, (int, np.integer)) \
            or not 0 <= held_out_videos < max(fewest, 1):
        raise AnimbenchError(f"synth held-out videos {held_out_videos!r}: expected an integer in 0..{fewest - 1} "
                             f"(every identity keeps a training video; the fewest an identity has is {fewest})")
    return int(held_out_videos)


def video_ids(seed: int, kind: str, n: int) -> list[str]:
    """n distinct YouTube-like 11-character ids derived from the seed (never starting with '-')."""
    rng, ids = _stream(seed, kind, 0), []
    while len(ids) < n:
        vid = "".join(rng.choice(_ID_ALPHABET, 11))
        if vid[0] != "-" and vid.lower() not in {i.lower() for i in ids}:
            ids.append(vid)
    return ids


def split_identities(num_identities: int, test_fraction: float, rng: np.random.Generator) -> list[str]:
    """Partition of each identity: about test_fraction of them in 'test' (at least one when there are two
    or more and the fraction is not 0), never all."""
    n_test = 0
    if num_identities >= 2 and test_fraction > 0:
        n_test = int(np.clip(round(test_fraction * num_identities), 1, num_identities - 1))
    test = set(rng.permutation(num_identities)[:n_test].tolist())
    return ["test" if i in test else "train" for i in range(num_identities)]


def crop_box(lo: np.ndarray, hi: np.ndarray, width: int, height: int,
             increase: float = CROP_INCREASE) -> tuple[int, int, int, int]:
    """The crop of a subject whose extent is [lo, hi]: grown by `increase` per side and towards a square
    (as the official crop scripts do), clipped to the frame; integer left, top, right, bottom."""
    w, h = max(hi[0] - lo[0], 1.0), max(hi[1] - lo[1], 1.0)
    grow_w = max(increase, ((1 + 2 * increase) * h - w) / (2 * w))
    grow_h = max(increase, ((1 + 2 * increase) * w - h) / (2 * h))
    left, right = lo[0] - grow_w * w, hi[0] + grow_w * w
    top, bot = lo[1] - grow_h * h, hi[1] + grow_h * h
    return (max(0, int(np.floor(left))), max(0, int(np.floor(top))),
            min(width, int(np.ceil(right))), min(height, int(np.ceil(bot))))


def _write_bytes_atomic(path: Path, write: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def _frame_rate(fps: float) -> Fraction:
    """The rational frame rate stored in the mp4 (29.97 -> 2997/100, 30000/1001 stays exact)."""
    return Fraction(fps).limit_denominator(1001)


def _write_mp4(path: Path, frames: Iterator[np.ndarray], width: int, height: int, fps: float) -> None:
    """Encode RGB frames to a byte-reproducible h264 mp4 (no timestamps or encoder tags in the container)."""
    import av
    import cv2

    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
            stream = container.add_stream("libx264", rate=_frame_rate(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, ENCODING["pix_fmt"]
            stream.codec_context.thread_count = ENCODING["threads"]  # x264's output depends on its threads
            stream.options = {"crf": str(ENCODING["crf"]), "preset": ENCODING["preset"],
                              "g": str(max(1, round(ENCODING["gop_seconds"] * fps))), "flags": "+bitexact",
                              "x264-params": "threads=1:lookahead-threads=1"}
            for i, rgb in enumerate(frames):
                # cv2's I420 is BT.601 limited range: what decoders assume for untagged SD video
                yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
                frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                frame.pts = i
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))


def _prepare_out(out: Path) -> None:
    """Refuse folders synth did not make; otherwise mark the folder partial and clear the previous output."""
    if out.exists() and not out.is_dir():
        raise AnimbenchError(f"{out}: exists and is not a folder; choose a new or empty output folder")
    out.mkdir(parents=True, exist_ok=True)
    manifest, marker = out / SYNTH_JSON, out / PARTIAL_MARKER
    if any(out.iterdir()):
        if manifest.is_file():
            try:
                previous = json.loads(manifest.read_text())
            except (OSError, ValueError) as e:
                raise AnimbenchError(f"{manifest}: unreadable ({e}); not overwriting this folder") from e
            if not isinstance(previous, dict) or previous.get("generator") != GENERATOR:
                raise AnimbenchError(f"{manifest}: field 'generator' is not {GENERATOR!r}; not overwriting")
        elif not marker.is_file():
            raise AnimbenchError(f"{out}: not empty and not made by `animbench synth` (no {SYNTH_JSON}); "
                                 "choose a new or empty output folder")
    marker.write_text(f"`{GENERATOR}` is writing this folder; it is complete once {SYNTH_JSON} exists\n")
    manifest.unlink(missing_ok=True)  # from here on the old output no longer looks complete
    (out / METADATA_CSV).unlink(missing_ok=True)
    for sub, suffix in (("videos", ".mp4"), ("keypoints", ".npy"), ("masks", ".npy")):
        (out / sub).mkdir(exist_ok=True)
        for p in (out / sub).iterdir():
            if p.is_file() and (p.suffix == suffix or ".tmp-" in p.name):
                p.unlink()


def make_synthetic(out: str | os.PathLike, *, kind: str = "faces", num_videos: int = 8, num_frames: int = 64,
                   identities: int | None = None, width: int = 320, height: int = 240, fps: float = 25.0,
                   test_fraction: float = 0.25, seed: int = 0, held_out_videos: int = 0) -> dict[str, Any]:
    """Write a seeded synthetic video set (mp4, keypoints, vox-format metadata, synth.json); summarise it.

    held_out_videos N > 0 splits by footage instead of by identity: every identity keeps its first videos for
    train and puts its last N in test, as a subject-specific method (pose2img: one model per person, scored on
    held-out footage of that person) needs; test_fraction is then unused."""
    began = time.perf_counter()
    num_identities = _validate(kind, num_videos, num_frames, identities, width, height, fps, test_fraction,
                               seed)
    num_videos, num_frames, width, height, seed = map(int, (num_videos, num_frames, width, height, seed))
    # the fps the mp4 stores, exactly as decoders report it, so that metadata frame ranges line up
    fps, test_fraction = float(_frame_rate(fps)), float(test_fraction)
    root = Path(out)
    _prepare_out(root)
    subject_cls = FaceSubject if kind == "faces" else BodySubject
    sample_look = sample_face_look if kind == "faces" else sample_body_look
    sample_motion = sample_face_motion if kind == "faces" else sample_body_motion
    held_out = _held_out(held_out_videos, num_videos, num_identities)
    partitions = split_identities(num_identities, 0.0 if held_out else test_fraction, _stream(seed, kind, 4))
    people = [{"person_id": f"id{i + 1:05d}", "partition": partitions[i],
               "look": sample_look(_stream(seed, kind, 1, i))} for i in range(num_identities)]
    ids, rows, videos, files, backgrounds = video_ids(seed, kind, num_videos), [], [], {}, []
    fps_text = str(int(fps)) if fps.is_integer() else repr(fps)  # '25' as in the official files
    for v, vid in enumerate(ids):
        person = people[v % num_identities]  # every identity gets a video; the rest go round again
        # the person's last `held_out` videos are v + k * num_identities >= num_videos for k = 1..held_out
        partition = "test" if v + held_out * num_identities >= num_videos else person["partition"]
        motion = sample_motion(_stream(seed, kind, 2, v), width, height, num_frames / fps)
        if v < num_identities:
            backgrounds.append(background(_stream(seed, kind, 3, v), width, height))
        subject = subject_cls(person["look"], motion, width, height, fps, backgrounds[v % num_identities])
        geometries = [subject.geometry(t) for t in range(num_frames)]
        # start > 0 for most videos, so that readers must honour the metadata's frame range
        start, end = min(v % 5, num_frames - 2), num_frames
        extents = np.array([subject.extent(g) for g in geometries[start:end]])
        bbox = crop_box(extents[:, 0].min(0), extents[:, 1].max(0), width, height)
        video_rel, kp_rel = f"videos/{vid}.mp4", f"keypoints/{vid}.npy"
        _write_mp4(root / video_rel, (subject.render(g) for g in geometries), width, height, fps)
        keypoints = np.stack([g["kp"] for g in geometries]).astype(np.float32)
        _write_bytes_atomic(root / kp_rel, lambda f, a=keypoints: np.save(f, a))
        files[video_rel], files[kp_rel] = sha256_file(root / video_rel), sha256_file(root / kp_rel)
        extra = {}
        if kind == "faces":
            mask_rel = f"masks/{vid}.npy"
            masks = np.stack([subject.render_mask(g) for g in geometries])
            _write_bytes_atomic(root / mask_rel, lambda f, a=masks: np.save(f, a))
            files[mask_rel], extra["masks"] = sha256_file(root / mask_rel), mask_rel
        rows.append([vid, start, end, "-".join(map(str, bbox)), fps_text, width, height,
                     partition, person["person_id"]])
        videos.append({"video_id": vid, "person_id": person["person_id"], "partition": partition,
                       "num_frames": num_frames, "start": start, "end": end, "bbox": list(bbox),
                       "video": video_rel, "keypoints": kp_rel, **extra, "motion": motion})
    csv = "\n".join(",".join(map(str, r)) for r in [list(METADATA_COLUMNS), *rows]) + "\n"
    _write_bytes_atomic(root / METADATA_CSV, lambda f: f.write(csv.encode()))
    files[METADATA_CSV] = sha256_file(root / METADATA_CSV)
    args = {"kind": kind, "num_videos": num_videos, "num_frames": num_frames, "identities": num_identities,
            "width": width, "height": height, "fps": fps, "test_fraction": test_fraction, "seed": seed,
            "held_out_videos": held_out}
    layout = FACE_LAYOUT if kind == "faces" else BODY_LAYOUT
    manifest = {
        "generator": GENERATOR, "version": SYNTH_VERSION, "kind": kind, "arguments": args,
        "keypoints": {**layout, "shape": [num_frames, subject_cls.num_keypoints, 2], "dtype": "float32",
                      "units": "x, y in full-frame pixels; pixel centres at integers"},
        **({"masks": {"shape": [num_frames, height, width], "dtype": "uint8", "values": MASK_VALUES}}
           if kind == "faces" else {}),
        "encoding": ENCODING,
        "versions": package_versions(("av", "numpy", "opencv-python-headless")),
        "identities": people, "videos": videos, "files": files,
    }
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    _write_bytes_atomic(root / SYNTH_JSON, lambda f: f.write(text.encode()))
    (root / PARTIAL_MARKER).unlink(missing_ok=True)
    return {
        "out": str(root), "kind": kind, "videos": num_videos, "frames_per_video": num_frames,
        "identities": num_identities,
        "test_identities": [p["person_id"] for p in people if p["partition"] == "test"],
        "partitions": {p: sum(v["partition"] == p for v in videos) for p in ("train", "test")},
        "metadata": str(root / METADATA_CSV), "synth_json": str(root / SYNTH_JSON),
        "seconds": round(time.perf_counter() - began, 2),
    }


def read_synth(out: str | os.PathLike) -> dict[str, Any]:
    """The synth.json of a complete synthetic set (AnimbenchError when missing, partial or not synth's)."""
    path = Path(out) / SYNTH_JSON
    if not path.is_file():
        raise AnimbenchError(f"{path}: not found; {out} is not a complete `animbench synth` output")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise AnimbenchError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
        raise AnimbenchError(f"{path}: field 'generator' is not {GENERATOR!r}")
    if manifest.get("version") != SYNTH_VERSION:
        raise AnimbenchError(f"{path}: field 'version' is {manifest.get('version')!r}, "
                             f"expected {SYNTH_VERSION}")
    return manifest
