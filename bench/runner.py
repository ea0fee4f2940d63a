"""Run registered methods over a frame store under a protocol, score every frame, write a results directory.

The unit of work is (method, chunk of videos): each runs in a Ray task (one GPU per task when the cluster
has GPUs, one CPU otherwise) or, when workers=1 is asked for, in this process. A task loads its method once per worker
process, generates each video, quantises the predictions as the official code does, scores them with the
metric registry and returns per-frame rows; the driver sorts them and hands them to bench.results.

Determinism: every video is generated under a seed derived from (seed, method, video), torch runs with
deterministic algorithms on GPU (CPU inference kernels are deterministic as they are), and rows are sorted, so
the same bench on CPU gives identical tables however its videos were split across workers.

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
from dataclasses import asdict, dataclass, field
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
from prep.imagecodec import encode_image
from prep.store import EncodeOptions, FrameStore

RESERVED_LABELS = ("_source", "_driving")


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
    """Parse `[LABEL:]NAME[=CHECKPOINT][@CONFIG]`, e.g. `fomm=vox-cpk.pth.tar@vox-256.yaml`, `copy-source`."""
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


def _check_methods(methods: Sequence[MethodSpec]) -> None:
    if not methods:
        raise AnimbenchError("--methods: give at least one method")
    from methods.registry import get_method

    seen = set()
    for m in methods:
        get_method(m.name)  # an unknown name fails here, before any work
        if m.key in seen:
            raise AnimbenchError(f"--methods: {m.key!r} appears twice; give one a label (LABEL:{m.name}=...)")
        if m.key.startswith("_"):
            raise AnimbenchError(f"--methods: label {m.key!r} must not start with '_' (reserved for inputs)")
        check_id(m.key, field="label", where="--methods")  # it names a samples folder
        seen.add(m.key)
        if m.checkpoint is not None and not Path(m.checkpoint).is_file():
            raise AnimbenchError(f"method {m.key}: checkpoint {m.checkpoint} does not exist")


@dataclass
class Task:
    """One unit of work: a method over a chunk of items (everything a worker needs, picklable)."""

    method: MethodSpec
    store: str
    items: list[protocols.Item]
    protocol: str
    variant: str
    metrics: list[str]
    device: str
    seed: int
    out: str
    sample_videos: list[str] = field(default_factory=list)
    sample_frames: int = 4
    write_inputs: bool = False
    batch_size: int = 16
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
    """A metric object with the device and legacy/clean protocol passed where the metric takes them; returns
    (metric, whether the variant applies to it)."""
    spec = metric_spec(name)
    options: dict[str, Any] = {}
    if _accepts(spec.target, "device"):
        options["device"] = device
    takes_variant = _accepts(spec.target, "protocol")
    if takes_variant:
        options["protocol"] = variant
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


def _generate(model: Any, task: Task, store: FrameStore, item: protocols.Item) -> tuple[np.ndarray, np.ndarray]:
    """(reference uint8 (T, h, w, 3), float32 predictions (T, h, w, 3) in [0, 1]) of one item, at the method's
    frame size: reconstruction compares with the ground-truth frames, animation with the source frame."""
    from methods.data import resize_frames
    from methods.infer import animate_video, reconstruction_batches

    if task.protocol == "reconstruction":  # the one implementation `animbench reconstruct` uses too
        batches = list(reconstruction_batches(model, store, item.driving_video, frame_size=task.frame_size,
                                              batch_size=task.batch_size, device=task.device))
        return np.concatenate([gt for gt, _ in batches]), np.concatenate([pred for _, pred in batches])
    source = store.read(item.source_video, [item.source_frame])
    driving = store.read(item.driving_video)
    if task.frame_size is not None:
        source, driving = resize_frames(source, task.frame_size), resize_frames(driving, task.frame_size)
    # the config's animation mode (FOMM animate_params)
    pred = np.clip(animate_video(model, source[0], driving, device=task.device), 0.0, 1.0).astype(np.float32)
    return np.repeat(source, len(pred), 0), pred


def _write_png(path: Path, frame: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(encode_image(frame, EncodeOptions("png")))
    os.replace(tmp, path)


def sample_indices(n: int, k: int) -> list[int]:
    """k evenly spaced frame indices of an n-frame video (first and last included)."""
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))})


def _save_samples(task: Task, store: FrameStore, item: protocols.Item, pred: np.ndarray) -> None:
    # every path through R.sample_path (plumbing.ids.safe_join): a store's video id cannot lead outside --out
    picks = sample_indices(len(pred), task.sample_frames)
    for t in picks:
        _write_png(R.sample_path(task.out, task.method.key, item.video_id, t), pred[t])
    if task.write_inputs:  # the inputs as stored, whatever size each method ran at
        for t, frame in zip(picks, store.read(item.driving_video, picks), strict=True):
            _write_png(R.sample_path(task.out, "_driving", item.video_id, t), frame)
        _write_png(R.sample_path(task.out, "_source", item.video_id, item.source_frame),
                   store.read(item.source_video, [item.source_frame])[0])


def run_task(task: Task, on_item: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Generate and score one chunk; return its per-frame rows and what provenance it saw.

    `on_item(1)` is called after each item (the in-process progress bar)."""
    t0 = time.perf_counter()
    _deterministic(task.seed, task.device, task.threads)
    import torch

    store = FrameStore(task.store)
    model, model_prov = _load(task.method, task.device)
    if task.protocol == "animation":
        from methods.infer import animation_settings

        model_prov = {**model_prov, "animation": animation_settings(model, None, None)}
    metrics = {m: build_metric(m, task.device, task.variant) for m in task.metrics}
    versions = package_versions()
    cols: dict[str, list] = {c: [] for c in ("video_id", "frame_index", "source_video", "source_frame",
                                             "driving_video", "metric", "value", "skipped")}
    features: dict[str, dict[str, list]] = {}
    frames_done = 0
    for item in task.items:
        torch.manual_seed(task.seed ^ zlib.crc32(f"{task.method.key}/{item.video_id}".encode()))
        reference, pred_float = _generate(model, task, store, item)
        pred = protocols.quantize(pred_float.transpose(0, 3, 1, 2))  # as the official code saved frames
        for name, (metric, _) in metrics.items():
            if metric_spec(name).kind == "set":
                feats = features.setdefault(name, {"pred": [], "real": []})
                feats["pred"].append(metric.features(pred))
                if task.write_inputs:  # the real set: the driving frames as stored, the same for every method
                    feats["real"].append(metric.features(store.read(item.driving_video)))
                continue
            # FOMM's L1 scored the float output; pose / identity scripts read the quantised frames
            scores: FrameScores = metric(pred_float if metric_spec(name).float_input else pred, reference)
            n = scores.n_frames
            if n != len(pred):
                raise AnimbenchError(f"metric {name}: returned {n} values for {len(pred)} frames of {item.video_id}")
            cols["video_id"] += [item.video_id] * n
            cols["frame_index"] += list(range(n))
            cols["source_video"] += [item.source_video] * n
            cols["source_frame"] += [item.source_frame] * n
            cols["driving_video"] += [item.driving_video] * n
            cols["metric"] += [name] * n
            cols["value"] += scores.values.tolist()
            cols["skipped"] += scores.skipped.tolist()
        if item.video_id in task.sample_videos:
            _save_samples(task, store, item, pred)
        frames_done += len(pred)
        if on_item is not None:
            on_item(1)
    moments = {name: {side: _moments(f[side]) for side in ("pred", "real") if f[side]}
               for name, f in features.items()}
    return {
        "rows": pd.DataFrame(cols), "moments": moments, "versions": versions,
        "metrics": {name: {**_metric_columns(metric), "variant_applies": applies}
                    for name, (metric, applies) in metrics.items()},
        "model_provenance": model_prov, "frames": frames_done, "seconds": time.perf_counter() - t0,
    }


def _metric_columns(metric: Any) -> dict[str, Any]:
    d = metric.describe()
    weights = [w.get("sha256", "") for w in d.get("weights", [])]
    return {"metric_backend": str(d.get("backend", "")), "metric_weights_sha256": "+".join(weights) or "none",
            "describe": d}


# ------------------------------------------------------------------------------------------- driver side
def _execute(tasks: list[Task], workers: int, use_gpu: bool, in_process: bool,
             address: str | None = None, progress: bool = True) -> list[dict[str, Any]]:
    total = sum(len(t.items) for t in tasks)  # (method, video) pairs: the bar counts generated videos
    with progress_bar(total, "bench", "video", enabled=progress) as bar:
        if in_process:
            return [run_task(t, on_item=bar.update) for t in tasks]
        return _execute_ray(tasks, workers, use_gpu, address, bar)


def _execute_ray(tasks: list[Task], workers: int, use_gpu: bool, address: str | None, bar: Any) -> list[dict]:
    import ray

    with ray_session(workers, address):
        gpus = ray.cluster_resources().get("GPU", 0) if use_gpu else 0
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


def _moments(features: list[np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """(n, mean, sum of centred outer products) of a chunk's features, float64: chunks merge exactly."""
    x = np.concatenate(features).astype(np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    return len(x), mean, xc.T @ xc


def merge_moments(parts: list[tuple[int, np.ndarray, np.ndarray]]) -> tuple[int, np.ndarray, np.ndarray]:
    """Pool chunk moments (Chan et al.'s parallel update), in the order given."""
    n, mean, m2 = parts[0]
    for nb, mb, m2b in parts[1:]:
        delta = mb - mean
        total = n + nb
        m2 = m2 + m2b + np.outer(delta, delta) * (n * nb / total)
        mean = mean + delta * (nb / total)
        n = total
    return n, mean, m2


def _set_metric_value(metric: Any, pred: list, real: list) -> tuple[float, int]:
    from bench.metrics.fid import FeatureStats

    stats = []
    for parts in (real, pred):
        n, mean, m2 = merge_moments(parts)
        if n < 2:
            raise AnimbenchError(f"set metric: {n} frame(s), at least 2 are needed for a covariance")
        stats.append(FeatureStats(mean, m2 / (n - 1), n))
    return float(metric.distance(stats[0], stats[1])), stats[1].n


def run_bench(methods: Sequence[MethodSpec], store: str | os.PathLike, protocol: str, metrics: Sequence[str],
              out: str | os.PathLike, *, split: str = "test", device: str | None = None, workers: int | None = None,
              seed: int = 0, limit_videos: int | None = None, variant: str = "legacy", pairs: str | None = None,
              num_pairs: int | None = None, skip_missing_pairs: bool = False, sample_videos: int = 4,
              sample_frames: int = 4, batch_size: int = 16, n_boot: int = R.DEFAULT_BOOT,
              overwrite: bool = False, address: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Bench methods over a store's split under a protocol; write `out` (see bench.results); return its manifest.

    `address` joins an existing Ray cluster (the store and `out` must be on a filesystem every node sees).
    `progress` shows a bar with an ETA on stderr. A run that fails leaves no results folder behind."""
    import torch

    protocols.check_protocol(protocol, variant)
    metrics = list(metrics)
    protocols.check_metrics(protocol, metrics)
    specs = {m: metric_spec(m) for m in metrics}  # unknown names fail before any work
    for spec in specs.values():  # so do missing weight files: no results directory is started without them
        for name in spec.needs:
            locate(name, verify_hash=False)  # the hash is checked where the metric loads the file
    _check_methods(methods)
    fs = FrameStore(store)
    skipped_pairs = 0
    if protocol == "reconstruction":
        items = protocols.reconstruction_items(fs, split, limit_videos)
    elif pairs:
        items, skipped_pairs = protocols.read_pairs_csv(pairs, fs, split, skip_missing=skip_missing_pairs)
        items = items[:limit_videos]
    else:
        items = protocols.random_pairs(fs, split, num_pairs, seed)[:limit_videos]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    use_gpu = device.startswith("cuda")
    in_process = workers == 1  # an explicit single worker runs here (tests, debugging); the default is Ray
    if workers is None:
        workers = max(1, torch.cuda.device_count()) if use_gpu else max(1, os.cpu_count() or 1)
    elif workers < 1:
        raise AnimbenchError(f"--workers {workers}: expected 1 or more")
    from methods.infer import evaluation_record, evaluation_size

    sizes = {m.key: evaluation_size(m.name, m.config) for m in methods}  # a bad config fails before any output
    videos = sorted({v for it in items for v in (it.source_video, it.driving_video)})
    evaluation = {m.key: evaluation_record(fs, videos, sizes[m.key]) for m in methods}
    samples = [it.video_id for it in items[:sample_videos]]
    for vid in samples:  # an id that cannot name a samples folder fails here, before any output
        R.sample_path(out, "_driving", vid, 0)
    existed = Path(out).exists()
    out = R.prepare_results_dir(out, overwrite=overwrite)
    try:
        chunk = max(1, math.ceil(len(items) / (2 * workers)))
        tasks = [Task(m, str(fs.root), items[i:i + chunk], protocol, variant, metrics, device, seed, str(out),
                      sample_videos=samples, sample_frames=sample_frames, write_inputs=(k == 0),
                      batch_size=batch_size, threads=None if in_process else 1, frame_size=sizes[m.key])
                 for k, m in enumerate(methods) for i in range(0, len(items), chunk)]
        t0 = time.perf_counter()
        done = _execute(tasks, workers, use_gpu, in_process, address, progress)
        seconds = time.perf_counter() - t0
        return _write(out, methods, fs, tasks, done, metrics=metrics, specs=specs, protocol=protocol,
                      variant=variant, split=split, pairs=pairs, skipped_pairs=skipped_pairs, seed=seed, device=device,
                      workers=workers, in_process=in_process, n_items=len(items), seconds=seconds, n_boot=n_boot,
                      evaluation=evaluation)
    except BaseException:
        R.discard_results_dir(out, existed)  # a corrupt store or checkpoint must not block the rerun
        raise


def _write(out: Path, methods: Sequence[MethodSpec], fs: FrameStore, tasks: list[Task], done: list[dict[str, Any]],
           *, metrics: list[str], specs: dict, protocol: str, variant: str, split: str, pairs: str | None,
           skipped_pairs: int, seed: int, device: str, workers: int, in_process: bool, n_items: int, seconds: float,
           n_boot: int, evaluation: dict[str, dict[str, Any]]) -> dict[str, Any]:
    versions: dict[str, dict[str, str]] = {}
    frames, set_rows = [], []
    run_methods: dict[str, Any] = {}
    metric_info: dict[str, Any] = {}
    real_moments: dict[str, list] = {}  # filled by the first method's tasks
    for m in methods:
        parts = [(t, d) for t, d in zip(tasks, done, strict=True) if t.method == m]
        prov = parts[0][1]["model_provenance"]
        ckpt, cfg = prov.get("checkpoint") or {}, prov.get("config") or {}
        cols = {"method": m.key, "method_name": m.name, "checkpoint_sha256": ckpt.get("sha256", "none"),
                "config_path": str(cfg.get("path", "")), "config_sha256": cfg.get("sha256", "none"),
                "store_fingerprint": fs.fingerprint, "split": split, "protocol": protocol,
                "protocol_variant": variant, "quantisation": protocols.QUANTISATION}
        pred_moments: dict[str, list] = {}
        for _, d in parts:
            vid = R.versions_id(d["versions"])
            versions[vid] = d["versions"]
            rows = d["rows"].assign(**cols, versions_id=vid)
            info = d["metrics"]
            rows["metric_backend"] = rows["metric"].map(lambda n, i=info: i[n]["metric_backend"])
            rows["metric_weights_sha256"] = rows["metric"].map(lambda n, i=info: i[n]["metric_weights_sha256"])
            frames.append(rows)
            for name, mom in d["moments"].items():
                pred_moments.setdefault(name, []).append(mom["pred"])
                if "real" in mom:
                    real_moments.setdefault(name, []).append(mom["real"])
            for name, i in info.items():
                metric_info.setdefault(name, {"describe": i["describe"], "variant_applies": i["variant_applies"]})
        for name, pm in sorted(pred_moments.items()):
            metric, _ = build_metric(name, device, variant)
            value, n = _set_metric_value(metric, pm, real_moments[name])
            info = parts[0][1]["metrics"][name]
            set_rows.append({**cols, "metric": name, "mean": value, "n_frames": n, "n_videos": n_items,
                             "versions_id": R.versions_id(parts[0][1]["versions"]),
                             "metric_backend": info["metric_backend"],
                             "metric_weights_sha256": info["metric_weights_sha256"]})
        run_methods[m.key] = {**asdict(m), "checkpoint_sha256": cols["checkpoint_sha256"],
                              "config_sha256": cols["config_sha256"], "provenance": prov,
                              "evaluation": evaluation[m.key],
                              "frames": sum(d["frames"] for _, d in parts),
                              "task_seconds": round(sum(d["seconds"] for _, d in parts), 3)}
    run = {
        "protocol": protocols.describe(protocol, variant, pairs=pairs, skipped_pairs=skipped_pairs, seed=seed),
        "store": {"path": str(fs.root), "fingerprint": fs.fingerprint, "split": split, "videos": n_items},
        "methods": run_methods, "method_order": [m.key for m in methods],
        "metrics": metric_info, "metric_order": metrics,
        "executor": "in-process" if in_process else "ray", "workers": workers, "device": device, "seed": seed,
        "seconds": round(seconds, 3),
    }
    all_frames = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(R.FRAME_COLUMNS))
    return R.write_results(out, all_frames, run=run, versions=versions, set_rows=set_rows, n_boot=n_boot, seed=seed,
                           higher_is_better={n: s.higher_is_better for n, s in specs.items()},
                           pooling={n: s.pooling for n, s in specs.items()})
