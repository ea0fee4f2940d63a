"""Reading OpenPose output folders: EDN's per-frame `<name>_{pose,face,hand_left,hand_right}.yml` (OpenCV YAML
matrices) and OpenPose's `<name>_keypoints.json`.

Several people in a frame: the official scripts concatenate everyone's points, the length check fails and the
frame is skipped. We skip it too and record why in `PoseFolder.skipped`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plumbing.errors import AnimbenchError
from prep.poses.format import BODY_FORMATS, FACE_POINTS, HAND_POINTS, PoseFrame

YML_SUFFIX, JSON_SUFFIX = "_pose.yml", "_keypoints.json"
PARTS = ("face", "hand_left", "hand_right")
_PART_POINTS = {"face": FACE_POINTS, "hand_left": HAND_POINTS, "hand_right": HAND_POINTS}
_JSON_KEYS = {"pose": "pose_keypoints_2d", "face": "face_keypoints_2d", "hand_left": "hand_left_keypoints_2d",
              "hand_right": "hand_right_keypoints_2d"}
_HEADER = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*!!opencv-(nd-)?matrix\s*$")


@dataclass
class PoseFolder:
    """A folder's poses: frame name -> pose (sorted by name) and frame name -> why it was skipped."""

    frames: dict[str, PoseFrame] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def frame_name(path: str | os.PathLike) -> str | None:
    """The frame name of a `<name>_pose.yml` or `<name>_keypoints.json` file (None for other files)."""
    base = Path(path).name
    for suffix in (YML_SUFFIX, JSON_SUFFIX):
        if base.endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return None


def read_openpose_folder(src: str | os.PathLike) -> PoseFolder:
    """Every frame of a folder of OpenPose outputs (a name with both a .yml and a .json reads the .yml, as EDN)."""
    root = Path(src)
    if not root.is_dir():
        raise AnimbenchError(f"{root}: not a folder, expected a folder of <name>_pose.yml / <name>_keypoints.json")
    files: dict[str, Path] = {}
    for path in sorted(root.iterdir(), key=lambda p: p.name.endswith(YML_SUFFIX)):  # .yml last: it wins
        name = frame_name(path)
        if name is not None and path.is_file():
            files[name] = path
    if not files:
        raise AnimbenchError(f"{root}: no <name>_pose.yml or <name>_keypoints.json files found")
    out = PoseFolder()
    for name in sorted(files):
        result = _read_frame(files[name])
        if isinstance(result, str):
            out.skipped[name] = result
        else:
            out.frames[name] = result
    return out


def read_openpose_file(path: str | os.PathLike) -> PoseFrame | None:
    """One frame from `<name>_pose.yml` (its face and hand files beside it) or `<name>_keypoints.json`; None
    when the official code would skip it (no person, several people, an unsupported body length)."""
    result = _read_frame(Path(path))
    return None if isinstance(result, str) else result


def skip_reason(path: str | os.PathLike) -> str | None:
    """Why read_openpose_file skips this frame (None when it reads a pose)."""
    result = _read_frame(Path(path))
    return result if isinstance(result, str) else None


def _read_frame(path: Path) -> PoseFrame | str:
    """The pose, or the reason the frame is skipped."""
    name = frame_name(path)
    if name is None:
        raise AnimbenchError(f"{path}: expected a file named <name>{YML_SUFFIX} or <name>{JSON_SUFFIX}")
    if path.name.endswith(YML_SUFFIX):
        body, people = _read_yml(path)
        parts = {}
        for part in PARTS:
            part_path = path.with_name(f"{name}_{part}.yml")
            parts[part] = _read_yml(part_path)[0] if part_path.is_file() else []  # absent: not detected
    else:
        body, parts, people = _read_json(path)
    reason = _body_problem(len(body), people)
    if reason:
        return reason
    where = path if path.name.endswith(JSON_SUFFIX) else None
    arrays = {}
    for part in PARTS:
        src = where or path.with_name(f"{name}_{part}.yml")
        arrays[part] = _part_array(parts[part], _PART_POINTS[part], src, part)
    return PoseFrame(np.asarray(body, np.float32).reshape(-1, 3), arrays["face"], arrays["hand_left"],
                     arrays["hand_right"])


def _body_problem(length: int, people: int) -> str | None:
    """Why a body array of `length` values is skipped, as graph_train.py's length check does (None: kept)."""
    if people == 0 or length == 0:
        return "no person detected: the official code skips the frame"
    if people > 1:
        return f"{people} people detected: the official code skips the frame"
    if length not in {3 * j for j in BODY_FORMATS.values()}:
        return (f"{length} body values ({length / 3:g} joints), not 18 (COCO), 23 (BODY_23) or 25 (BODY_25) "
                "joints: the official code skips the frame")
    return None


def _part_array(values: list[float], points: int, path: Path, part: str) -> np.ndarray:
    """Face or hand values -> (points, 3) float32; empty -> zeros (not detected)."""
    if len(values) == 0:
        return np.zeros((points, 3), np.float32)
    if len(values) != 3 * points:
        raise AnimbenchError(f"{path}: {part}: {len(values)} values, expected {3 * points} ({points} points x, y, "
                             "confidence) for one person")
    return np.asarray(values, np.float32).reshape(points, 3)


def _read_json(path: Path) -> tuple[list[float], dict[str, list[float]], int]:
    """OpenPose JSON -> (body values, part values, number of people); everyone's values concatenated."""
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnimbenchError(f"{path}: not valid JSON ({exc}); expected OpenPose's keypoints JSON") from None
    people = doc.get("people") if isinstance(doc, dict) else None
    if not isinstance(people, list):
        raise AnimbenchError(f"{path}: field 'people' missing or not a list; expected OpenPose's keypoints JSON")
    values: dict[str, list[float]] = {key: [] for key in _JSON_KEYS}
    for i, person in enumerate(people):
        for key, json_key in _JSON_KEYS.items():
            got = person.get(json_key, []) if isinstance(person, dict) else None
            if not isinstance(got, list) or not all(_is_number(v) for v in got):
                raise AnimbenchError(f"{path}: people[{i}].{json_key}: expected a list of numbers")
            values[key] += [float(v) for v in got]
    parts = {part: values[part] for part in PARTS}
    return values["pose"], parts, len(people)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_yml(path: Path) -> tuple[list[float], int]:
    """OpenCV YAML with one or more `!!opencv-nd-matrix` / `!!opencv-matrix` entries -> (all values
    concatenated, number of people = sum of each matrix's first size)."""
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise AnimbenchError(f"{path}: not a text file; expected OpenCV YAML keypoints") from None
    if not lines or not lines[0].startswith("%YAML"):
        raise AnimbenchError(f"{path}: line 1: expected the OpenCV header '%YAML:1.0'")
    values: list[float] = []
    people = 0
    i = 1
    while i < len(lines):
        match = _HEADER.match(lines[i].strip())
        if not lines[i].strip() or lines[i].startswith("---"):
            i += 1
            continue
        if not match:
            raise AnimbenchError(f"{path}: line {i + 1}: expected '<key>: !!opencv-nd-matrix', got "
                                 f"{lines[i].strip()[:60]!r}")
        key, nd = match.group(1), bool(match.group(2))
        fields, i = _matrix_fields(path, lines, i + 1)
        data_line, data = fields.get("data", (i, None))
        if data is None:
            raise AnimbenchError(f"{path}: {key}: field 'data' missing")
        if nd:
            sizes = _ints(path, fields, "sizes", key)
        else:
            sizes = [_ints(path, fields, "rows", key)[0], _ints(path, fields, "cols", key)[0]]
        channels = _channels(path, fields, key)
        numbers = [_number(path, data_line, key, token) for token in data]
        expected = math.prod(sizes) * channels
        if len(numbers) != expected:
            raise AnimbenchError(f"{path}: line {data_line}: {key}.data: {len(numbers)} values, expected "
                                 f"{expected} (sizes {sizes}, {channels} channel(s))")
        # (people, joints, 3) as EDN's files, or (people, joints) of 3-channel points as cv2 writes a 3-D array
        per_person = len(sizes) == 3 or (len(sizes) == 2 and channels == 3)
        people += sizes[0] if per_person else (1 if numbers else 0)
        values += numbers
    return values, people


def _matrix_fields(path: Path, lines: list[str], i: int) -> tuple[dict[str, tuple[int, list[str]]], int]:
    """The indented `name: value` fields of one matrix (data may span lines) -> ({name: (line, tokens)}, next)."""
    fields: dict[str, tuple[int, list[str]]] = {}
    while i < len(lines) and lines[i][:1] in (" ", "\t"):
        line = lines[i].strip()
        name, sep, rest = line.partition(":")
        if not sep:
            raise AnimbenchError(f"{path}: line {i + 1}: expected 'name: value', got {line[:60]!r}")
        start = i + 1
        rest = rest.strip()
        if rest.startswith("["):
            while "]" not in rest:
                i += 1
                if i >= len(lines):
                    raise AnimbenchError(f"{path}: line {start}: {name}: '[' is never closed")
                rest += " " + lines[i].strip()
            rest = rest[1 : rest.index("]")]
        tokens = [t.strip() for t in rest.split(",") if t.strip()]
        fields[name.strip()] = (start, tokens)
        i += 1
    return fields, i


def _channels(path: Path, fields: dict[str, tuple[int, list[str]]], key: str) -> int:
    """Channels from `dt` ("f", "d", or "3f" as cv2 writes a 3-channel matrix)."""
    line, tokens = fields.get("dt", (0, ["f"]))
    match = re.fullmatch(r"(\d*)([ucwsifd])", tokens[0].strip('"') if tokens else "")
    if not match:
        raise AnimbenchError(f"{path}: line {line}: {key}.dt: expected an OpenCV type such as f or 3f, got {tokens}")
    return int(match.group(1) or 1)


def _ints(path: Path, fields: dict[str, tuple[int, list[str]]], name: str, key: str) -> list[int]:
    line, tokens = fields.get(name, (0, []))
    try:
        sizes = [int(t) for t in tokens]
    except ValueError:
        sizes = []
    if not sizes or any(s < 0 for s in sizes):
        raise AnimbenchError(f"{path}: line {line}: {key}.{name}: expected non-negative integers, got {tokens}")
    return sizes


def _number(path: Path, line: int, key: str, token: str) -> float:
    try:
        value = float(token)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise AnimbenchError(f"{path}: line {line}: {key}.data: {token!r} is not a finite number")
    return value
