"""Run registered methods over a frame store under a protocol, score every frame, write a results directory.

The unit of work is (method, chunk of videos): each runs in a Ray task (one GPU per task when the cluster
has GPUs, one CPU otherwise) or, when workers=1 is asked for, in this process. A task loads its method once per worker
process, generates each video through methods.infer (the one generation path), quantises the predictions with
methods.infer.quantise as the official code did, scores them with the metric registry and returns per-frame rows;
the driver hands them to bench.results, which assembles and writes them. Ray is started through
plumbing.ray_session, as prep starts it. The run's settings travel as one object (BenchSettings).

Determinism: every video is generated under a seed derived from (seed, method, video), torch runs with
deterministic algorithms on GPU (CPU inference kernels are deterministic as they are), and rows are sorted, so
the same bench on CPU gives identical tables however its videos were split across workers.

Reenactment (latent-pose reenactment's protocol) drives every test video's identity by the driver frames of every
test video through the method interface (a "set" family's animate_sources over the K identity images, any other
family's animate on the first one, as methods.infer.animate_video); per item, each metric scores
either the self-driving items against the driver frames or the cross-driving items against the identity images
(protocols.reenactment_scope), so one method interface serves FOMM and latent-pose alike.

Pose-driven methods (Method.driven_by == "poses") run under the pose-transfer protocol only, and video-driven ones
never (protocols.check_driven_by, before any output): each posed frame is generated from its own pose through
methods.infer_pose.store_pose_frames (bench.pose_transfer), and metrics that ask for per-frame inputs (the input
keypoints, the face boxes) get them.

One model, one number: reconstruction goes through methods.infer.reconstruction_batches, the function
`animbench reconstruct` uses, at the method's config frame shape (the store resized to it when they differ, as
the official loader's frame_shape; recorded per method as `evaluation` in the manifest), so both commands give the
same L1. A bench that fails (a corrupt store, a truncated checkpoint, Ctrl-C) removes its results folder, so the
same command runs again.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import protocols
from bench import results as R
from bench.metrics.registry import FrameScores, get_metric, metric_spec
from plumbing.errors import AnimbenchError
from plumbing.ids import check_id
from plumbing.progress import progress_bar
from plumbing.provenance import package_versions
from plumbing.ray_session import ray_session
from plumbing.weights import locate
from prep.store import FrameStore

RESERVED_LABELS = ("_source", "_driving")
POSE_TARGET_RULE = ("pose-transfer: each stored frame brought to the generator's resolution by the method's "
                    "pose_target (EDN: letterboxed into the canvas, resized to the label size, then to the "
                    "generator's), prediction and target alike")


@dataclass(frozen=True)
class MethodSpec:
    """A method to bench: registry name, optional checkpoint and config, and the label its rows carry."""

    name: str
    checkpoint: str | None = None
    config: str | None = None
    label: str | None = None

    @property
    def key(self) -> str:
        """The label used in results (defaults to the registry name)."""
        return self.label or self.name


def parse_method_spec(text: str) -> MethodSpec:
    """Parse `[LABEL:]NAME[=CHECKPOINT][@CONFIG]`, e.g. `NAME=vox-cpk.pth.tar@vox-256.yaml`, `copy-source`."""
    spec = text.strip()
    label = None
    head = spec.split("=", 1)[0].split("@", 1)[0]
    if ":" in head:
        label, spec = spec.split(":", 1)
    rest, _, config = spec.partition("@")
    name, _, checkpoint = rest.partition("=")
    if not name or (label is not None and not label):
        raise AnimbenchError(f"method spec {text!r}: expected [LABEL:]NAME[=CHECKPOINT][@CONFIG]")
    return MethodSpec(name.strip(), checkpoint.strip() or None, config.strip() or None,
                      label.strip() if label else None)


def _check_methods(methods: Sequence[MethodSpec], protocol: str | None = None) -> None:
    """Names, labels, checkpoints and (given the protocol) what drives each method, from the method cards: before
    any model is built and before Ray starts."""
    if not methods:
        raise AnimbenchError("--methods: give at least one method")
    from methods.registry import get_method

    seen = set()
    for m in methods:
        card = get_method(m.name)  # an unknown name fails here, before any work
        if m.key in seen:
            raise AnimbenchError(f"--methods: {m.key!r} appears twice; give one a label (LABEL:{m.name}=...)")
        if m.key.startswith("_"):
            raise AnimbenchError(f"--methods: label {m.key!r} must not start with '_' (reserved for inputs)")
        check_id(m.key, field="label", where="--methods")  # it names a samples folder
        seen.add(m.key)
        if protocol is not None:
            protocols.check_driven_by(protocol, m.key, card.driven_by)
        if m.checkpoint is not None:
            _check_checkpoint(m, card)


def _check_checkpoint(m: MethodSpec, card: Any) -> None:
    """A checkpoint file, or a folder for a family that reads folders (its own `read_checkpoint`, e.g. official
    per-network files, which a training run folder also holds); any other folder names the file to pass."""
    from methods.interface import Method

    path = Path(m.checkpoint)
    if path.is_file():
        return
    if not path.is_dir():
        raise AnimbenchError(f"method {m.key}: checkpoint {m.checkpoint} does not exist")
    owner = getattr(card.build, "__self__", None)
    if isinstance(owner, type) and owner.read_checkpoint is not Method.read_checkpoint:
        return  # the family reads the folder (a missing file is its one-line error)
    from methods.train import LAST_CHECKPOINT, find_last_checkpoint

    last = find_last_checkpoint(path)
    hint = f"e.g. {last}" if last is not None else f"e.g. {path / LAST_CHECKPOINT} of a training run"
    raise AnimbenchError(f"method {m.key}: checkpoint {m.checkpoint} is a folder; method {m.name} loads a "
                         f"checkpoint file ({hint})")


@dataclass(frozen=True)
class BenchSettings:
    """What a bench run is asked for, besides its methods and store: one picklable object that the driver, every
    task and the results assembly read (run_bench's keywords, with the device and workers resolved)."""

    protocol: str
    metrics: tuple[str, ...]
    out: str
    split: str = "test"
    variant: str = "legacy"  # legacy / clean metric variant; not to be confused with the protocol
    device: str = "cpu"
    workers: int = 1
    in_process: bool = True  # workers=1 asked for explicitly: run here, not in Ray
    seed: int = 0
    limit_videos: int | None = None
    pairs: str | None = None
    num_pairs: int | None = None
    skip_missing_pairs: bool = False
    identity_frames: int | None = None  # reenactment only: K (None: protocols.IDENTITY_FRAMES)
    driver_frames: int | None = None  # reenactment only: D (None: protocols.DRIVER_FRAMES)
    sample_videos: int = 4
    sample_frames: int = 4
    batch_size: int = 16
    n_boot: int = R.DEFAULT_BOOT
    overwrite: bool = False
    address: str | None = None
    progress: bool = True


@dataclass
class Task:
    """One unit of work: a method over a chunk of items (everything a worker needs, picklable)."""

    method: MethodSpec
    store: str
    items: list[protocols.Item]
    settings: BenchSettings
    sample_videos: list[str] = field(default_factory=list)
    write_inputs: bool = False
    threads: int | None = None
    frame_size: tuple[int, int] | None = None  # the method's config frame shape; None: the store's size


# ------------------------------------------------------------------------------------------- worker side
_MODELS: dict[tuple, tuple[Any, dict]] = {}
_METRICS: dict[tuple, Any] = {}


def _deterministic(seed: int, device: str, threads: int | None) -> None:
    import torch

    if device.startswith("cuda"):
        # CPU inference kernels are deterministic for a fixed thread count; on GPU, cuBLAS needs a fixed
        # workspace and atomics-based kernels must be swapped out. (Only here: the switch costs seconds of
        # imports per worker process.)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)


def _accepts(target: Any, option: str) -> bool:
    fn = target.__init__ if inspect.isclass(target) else target
    return option in inspect.signature(fn).parameters


def build_metric(name: str, device: str, variant: str) -> tuple[Any, bool]:
    """A metric object with the device and legacy/clean variant passed where the metric takes them; returns
    (metric, whether the variant applies to it)."""
    spec = metric_spec(name)
    options: dict[str, Any] = {}
    if _accepts(spec.target, "device"):
        options["device"] = device
    takes_variant = _accepts(spec.target, "variant")
    if takes_variant:
        options["variant"] = variant
    key = (name, tuple(sorted(options.items())))
    if key not in _METRICS:
        _METRICS[key] = get_metric(name, **options)
    return _METRICS[key], takes_variant


def _load(method: MethodSpec, device: str) -> tuple[Any, dict]:
    from methods.registry import load_model  # methods never import bench; the runner imports methods lazily

    key = (method.name, method.checkpoint, method.config, device)
    if key not in _MODELS:
        _MODELS[key] = load_model(method.name, checkpoint=method.checkpoint, config=method.config, device=device)
    return _MODELS[key]


@dataclass
class Predicted:
    """One generated item: frame indices, reference uint8 (T, h, w, 3), float32 predictions (T, h, w, 3) in [0, 1],
    the per-frame inputs metrics may ask for (pose-transfer only) and the identity images (reenactment only)."""

    indices: list[int]
    reference: np.ndarray
    prediction: np.ndarray
    inputs: dict[str, Any] = field(default_factory=dict)
    identity: np.ndarray | None = None


def _predict(model: Any, task: Task, store: FrameStore, item: protocols.Item) -> Predicted:
    """One item generated by methods.infer (the path `animbench reconstruct` / `animate` take) at the method's
    frame size: reconstruction compares with the ground-truth frames, animation with the source frame,
    pose-transfer with the real frames at the generator's resolution, reenactment with the driver frames (self)
    or the identity images (cross)."""
    from methods.infer import animate_video, reconstruction_batches

    s = task.settings
    if s.protocol == "pose-transfer":
        from bench.pose_transfer import generate_video

        video = generate_video(model, store, item.driving_video)
        return Predicted(video.indices, video.target, video.prediction, video.inputs)
    if s.protocol == "reconstruction":
        batches = list(reconstruction_batches(model, store, item.driving_video, frame_size=task.frame_size,
                                              batch_size=s.batch_size, device=s.device))
        gt, pred = np.concatenate([gt for gt, _ in batches]), np.concatenate([pred for _, pred in batches])
        return Predicted(list(range(len(pred))), gt, pred)
    if s.protocol == "reenactment":
        return _reenact(model, task, store, item)
    source, driving = protocols.animation_inputs(store, item, task.frame_size)
    # the config's animation mode, as `animbench animate` without --relative / --absolute
    pred = np.clip(animate_video(model, source[0], driving, device=s.device), 0.0, 1.0).astype(np.float32)
    return Predicted(list(range(len(pred))), np.repeat(source, len(pred), 0), pred)


def _reenact(model: Any, task: Task, store: FrameStore, item: protocols.Item) -> Predicted:
    """One reenactment item through the method interface: a "set" family pools its identity over all K identity
    images (animate_sources, the whole driver clip in one call), any other family animates the first one
    (methods.infer.animate_video); the config's animation mode either way. A family cut to face crops
    (input_crop) takes the stored frames as crops at their own size, as `animbench animate --no-crop`."""
    import torch

    from methods.infer import animate_video

    size = None if getattr(model, "input_crop", None) is not None else task.frame_size
    identity, driving = protocols.reenactment_inputs(store, item, size)
    if getattr(model, "source_images", "one") == "set":
        def tensor(frames: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0).to(task.settings.device)

        with torch.no_grad():
            out = model.animate_sources(tensor(identity), tensor(driving), model.animation_mode())
        pred = out.permute(0, 2, 3, 1).cpu().numpy()
    else:
        pred = animate_video(model, identity[0], driving, device=task.settings.device)
    return Predicted(list(item.driving_frames), driving, np.clip(pred, 0.0, 1.0).astype(np.float32),
                     identity=identity)


def reenactment_sources(model: Any, method: str) -> str:
    """What a method is given under the reenactment protocol (recorded per method); a checkpoint that holds its
    own fine-tuned identity is refused: every avatar must take its identity from its own images."""
    if getattr(model, "holds_identity", lambda: False)():
        raise AnimbenchError(f"method {method}: its checkpoint holds a fine-tuned identity, but the reenactment "
                             "protocol gives every avatar its identity through its identity images (bench a "
                             "checkpoint that takes source images, e.g. a meta-learned one)")
    if getattr(model, "source_images", "one") == "set":
        return "the K identity images, pooled by the method (animate_sources)"
    return "the first identity image (the method takes one source image)"


def _save_samples(task: Task, store: FrameStore, item: protocols.Item, pred: np.ndarray,
                  indices: list[int]) -> None:
    # every path through R.sample_path (plumbing.ids.safe_join): a store's video id cannot lead outside --out
    out = task.settings.out
    picks = R.sample_indices(len(pred), task.settings.sample_frames)
    frames = [indices[i] for i in picks]  # stored frame indices (pose-transfer skips frames without a pose)
    for i, t in zip(picks, frames, strict=True):
        R.write_sample(out, task.method.key, item.video_id, t, pred[i])
    if task.write_inputs:  # the inputs as stored, whatever size each method ran at
        for t, frame in zip(frames, store.read(item.driving_video, frames), strict=True):
            R.write_sample(out, "_driving", item.video_id, t, frame)
        if item.source_frame != protocols.NO_SOURCE_FRAME:
            R.write_sample(out, "_source", item.video_id, item.source_frame,
                           store.read(item.source_video, [item.source_frame])[0])


def run_task(task: Task, on_item: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Generate and score one chunk; return its per-frame rows and what provenance it saw.

    `on_item(1)` is called after each item (the in-process progress bar)."""
    t0 = time.perf_counter()
    s = task.settings
    _deterministic(s.seed, s.device, task.threads)
    import torch

    from bench.metrics import fid
    from methods.infer import quantise

    store = FrameStore(task.store)
    model, model_prov = _load(task.method, s.device)
    protocols.check_driven_by(s.protocol, task.method.key, getattr(model, "driven_by", "video"))
    if s.protocol in ("animation", "reenactment"):
        from methods.infer import animation_settings

        model_prov = {**model_prov, "animation": animation_settings(model, None, None)}
    if s.protocol == "reenactment":
        model_prov["sources"] = reenactment_sources(model, task.method.key)
    metrics = {m: build_metric(m, s.device, s.variant) for m in s.metrics}
    versions = package_versions()
    cols: dict[str, list] = {c: [] for c in ("video_id", "frame_index", "source_video", "source_frame",
                                             "driving_video", "metric", "value", "skipped")}
    features: dict[str, dict[str, list]] = {}
    frames_done, generate_seconds = 0, 0.0
    for item in task.items:
        torch.manual_seed(s.seed ^ zlib.crc32(f"{task.method.key}/{item.video_id}".encode()))
        t_gen = time.perf_counter()
        out = _predict(model, task, store, item)  # returns host arrays: GPU work has finished when it returns
        generate_seconds += time.perf_counter() - t_gen
        reference, pred_float = out.reference, out.prediction
        pred = quantise(pred_float)  # as the official code saved frames
        for name, (metric, _) in metrics.items():
            if not len(pred):  # a video without a single posed frame: nothing to score
                break
            if metric_spec(name).kind == "set":
                feats = features.setdefault(name, {"pred": [], "real": []})
                feats["pred"].append(metric.features(pred))
                if task.write_inputs:  # the real set: the driving frames as stored, the same for every method
                    feats["real"].append(metric.features(store.read(item.driving_video)))
                continue
            # FOMM's L1 scored the float output; pose / identity scripts read the quantised frames
            spec = metric_spec(name)
            against = reference
            if s.protocol == "reenactment":  # identity error on cross-driving, the rest on self-driving items
                scope = protocols.reenactment_scope(name)
                if (scope == "self") != item.self_driven:
                    continue
                against = out.identity if scope == "cross" else reference
            scores: FrameScores = metric(pred_float if spec.float_input else pred, against,
                                         **{k: out.inputs[k] for k in spec.inputs})
            n = scores.n_frames
            if n != len(pred):
                raise AnimbenchError(f"metric {name}: returned {n} values for {len(pred)} frames of {item.video_id}")
            cols["video_id"] += [item.video_id] * n
            cols["frame_index"] += out.indices
            cols["source_video"] += [item.source_video] * n
            cols["source_frame"] += [item.source_frame] * n
            cols["driving_video"] += [item.driving_video] * n
            cols["metric"] += [name] * n
            cols["value"] += scores.values.tolist()
            cols["skipped"] += scores.skipped.tolist()
        if item.video_id in task.sample_videos and len(pred):
            _save_samples(task, store, item, pred, out.indices)
        frames_done += len(pred)
        if on_item is not None:
            on_item(1)
    moments = {name: {side: fid.moments(f[side]) for side in ("pred", "real") if f[side]}
               for name, f in features.items()}
    return {
        "rows": pd.DataFrame(cols), "moments": moments, "versions": versions,
        "metrics": {name: {**_metric_columns(metric), "variant_applies": applies}
                    for name, (metric, applies) in metrics.items()},
        "model_provenance": model_prov, "frames": frames_done, "seconds": time.perf_counter() - t0,
        "generate_seconds": generate_seconds,
    }


def _metric_columns(metric: Any) -> dict[str, Any]:
    d = metric.describe()
    weights = [w.get("sha256", "") for w in d.get("weights", [])]
    return {"metric_backend": str(d.get("backend", "")), "metric_weights_sha256": "+".join(weights) or "none",
            "describe": d}


# ------------------------------------------------------------------------------------------- driver side
def _execute(tasks: list[Task], s: BenchSettings) -> list[dict[str, Any]]:
    total = sum(len(t.items) for t in tasks)  # (method, video) pairs: the bar counts generated videos
    with progress_bar(total, "bench", "video", enabled=s.progress) as bar:
        if s.in_process:
            return [run_task(t, on_item=bar.update) for t in tasks]
        return _execute_ray(tasks, s, bar)


def _execute_ray(tasks: list[Task], s: BenchSettings, bar: Any) -> list[dict]:
    import ray

    with ray_session(s.workers, s.address):
        gpus = ray.cluster_resources().get("GPU", 0) if s.device.startswith("cuda") else 0
        remote = ray.remote(run_task).options(num_cpus=1, num_gpus=1 if gpus else 0, max_retries=0)
        refs = [remote.remote(t) for t in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        done: list[Any] = [None] * len(refs)
        pending = list(refs)
        try:
            while pending:  # collect as tasks finish, so the bar moves and the first failure stops the rest
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    done[index[ref]] = ray.get(ref)
                    bar.update(len(tasks[index[ref]].items))
            return done
        except BaseException as exc:
            for ref in pending:  # no task of a failed run may go on writing samples into --out
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001  # already finished or gone: nothing to stop
                    pass
            cause = getattr(exc, "cause", None)
            if isinstance(cause, AnimbenchError):  # a user error inside a task: one line, as in-process
                raise AnimbenchError(str(cause)) from None
            raise


def run_bench(methods: Sequence[MethodSpec], store: str | os.PathLike, protocol: str, metrics: Sequence[str],
              out: str | os.PathLike, *, split: str = "test", device: str | None = None, workers: int | None = None,
              seed: int = 0, limit_videos: int | None = None, variant: str = "legacy", pairs: str | None = None,
              num_pairs: int | None = None, skip_missing_pairs: bool = False, identity_frames: int | None = None,
              driver_frames: int | None = None, sample_videos: int = 4,
              sample_frames: int = 4, batch_size: int = 16, n_boot: int = R.DEFAULT_BOOT,
              overwrite: bool = False, address: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Bench methods over a store's split under a protocol; write `out` (see bench.results); return its manifest.

    `identity_frames` / `driver_frames`: the reenactment protocol's K and D (defaults 8 and 32).
    `address` joins an existing Ray cluster (the store and `out` must be on a filesystem every node sees).
    `progress` shows a bar with an ETA on stderr. A run that fails leaves no results folder behind."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    in_process = workers == 1  # an explicit single worker runs here (tests, debugging); the default is Ray
    if workers is None:
        workers = max(1, torch.cuda.device_count()) if device.startswith("cuda") else max(1, os.cpu_count() or 1)
    settings = BenchSettings(
        protocol=protocol, metrics=tuple(metrics), out=str(out), split=split, variant=variant, device=device,
        workers=workers, in_process=in_process, seed=seed, limit_videos=limit_videos, pairs=pairs,
        num_pairs=num_pairs, skip_missing_pairs=skip_missing_pairs, identity_frames=identity_frames,
        driver_frames=driver_frames, sample_videos=sample_videos,
        sample_frames=sample_frames, batch_size=batch_size, n_boot=n_boot, overwrite=overwrite, address=address,
        progress=progress)
    return bench(methods, store, settings)


def _items(fs: FrameStore, s: BenchSettings) -> tuple[list[protocols.Item], int]:
    """The protocol's items over the store's split, and how many pairs of a pairs file were skipped."""
    if s.protocol == "reconstruction":
        return protocols.reconstruction_items(fs, s.split, s.limit_videos), 0
    if s.protocol == "pose-transfer":
        return protocols.pose_transfer_items(fs, s.split, s.limit_videos), 0
    if s.protocol == "reenactment":  # --limit-videos counts identities: N of them make N^2 items
        return protocols.reenactment_items(
            fs, s.split, s.limit_videos, protocols.IDENTITY_FRAMES if s.identity_frames is None else s.identity_frames,
            protocols.DRIVER_FRAMES if s.driver_frames is None else s.driver_frames), 0
    if s.pairs:
        items, skipped = protocols.read_pairs_csv(s.pairs, fs, s.split, skip_missing=s.skip_missing_pairs)
        return items[:s.limit_videos], skipped
    return protocols.random_pairs(fs, s.split, s.num_pairs, s.seed)[:s.limit_videos], 0


def bench(methods: Sequence[MethodSpec], store: str | os.PathLike, settings: BenchSettings) -> dict[str, Any]:
    """run_bench with its settings as one object: check everything, generate and score, write the results."""
    s = settings
    protocols.check_protocol(s.protocol)
    protocols.check_variant(s.variant)
    specs = {m: metric_spec(m) for m in s.metrics}  # unknown names fail before any work
    protocols.check_metrics(s.protocol, list(s.metrics), {n: sp.inputs for n, sp in specs.items()},
                            {n: sp.kind for n, sp in specs.items()})
    given = [f for f, v in (("--identity-frames", s.identity_frames), ("--driver-frames", s.driver_frames))
             if v is not None]
    if given and s.protocol != "reenactment":
        raise AnimbenchError(f"{' and '.join(given)}: only the reenactment protocol takes identity and driver "
                             f"frames (not {s.protocol})")
    for spec in specs.values():  # so do missing weight files: no results directory is started without them
        for name in spec.needs:
            locate(name, verify_hash=False)  # the hash is checked where the metric loads the file
    _check_methods(methods, s.protocol)  # a method/protocol mismatch fails here, before Ray starts
    if s.in_process:  # the models this process will run anyway: a method/protocol mismatch fails before any output
        for m in methods:
            model, _ = _load(m, s.device)
            protocols.check_driven_by(s.protocol, m.key, getattr(model, "driven_by", "video"))
            if s.protocol == "reenactment":
                reenactment_sources(model, m.key)
    fs = FrameStore(store)
    items, skipped_pairs = _items(fs, s)
    if s.workers < 1:
        raise AnimbenchError(f"--workers {s.workers}: expected 1 or more")
    from methods.infer import evaluation_record, evaluation_size

    videos = sorted({v for it in items for v in (it.source_video, it.driving_video)})
    if s.protocol == "pose-transfer":  # the method brings every frame to its generator itself (pose_target)
        sizes = {m.key: None for m in methods}
        evaluation = {m.key: {**evaluation_record(fs, videos, None), "frame_size": "the method's generator size",
                              "resized": True, "rule": POSE_TARGET_RULE} for m in methods}
    else:
        sizes = {m.key: evaluation_size(m.name, m.config) for m in methods}  # a bad config fails before output
        evaluation = {m.key: evaluation_record(fs, videos, sizes[m.key]) for m in methods}
    samples = [it.video_id for it in items[:s.sample_videos]]
    for vid in samples:  # an id that cannot name a samples folder fails here, before any output
        R.sample_path(s.out, "_driving", vid, 0)
    existed = Path(s.out).exists()
    out = R.prepare_results_dir(s.out, overwrite=s.overwrite)
    s = replace(s, out=str(out))
    try:
        chunk = max(1, math.ceil(len(items) / (2 * s.workers)))
        tasks = [Task(m, str(fs.root), items[i:i + chunk], s, sample_videos=samples, write_inputs=(k == 0),
                      threads=None if s.in_process else 1, frame_size=sizes[m.key])
                 for k, m in enumerate(methods) for i in range(0, len(items), chunk)]
        t0 = time.perf_counter()
        done = _execute(tasks, s)
        frames, set_rows, versions, run = _assemble(methods, fs, tasks, done, s, items=items,
                                                    skipped_pairs=skipped_pairs, seconds=time.perf_counter() - t0,
                                                    evaluation=evaluation)
        return R.write_results(out, frames, run=run, versions=versions, set_rows=set_rows, n_boot=s.n_boot, seed=s.seed,
                               higher_is_better={n: sp.higher_is_better for n, sp in specs.items()},
                               pooling={n: sp.pooling for n, sp in specs.items()})
    except BaseException:
        R.discard_results_dir(out, existed)  # a corrupt store or checkpoint must not block the rerun
        raise


def _generation_time(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Generation time alone (no model loading, no scoring), summed over a method's tasks and per frame: what
    the report's speed-against-quality plot draws."""
    seconds, frames = sum(d["generate_seconds"] for d in parts), sum(d["frames"] for d in parts)
    return {"generate_seconds": round(seconds, 4),
            "seconds_per_frame": round(seconds / frames, 6) if frames else None}


def _assemble(methods: Sequence[MethodSpec], fs: FrameStore, tasks: list[Task], done: list[dict[str, Any]],
              s: BenchSettings, *, items: list[protocols.Item], skipped_pairs: int, seconds: float,
              evaluation: dict[str, dict[str, Any]]) -> tuple[pd.DataFrame, list[dict], dict, dict[str, Any]]:
    """The tasks' outputs as results: (frame rows, set-metric rows, package versions by id, the manifest's run)."""
    from bench.metrics import fid

    def set_value(name: str, real: list, pred: list) -> tuple[float, int]:
        metric, _ = build_metric(name, s.device, s.variant)
        real_stats, pred_stats = fid.stats_from_moments(real), fid.stats_from_moments(pred)
        return float(metric.distance(real_stats, pred_stats)), pred_stats.n

    outputs = {m.key: [d for t, d in zip(tasks, done, strict=True) if t.method == m] for m in methods}
    columns, run_methods = {}, {}
    for m in methods:
        prov = outputs[m.key][0]["model_provenance"]
        ckpt, cfg = prov.get("checkpoint") or {}, prov.get("config") or {}
        columns[m.key] = {"method": m.key, "method_name": m.name, "checkpoint_sha256": ckpt.get("sha256", "none"),
                          "config_path": str(cfg.get("path", "")), "config_sha256": cfg.get("sha256", "none"),
                          "store_fingerprint": fs.fingerprint, "split": s.split, "protocol": s.protocol,
                          "protocol_variant": s.variant, "quantisation": protocols.QUANTISATION}
        run_methods[m.key] = {**asdict(m), "checkpoint_sha256": columns[m.key]["checkpoint_sha256"],
                              "config_sha256": columns[m.key]["config_sha256"], "provenance": prov,
                              "evaluation": evaluation[m.key],
                              "frames": sum(d["frames"] for d in outputs[m.key]),
                              "task_seconds": round(sum(d["seconds"] for d in outputs[m.key]), 3),
                              **_generation_time(outputs[m.key])}
    frames, set_rows, versions, metric_info = R.assemble(outputs, columns, n_videos=len(items), set_value=set_value)
    run = {
        "protocol": protocols.describe(s.protocol, s.variant, pairs=s.pairs, skipped_pairs=skipped_pairs,
                                       seed=s.seed, items=items),
        "store": {"path": str(fs.root), "fingerprint": fs.fingerprint, "split": s.split, "videos": len(items),
                  "recipe": fs.manifest.get("config", {}).get("recipe"),
                  "plan": (fs.manifest.get("config", {}).get("plan") or {}).get(s.split)},
        "methods": run_methods, "method_order": [m.key for m in methods],
        "metrics": metric_info, "metric_order": list(s.metrics),
        "executor": "in-process" if s.in_process else "ray", "workers": s.workers, "device": s.device,
        "seed": s.seed, "seconds": round(seconds, 3),
    }
    return frames, set_rows, versions, run
