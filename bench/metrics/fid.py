"""FID under pytorch-fid's protocol: its FID-Inception network and weights, bilinear resize to 299, pool3.

Functions first: `feature_statistics` (mu, sigma in float64, as np.cov), `frechet_distance` (pytorch-fid's
formula, including its eps fallback for a singular product). Then the batched object: `FIDMetric` extracts
features from uint8 frames, accumulates statistics in one pass, and caches a store's reference statistics.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.metrics.registry import base_description, check_frames, file_provenance, register_metric
from plumbing import weights
from plumbing.errors import AnimbenchError
from plumbing.files import atomic_path

FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
FID_DIMS = (64, 192, 768, 2048)  # pytorch-fid's --dims; only 2048 (pool3) is the published FID
STATS_VERSION = 1  # bump when anything that changes cached statistics changes


@dataclass
class FeatureStats:
    """Gaussian statistics of a feature set: mean (D,), covariance (D, D) in float64, and the sample count."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def save(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        """Write an .npz (mu, sigma, n, meta json) atomically: a temp name, then rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz to any other name
            np.savez(tmp, mu=self.mu, sigma=self.sigma, n=np.int64(self.n),
                     meta=json.dumps(meta or {}, sort_keys=True))

    @classmethod
    def load(cls, path: str | os.PathLike) -> tuple[FeatureStats, dict[str, Any]]:
        """Read statistics and their meta from an .npz written by `save`."""
        with np.load(path) as z:
            return cls(z["mu"], z["sigma"], int(z["n"])), json.loads(str(z["meta"]))


def feature_statistics(features: np.ndarray) -> FeatureStats:
    """Mean and unbiased covariance of (N, D) features in float64 (pytorch-fid: np.mean, np.cov)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise AnimbenchError(f"fid: need at least 2 feature vectors (N, D), got shape {features.shape}")
    return FeatureStats(features.mean(axis=0), np.cov(features, rowvar=False), len(features))


class StatsAccumulator:
    """One-pass mean and covariance over batches of features (memory D*D, not N*D)."""

    def __init__(self) -> None:
        self.n = 0
        self.shift: np.ndarray | None = None  # first batch's mean: centring keeps the float64 sums accurate
        self.sum: np.ndarray | None = None
        self.outer: np.ndarray | None = None

    def update(self, features: np.ndarray) -> None:
        """Add a batch of (B, D) features."""
        x = np.asarray(features, dtype=np.float64)
        if len(x) == 0:
            return
        if self.shift is None:
            self.shift = x.mean(axis=0)
            self.sum = np.zeros_like(self.shift)
            self.outer = np.zeros((len(self.shift), len(self.shift)))
        x = x - self.shift
        self.n += len(x)
        self.sum += x.sum(axis=0)
        self.outer += x.T @ x

    def finalize(self) -> FeatureStats:
        """The statistics of everything added so far."""
        if self.n < 2:
            raise AnimbenchError(f"fid: need at least 2 frames for a covariance, got {self.n}")
        mean_shifted = self.sum / self.n
        sigma = (self.outer - self.n * np.outer(mean_shifted, mean_shifted)) / (self.n - 1)
        return FeatureStats(self.shift + mean_shifted, sigma, self.n)


Moments = tuple[int, np.ndarray, np.ndarray]  # (n, mean, sum of centred outer products), float64


def moments(features: list[np.ndarray]) -> Moments:
    """The moments of one chunk's feature batches: chunks computed by different workers merge exactly."""
    x = np.concatenate(features).astype(np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    return len(x), mean, xc.T @ xc


def merge_moments(parts: list[Moments]) -> Moments:
    """Pool chunk moments (Chan et al.'s parallel update), in the order given."""
    n, mean, m2 = parts[0]
    for nb, mb, m2b in parts[1:]:
        delta = mb - mean
        total = n + nb
        m2 = m2 + m2b + np.outer(delta, delta) * (n * nb / total)
        mean = mean + delta * (nb / total)
        n = total
    return n, mean, m2


def stats_from_moments(parts: list[Moments]) -> FeatureStats:
    """Mean and unbiased covariance of the features of all chunks together."""
    n, mean, m2 = merge_moments(parts)
    if n < 2:
        raise AnimbenchError(f"set metric: {n} frame(s), at least 2 are needed for a covariance")
    return FeatureStats(mean, m2 / (n - 1), n)


def frechet_distance(a: FeatureStats, b: FeatureStats, *, eps: float = 1e-6, method: str = "sqrtm") -> float:
    """d^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 sqrt(S_a S_b)), as pytorch-fid computes it.

    method "sqrtm" is pytorch-fid's (scipy.linalg.sqrtm of the product, eps added to both diagonals when the
    result is not finite); "eigh" takes Tr sqrt(S_a S_b) from the eigenvalues of S_a^1/2 S_b S_a^1/2,
    which is the same quantity, about 5x faster on CPU at D=2048 and robust to singular covariances.
    """
    from scipy import linalg

    if a.mu.shape != b.mu.shape or a.sigma.shape != b.sigma.shape:
        raise AnimbenchError(f"fid: statistics of different dimension ({a.mu.shape} vs {b.mu.shape})")
    diff = a.mu - b.mu
    if method == "sqrtm":
        covmean = linalg.sqrtm(a.sigma @ b.sigma)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(diff)) * eps
            covmean = linalg.sqrtm((a.sigma + offset) @ (b.sigma + offset))
        if np.iscomplexobj(covmean):
            if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
                raise AnimbenchError(f"fid: sqrtm has an imaginary component {np.abs(covmean.imag).max():.3g} "
                                     f"(too few samples for the feature dimension?)")
            covmean = covmean.real
        tr_covmean = float(np.trace(covmean))
    elif method == "eigh":
        w, v = np.linalg.eigh(a.sigma)
        root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ b.sigma @ root_a), 0, None)).sum())
    else:
        raise AnimbenchError(f"fid: method {method!r}, expected 'sqrtm' or 'eigh'")
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * tr_covmean)


def load_fid_inception(dims: int = 2048, *, verify_hash: bool = True) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 for `dims`, loaded by pytorch-fid itself from the torch hub checkpoints dir."""
    from pytorch_fid.inception import InceptionV3

    if dims not in FID_DIMS:
        raise AnimbenchError(f"fid: dims {dims}, expected one of {FID_DIMS}")
    path = weights.locate(FID_WEIGHTS, verify_hash=verify_hash)
    hub_checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    if hub_checkpoints.resolve() != path.parent.resolve():
        # pytorch-fid reads torch.hub's folder; a different one would make it try to download
        raise AnimbenchError(f"fid: torch.hub looks in {hub_checkpoints}, but {FID_WEIGHTS} is in {path.parent} "
                             "(torch.hub.set_dir was called? set TORCH_HOME instead)")
    try:
        model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]], resize_input=True, normalize_input=True,
                            use_fid_inception=True)
    except Exception as exc:  # a wrong or damaged file: pytorch-fid's load error spans many lines
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AnimbenchError(f"{path}: not pytorch-fid's FID-Inception state_dict ({first})") from None
    return model.eval()


@register_metric(
    "fid", kind="set", higher_is_better=False, backend="pytorch-fid", needs=(FID_WEIGHTS,),
    protocol_notes="pytorch-fid protocol: FID-Inception (TF 2015-12-05 port), frames /255 to [0,1], bilinear "
                   "resize to 299x299 (align_corners=False), scaled to [-1,1], pool3 2048-d, statistics in "
                   "float64, Frechet distance via sqrtm. FID falls with the sample count: compare at equal N "
                   "(below 2048 frames the covariance is singular).",
)
class FIDMetric:
    """Frechet Inception Distance between two sets of frames (pytorch-fid network and protocol)."""

    def __init__(self, spec: Any, *, device: str = "cpu", batch_size: int = 50, dims: int = 2048,
                 method: str = "sqrtm", verify_hash: bool = True):
        self.spec, self.device, self.batch_size = spec, torch.device(device), batch_size
        self.dims, self.method, self.verify_hash = dims, method, verify_hash
        self.model = load_fid_inception(dims, verify_hash=verify_hash).to(self.device)

    def features(self, frames: np.ndarray) -> np.ndarray:
        """(N, dims) float64 Inception features of uint8 (N, H, W, 3) frames."""
        check_frames(frames, metric="fid")
        out = np.empty((len(frames), self.dims), np.float64)
        for i in range(0, len(frames), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(frames[i:i + self.batch_size])).to(self.device)
            # contiguous NCHW float32 / 255, exactly what torchvision's ToTensor gives (a channels-last view
            # would pick other conv kernels and move features by float32 rounding)
            x = batch.permute(0, 3, 1, 2).contiguous().to(torch.float32) / 255.0
            with torch.inference_mode():
                pred = self.model(x)[0]
                if pred.shape[2:] != (1, 1):  # dims < 2048: pytorch-fid averages the feature map
                    pred = torch.nn.functional.adaptive_avg_pool2d(pred, (1, 1))
            out[i:i + len(batch)] = pred.reshape(len(batch), -1).double().cpu().numpy()
        return out

    def accumulator(self) -> StatsAccumulator:
        """A fresh one-pass statistics accumulator (feed it `features(...)` batch by batch)."""
        return StatsAccumulator()

    def statistics(self, frame_batches: Iterable[np.ndarray]) -> FeatureStats:
        """Statistics of all frames in an iterable of uint8 (B, H, W, 3) batches."""
        acc = self.accumulator()
        for frames in frame_batches:
            acc.update(self.features(frames))
        return acc.finalize()

    def distance(self, a: FeatureStats, b: FeatureStats) -> float:
        """FID between two sets' statistics."""
        return frechet_distance(a, b, method=self.method)

    def weights_sha256(self) -> str:
        """sha256 of the Inception weights this object loaded."""
        return file_provenance(weights.get(FID_WEIGHTS).path())["sha256"]

    def reference_stats(self, frame_batches: Callable[[], Iterable[np.ndarray]], *, cache_dir: str | os.PathLike,
                        store_fingerprint: str, split: str, image_size: tuple[int, int]) -> FeatureStats:
        """A store split's statistics, read from cache_dir when computed before with the same weights."""
        meta = {"store": store_fingerprint, "split": split, "image_size": list(image_size), "dims": self.dims,
                "weights_sha256": self.weights_sha256(), "protocol": "pytorch-fid bilinear299",
                "stats_version": STATS_VERSION}
        key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:20]
        path = Path(cache_dir) / f"fid_ref_{key}.npz"
        if path.is_file():
            stats, cached_meta = FeatureStats.load(path)
            if cached_meta == meta:
                return stats
        stats = self.statistics(frame_batches())
        stats.save(path, meta)
        return stats

    def describe(self) -> dict[str, Any]:
        """Provenance: pytorch-fid version, Inception weights and hash, resize and statistics settings."""
        return {
            **base_description(self.spec),
            "settings": {"dims": self.dims, "resize": "bilinear 299x299, align_corners=False",
                         "input_scaling": "uint8 / 255 -> [0,1] -> 2x-1", "stats_dtype": "float64",
                         "covariance": "unbiased (N-1)", "frechet": self.method, "eps": 1e-6,
                         "weights_hash_verified": self.verify_hash},
        }
