"""The one metric registry: `@register_metric` on a function or a class, `list_metrics`, `get_metric`.

Two kinds of metric:
- "paired": per-frame values from (pred, gt) frames of one video -> `FrameScores` (L1, PSNR, SSIM, LPIPS, AKD...).
- "set": a distance between two sets of frames (FID): `features(frames)` -> `accumulator()` -> `distance(a, b)`.

Canonical input everywhere: uint8 RGB frames shaped (N, H, W, 3), as the frame store holds them; each metric
converts internally (to [0,1] floats, [-1,1] for LPIPS, 299x299 for FID) and says so in `describe()`.
A paired metric may also need per-frame inputs besides the frames (`inputs`, names from INPUTS): the pose-transfer
protocol gives the keypoints the frames were generated from and the face boxes; they arrive as keyword arguments
of the same name, `metric(pred, gt, keypoints=..., face_boxes=...)`.

Aggregation across frames and videos is the runner's choice (FOMM: frame-weighted mean over all frames;
Monkey-Net: video-weighted mean of per-video means); `FrameScores` keeps enough per frame for either, for
counting skipped frames, and for bootstrapping over videos.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.results import POOLINGS
from plumbing import weights
from plumbing.errors import AnimbenchError
from plumbing.files import sha256_file

KINDS = ("paired", "set")
# Per-frame inputs a paired metric can ask for (MetricSpec.inputs); only the pose-transfer protocol has them.
INPUTS = {
    "keypoints": "dict group -> (N, J, 3) float64 x, y, confidence in the prediction's pixels: 'body' (J = 18, 23 "
                 "or 25), 'face' (70), 'hand_left' and 'hand_right' (21); the pose each frame was generated from",
    "face_boxes": "(N, 4) int64 (miny, maxy, minx, maxx) face box in the prediction's pixels (end exclusive), "
                  "-1 where the pose has no head",
}


@dataclass
class FrameScores:
    """Per-frame result of a paired metric over one video (or any run of frames)."""

    values: np.ndarray  # (N,) float64; NaN where the frame is skipped
    skipped: np.ndarray | None = None  # (N,) bool; a skipped frame counts in no mean (e.g. AKD: no detection)
    fields: dict[str, np.ndarray] = field(default_factory=dict)  # extra per-frame arrays, (N, ...) each

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        n = self.values.shape[0]
        self.skipped = (np.zeros(n, bool) if self.skipped is None
                        else np.asarray(self.skipped, dtype=bool).reshape(-1))
        if self.skipped.shape != (n,):
            raise ValueError(f"FrameScores: skipped has shape {self.skipped.shape}, expected ({n},)")
        self.values = np.where(self.skipped, np.nan, self.values)
        for key, arr in self.fields.items():
            arr = np.asarray(arr)
            if arr.shape[:1] != (n,):
                raise ValueError(f"FrameScores: field {key!r} has shape {arr.shape}, expected ({n}, ...)")
            self.fields[key] = arr

    @property
    def n_frames(self) -> int:
        """Frames scored, skipped ones included."""
        return int(self.values.shape[0])

    @property
    def n_valid(self) -> int:
        """Frames that count in a mean."""
        return int((~self.skipped).sum())

    def total(self) -> float:
        """Sum over valid frames (frame-weighted aggregation sums these and divides by the summed n_valid)."""
        return float(self.values[~self.skipped].sum())  # a NaN from a frame that was not skipped shows

    def mean(self) -> float:
        """Mean over valid frames; NaN when every frame was skipped."""
        return self.total() / self.n_valid if self.n_valid else float("nan")

    @classmethod
    def concat(cls, parts: list[FrameScores]) -> FrameScores:
        """Join consecutive chunks of one video (fields must agree across chunks)."""
        if not parts:
            return cls(np.zeros(0))
        keys = set(parts[0].fields)
        if any(set(p.fields) != keys for p in parts):
            raise ValueError("FrameScores.concat: chunks carry different fields")
        return cls(np.concatenate([p.values for p in parts]), np.concatenate([p.skipped for p in parts]),
                   {k: np.concatenate([p.fields[k] for p in parts]) for k in sorted(keys)})


@dataclass(frozen=True)
class MetricSpec:
    """What the registry knows about a metric before building it."""

    name: str
    kind: str  # "paired" | "set"
    higher_is_better: bool
    backend: str  # the distribution whose code computes it ("torch", "lpips", "pytorch-fid", "face-alignment")
    needs: tuple[str, ...]  # weight file names from plumbing.weights (the manifest)
    protocol_notes: str
    build: Callable[..., Any]  # class or function -> metric object
    summary: str  # first docstring line of the registered object
    target: Callable[..., Any]  # the registered function or class itself
    # True: the runner scores the float [0,1] generator output, as FOMM scored L1; False: the uint8 frames
    # quantised as the official code saved them (what the pose / identity scripts read)
    float_input: bool = False
    # how per-frame values pool into means: "mean", or "psnr" (PSNR of the mean squared error; bench.results)
    pooling: str = "mean"
    # per-frame inputs besides the frames (names from INPUTS), passed as keyword arguments of the same name
    inputs: tuple[str, ...] = ()


_METRICS: dict[str, MetricSpec] = {}


def backend_version(backend: str) -> str:
    """'<dist> <version>' for a backend distribution ('unknown' when not installed as a distribution)."""
    try:
        return f"{backend} {metadata.version(backend)}"
    except metadata.PackageNotFoundError:
        return f"{backend} unknown"


def weights_provenance(names: tuple[str, ...]) -> list[dict[str, str]]:
    """Name, path and sha256 of each manifest weight file a metric loads."""
    return [{"name": name, **file_provenance(weights.get(name).path())} for name in names]


def file_provenance(path: Path) -> dict[str, str]:
    """Path and sha256 of a file a metric loads ('missing' when absent); hashes are cached per path and mtime."""
    if not path.is_file():
        return {"path": str(path), "sha256": "missing"}
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return {"path": str(path), "sha256": _HASHES[key]}


_HASHES: dict[tuple[str, int, int], str] = {}


def base_description(spec: MetricSpec) -> dict[str, Any]:
    """The provenance fields every metric shares; metric objects extend it with their settings."""
    return {
        "name": spec.name,
        "kind": spec.kind,
        "higher_is_better": spec.higher_is_better,
        "backend": backend_version(spec.backend),
        "weights": weights_provenance(spec.needs),
        "input": "uint8 RGB frames (N, H, W, 3)" + "".join(f"; {k}: {INPUTS[k]}" for k in spec.inputs),
        "protocol_notes": spec.protocol_notes,
    }


class FunctionMetric:
    """A paired metric that is a plain function `fn(pred, gt, **options) -> FrameScores | (N,) array`."""

    def __init__(self, spec: MetricSpec, fn: Callable[..., Any], settings: dict[str, Any], options: dict[str, Any]):
        inspect.signature(fn).bind_partial(None, None, **options)  # unknown options fail here, not mid-run
        self.spec, self.fn, self.settings, self.options = spec, fn, settings, options

    def __call__(self, pred: np.ndarray, gt: np.ndarray, **inputs: Any) -> FrameScores:
        """Score (N,H,W,3) uint8 pred frames against gt frames, one value per frame (`inputs`: spec.inputs)."""
        out = self.fn(pred, gt, **self.options, **inputs)
        return out if isinstance(out, FrameScores) else FrameScores(np.asarray(out))

    def describe(self) -> dict[str, Any]:
        """Provenance: backend version, settings, input convention."""
        return {**base_description(self.spec), "settings": dict(self.settings), "options": dict(self.options)}


def register_metric(name: str, *, kind: str, higher_is_better: bool, backend: str, needs: tuple[str, ...] = (),
                    protocol_notes: str = "", settings: dict[str, Any] | None = None,
                    float_input: bool = False, pooling: str = "mean", inputs: tuple[str, ...] = ()) -> Callable:
    """Decorator: register a paired function `fn(pred, gt, **options)` or a class whose instances are metrics.

    A function is wrapped so that `get_metric(name, **options)(pred, gt)` calls `fn(pred, gt, **options)`
    (e.g. device="cuda"). A class is built by `get_metric(name, **options)` as `cls(spec, **options)`; its
    instances provide `describe()` and either `__call__(pred, gt) -> FrameScores` (paired) or `features`,
    `accumulator`, `distance` (set). `settings` (functions only) is reported verbatim by `describe()`.
    `float_input`: pred may also be float32 in [0, 1] (the unquantised generator output).
    `pooling`: how frames pool into means (bench.results.POOLINGS): "mean", or "psnr" for a PSNR in dB.
    `inputs`: per-frame inputs besides the frames (INPUTS), given to the metric as keyword arguments.
    """
    if kind not in KINDS:
        raise ValueError(f"metric {name}: kind {kind!r} not in {KINDS}")
    if pooling not in POOLINGS:
        raise ValueError(f"metric {name}: pooling {pooling!r} not in {sorted(POOLINGS)}")
    unknown = sorted(set(inputs) - set(INPUTS))
    if unknown:
        raise ValueError(f"metric {name}: inputs {unknown} not in {sorted(INPUTS)}")

    def deco(obj: Callable) -> Callable:
        if name in _METRICS and _METRICS[name].target is not obj:
            raise ValueError(f"metric {name} registered twice")
        is_class = inspect.isclass(obj)
        if not is_class and kind != "paired":
            raise ValueError(f"metric {name}: a {kind} metric must be a class")
        build = obj if is_class else _function_builder(obj, dict(settings or {}))
        doc = (inspect.getdoc(obj) or "").strip().splitlines()
        _METRICS[name] = MetricSpec(name, kind, higher_is_better, backend, tuple(needs), protocol_notes, build,
                                    doc[0] if doc else "", obj, float_input, pooling, tuple(inputs))
        return obj

    return deco


def _function_builder(fn: Callable, fn_settings: dict[str, Any]) -> Callable[..., FunctionMetric]:
    def build(spec: MetricSpec, **options: Any) -> FunctionMetric:
        return FunctionMetric(spec, fn, fn_settings, options)

    build.settings = fn_settings  # type: ignore[attr-defined]  # describe_metric reads them without building
    return build


def list_metrics(pattern: str = "*", *, kind: str | None = None) -> list[str]:
    """Registered metric names matching a glob pattern (e.g. 'lpips*'), sorted; optionally of one kind."""
    _load_builtin()
    return sorted(n for n, s in _METRICS.items() if fnmatch.fnmatch(n, pattern) and (kind is None or s.kind == kind))


def metric_spec(name: str) -> MetricSpec:
    """The registry entry of one metric (no weights loaded)."""
    _load_builtin()
    try:
        return _METRICS[name]
    except KeyError:
        raise AnimbenchError(f"unknown metric {name!r}: expected one of {sorted(_METRICS)}") from None


def get_metric(name: str, **options: Any) -> Any:
    """Build a metric object (loads its weights; options such as device='cuda' go to the class)."""
    spec = metric_spec(name)
    return spec.build(spec, **options)


def describe_metric(name: str, **options: Any) -> dict[str, Any]:
    """A metric's provenance without needing its weight files: the built metric's describe() when it can be
    built, else the registry's entry (notes, settings, each weight file with its folder and status "missing")
    with `status` saying why it was not built (the same one-line message a run would stop with)."""
    spec = metric_spec(name)
    try:
        return spec.build(spec, **options).describe()
    except (AnimbenchError, ImportError, OSError) as exc:  # a weight file or optional package is missing
        out = base_description(spec)
        if not inspect.isclass(spec.target):
            out["settings"] = dict(getattr(spec.build, "settings", {}))
        out["summary"] = spec.summary
        out["status"] = f"not built: {exc}"
        return out


def _load_builtin() -> None:
    # Importing the package registers the built-in metrics; harmless when already imported.
    import bench.metrics  # noqa: F401


def check_frames(pred: np.ndarray, gt: np.ndarray | None = None, *, metric: str = "metric",
                 float_pred: bool = False) -> None:
    """Assert the canonical input loudly: uint8 (N, H, W, 3) arrays (pred float32 in [0,1] when allowed)."""
    pred_shape = getattr(pred, "shape", None)
    if float_pred and isinstance(pred, np.ndarray) and pred.dtype == np.float32:
        if pred.ndim != 4 or pred.shape[-1] != 3:
            raise AnimbenchError(f"{metric}: pred frames are float32 {pred.shape}, expected (N, H, W, 3)")
        if pred.size and (float(pred.min()) < 0.0 or float(pred.max()) > 1.0):
            raise AnimbenchError(f"{metric}: float pred frames must lie in [0, 1], got "
                                 f"[{float(pred.min()):.4g}, {float(pred.max()):.4g}]")
        pred = None  # checked
    for label, arr in (("pred", pred), ("gt", gt)):
        if arr is None:
            continue
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
            got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise AnimbenchError(f"{metric}: {label} frames are {got}, expected uint8 RGB (N, H, W, 3)")
    if gt is not None and pred_shape != gt.shape:
        raise AnimbenchError(f"{metric}: pred frames {pred_shape} and gt frames {gt.shape} differ in shape")
