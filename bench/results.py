"""The results format: the single source of truth for its schema, writer, reader, aggregation and bootstrap.

Layout of a results directory (readable with plain pyarrow, pandas or DuckDB; no torch needed)::

    RESULTS/
      frames.parquet       one row per (method, video, frame, metric): value (NaN when skipped), skipped
      videos.parquet       one row per (method, video, metric): mean over valid frames, sum, frame counts
                           (PSNR: `sum` holds the summed squared errors and `mean` is the PSNR of their mean,
                           see POOLINGS)
      aggregates.parquet   one row per (method, metric, weighting): mean, 95% bootstrap CI over videos, counts;
                           weighting "frame" (FOMM: all frames of all videos pooled), "video" (Monkey-Net: mean
                           of per-video means) or "set" (a distance between frame sets, e.g. FID: no CI)
      comparisons.parquet  one row per (metric, weighting, method pair): paired bootstrap of the mean difference
      samples/             a few PNG frames per video: samples/<method>/<video>/%07d.png, with the inputs under
                           samples/_source/ and samples/_driving/ (the ground truth in reconstruction);
                           <video> is the id percent-escaped into one safe name (sample_dir_name), and
                           every sample path goes through plumbing.ids.safe_join (sample_path)
      manifest.json        written last: run settings, methods and metric provenance, package versions per
                           versions id, and each table's sha256 and row count

Every row carries its provenance (PROVENANCE_COLUMNS), so a table concatenated from several runs stays
self-describing. Tables are written under a temporary name and renamed; the manifest is written last and is
removed first when a directory is overwritten, so a run that died never opens as complete.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import time
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from plumbing.errors import AnimbenchError
from plumbing.files import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    load_manifest,
    manifest_format,
    sha256_file,
    verify_tables,
)
from plumbing.ids import safe_join

FORMAT_NAME = "animbench-results"
SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
FRAMES_FILE = "frames.parquet"
VIDEOS_FILE = "videos.parquet"
AGGREGATES_FILE = "aggregates.parquet"
COMPARISONS_FILE = "comparisons.parquet"
SAMPLES_DIR = "samples"
TABLES = (FRAMES_FILE, VIDEOS_FILE, AGGREGATES_FILE, COMPARISONS_FILE)
WEIGHTINGS = ("frame", "video")
WEIGHTING_LABELS = {
    "frame": "frame-weighted mean over all frames of all videos (FOMM)",
    "video": "video-weighted mean of per-video means (Monkey-Net)",
    "set": "one distance between the frame sets (no per-video values, no CI)",
}
DEFAULT_BOOT = 1000
DEFAULT_CI = 0.95

# Identical frames have MSE 0 and an infinite PSNR. The cap, 100 dB (MSE 1e-10), lies above the PSNR of any
# visible difference (one 8-bit level in one value of a 256x256 RGB frame is ~101 dB) and keeps every mean,
# interval and comparison finite; pooling squared errors (POOLINGS) keeps a single identical frame
# (copy-source's frame 0) from adding 100 dB to a mean.
PSNR_CAP_DB = 100.0
# How a metric's per-frame values pool into per-video and per-run means.
POOLINGS = {
    "mean": "arithmetic mean of the per-frame values",
    "psnr": "psnr of the mean squared error: per-frame PSNR values are turned back into mean squared errors "
            "(MSE = 10^(-PSNR/10)), those are averaged (over a video, or over all frames for the frame-weighted "
            f"mean) and the mean is converted to PSNR, capped at {PSNR_CAP_DB:g} dB",
}


# Below this many videos a bootstrap over videos says little: with n videos there are at most C(2n-1, n)
# distinct resamples (35 for n = 4, 126 for n = 5) and the percentile interval of a handful of values is
# narrower than the true uncertainty (with 2 videos an interval end often equals the estimate). Tables print
# no interval and no p_boot below it and say so; the aggregates keep the numbers for anyone who wants them.
MIN_VIDEOS_FOR_CI = 5


def interval_is_shown(n_videos: int) -> bool:
    """Whether a bootstrap interval over n videos is reported (MIN_VIDEOS_FOR_CI or more videos)."""
    return int(n_videos) >= MIN_VIDEOS_FOR_CI


def p_boot_text(p: float, n_boot: int) -> str:
    """A bootstrap p as text: a share of 0 resamples reads '< 1/B' (B resamples cannot resolve less)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    if p == 0:
        return f"< 1/{int(n_boot)}"
    return f"{p:.3g}"


def leaderboard_of(aggregates: pd.DataFrame, methods: list[str], metrics: list[str], by: str) -> pd.DataFrame:
    """The rows of one weighting ('frame' or 'video'; set metrics always join), methods and metrics in the given
    order: the one leaderboard rule of a results directory and of several merged (reports.merge)."""
    if by not in WEIGHTINGS:
        raise AnimbenchError(f"leaderboard --by {by!r}: expected one of {list(WEIGHTINGS)}")
    a = aggregates[aggregates["weighting"].isin([by, "set"])]
    order = {m: i for i, m in enumerate(methods)}
    morder = {m: i for i, m in enumerate(metrics)}
    return a.sort_values(by=["method", "metric"], key=lambda s: s.map(order if s.name == "method" else morder),
                         kind="stable").reset_index(drop=True)


def psnr_from_mse(mse: Any) -> np.ndarray:
    """PSNR in dB (data range 1) of mean squared errors, capped at PSNR_CAP_DB (identical frames included)."""
    floor = 10.0 ** (-PSNR_CAP_DB / 10.0)
    return 10.0 * np.log10(1.0 / np.maximum(np.asarray(mse, np.float64), floor))


def mse_from_psnr(psnr: Any) -> np.ndarray:
    """The mean squared errors (data range 1) of PSNR values, the inverse of psnr_from_mse below the cap."""
    return 10.0 ** (-np.minimum(np.asarray(psnr, np.float64), PSNR_CAP_DB) / 10.0)


def _pooled(x: np.ndarray, pooling: str) -> np.ndarray:
    """Per-frame values -> the quantity that is summed and averaged."""
    return mse_from_psnr(x) if pooling == "psnr" else x


def _unpooled(x: Any, pooling: str) -> Any:
    """An average of pooled quantities -> the reported value."""
    return psnr_from_mse(x) if pooling == "psnr" else x


def check_pooling(pooling: dict[str, str] | None) -> dict[str, str]:
    """A metric -> pooling map with known poolings only (metrics absent from it pool by 'mean')."""
    pooling = dict(pooling or {})
    bad = {m: p for m, p in pooling.items() if p not in POOLINGS}
    if bad:
        raise ValueError(f"unknown pooling {bad}: expected one of {sorted(POOLINGS)}")
    return pooling

# Where a value came from: identical on every row of one (method, metric) in one run.
PROVENANCE_COLUMNS = (
    "method_name", "checkpoint_sha256", "config_path", "config_sha256", "store_fingerprint", "split",
    "metric_backend", "metric_weights_sha256", "protocol", "protocol_variant", "quantisation", "versions_id",
)
# What the runner supplies per frame; everything else is derived here.
FRAME_COLUMNS = ("method", "video_id", "frame_index", "source_video", "source_frame", "driving_video", "metric",
                 "value", "skipped") + PROVENANCE_COLUMNS
ITEM_COLUMNS = ("source_video", "source_frame", "driving_video")


def sample_dir_name(video_id: str) -> str:
    """The samples folder name of a video id: '%', path separators, control characters and a leading '.' or
    surrounding space percent-escaped, so the name is one path component that `unquote` maps back to the id."""
    def escape(c: str) -> str:
        if c in "%/\\" or unicodedata.category(c).startswith("C"):
            return "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        return c

    name = "".join(escape(c) for c in video_id)
    if name[:1] in (".", " "):
        name = f"%{ord(name[0]):02X}" + name[1:]
    if name[-1:] == " ":
        name = name[:-1] + "%20"
    return name


def sample_path(root: str | os.PathLike, method: str, video_id: str, frame_index: int) -> Path:
    """ROOT/samples/<method>/<video>/%07d.png through plumbing.ids.safe_join: never outside ROOT/samples, or a
    one-line error (an id whose escaped name is empty or too long for one file name)."""
    return safe_join(Path(root) / SAMPLES_DIR, method, sample_dir_name(video_id), f"{frame_index:07d}.png")


def sample_indices(n: int, k: int) -> list[int]:
    """k evenly spaced frame indices of an n-frame video (first and last included)."""
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))})


def write_sample(root: str | os.PathLike, method: str, video_id: str, frame_index: int, frame: np.ndarray) -> None:
    """Write one uint8 (H, W, 3) frame as a lossless PNG at its sample_path, atomically."""
    from prep.imagecodec import EncodeOptions, encode_image  # only writers need the codec; readers stay light

    path = sample_path(root, method, video_id, frame_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(encode_image(frame, EncodeOptions("png")), path)


def discard_results_dir(out: Path, existed: bool) -> None:
    """After a failed run: remove what it wrote, so the same command can run again without --overwrite (a folder
    that existed before the run is kept, empty, as prepare_results_dir required it to be or made it)."""
    shutil.rmtree(out, ignore_errors=True)
    if existed:
        out.mkdir(parents=True, exist_ok=True)


def versions_id(versions: dict[str, str]) -> str:
    """A short stable id of a package-versions dict (rows carry the id, the manifest the dict)."""
    return hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:12]


def _atomic_table(df: pd.DataFrame, path: Path) -> dict[str, Any]:
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp, compression="zstd")
    return {"sha256": sha256_file(path), "rows": len(df)}


def prepare_results_dir(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create an empty results directory; with overwrite, the old manifest goes first, then everything else."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AnimbenchError(f"results {out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise AnimbenchError(f"results {out}: directory is not empty (pass --overwrite to replace it)")
        if not ((out / MANIFEST_FILE).is_file() or (out / SAMPLES_DIR).is_dir()):
            raise AnimbenchError(f"results {out}: not a results directory (no {MANIFEST_FILE} or {SAMPLES_DIR}/), "
                                 "so --overwrite will not delete it")
        kind = manifest_format(out / MANIFEST_FILE)
        if kind not in (None, FORMAT_NAME):  # e.g. the frame store being benched: never delete it
            raise AnimbenchError(f"results {out}: holds a {kind} manifest, not results, so --overwrite will not "
                                 "delete it; expected a new folder or an earlier results directory")
        (out / MANIFEST_FILE).unlink(missing_ok=True)  # from here on the old run no longer opens as complete
        shutil.rmtree(out)
    (out / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    return out


# ---------------------------------------------------------------------------------------------- aggregation
def per_video(frames: pd.DataFrame, pooling: dict[str, str] | None = None) -> pd.DataFrame:
    """Per-video rows from per-frame rows: mean over valid frames, their sum, and frame counts (a metric pooled
    as 'psnr' sums squared errors and reports the PSNR of their mean)."""
    pooling = check_pooling(pooling)
    keys = ["method", "video_id", "metric"]
    psnr = frames["metric"].map(lambda m: pooling.get(m) == "psnr").astype(bool)
    pooled = frames["value"].where(~psnr, pd.Series(_pooled(frames["value"].to_numpy(), "psnr"), frames.index))
    f = frames.assign(_valid=~frames["skipped"], _v=pooled.where(~frames["skipped"], 0.0))
    g = f.groupby(keys, sort=True)
    out = g.agg(sum=("_v", "sum"), n_frames=("frame_index", "size"), n_valid=("_valid", "sum")).reset_index()
    first = g[list(ITEM_COLUMNS) + list(PROVENANCE_COLUMNS)].first().reset_index()
    out = out.merge(first, on=keys)
    out["n_valid"] = out["n_valid"].astype("int64")
    out["n_skipped"] = out["n_frames"] - out["n_valid"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean"] = np.where(out["n_valid"] > 0, out["sum"] / out["n_valid"].clip(lower=1), np.nan)
        is_psnr = out["metric"].map(lambda m: pooling.get(m) == "psnr").astype(bool).to_numpy()
        out.loc[is_psnr, "mean"] = _unpooled(out.loc[is_psnr, "mean"].to_numpy(), "psnr")
    cols = keys + list(ITEM_COLUMNS) + ["mean", "sum", "n_frames", "n_valid", "n_skipped"]
    return out[cols + list(PROVENANCE_COLUMNS)].sort_values(keys, kind="stable").reset_index(drop=True)


def bootstrap_rng(seed: int, metric: str, weighting: str, *video_ids: Iterable[Any]) -> np.random.Generator:
    """The resampling stream of one interval: keyed by the metric, the weighting and the videos resampled (in
    sorted order), never by a method's label or by which other methods ran, so one model on one store gives one
    interval whatever it is called."""
    videos = hashlib.sha256("\n".join("\t".join(sorted(map(str, ids))) for ids in video_ids).encode()).hexdigest()
    return np.random.default_rng([seed] + [zlib.crc32(k.encode()) for k in (metric, weighting, videos)])


def _statistic(sums: np.ndarray, counts: np.ndarray, weighting: str, idx: np.ndarray | None = None,
               pooling: str = "mean") -> np.ndarray:
    """Frame-weighted (pooled sums / pooled counts) or video-weighted (mean of means) statistic."""
    s, c = (sums, counts) if idx is None else (sums[idx], counts[idx])
    with np.errstate(invalid="ignore", divide="ignore"):
        if weighting == "frame":
            return _unpooled(s.sum(axis=-1) / c.sum(axis=-1), pooling)
        return _unpooled(s / c, pooling).mean(axis=-1)


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return math.nan, math.nan
    # linear interpolation between +inf values gives NaN (PSNR of identical frames): use nearest ranks then
    method = "linear" if np.isfinite(stats).all() else "nearest"
    lo, hi = np.quantile(stats, q, method=method)
    return float(lo), float(hi)


def bootstrap_ci(sums: np.ndarray, counts: np.ndarray, weighting: str, *, n_boot: int = DEFAULT_BOOT,
                 level: float = DEFAULT_CI, rng: np.random.Generator,
                 pooling: str = "mean") -> tuple[float, float, float]:
    """(estimate, low, high): percentile bootstrap over videos (videos resampled with replacement)."""
    sums, counts = np.asarray(sums, np.float64), np.asarray(counts, np.float64)
    if sums.size == 0:
        return math.nan, math.nan, math.nan
    estimate = float(_statistic(sums, counts, weighting, pooling=pooling))
    idx = rng.integers(0, sums.size, size=(n_boot, sums.size))
    lo, hi = _percentiles(_statistic(sums, counts, weighting, idx, pooling), level)
    return estimate, lo, hi


def _joined(values: Iterable[Any]) -> str:
    return "+".join(sorted({str(v) for v in values}))


def aggregate(videos: pd.DataFrame, *, higher_is_better: dict[str, bool], n_boot: int = DEFAULT_BOOT,
              level: float = DEFAULT_CI, seed: int = 0, pooling: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per (method, metric, weighting) with the estimate, its bootstrap CI over videos and counts."""
    rows = []
    for (method, metric), g in videos.groupby(["method", "metric"], sort=True):
        used = g[g["n_valid"] > 0].sort_values("video_id", kind="stable")
        for weighting in WEIGHTINGS:
            rng = bootstrap_rng(seed, metric, weighting, used["video_id"])
            est, lo, hi = bootstrap_ci(used["sum"].to_numpy(), used["n_valid"].to_numpy(), weighting,
                                       n_boot=n_boot, level=level, rng=rng,
                                       pooling=(pooling or {}).get(metric, "mean"))
            row = {"method": method, "metric": metric, "weighting": weighting, "mean": est, "ci_low": lo,
                   "ci_high": hi, "ci_level": level, "n_boot": n_boot, "n_videos": len(g),
                   "n_videos_used": len(used), "n_frames": int(g["n_frames"].sum()),
                   "n_valid": int(g["n_valid"].sum()), "n_skipped": int(g["n_skipped"].sum()),
                   "higher_is_better": bool(higher_is_better.get(metric, False))}
            row.update({c: _joined(g[c]) for c in PROVENANCE_COLUMNS})
            rows.append(row)
    return pd.DataFrame(rows, columns=_AGG_COLUMNS)


_AGG_COLUMNS = ["method", "metric", "weighting", "mean", "ci_low", "ci_high", "ci_level", "n_boot", "n_videos",
                "n_videos_used", "n_frames", "n_valid", "n_skipped", "higher_is_better", *PROVENANCE_COLUMNS]
_CMP_COLUMNS = ["metric", "weighting", "method_a", "method_b", "n_videos", "mean_a", "mean_b", "diff", "ci_low",
                "ci_high", "p_boot", "better", "higher_is_better", "ci_level", "n_boot"]


def paired_comparison(a: pd.DataFrame, b: pd.DataFrame, weighting: str, *, higher_is_better: bool,
                      names: tuple[str, str], n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_CI,
                      rng: np.random.Generator, pooling: str = "mean") -> dict[str, Any]:
    """Paired bootstrap of (statistic of a) - (statistic of b) over the videos both scored.

    The same resampled videos enter both statistics. `p_boot` is the share of resamples in which the observed
    winner does not come out ahead: a one-sided bootstrap analogue of a p-value (small = a robust winner).
    """
    m = a[a["n_valid"] > 0].merge(b[b["n_valid"] > 0], on="video_id", suffixes=("_a", "_b"))
    m = m.sort_values("video_id", kind="stable")  # resampled in id order: the input's order does not matter
    row = {"metric": a["metric"].iloc[0] if len(a) else "", "weighting": weighting, "method_a": names[0],
           "method_b": names[1], "n_videos": len(m), "higher_is_better": higher_is_better, "ci_level": level,
           "n_boot": n_boot}
    if m.empty:
        return {**row, "mean_a": math.nan, "mean_b": math.nan, "diff": math.nan, "ci_low": math.nan,
                "ci_high": math.nan, "p_boot": math.nan, "better": "undefined"}
    sa, ca = m["sum_a"].to_numpy(float), m["n_valid_a"].to_numpy(float)
    sb, cb = m["sum_b"].to_numpy(float), m["n_valid_b"].to_numpy(float)
    mean_a = float(_statistic(sa, ca, weighting, pooling=pooling))
    mean_b = float(_statistic(sb, cb, weighting, pooling=pooling))
    with np.errstate(invalid="ignore"):
        diff = mean_a - mean_b
        idx = rng.integers(0, len(m), size=(n_boot, len(m)))
        boot = _statistic(sa, ca, weighting, idx, pooling) - _statistic(sb, cb, weighting, idx, pooling)
    lo, hi = _percentiles(boot, level)
    if math.isnan(diff):
        better, p = "undefined", math.nan
    elif diff == 0:
        better, p = "tie", 1.0
    else:
        better = names[0] if (diff > 0) == higher_is_better else names[1]
        with np.errstate(invalid="ignore"):
            p = float(np.mean(~(boot * np.sign(diff) > 0)))  # NaN resamples count as "not ahead"
    return {**row, "mean_a": mean_a, "mean_b": mean_b, "diff": diff, "ci_low": lo, "ci_high": hi, "p_boot": p,
            "better": better}


def _scored(rows: pd.DataFrame) -> pd.Series:
    return rows.loc[rows["n_valid"] > 0, "video_id"]


def compare_methods(videos: pd.DataFrame, *, higher_is_better: dict[str, bool], n_boot: int = DEFAULT_BOOT,
                    level: float = DEFAULT_CI, seed: int = 0, pooling: dict[str, str] | None = None) -> pd.DataFrame:
    """Paired comparisons of every pair of methods (sorted names: a < b) on every metric and weighting."""
    rows = []
    for metric, g in videos.groupby("metric", sort=True):
        by_method = {k: v for k, v in g.groupby("method", sort=True)}
        names = sorted(by_method)
        for i, ma in enumerate(names):
            for mb in names[i + 1:]:
                for weighting in WEIGHTINGS:
                    rows.append(paired_comparison(
                        by_method[ma], by_method[mb], weighting, higher_is_better=higher_is_better.get(metric, False),
                        names=(ma, mb), n_boot=n_boot, level=level,
                        rng=bootstrap_rng(seed, metric, weighting, _scored(by_method[ma]), _scored(by_method[mb])),
                        pooling=(pooling or {}).get(metric, "mean")))
    return pd.DataFrame(rows, columns=_CMP_COLUMNS)


# --------------------------------------------------------------------------------------------------- writer
def _frame_table(rows: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in FRAME_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"per-frame rows lack columns {missing}")
    df = rows[list(FRAME_COLUMNS)].copy()
    df["frame_index"] = df["frame_index"].astype("int32")
    df["source_frame"] = df["source_frame"].astype("int32")
    df["value"] = df["value"].astype("float64")
    # a NaN value counts as skipped: it can enter no mean
    df["skipped"] = df["skipped"].astype(bool) | df["value"].isna()
    df.loc[df["skipped"], "value"] = np.nan
    # sorted output: the same bench gives the same bytes whatever order its workers finished in
    return df.sort_values(["method", "video_id", "frame_index", "metric"], kind="stable").reset_index(drop=True)


def assemble(outputs: dict[str, list[dict[str, Any]]], columns: dict[str, dict[str, Any]], *, n_videos: int,
             set_value: Callable[[str, list, list], tuple[float, int]],
             ) -> tuple[pd.DataFrame, list[dict[str, Any]], dict[str, dict[str, str]], dict[str, Any]]:
    """Task outputs per method label, in method order -> (frame rows with their provenance `columns`, set-metric
    rows, package versions by versions id, metric info). `set_value(metric, real moments, predicted moments)`
    gives a set metric's (value, frames); the real set comes from the first method's tasks."""
    versions: dict[str, dict[str, str]] = {}
    frames, set_rows = [], []
    metric_info: dict[str, Any] = {}
    real_moments: dict[str, list] = {}
    for key, parts in outputs.items():
        cols = columns[key]
        pred_moments: dict[str, list] = {}
        for d in parts:
            vid = versions_id(d["versions"])
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
            value, n = set_value(name, real_moments[name], pm)
            info = parts[0]["metrics"][name]
            set_rows.append({**cols, "metric": name, "mean": value, "n_frames": n, "n_videos": n_videos,
                             "versions_id": versions_id(parts[0]["versions"]),
                             "metric_backend": info["metric_backend"],
                             "metric_weights_sha256": info["metric_weights_sha256"]})
    all_frames = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(FRAME_COLUMNS))
    return all_frames, set_rows, versions, metric_info


def write_results(out: str | os.PathLike, frame_rows: pd.DataFrame, *, run: dict[str, Any],
                  versions: dict[str, dict[str, str]], higher_is_better: dict[str, bool],
                  set_rows: Sequence[dict[str, Any]] = (), n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_CI,
                  seed: int = 0, pooling: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the four tables (atomically) into a prepared directory, then the manifest (last); return it.

    `set_rows` are set metrics (FID): dicts with method, metric, mean, n_frames and the provenance columns.
    `pooling` maps a metric to how its frames pool (POOLINGS; 'mean' when absent, 'psnr' for PSNR).
    """
    out = Path(out)
    if not out.is_dir():
        raise AnimbenchError(f"results {out}: no such directory (call prepare_results_dir first)")
    frames = _frame_table(frame_rows)
    unknown = set(frames["versions_id"]) - set(versions)
    if unknown:
        raise ValueError(f"rows name versions ids {sorted(unknown)} that are not in `versions`")
    pooling = check_pooling(pooling)
    videos = per_video(frames, pooling)
    aggs = aggregate(videos, higher_is_better=higher_is_better, n_boot=n_boot, level=level, seed=seed,
                     pooling=pooling)
    if set_rows:
        extra = pd.DataFrame([{"weighting": "set", "ci_low": math.nan, "ci_high": math.nan, "ci_level": level,
                               "n_boot": 0, "n_valid": r.get("n_frames"), "n_skipped": 0,
                               "higher_is_better": bool(higher_is_better.get(r["metric"], False)), **r}
                              for r in set_rows])
        aggs = pd.concat([aggs, extra.reindex(columns=_AGG_COLUMNS)], ignore_index=True) if len(aggs) else \
            extra.reindex(columns=_AGG_COLUMNS)
    aggs = aggs.sort_values(["method", "metric", "weighting"], kind="stable").reset_index(drop=True)
    comps = compare_methods(videos, higher_is_better=higher_is_better, n_boot=n_boot, level=level, seed=seed,
                            pooling=pooling)
    tables = {FRAMES_FILE: _atomic_table(frames, out / FRAMES_FILE),
              VIDEOS_FILE: _atomic_table(videos, out / VIDEOS_FILE),
              AGGREGATES_FILE: _atomic_table(aggs, out / AGGREGATES_FILE),
              COMPARISONS_FILE: _atomic_table(comps, out / COMPARISONS_FILE)}
    samples = sorted(p.relative_to(out).as_posix() for p in (out / SAMPLES_DIR).rglob("*.png"))
    manifest = {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": run,
        "bootstrap": {"n_boot": n_boot, "ci_level": level, "seed": seed, "over": "videos",
                      "method": "percentile; paired resampling for comparisons"},
        "weightings": WEIGHTING_LABELS,
        "higher_is_better": dict(sorted(higher_is_better.items())),
        "pooling": {m: POOLINGS[pooling.get(m, "mean")] for m in sorted(set(frames["metric"]))},
        "versions": versions,
        "tables": tables,
        "samples": {"count": len(samples), "layout": "samples/<method>/<video_id>/%07d.png; inputs under "
                                                     "samples/_source and samples/_driving"},
    }
    atomic_write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n", out / MANIFEST_FILE)
    return manifest


# --------------------------------------------------------------------------------------------------- reader
def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """Load and check a results manifest; a directory without one is an unfinished run and does not open."""
    return load_manifest(root, label="results", filename=MANIFEST_FILE, format_name=FORMAT_NAME,
                         schema_version=SCHEMA_VERSION, missing_hint="the run did not finish; run the bench again")


class Results:
    """A complete results directory: the manifest and its tables as pandas DataFrames."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        for name, meta in self.manifest.get("tables", {}).items():
            path = self.root / name
            if not path.is_file():
                raise AnimbenchError(f"results {self.root}: table {name} named in {MANIFEST_FILE} is missing")
            try:
                rows = pq.ParquetFile(path).metadata.num_rows
            except (pa.ArrowException, OSError) as e:  # truncated or not Parquet: bad input, not a crash
                raise AnimbenchError(f"results {self.root}: table {name} is unreadable ({e}); run the bench "
                                     "again") from None
            if rows != meta["rows"]:
                raise AnimbenchError(f"results {self.root}: table {name} has a different row count than "
                                     f"{MANIFEST_FILE} says ({meta['rows']})")

    def _read(self, name: str) -> pd.DataFrame:
        try:
            return pq.read_table(self.root / name).to_pandas()
        except (pa.ArrowException, OSError) as e:
            raise AnimbenchError(f"results {self.root}: table {name} is unreadable ({e}); run the bench "
                                 "again") from None

    def frames(self) -> pd.DataFrame:
        """Per-frame rows."""
        return self._read(FRAMES_FILE)

    def videos(self) -> pd.DataFrame:
        """Per-video rows."""
        return self._read(VIDEOS_FILE)

    def aggregates(self) -> pd.DataFrame:
        """Per (method, metric, weighting) rows with bootstrap CIs."""
        return self._read(AGGREGATES_FILE)

    def comparisons(self) -> pd.DataFrame:
        """Paired comparisons of method pairs."""
        return self._read(COMPARISONS_FILE)

    @property
    def methods(self) -> list[str]:
        """Method labels in the order the run listed them."""
        return list(self.manifest.get("run", {}).get("method_order", [])) or \
            sorted(self.aggregates()["method"].unique())

    @property
    def metrics(self) -> list[str]:
        """Metric names in the order the run listed them."""
        return list(self.manifest.get("run", {}).get("metric_order", [])) or \
            sorted(self.aggregates()["metric"].unique())

    def leaderboard(self, by: str = "frame") -> pd.DataFrame:
        """Aggregates of one weighting ('frame' or 'video'; set metrics such as FID always join), in run order."""
        return leaderboard_of(self.aggregates(), self.methods, self.metrics, by)

    def sample_frames(self, method: str, video_id: str) -> list[Path]:
        """Sample PNGs of one method ('_source', '_driving' for the inputs) and video, in frame order."""
        return sorted((self.root / SAMPLES_DIR / method / sample_dir_name(video_id)).glob("*.png"))

    def sample_videos(self) -> list[str]:
        """Videos that have sample frames."""
        d = self.root / SAMPLES_DIR / "_driving"
        return sorted(unquote(p.name) for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def verify_results(root: str | os.PathLike) -> list[str]:
    """Re-hash every table named in the manifest; return one message per problem (empty = intact)."""
    root = Path(root)
    try:
        manifest = read_manifest(root)
    except AnimbenchError as exc:
        return [str(exc)]
    return verify_tables(root, manifest)


# --------------------------------------------------------------------------------------------------- coverage
# the datasets whose official metadata csv a store can come from, by prep recipe name
DATASET_NAMES = {"vox": "VoxCeleb", "taichi": "TaiChi-HD"}


@dataclass(frozen=True)
class Coverage:
    """How many clips of an official test list a run scored: counts, the list's fingerprint, the missing ids."""

    dataset: str
    split: str
    source: str
    expected: int
    present: int
    fingerprint: str
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """'468 of 525 VoxCeleb test clips; 57 unavailable (test list sha256 0123abcd4567)'."""
        return (f"{self.present} of {self.expected} {self.dataset} {self.split} clips; {len(self.missing)} "
                f"unavailable (test list sha256 {self.fingerprint[:12]})")


def official_clip_ids(metadata: str | os.PathLike, split: str = "test") -> list[str]:
    """The clip ids of one partition of a vox/taichi-format metadata csv, named as prep names them
    (`[person_id#]video_id#start#end`, six-digit frames), sorted."""
    path = Path(metadata)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise AnimbenchError(f"official list {path}: cannot read ({exc.strerror or exc})") from None
    need = {"video_id", "start", "end", "partition"}
    if not rows or not need <= set(rows[0]):
        raise AnimbenchError(f"official list {path}: expected a metadata csv with columns "
                             f"{','.join(sorted(need))}[,person_id]")
    ids = []
    for n, row in enumerate(rows, start=2):
        if row["partition"].strip() != split:
            continue
        try:
            start, end = int(row["start"]), int(row["end"])
        except (TypeError, ValueError):
            raise AnimbenchError(f"official list {path} line {n}: start/end must be integers") from None
        person = [row["person_id"].strip()] if row.get("person_id") else []
        ids.append("#".join(person + [row["video_id"].strip(), f"{start:06d}", f"{end:06d}"]))
    return sorted(set(ids))


def coverage(present_ids: Iterable[str], metadata: str | os.PathLike, split: str = "test",
             dataset: str | None = None) -> Coverage:
    """Coverage of the official `split` list in `metadata` by the clip ids a run scored."""
    official = official_clip_ids(metadata, split)
    if not official:
        raise AnimbenchError(f"official list {metadata}: no clips in partition {split!r}")
    return coverage_of(present_ids, official, split, dataset or Path(metadata).stem, str(metadata))


def coverage_of(present_ids: Iterable[str], official: Iterable[str], split: str, dataset: str,
                source: str) -> Coverage:
    """Coverage of a list of clip ids (an official list, or the clips the store's prep run planned)."""
    official = sorted(set(official))
    present = set(present_ids)
    missing = [c for c in official if c not in present]
    fingerprint = hashlib.sha256("\n".join(official).encode()).hexdigest()
    return Coverage(dataset=dataset, split=split, source=source, expected=len(official),
                    present=len(official) - len(missing), fingerprint=fingerprint, missing=missing)
