"""Figures from a results directory (matplotlib, Agg backend): a bar chart per metric with CI error bars,
and the per-video distribution of each metric per method."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench.results import WEIGHTING_LABELS, Results  # noqa: E402
from reports.tables import board, fmt  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    os.replace(tmp, path)
    return path


def bar_chart(results: Results, metric: str, path: str | os.PathLike, by: str = "frame") -> Path:
    """One bar per method with its bootstrap CI as error bars; infinite values are labelled, not drawn."""
    b = board(results, by)
    methods = [m for m in b.methods if (m, metric) in b.cells]
    means = np.array([float(b.cells[(m, metric)]["mean"]) for m in methods])
    lo = np.array([float(b.cells[(m, metric)]["ci_low"]) for m in methods])
    hi = np.array([float(b.cells[(m, metric)]["ci_high"]) for m in methods])
    finite = np.isfinite(means)
    heights = np.where(finite, means, 0.0)
    with np.errstate(invalid="ignore"):  # inf - inf where a mean is infinite: those bars are not drawn
        err = np.vstack([np.where(np.isfinite(lo) & finite, means - lo, 0),
                         np.where(np.isfinite(hi) & finite, hi - means, 0)])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(methods), 3.2))
    x = np.arange(len(methods))
    ax.bar(x, heights, yerr=np.nan_to_num(err), capsize=4, color="#4c72b0")
    for i, m in enumerate(means):
        if not finite[i]:
            ax.annotate(fmt(m), (x[i], 0), ha="center", va="bottom")
    ax.set_xticks(x, methods, rotation=30, ha="right")
    arrow = "higher is better" if b.higher_is_better.get(metric) else "lower is better"
    ax.set_ylabel(f"{metric} ({arrow})")
    ax.set_title(f"{metric}: {WEIGHTING_LABELS[by].split(' (')[0]}", fontsize=9)
    return _save(fig, Path(path))


def video_distribution(results: Results, metric: str, path: str | os.PathLike) -> Path:
    """Per-video means of one metric per method: a box plot with every video as a point."""
    v = results.videos()
    v = v[(v["metric"] == metric) & np.isfinite(v["mean"])]
    methods = [m for m in results.methods if m in set(v["method"])]
    data = [v.loc[v["method"] == m, "mean"].to_numpy() for m in methods]
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * max(1, len(methods)), 3.2))
    if methods:
        ax.boxplot(data, showfliers=False)
        rng = np.random.default_rng(0)  # fixed jitter: the same results give the same figure
        for i, d in enumerate(data, start=1):
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(d)), d, s=8, alpha=0.6, color="#dd8452")
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right")
    ax.set_ylabel(f"{metric} per video")
    ax.set_title(f"{metric}: per-video means (finite values)", fontsize=9)
    return _save(fig, Path(path))


def plot_all(results: Results, out_dir: str | os.PathLike, by: str = "frame") -> list[Path]:
    """Both figures for every metric; returns the files written."""
    out = Path(out_dir)
    paths = []
    per_video_metrics = set(results.videos()["metric"])
    for metric in results.metrics:
        paths.append(bar_chart(results, metric, out / f"bar_{metric}.png", by))
        if metric in per_video_metrics:
            paths.append(video_distribution(results, metric, out / f"videos_{metric}.png"))
    return paths

