"""A self-contained HTML report of a results directory: leaderboard, comparisons, provenance, per-video table
and qualitative grids (source | driving or ground truth | each method; pose-transfer: ground truth | each
method, as it has no source frame), images embedded as data URIs."""

from __future__ import annotations

import base64
import json
import math
import os
from html import escape
from pathlib import Path

from bench.results import WEIGHTING_LABELS, Results, sample_dir_name
from reports.tables import board, fmt, footnotes, per_video_table

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}
td.best{font-weight:bold;background:#eaf6ea}
.ci{color:#777;font-size:12px}
.grid img{width:128px;height:128px;image-rendering:pixelated;display:block}
.grid td{padding:2px;text-align:center}
details pre{background:#f8f8f8;padding:1em;overflow:auto;font-size:12px}
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{escape(path.name)}" src="data:image/png;base64,{data}">'


def _leaderboard(results: Results, by: str) -> str:
    b = board(results, by)
    head = "".join(f"<th>{escape(m)} {'↑' if b.higher_is_better.get(m) else '↓'}</th>" for m in b.metrics)
    rows = []
    for method in b.methods:
        cells = []
        for metric in b.metrics:
            c = b.cells.get((method, metric))
            if c is None:
                cells.append("<td>–</td>")
                continue
            ci = "" if math.isnan(float(c["ci_low"])) else \
                f'<br><span class="ci">[{fmt(c["ci_low"])}, {fmt(c["ci_high"])}]</span>'
            cls = ' class="best"' if method in b.best(metric) else ""
            cells.append(f"<td{cls}>{fmt(c['mean'])}{ci}</td>")
        rows.append(f"<tr><td>{escape(method)}</td>{''.join(cells)}</tr>")
    notes = "".join(f"<li>{escape(n)}</li>" for n in footnotes(results, b))
    return (f"<h2>Leaderboard ({escape(WEIGHTING_LABELS[by])})</h2><table><tr><th>method</th>{head}</tr>"
            f"{''.join(rows)}</table><ul>{notes}</ul>")


def _comparisons(results: Results, by: str) -> str:
    c = results.comparisons()
    c = c[c["weighting"] == by]
    if c.empty:
        return ""
    rows = "".join(
        f"<tr><td>{escape(r['metric'])}</td><td>{escape(r['method_a'])}</td><td>{escape(r['method_b'])}</td>"
        f"<td>{fmt(r['diff'])} <span class='ci'>[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]</span></td>"
        f"<td>{escape(str(r['better']))}</td><td>{fmt(r['p_boot'])}</td><td>{int(r['n_videos'])}</td></tr>"
        for _, r in c.iterrows())
    return ("<h2>Paired comparisons</h2><table><tr><th>metric</th><th>a</th><th>b</th><th>a − b [CI]</th>"
            f"<th>better</th><th>p_boot</th><th>videos</th></tr>{rows}</table><p>p_boot: share of paired bootstrap "
            "resamples (same videos for both methods) in which the better method is not ahead.</p>")


def _provenance(results: Results) -> str:
    run = results.manifest.get("run", {})
    rows = []
    for label, m in run.get("methods", {}).items():
        rows.append(f"<tr><td>{escape(label)}</td><td>{escape(str(m.get('name')))}</td>"
                    f"<td>{escape(str(m.get('checkpoint') or '–'))}<br><code>{escape(m.get('checkpoint_sha256', ''))}"
                    f"</code></td><td>{escape(str(m.get('config') or '–'))}<br><code>"
                    f"{escape(m.get('config_sha256', ''))}</code></td></tr>")
    metrics = []
    for name, info in run.get("metrics", {}).items():
        d = info.get("describe", {})
        weights = ", ".join(f"{w.get('name')} {w.get('sha256', '')[:12]}" for w in d.get("weights", [])) or "none"
        metrics.append(f"<tr><td>{escape(name)}</td><td>{escape(str(d.get('backend')))}</td>"
                       f"<td>{escape(weights)}</td><td>{escape(str(d.get('variant', d.get('protocol', '–'))))}</td></tr>")
    full = escape(json.dumps(results.manifest, indent=2, sort_keys=True, default=str))
    return ("<h2>Provenance</h2><table><tr><th>method</th><th>registry name</th><th>checkpoint (sha256)</th>"
            f"<th>config (sha256)</th></tr>{''.join(rows)}</table>"
            "<table><tr><th>metric</th><th>backend</th><th>weights (sha256)</th><th>variant</th></tr>"
            f"{''.join(metrics)}</table><details><summary>Full manifest</summary><pre>{full}</pre></details>")


def _per_video(results: Results, max_rows: int) -> str:
    parts = ["<h2>Per video</h2>"]
    for metric in results.metrics:
        t = per_video_table(results, metric)
        if t.empty:
            continue
        head = "".join(f"<th>{escape(m)}</th>" for m in t.columns)
        body = "".join(f"<tr><td>{escape(str(vid))}</td>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>"
                       for vid, row in list(t.iterrows())[:max_rows])
        more = f"<p>{len(t) - max_rows} more videos in videos.parquet.</p>" if len(t) > max_rows else ""
        parts.append(f"<h3>{escape(metric)}</h3><table><tr><th>video</th>{head}</tr>{body}</table>{more}")
    return "".join(parts)


# what the "_driving" samples are under each protocol, and which protocols give the method a source frame
# (pose-transfer does not: the method holds the subject and is driven by the poses of the stored frames)
INPUT_LABELS = {"reconstruction": "ground truth", "animation": "driving", "pose-transfer": "ground truth"}
NO_SOURCE_PROTOCOLS = ("pose-transfer",)


def _grids(results: Results, max_videos: int, max_frames: int) -> str:
    protocol = results.manifest.get("run", {}).get("protocol", {}).get("name")
    driving_label = INPUT_LABELS.get(protocol, "driving")
    with_source = protocol not in NO_SOURCE_PROTOCOLS
    parts = []
    for video in results.sample_videos()[:max_videos]:
        source = results.sample_frames("_source", video) if with_source else []
        head = "".join(f"<th>{escape(m)}</th>" for m in results.methods)
        rows = []
        driving = results.sample_frames("_driving", video)[:max_frames]
        for i, drv in enumerate(driving):
            preds = [results.root / "samples" / m / sample_dir_name(video) / drv.name for m in results.methods]
            cells = "".join(f"<td>{_img(p) if p.is_file() else '–'}</td>" for p in preds)
            # the source frame is the same for every row: embedded once
            src = f"<td rowspan='{len(driving)}'>{_img(source[0]) if source else '–'}</td>" \
                if with_source and i == 0 else ""
            rows.append(f"<tr><td>{drv.stem.lstrip('0') or '0'}</td>{src}<td>{_img(drv)}</td>{cells}</tr>")
        source_head = "<th>source</th>" if with_source else ""
        parts.append(f"<h3>{escape(video)}</h3><table class='grid'><tr><th>frame</th>{source_head}"
                     f"<th>{driving_label}</th>{head}</tr>{''.join(rows)}</table>")
    return "<h2>Samples</h2>" + "".join(parts) if parts else ""


def render_html(results: Results, *, by: str = "frame", max_videos: int = 4, max_frames: int = 4,
                max_table_rows: int = 200) -> str:
    """The report as one HTML string (no external files referenced)."""
    run = results.manifest.get("run", {})
    title = f"animbench: {run.get('protocol', {}).get('name', '')} on {run.get('store', {}).get('path', '')}"
    body = (f"<h1>{escape(title)}</h1><p>Results {escape(str(results.root))}, written "
            f"{escape(results.manifest.get('created_utc', ''))}.</p>"
            + _leaderboard(results, by) + _comparisons(results, by) + _grids(results, max_videos, max_frames)
            + _per_video(results, max_table_rows) + _provenance(results))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def write_html(results: Results, path: str | os.PathLike, **kwargs: object) -> Path:
    """Render and write the report atomically; return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(render_html(results, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    os.replace(tmp, path)
    return path
