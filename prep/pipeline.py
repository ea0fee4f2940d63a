"""The prep pipeline on Ray: units of work -> one shard each -> a frame store.

The video2dataset contract: a recipe (the reader) lists units; workers turn each unit into one shard
through prep.store's ShardWriter and then write the unit's stats file, last, under `STORE/_work/units/`;
`finalize_store` ties the shards together. Resume = skip the units that have a stats file. Failures are
rows (video id, stage, error class, message) in those stats files, gathered into the store's failures table.
`_work/` exists only while a store is unfinished: finalizing removes it (the manifest records retries and
nodes), and `--resume` of a finished store rebuilds the stats from the store's own tables.

Workers are Ray actors, one CPU each, each holding its face detector. Every unit beats a heartbeat file while
it works; a unit whose heartbeat stops for `timeout` seconds (a decoder hang: decord can deadlock holding the
GIL) has its worker killed and becomes a failure row with error "Timeout". A worker that dies is replaced and
its unit retried. Shard names derive from unit keys only, so the frames are identical whatever the worker
count, and a crashed run that is resumed equals one that was not interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plumbing.errors import AnimbenchError
from plumbing.files import atomic_path
from plumbing.progress import progress_bar
from plumbing.ray_session import ray_session
from prep.config import PrepConfig
from prep.detect import check_detector
from prep.recipes import Unit, check_unique
from prep.stages import STAGES
from prep.store import (
    CROP_BOXES,
    FAILURES_FILE,
    FRAME_TABLES,
    FRAMES_DIR,
    MANIFEST_FILE,
    MASK_VALUES,
    MASKS,
    POSES_DIR,
    VIDEOS_FILE,
    failure_row,
    finalize_store,
    is_store_dir,
    read_manifest,
)
from prep.worker import UnitProcessor, unit_video_ids

WORK_DIR = "_work"
RUN_FILE = "run.json"
# The driver sleeps in ray.wait, which returns as soon as a unit finishes; this only paces the heartbeat checks
# and the live frame rate, so it can be long enough that the driver stays off the workers' cores.
POLL_S = 1.0


def unit_name(key: str) -> str:
    """A file-safe name for a unit, stable across runs: readable prefix plus a hash of the key."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[-48:].strip("._") or "unit"
    return f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def _atomic_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:  # no fsync: heartbeats and unit stats are rewritten often and cheap to redo
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))


class _Heartbeat:
    """The worker's progress file (pid, stage, frames), rewritten at most every half second: any new
    content tells the driver the unit is alive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stage = "start"
        self._last = -1.0

    def __call__(self, stage: str, frames: int) -> None:
        self.stage = stage
        now = time.monotonic()
        if self._last >= 0 and now - self._last < 0.5:
            return
        self._last = now
        _atomic_json(self.path, {"pid": os.getpid(), "stage": stage, "frames": frames, "t": time.time()})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class _Worker:
    """A Ray actor: processes units one at a time and writes each unit's stats file after its shard.

    It keeps its UnitProcessor (and so its loaded face detector) while the configuration stays the same.
    """

    def __init__(self) -> None:
        self.processor: UnitProcessor | None = None

    def process(self, unit: Unit, attempt: int, config: PrepConfig, root: str) -> dict[str, Any]:
        """Turn one unit into a shard plus its stats file (written last); return the stats."""
        if self.processor is None or self.processor.config != config:
            old, self.processor = self.processor, UnitProcessor(config)
            if old is not None and (old.config.detector, old.config.detector_weights) == (
                    config.detector, config.detector_weights):
                self.processor._detector = old._detector
        root_path = Path(root)
        name = unit_name(unit.key)
        beat = _Heartbeat(root_path / WORK_DIR / "progress" / f"{name}.json")
        beat("start", 0)
        try:
            result = self.processor.run(unit, root_path / FRAMES_DIR / f"{name}.parquet", beat)
        except Exception as exc:  # noqa: BLE001 - a bug on one video must not stop the others
            result = _failed_result(unit, beat.stage, exc)
        import ray

        result.update(attempts=attempt, node=ray.get_runtime_context().get_node_id(), pid=os.getpid())
        _atomic_json(root_path / WORK_DIR / "units" / f"{name}.json", result)
        beat.clear()
        return result


def _failed_result(unit: Unit, stage: str, error: BaseException | str, message: str = "") -> dict[str, Any]:
    return {"key": unit.key, "shard": None, "videos": [], "decoder": None, "frames": 0, "decoded": 0,
            "timings": {}, "failures": [failure_row(v, stage, error, message) for v in unit_video_ids(unit)]}


@dataclass
class PrepSummary:
    """What a run did: units run and skipped, videos and frames in the store, failures by reason."""

    store: str
    units: int
    run: int
    skipped: int
    videos: int
    frames: int
    failures: list[dict[str, str]]
    wall_s: float
    manifest: dict[str, Any] = field(repr=False)
    decoded: int = 0  # source frames the workers decoded (with seeking, about the stored frames plus a GOP a clip)

    def by_reason(self) -> dict[str, int]:
        """Failure counts keyed 'stage/error'."""
        return dict(sorted(Counter(f"{f['stage']}/{f['error']}" for f in self.failures).items()))


# --- Ray ----------------------------------------------------------------------------------------------------

_WARM: dict[str, list[Any]] = {}  # Ray job id -> idle workers left by earlier runs of this driver process
_ACTOR_CLS: list[Any] = []


def release_workers() -> int:
    """Stop the idle workers kept warm between runs of this process (they hold a CPU each); return how many."""
    import ray

    n = 0
    for actors in _WARM.values():
        for actor in actors:
            ray.kill(actor, no_restart=True)
            n += 1
        actors.clear()
    return n


class _Scheduler:
    """Hands units to idle workers, watches heartbeats, replaces killed or dead workers.

    keep_warm: leave the workers running for the next run in this Ray session (a session this process did
    not start, e.g. a notebook's or a test suite's), which saves their start-up time.
    """

    def __init__(self, config: PrepConfig, root: Path, workers: int, timeout: float, retries: int, bar,
                 keep_warm: bool = False) -> None:
        import ray

        self.ray = ray
        if not _ACTOR_CLS:
            _ACTOR_CLS.append(ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_Worker))
        self.config, self.root, self.timeout, self.retries, self.bar = config, root, timeout, retries, bar
        self.workers, self.keep_warm = workers, keep_warm
        self.actors: list[Any] = []
        self.frames = self.decoded = self.failed = 0
        self.t0 = time.monotonic()

    def _spawn(self):
        actor = _ACTOR_CLS[0].remote()
        self.actors.append(actor)
        return actor

    def _retire(self, actor) -> None:
        self.ray.kill(actor, no_restart=True)
        self.actors.remove(actor)

    def run(self, todo: Sequence[Unit]) -> None:
        """Process every unit of `todo`; each ends with a stats file (the worker's, or ours on a timeout)."""
        queue = deque((u, 1) for u in todo)
        n = min(self.workers, len(todo))
        warm = _WARM.setdefault(self.ray.get_runtime_context().get_job_id(), [])
        idle = [warm.pop() for _ in range(min(n, len(warm)))]
        self.actors.extend(idle)
        idle += [self._spawn() for _ in range(n - len(idle))]
        inflight: dict[Any, dict[str, Any]] = {}
        finished = False
        try:
            while queue or inflight:
                while queue and idle:
                    unit, attempt = queue.popleft()
                    actor = idle.pop()
                    ref = actor.process.remote(unit, attempt, self.config, str(self.root))
                    inflight[ref] = {"unit": unit, "actor": actor, "attempt": attempt, "beat": None, "last": None}
                ready, rest = self.ray.wait(list(inflight), num_returns=1, timeout=POLL_S)
                if ready and rest:  # collect everything else that is done too, without waiting
                    ready += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
                for ref in ready:
                    task = inflight.pop(ref)
                    self._collect(ref, task, queue, idle)
                self._watch(inflight, queue, idle)
                self._show(inflight)
            finished = True
        finally:
            if finished and self.keep_warm:
                warm.extend(self.actors)
            else:
                for actor in list(self.actors):
                    self._retire(actor)

    def _collect(self, ref, task: dict[str, Any], queue: deque, idle: list) -> None:
        from ray.exceptions import RayActorError, WorkerCrashedError

        unit = task["unit"]
        try:
            result = self.ray.get(ref)
        except (RayActorError, WorkerCrashedError) as exc:  # the worker process died under the unit
            self.actors.remove(task["actor"])
            if task["attempt"] <= self.retries:
                queue.appendleft((unit, task["attempt"] + 1))
            if queue:
                idle.append(self._spawn())
            if task["attempt"] <= self.retries:
                return
            stage = (task["beat"] or {}).get("stage", "decode")
            result = _failed_result(unit, stage, "WorkerCrashed",
                                    f"worker died {task['attempt']} time(s) on this video ({type(exc).__name__})")
            self._write_stats(unit, result)
        else:
            idle.append(task["actor"])
        self._advance(result)

    def _watch(self, inflight: dict[Any, dict[str, Any]], queue: deque, idle: list) -> None:
        now = time.monotonic()
        for ref, task in list(inflight.items()):
            path = self.root / WORK_DIR / "progress" / f"{unit_name(task['unit'].key)}.json"
            try:
                beat = json.loads(path.read_text())
            except (OSError, ValueError):
                beat = None
            if beat is not None and beat != task["beat"]:
                task["beat"], task["last"] = beat, now
            elif task["last"] is not None and now - task["last"] > self.timeout:
                inflight.pop(ref)
                self._retire(task["actor"])
                if queue:
                    idle.append(self._spawn())
                beat = task["beat"] or {}
                stage = beat.get("stage") if beat.get("stage") not in (None, "start", "write") else "decode"
                result = _failed_result(task["unit"], stage, "Timeout",
                                        f"no progress for {self.timeout:g} s (at {stage}, after "
                                        f"{beat.get('frames', 0)} frames); its worker was killed")
                self._write_stats(task["unit"], result)
                path.unlink(missing_ok=True)
                self._advance(result)

    def _write_stats(self, unit: Unit, result: dict[str, Any]) -> None:
        _atomic_json(self.root / WORK_DIR / "units" / f"{unit_name(unit.key)}.json", result)

    def _advance(self, result: dict[str, Any]) -> None:
        self.frames += int(result.get("frames", 0))
        self.decoded += int(result.get("decoded", 0))
        self.failed += bool(result.get("failures"))
        self.bar.update(1)

    def _show(self, inflight: dict[Any, dict[str, Any]]) -> None:
        """The bar's live figures across workers: units with failures, frames stored per second, and frames
        decoded per second counting what the running units decoded so far (their heartbeats), so a run of a
        few long videos moves too."""
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        running = sum(int((t["beat"] or {}).get("frames", 0)) for t in inflight.values())
        self.bar.set_postfix_str(progress_postfix(self.failed, self.frames, self.frames / elapsed,
                                                  (self.decoded + running) / elapsed))


def progress_postfix(failed: int, frames: int, stored_per_s: float, decoded_per_s: float) -> str:
    """What the bar shows beside done/total videos, their rate and the ETA: videos with failures, frames stored
    and the rates of all workers together."""
    return (f"failed {failed}, {frames} frames stored ({stored_per_s:.0f}/s), decoding {decoded_per_s:.0f} "
            "frames/s")


# --- the run ----------------------------------------------------------------------------------------------

def _check_same(root: Path, previous: dict[str, Any], record: dict[str, Any]) -> None:
    config = previous.get("config")
    if isinstance(config, dict) and "scaler" not in config:  # a store begun before --scaler: RGB + INTER_AREA
        previous = {**previous, "config": {**config, "scaler": "opencv"}}
    if previous != record:
        changed = sorted(k for k in set(previous) | set(record) if previous.get(k) != record.get(k))
        if "config" in changed and isinstance(config, dict) and isinstance(record.get("config"), dict):
            old, new = previous["config"], record["config"]
            changed[changed.index("config")] = ", ".join(
                f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k))
        raise AnimbenchError(f"--resume {root}: the store was started with different settings "
                             f"({', '.join(changed)}); use a new --out or --overwrite")


def _restore_work(root: Path, record: dict[str, Any], units: Sequence[Unit]) -> None:
    """`--resume` of a finished store (whose `_work/` was removed): check its settings, then rebuild every
    unit's stats file from the videos and failures tables, so the run goes on as any resume does."""
    import pyarrow.parquet as pq

    manifest = read_manifest(root)
    _check_same(root, {k: v for k, v in manifest.get("config", {}).items() if k != "source"}, record)
    stats = {u.key: {"key": u.key, "shard": None, "videos": [], "failures": [], "decoder": None, "frames": 0,
                     "decoded": 0, "timings": {}} for u in units}
    by_shard = {f"{unit_name(u.key)}.parquet": u.key for u in units}
    owner = {vid: u.key for u in units for vid in unit_video_ids(u)}
    pose_facts = manifest.get("poses", {})
    for video in pq.read_table(root / VIDEOS_FILE).to_pylist():
        if pose_facts:  # the per-video pose facts the next finalize needs (they live in the manifest)
            vid = video["video_id"]
            facts = pose_facts["videos"][vid]
            video["poses"] = {**facts, "body_format": pose_facts.get("body_format") if facts["rows"] else None,
                              "skipped": pose_facts.get("skipped", {}).get(vid, {})}
        for name in FRAME_TABLES:  # likewise the per-video facts of the masks and crop-boxes tables
            if manifest.get(name):
                video[name] = manifest[name]["videos"][video["video_id"]]
        key = by_shard.get(str(video["shard"]))
        if key is None:
            raise AnimbenchError(f"--resume {root}: shard {video['shard']} is no unit's; use --overwrite")
        stats[key]["videos"].append(video)
        stats[key]["shard"] = video["shard"]
    for row in pq.read_table(root / FAILURES_FILE).to_pylist():
        vid = str(row["video_id"])
        while vid not in owner and "#" in vid:  # a detected clip (`<video>#<start>#<end>`) belongs to its video
            vid = vid.rsplit("#", 1)[0]
        if vid not in owner:
            raise AnimbenchError(f"--resume {root}: failure of {row['video_id']!r} is no unit's; use --overwrite")
        stats[owner[vid]]["failures"].append(row)
    (root / WORK_DIR / "units").mkdir(parents=True, exist_ok=True)
    for unit in units:
        result = stats[unit.key]
        result["frames"] = int(sum(int(v["num_frames"]) for v in result["videos"]))
        _atomic_json(root / WORK_DIR / "units" / f"{unit_name(unit.key)}.json", result)


def plan_by_split(units: Sequence[Unit]) -> dict[str, dict[str, Any]]:
    """The clips a run set out to store, per split: count and sha256 of the sorted clip ids, and the ids themselves
    for the test split (for a metadata recipe: the official test list, so a leaderboard can say how many of the
    official test clips it scored and which are missing)."""
    by_split: dict[str, list[str]] = {}
    for unit in units:
        for clip in unit.clips:
            by_split.setdefault(str(clip.split), []).append(str(clip.video_id))
    out = {}
    for split, ids in sorted(by_split.items()):
        ids = sorted(set(ids))
        out[split] = {"num_clips": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest()}
        if split == "test":
            out[split]["clips"] = ids
    return out


def _prepare(root: Path, record: dict[str, Any], resume: bool, overwrite: bool, units: Sequence[Unit]) -> None:
    run_file = root / WORK_DIR / RUN_FILE
    if root.exists() and not root.is_dir():
        raise AnimbenchError(f"--out {root}: is a file, expected a directory (a new or empty one)")
    if root.exists() and any(root.iterdir()):
        if resume and run_file.is_file():
            _check_same(root, json.loads(run_file.read_text()), record)
        elif resume and (root / MANIFEST_FILE).is_file():
            _restore_work(root, record, units)
        elif resume:
            raise AnimbenchError(f"--resume {root}: not a prep output (no {WORK_DIR}/{RUN_FILE})")
        elif overwrite:
            if not (run_file.is_file() or is_store_dir(root)):  # never a folder of sources or anything else
                raise AnimbenchError(f"--out {root}: neither a frame store nor an unfinished prep output (no "
                                     f"{MANIFEST_FILE} of a store, no {WORK_DIR}/{RUN_FILE}), so --overwrite will not "
                                     "delete it; expected a new folder or an earlier store")
            shutil.rmtree(root)
        else:
            raise AnimbenchError(f"--out {root}: directory is not empty (pass --resume to continue it or "
                                 "--overwrite to replace it)")
    for sub in (FRAMES_DIR, f"{WORK_DIR}/units", f"{WORK_DIR}/progress"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    _atomic_json(run_file, record)  # before the manifest goes: a store always has one of the two
    (root / MANIFEST_FILE).unlink(missing_ok=True)  # the store is incomplete until this run finalizes it
    for stale in [*(root / FRAMES_DIR).glob(".*.tmp-*"), *(root / WORK_DIR / "progress").iterdir()]:
        stale.unlink(missing_ok=True)


def _read_stats(root: Path, unit: Unit) -> dict[str, Any] | None:
    path = root / WORK_DIR / "units" / f"{unit_name(unit.key)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_prep(units: Sequence[Unit], out: str | os.PathLike, config: PrepConfig, *, workers: int | None = None,
             address: str | None = None, resume: bool = False, overwrite: bool = False,
             retry_failed: bool = False, timeout: float = 300.0, retries: int = 1, progress: bool = True,
             log_every: float | None = None, source: str | None = None) -> PrepSummary:
    """Run the units on Ray and write the frame store at `out`; return a summary.

    workers: local worker processes (default: all cores) or, with `address`, actors on the cluster
    (default: its CPUs). timeout: seconds a unit may go without progress before its worker is killed.
    retries: how often a unit whose worker died is retried. retry_failed: with resume, redo units that
    recorded failures. progress: the bar on stderr; log_every: instead of it, a plain status line at most every
    that many seconds and one at the end (for logs).
    """
    began = time.perf_counter()
    if not units:
        raise AnimbenchError(f"recipe {config.recipe}: found nothing to prepare in {source or 'the inputs'}")
    check_unique(units)
    if any(u.detect for u in units) or config.crop == "latentpose":
        check_detector(config.detector, config.detector_weights)
    if config.poses is not None:
        from prep.poses.sources import check_pose_source

        check_pose_source(config.poses, units)
    if config.masks is not None:
        from prep.masks.sources import check_mask_source

        check_mask_source(config.masks, units)
    if workers is not None and workers < 1:
        raise AnimbenchError(f"--workers {workers}: expected 1 or more")
    root = Path(out)
    # what must match for --resume: the settings and the units (ids, clips), not where the inputs live
    plan = json.dumps([[u.key, u.kind, [list(vars(c).values()) for c in u.clips]] for u in units], default=str)
    settings = {k: v for k, v in config.as_dict().items()
                if k not in ("download", "download_timeout", "pose_device", "mask_device")}
    record = {"recipe": config.recipe, "config": settings, "units": len(units),
              "units_sha1": hashlib.sha1(plan.encode()).hexdigest(), "plan": plan_by_split(units)}
    _prepare(root, record, resume, overwrite, units)

    todo = []
    for unit in units:
        stats = _read_stats(root, unit) if resume else None
        if stats is None or (retry_failed and stats["failures"]):
            todo.append(unit)
    ray_start_s = 0.0
    if todo:
        import ray

        t = time.perf_counter()
        with ray_session(workers, address) as started:
            ray_start_s = time.perf_counter() - t
            n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            bar = progress_bar(len(todo), f"prep {config.recipe}", "video", enabled=progress and log_every is None,
                               log_every=log_every)
            try:
                _Scheduler(config, root, n, timeout, retries, bar, keep_warm=not started).run(todo)
            finally:
                bar.close()
    return _finalize(root, units, config, {**record, "source": source}, len(todo), began, ray_start_s)


def _finalize(root: Path, units: Sequence[Unit], config: PrepConfig, record: dict[str, Any], ran: int,
              began: float, ray_start_s: float) -> PrepSummary:
    videos, failures = [], []
    totals, nodes, retried, scaled = Counter(), Counter(), {}, Counter()
    decoded = 0
    for unit in units:
        stats = _read_stats(root, unit)
        if stats is None:
            raise AnimbenchError(f"unit {unit.key}: no stats file after the run (was the store changed meanwhile?)")
        videos.extend(stats["videos"])
        failures.extend(stats["failures"])
        totals.update({k: float(v) for k, v in stats.get("timings", {}).items()})
        decoded += int(stats.get("decoded", 0))
        scaled.update(stats.get("scaled", {}))
        if stats.get("node"):
            nodes[stats["node"]] += 1
        if stats.get("attempts", 1) > 1:
            retried[unit.key] = stats["attempts"]
    used = {str(v["shard"]) for v in videos}
    for shard in [p for d in (FRAMES_DIR, POSES_DIR, *FRAME_TABLES) for p in (root / d).glob("*.parquet")]:
        if shard.name not in used:  # left by units that now fail or by an earlier set of inputs
            shard.unlink()
    poses = None
    if config.poses is not None:
        from prep.poses.sources import source_name

        poses = {"source": source_name(config.poses)}
    masks = crop_boxes = None
    if config.masks is not None:
        from prep.masks.sources import mask_facts

        masks = {**mask_facts(config.masks), "values": MASK_VALUES}
    if config.crop == "latentpose":
        crop_boxes = {"style": "latentpose", "detector": config.detector,
                      "coordinates": "left, top, right, bottom in the pixels of the frame the detector saw (the "
                                     "source frame x the video's ratio; frames over 1152 px are downscaled)"}
    failures.sort(key=lambda f: (f["video_id"], f["stage"]))
    timings = {f"{s}_s": round(totals.get(f"{s}_s", 0.0), 3) for s in STAGES}
    wall = time.perf_counter() - began
    timings.update(ray_start_s=round(ray_start_s, 3), wall_s=round(wall, 3))
    manifest = finalize_store(root, videos, config=record, encode=config.encode,
                              row_group_size=config.row_group_size, failures=failures, timings=timings,
                              run={"nodes": dict(sorted(nodes.items())), "retried": dict(sorted(retried.items())),
                                   "scaled_frames": dict(sorted(scaled.items()))},
                              poses=poses, **{MASKS: masks, CROP_BOXES: crop_boxes})
    shutil.rmtree(root / WORK_DIR, ignore_errors=True)  # only an unfinished store needs it
    return PrepSummary(store=str(root), units=len(units), run=ran, skipped=len(units) - ran, videos=len(videos),
                       frames=int(manifest["num_frames"]), failures=failures, wall_s=round(wall, 3),
                       manifest=manifest, decoded=decoded)
