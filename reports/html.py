"""A self-contained HTML report of a results directory (or any object with bench.results.Results' interface):
leaderboard, coverage, comparisons, plots, animated qualitative grids with a worst/best video selector,
per-video tables and provenance. Rendered from reports/templates/report.html by Jinja2 with autoescaping, so
video ids and method labels are always escaped; every image, animation and plot is a data URI (works offline).

The animated grid of a video is one animated WebP (Pillow): each frame places the source | driving or ground truth |
each method side by side, so the columns play in sync. Pose-transfer has no source column."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bench.results import WEIGHTING_LABELS, Results, interval_is_shown, p_boot_text, sample_dir_name
from plumbing.files import atomic_write_text
from reports.tables import board, fmt, footnotes, has_interval, metric_header, per_video_table, skipped_note

TEMPLATES = Path(__file__).parent / "templates"
# what the "_driving" samples are under each protocol, and which protocols give the method a source frame
# (pose-transfer does not: the method holds the subject and is driven by the poses of the stored frames)
INPUT_LABELS = {"reconstruction": "ground truth", "animation": "driving", "pose-transfer": "ground truth"}
NO_SOURCE_PROTOCOLS = ("pose-transfer",)
TILE = 128  # px per column of an animated grid
FRAME_MS = 600  # per animation frame: slow enough to compare columns
WORST_BEST = 3  # videos listed per end in the worst/best table


def _env() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True)


def _png_uri(path: Path) -> str:
    return _data_uri("image/png", path.read_bytes())


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _frame_label(path: Path) -> str:
    return path.stem.lstrip("0") or "0"


# ------------------------------------------------------------------------------------------------ sections
def _leaderboard(results: Any, by: str) -> dict[str, Any]:
    b = board(results, by)
    rows = []
    for method in b.methods:
        cells = []
        for metric in b.metrics:
            c = b.cells.get((method, metric))
            if c is None:
                cells.append(None)
                continue
            # the tables' rules (reports.tables): an interval only from enough videos
            ci = f"[{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]" if has_interval(c) else None
            cells.append({"mean": fmt(c["mean"]), "ci": ci, "best": method in b.best(metric),
                          "skipped": bool(skipped_note(c))})  # † as in the Markdown; the note says how many
        ns = {int(c["n_videos_used"]) for (m, _), c in b.cells.items() if m == method and c["weighting"] != "set"}
        rows.append({"method": method, "run": b.runs.get(method, "") if b.multi_run else None,
                     "n": ", ".join(map(str, sorted(ns))) or "–", "cells": cells})
    any_skipped = any(c and c["skipped"] for r in rows for c in r["cells"])
    return {"label": WEIGHTING_LABELS[by], "rows": rows, "multi_run": b.multi_run, "any_skipped": any_skipped,
            "metrics": [{"name": metric_header(results, m), "arrow": "↑" if b.higher_is_better.get(m) else "↓"}
                        for m in b.metrics],
            "notes": footnotes(results, b)}


def _comparisons(results: Any, by: str) -> list[dict[str, Any]]:
    c = results.comparisons()
    c = c[c["weighting"] == by]
    n_boot = int(results.manifest.get("bootstrap", {}).get("n_boot", 0) or 0)
    rows = []
    for _, r in c.iterrows():
        tested = interval_is_shown(int(r["n_videos"]))  # below the minimum: no interval, no test (reports.tables)
        rows.append({"metric": r["metric"], "a": r["method_a"], "b": r["method_b"], "diff": fmt(r["diff"]),
                     "ci": f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]" if tested else "",
                     "better": str(r["better"]) + ("" if tested else " (not tested)"),
                     "p": p_boot_text(float(r["p_boot"]), n_boot) if tested else "–", "n": int(r["n_videos"])})
    return rows


def _coverage(results: Any) -> dict[str, Any] | None:
    """The runs merged into this report (reports.merge: manifest["runs"]) and the official test list's coverage
    (`coverage()`: bench.results.Coverage or None); None when there is neither to show."""
    runs = [{"run": str(r.get("run")), "root": str(r.get("root")),
             "created": str(r.get("manifest", {}).get("created_utc", "")),
             "store": str(r.get("manifest", {}).get("run", {}).get("store", {}).get("fingerprint", "")),
             "protocol": str(r.get("manifest", {}).get("run", {}).get("protocol", {}).get("name", ""))}
            for r in results.manifest.get("runs", []) if isinstance(r, dict)]
    cov = getattr(results, "coverage", None)
    cov = cov() if callable(cov) else cov
    if cov is None and len(runs) < 2:
        return None
    summary = cov.summary() if hasattr(cov, "summary") else None
    missing = list(getattr(cov, "missing", []) or [])
    return {"runs": runs if len(runs) > 1 else [], "summary": summary, "missing": missing[:50],
            "more_missing": max(0, len(missing) - 50)}


def _sample_file(results: Any, method: str, video: str, name: str) -> Path:
    """A method's sample frame, in whichever run the method came from (merged results) or in root/samples."""
    if hasattr(results, "sample_file"):
        return Path(results.sample_file(method, video, name))
    return results.root / "samples" / method / sample_dir_name(video) / name


def _provenance(results: Any) -> dict[str, Any]:
    run = results.manifest.get("run", {})
    methods = [{"label": label, "name": str(m.get("name")), "checkpoint": str(m.get("checkpoint") or "–"),
                "checkpoint_sha256": str(m.get("checkpoint_sha256", "")), "config": str(m.get("config") or "–"),
                "config_sha256": str(m.get("config_sha256", "")), "run": str(m.get("run", "")),
                "spf": "–" if m.get("seconds_per_frame") is None else f"{1000 * m['seconds_per_frame']:.3g} ms"}
               for label, m in run.get("methods", {}).items()]
    metrics = []
    for name, info in run.get("metrics", {}).items():
        d = info.get("describe", {})
        weights = ", ".join(f"{w.get('name')} {w.get('sha256', '')[:12]}" for w in d.get("weights", [])) or "none"
        metrics.append({"name": name, "backend": str(d.get("backend")), "weights": weights,
                        "variant": str(d.get("variant", d.get("protocol", "–")))})
    return {"methods": methods, "metrics": metrics, "runs": any(m["run"] for m in methods),
            "manifest": json.dumps(results.manifest, indent=2, sort_keys=True, default=str)}


def _per_video(results: Any, max_rows: int) -> list[dict[str, Any]]:
    tables = []
    for metric in results.metrics:
        t = per_video_table(results, metric)
        if t.empty:
            continue
        rows = [{"video": str(vid), "cells": [fmt(v) for v in row]} for vid, row in list(t.iterrows())[:max_rows]]
        tables.append({"metric": metric, "methods": [str(m) for m in t.columns], "rows": rows,
                       "more": max(0, len(t) - max_rows)})
    return tables


def _video_scores(results: Any) -> tuple[dict[str, dict[str, float]], dict[str, bool]]:
    """metric -> video -> mean over methods of the per-video means (finite only), and higher_is_better."""
    v = results.videos()
    v = v[np.isfinite(v["mean"].astype(float))]
    hib = {str(k): bool(x) for k, x in results.manifest.get("higher_is_better", {}).items()}
    scores = {str(metric): {str(vid): float(x) for vid, x in g.groupby("video_id")["mean"].mean().items()}
              for metric, g in v.groupby("metric")}
    return scores, hib


def _worst_best(results: Any) -> list[dict[str, Any]]:
    """Per metric and method: the WORST_BEST worst and best videos by their per-video mean (every video, not
    only those with samples): where to look for failures."""
    v = results.videos()
    v = v[np.isfinite(v["mean"].astype(float))]
    hib = {str(k): bool(x) for k, x in results.manifest.get("higher_is_better", {}).items()}
    out = []
    for metric in results.metrics:
        for method in results.methods:
            g = v[(v["metric"] == metric) & (v["method"] == method)].sort_values(
                ["mean", "video_id"], ascending=[hib.get(metric, False) is True, True], kind="stable")
            if g.empty:
                continue
            pick = lambda d: [{"video": str(r["video_id"]), "value": fmt(r["mean"])}  # noqa: E731
                              for _, r in d.iterrows()]
            # few videos: the worse half on the left, the better half on the right (never the best as "worst")
            n_worst = min(WORST_BEST, (len(g) + 1) // 2)
            n_best = min(WORST_BEST, len(g) - n_worst)
            out.append({"metric": metric, "method": method, "worst": pick(g.head(n_worst)),
                        "best": pick(g.tail(n_best).iloc[::-1]) if n_best else []})
    return out


def _tile(path: Path | None) -> np.ndarray:
    """One grid cell: the frame scaled to TILE x TILE (nearest: no smoothing hides artefacts), grey if absent."""
    from PIL import Image

    if path is None or not path.is_file():
        return np.full((TILE, TILE, 3), 200, np.uint8)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((TILE, TILE), Image.NEAREST))


def animated_grid(columns: list[list[Path | None]]) -> tuple[str, bytes]:
    """(MIME type, bytes) of an animation whose frame t places columns[c][t] side by side (a column of one path is
    held still): the source, the driving / ground-truth frames and every method's frames play in sync. Lossless
    animated WebP (a GIF's 256-colour palette would band faces and hide artefacts); GIF where Pillow lacks WebP."""
    from PIL import Image, features

    n = max(len(c) for c in columns)
    frames = [Image.fromarray(np.concatenate([_tile(c[min(t, len(c) - 1)] if c else None) for c in columns], axis=1))
              for t in range(n)]
    buf = io.BytesIO()
    if features.check("webp"):
        frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0,
                       lossless=True)
        return "image/webp", buf.getvalue()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0)
    return "image/gif", buf.getvalue()


def _grids(results: Any, max_videos: int, max_frames: int) -> dict[str, Any]:
    protocol = results.manifest.get("run", {}).get("protocol", {}).get("name")
    with_source = protocol not in NO_SOURCE_PROTOCOLS
    scores, hib = _video_scores(results)
    metric = next((m for m in results.metrics if m in scores), None)
    videos = results.sample_videos()
    total = len(videos)
    if metric is not None:  # worst first: what the selector opens on
        known = [v for v in videos if v in scores[metric]]
        known.sort(key=lambda v: (scores[metric][v] * (1 if hib.get(metric) else -1), v))
        videos = known + [v for v in videos if v not in scores[metric]]
        if len(known) > max_videos:  # keep both ends: the worst ones and the best ones, not only the worst
            videos = known[:(max_videos + 1) // 2] + known[len(known) - max_videos // 2:]
    videos = videos[:max_videos]
    grids = []
    for rank, video in enumerate(videos):
        source = results.sample_frames("_source", video)[:1] if with_source else []
        driving = results.sample_frames("_driving", video)[:max_frames]
        preds = {m: [_sample_file(results, m, video, d.name) for d in driving] for m in results.methods}
        columns = ([source or [None]] if with_source else []) + [list(driving)] + \
            [[p if p.is_file() else None for p in preds[m]] for m in results.methods]
        still = [{"frame": _frame_label(d), "driving": _png_uri(d),
                  "methods": [_png_uri(p) if p.is_file() else None for p in (preds[m][i] for m in results.methods)]}
                 for i, d in enumerate(driving)]
        score = scores.get(metric, {}).get(video) if metric else None
        grids.append({"id": f"video-{rank}", "video": video, "score": None if score is None else fmt(score),
                      "animation": _data_uri(*animated_grid(columns)),
                      "source": _png_uri(source[0]) if source else None, "still": still})
    scored = len(scores.get(metric, {})) if metric else 0
    return {"videos": grids, "total": total, "scored": scored, "partial": 0 < total < scored,
            "metric": metric, "with_source": with_source,
            "driving_label": INPUT_LABELS.get(protocol, "driving"), "methods": list(results.methods),
            "higher_is_better": bool(hib.get(metric)) if metric else False}


def _plots(results: Any, by: str) -> list[dict[str, str]]:
    from reports.plots import distribution_figure, interval_figure, speed_figure, svg_data_uri

    per_video_metrics = set(results.videos()["metric"])
    plots = []
    for metric in results.metrics:
        for title, build in (("intervals", lambda m=metric: interval_figure(results, m, by)),
                             ("per-video distribution",
                              lambda m=metric: distribution_figure(results, m) if m in per_video_metrics else None),
                             ("speed against quality", lambda m=metric: speed_figure(results, m, by))):
            fig = build()
            if fig is not None:
                plots.append({"title": f"{metric}: {title}", "uri": svg_data_uri(fig)})
    return plots


def render_html(results: Results | Any, *, by: str = "frame", max_videos: int = 4, max_frames: int = 4,
                max_table_rows: int = 200, plots: bool = True) -> str:
    """The report as one HTML string (no external files or links referenced)."""
    run = results.manifest.get("run", {})
    store = run.get("store", {})
    where = store.get("path") or f"store {str(store.get('fingerprint', ''))[:12]}"  # results may not record a path
    title = f"animbench: {run.get('protocol', {}).get('name', '')} on {where}"
    return _env().get_template("report.html").render(
        title=title, root=str(results.root), created=results.manifest.get("created_utc", ""),
        leaderboard=_leaderboard(results, by), coverage=_coverage(results), comparisons=_comparisons(results, by),
        plots=_plots(results, by) if plots else [], grids=_grids(results, max_videos, max_frames),
        worst_best=_worst_best(results), per_video=_per_video(results, max_table_rows),
        provenance=_provenance(results)) + "\n"


def write_html(results: Results | Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Render and write the report atomically; return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(render_html(results, **kwargs), path)
    return path
