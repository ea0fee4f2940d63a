"""Figures from a results directory (matplotlib, Agg backend): a bar chart per metric with CI error bars, the
per-video distribution of each metric per method, the intervals as a dot plot and speed against quality (the
generation time per frame the runner records). Written as PNG and PDF (for papers), or as an SVG data URI for
the HTML report."""

from __future__ import annotations

import base64
import io
import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from bench.results import MIN_VIDEOS_FOR_CI, WEIGHTING_LABELS, Results  # noqa: E402
from plumbing.files import atomic_path  # noqa: E402
from reports.tables import board, fmt, has_interval  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # no timestamps or tool versions in the files: the same results give the same bytes
    metadata = {".pdf": {"CreationDate": None, "Producer": None}}.get(path.suffix, {"Software": None})
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:  # a failed save leaves no half-written figure
            fig.savefig(tmp, dpi=120, bbox_inches="tight", metadata=metadata)
    finally:
        plt.close(fig)
    return path


def _shown_interval(cell: Any) -> tuple[float, float]:
    """(low, high) of a cell's interval where the tables report it (reports.tables.has_interval: enough videos),
    else (nan, nan): a figure must not draw what the tables withhold."""
    if has_interval(cell):
        return float(cell["ci_low"]), float(cell["ci_high"])
    return math.nan, math.nan


def _few_videos(b: Any, methods: list[str], metric: str) -> bool:
    return any(b.cells[(m, metric)]["weighting"] != "set" and not has_interval(b.cells[(m, metric)]) for m in methods)


def bar_chart(results: Results, metric: str, path: str | os.PathLike, by: str = "frame") -> Path:
    """One bar per method with its bootstrap CI as error bars; infinite values are labelled, not drawn."""
    return _save(bar_figure(results, metric, by), Path(path))


def bar_figure(results: Any, metric: str, by: str = "frame") -> plt.Figure:
    """The figure of bar_chart."""
    b = board(results, by)
    methods = [m for m in b.methods if (m, metric) in b.cells]
    means = np.array([float(b.cells[(m, metric)]["mean"]) for m in methods])
    lo = np.array([_shown_interval(b.cells[(m, metric)])[0] for m in methods])
    hi = np.array([_shown_interval(b.cells[(m, metric)])[1] for m in methods])
    finite = np.isfinite(means)
    heights = np.where(finite, means, 0.0)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(methods), 3.2))
    x = np.arange(len(methods))
    ax.bar(x, heights, color="#4c72b0")
    # error bars only where an interval is reported: a zero-width cap would read as a certain value
    shown = finite & np.isfinite(lo) & np.isfinite(hi)
    if shown.any():
        ax.errorbar(x[shown], means[shown], yerr=np.vstack([means[shown] - lo[shown], hi[shown] - means[shown]]),
                    fmt="none", ecolor="black", capsize=4)
    for i, m in enumerate(means):
        if not finite[i]:
            ax.annotate(fmt(m), (x[i], 0), ha="center", va="bottom")
    ax.set_xticks(x, methods, rotation=30, ha="right")
    arrow = "higher is better" if b.higher_is_better.get(metric) else "lower is better"
    ax.set_ylabel(f"{metric} ({arrow})")
    few = f"\nno interval below {MIN_VIDEOS_FOR_CI} videos" if _few_videos(b, methods, metric) else ""
    ax.set_title(f"{metric}: {WEIGHTING_LABELS[by].split(' (')[0]}{few}", fontsize=9)
    return fig


def video_distribution(results: Results, metric: str, path: str | os.PathLike) -> Path:
    """Per-video means of one metric per method: a box plot with every video as a point."""
    return _save(distribution_figure(results, metric), Path(path))


def distribution_figure(results: Any, metric: str) -> plt.Figure:
    """The figure of video_distribution."""
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
    return fig


def interval_figure(results: Any, metric: str, by: str = "frame") -> plt.Figure:
    """Each method's mean as a dot with its bootstrap CI as a horizontal line (a forest plot): overlap at a
    glance."""
    b = board(results, by)
    methods = [m for m in b.methods if (m, metric) in b.cells]
    fig, ax = plt.subplots(figsize=(5.0, 0.8 + 0.35 * max(1, len(methods))))
    for i, m in enumerate(methods):
        c = b.cells[(m, metric)]
        mean, (lo, hi) = float(c["mean"]), _shown_interval(c)
        if math.isfinite(lo) and math.isfinite(hi):
            ax.plot([lo, hi], [i, i], color="#4c72b0", lw=2)
        if math.isfinite(mean):
            ax.plot([mean], [i], "o", color="#dd8452")
    ax.set_yticks(range(len(methods)), methods)
    ax.invert_yaxis()
    arrow = "higher is better" if b.higher_is_better.get(metric) else "lower is better"
    few = f"; no interval below {MIN_VIDEOS_FOR_CI} videos" if _few_videos(b, methods, metric) else ""
    ax.set_xlabel(f"{metric} ({arrow}), {int(100 * _ci_level(results))}% bootstrap CI over videos{few}")
    ax.set_title(f"{metric}: {WEIGHTING_LABELS[by].split(' (')[0]}", fontsize=9)
    return fig


def _ci_level(results: Any) -> float:
    return float(results.manifest.get("bootstrap", {}).get("ci_level", 0.95))


def seconds_per_frame(results: Any) -> dict[str, float]:
    """Generation seconds per frame of each method label, as the runner recorded it (empty for older runs)."""
    out = {}
    for label, m in results.manifest.get("run", {}).get("methods", {}).items():
        spf = m.get("seconds_per_frame") if isinstance(m, dict) else None
        if isinstance(spf, (int, float)) and spf > 0:
            out[label] = float(spf)
    return out


def speed_figure(results: Any, metric: str, by: str = "frame") -> plt.Figure | None:
    """Quality (mean with CI) against generation time per frame, one point per method; None when the run
    recorded no generation time."""
    speed = seconds_per_frame(results)
    b = board(results, by)
    methods = [m for m in b.methods if (m, metric) in b.cells and m in speed]
    if not methods:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for m in methods:
        c = b.cells[(m, metric)]
        mean, (lo, hi) = float(c["mean"]), _shown_interval(c)
        if not math.isfinite(mean):
            continue
        err = [[mean - lo], [hi - mean]] if math.isfinite(lo) and math.isfinite(hi) else None
        ax.errorbar([1000 * speed[m]], [mean], yerr=err, fmt="o", capsize=4)
        ax.annotate(m, (1000 * speed[m], mean), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:.3g}")  # 1.6, not 1.6x10^0, on a narrow log range
    ax.xaxis.set_major_formatter(plain)
    times = [1000 * speed[m] for m in methods]
    # within about a decade the minor ticks carry the numbers; over a wider range their labels would overlap
    ax.xaxis.set_minor_formatter(plain if max(times) <= 10 * min(times) else NullFormatter())
    ax.set_xlabel("generation time per frame (ms, log scale)")
    arrow = "higher is better" if b.higher_is_better.get(metric) else "lower is better"
    ax.set_ylabel(f"{metric} ({arrow})")
    ax.set_title(f"{metric} against speed", fontsize=9)
    return fig


def svg_data_uri(fig: plt.Figure) -> str:
    """A figure as an SVG data URI (the HTML report embeds its plots: no file beside it, no external link)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def figures(results: Any, out_dir: str | os.PathLike, by: str = "frame",
            formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Every figure for every metric (bars, distribution, intervals, speed against quality where timed) in each
    format (png, pdf: for papers); returns the files written."""
    out = Path(out_dir)
    per_video_metrics = set(results.videos()["metric"])
    paths = []
    for metric in results.metrics:
        builders = [("bar", lambda m=metric: bar_figure(results, m, by)),
                    ("intervals", lambda m=metric: interval_figure(results, m, by)),
                    ("speed", lambda m=metric: speed_figure(results, m, by))]
        if metric in per_video_metrics:
            builders.append(("videos", lambda m=metric: distribution_figure(results, m)))
        for stem, build in builders:
            for ext in formats:
                fig = build()  # one figure per file: _save closes it
                if fig is None:
                    break
                paths.append(_save(fig, out / f"{stem}_{metric}.{ext}"))
    return paths


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

