"""Leaderboard tables from a results directory: Markdown, LaTeX (booktabs, best per column bold, ± CI), CSV.

Reads results files only (bench.results, which needs pandas and pyarrow, never torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench.results import WEIGHTING_LABELS, Results


@dataclass
class Board:
    """A leaderboard in one weighting: methods (rows) x metrics (columns) of aggregate rows."""

    by: str
    methods: list[str]
    metrics: list[str]
    cells: dict[tuple[str, str], pd.Series]
    higher_is_better: dict[str, bool]

    def best(self, metric: str) -> set[str]:
        """Methods with the best estimate in a column (all of them on a tie; none if no value)."""
        vals = {m: float(c["mean"]) for (m, k), c in self.cells.items() if k == metric and not math.isnan(c["mean"])}
        if not vals:
            return set()
        target = max(vals.values()) if self.higher_is_better.get(metric) else min(vals.values())
        return {m for m, v in vals.items() if v == target}


def board(results: Results, by: str = "frame") -> Board:
    """Collect the leaderboard cells of one weighting ('frame' or 'video'); set metrics (FID) always join."""
    a = results.leaderboard(by)
    cells = {(r["method"], r["metric"]): r for _, r in a.iterrows()}
    metrics = [m for m in results.metrics if any(k == m for _, k in cells)]
    hib = {r["metric"]: bool(r["higher_is_better"]) for _, r in a.iterrows()}
    return Board(by, results.methods, metrics, cells, hib)


def fmt(x: float) -> str:
    """A number for a table: 4 significant digits, 'inf', or '–' for no value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def half_width(cell: pd.Series) -> float:
    """Half the CI width (the ± shown in LaTeX); NaN without a CI."""
    lo, hi = float(cell["ci_low"]), float(cell["ci_high"])
    if math.isnan(lo) or math.isnan(hi) or math.isinf(lo) or math.isinf(hi):
        return math.nan
    return (hi - lo) / 2


def _arrow(b: Board, metric: str, up: str = "↑", down: str = "↓") -> str:
    return up if b.higher_is_better.get(metric) else down


def footnotes(results: Results, b: Board) -> list[str]:
    """What a reader needs to interpret the numbers: weighting, CI, protocol, skipped frames."""
    run, boot = results.manifest.get("run", {}), results.manifest.get("bootstrap", {})
    proto = run.get("protocol", {})
    store = run.get("store", {})
    notes = [
        f"Weighting: {WEIGHTING_LABELS[b.by]}.",
        f"Intervals: {int(100 * boot.get('ci_level', 0.95))}% percentile bootstrap over videos "
        f"({boot.get('n_boot')} resamples, seed {boot.get('seed')}).",
        f"Protocol: {proto.get('name')} ({proto.get('variant')}); predictions quantised "
        f"{proto.get('quantisation', '')}.",
        f"Store {store.get('fingerprint', '')[:12]}, split {store.get('split')}, {store.get('videos')} videos.",
    ]
    for (method, metric), c in sorted(b.cells.items()):
        if c["weighting"] == "set":
            notes.append(f"{metric} ({method}): one distance over {int(c['n_frames'])} frames, no CI.")
        elif int(c["n_skipped"]) > 0:
            notes.append(f"{metric} ({method}): {int(c['n_skipped'])} of {int(c['n_frames'])} frames skipped "
                         f"(no detection), {int(c['n_videos']) - int(c['n_videos_used'])} videos without any.")
    return notes


def to_markdown(results: Results, by: str = "frame") -> str:
    """A Markdown leaderboard: `mean [low, high]` per cell, best per column in bold, footnotes below."""
    b = board(results, by)
    head = "| method | " + " | ".join(f"{m} {_arrow(b, m)}" for m in b.metrics) + " |"
    lines = [head, "|---|" + "---|" * len(b.metrics)]
    for method in b.methods:
        cells = []
        for metric in b.metrics:
            c = b.cells.get((method, metric))
            if c is None:
                cells.append("–")
                continue
            text = fmt(c["mean"])
            if method in b.best(metric):
                text = f"**{text}**"
            if not math.isnan(float(c["ci_low"])):
                text += f" [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"
            cells.append(text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in footnotes(results, b)) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters in a label."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def _latex_number(x: float) -> str:
    if not math.isnan(x) and math.isinf(x):
        return r"\infty" if x > 0 else r"-\infty"
    return fmt(x).replace("–", "--")


def to_latex(results: Results, by: str = "frame", caption: str | None = None) -> str:
    """A booktabs table: `mean ± half CI width`, best per column bold; needs \\usepackage{booktabs}."""
    b = board(results, by)
    cols = "l" + "c" * len(b.metrics)
    up, down = r"\uparrow", r"\downarrow"
    head = " & ".join(["Method"] + [f"{latex_escape(m)} ${_arrow(b, m, up, down)}$" for m in b.metrics])
    lines = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{{cols}}}", r"\toprule", head + r" \\",
             r"\midrule"]
    for method in b.methods:
        row = [latex_escape(method)]
        for metric in b.metrics:
            c = b.cells.get((method, metric))
            if c is None:
                row.append("--")
                continue
            value = _latex_number(float(c["mean"]))
            if method in b.best(metric):
                value = rf"\mathbf{{{value}}}"
            hw = half_width(c)
            row.append(f"${value} \\pm {hw:.2g}$" if not math.isnan(hw) else f"${value}$")
        lines.append(" & ".join(row) + r" \\")
    notes = " ".join(latex_escape(n) for n in footnotes(results, b)[:3])
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(caption) + ' ' if caption else ''}"
              rf"{notes}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ["method", "metric", "weighting", "mean", "ci_low", "ci_high", "ci_level", "n_videos", "n_videos_used",
               "n_frames", "n_valid", "n_skipped", "higher_is_better", "protocol", "protocol_variant",
               "checkpoint_sha256", "config_sha256", "store_fingerprint", "metric_backend", "versions_id"]


def to_csv(results: Results, by: str = "frame") -> str:
    """The leaderboard rows (one per method and metric) with CI bounds and counts, as CSV text."""
    return results.leaderboard(by)[CSV_COLUMNS].to_csv(index=False)


def comparisons_markdown(results: Results, by: str = "frame") -> str:
    """Paired comparisons in one weighting as a Markdown table."""
    c = results.comparisons()
    c = c[c["weighting"] == by]
    lines = ["| metric | a | b | a − b [95% CI] | better | p_boot | videos |", "|---|---|---|---|---|---|---|"]
    for _, r in c.iterrows():
        lines.append(f"| {r['metric']} | {r['method_a']} | {r['method_b']} | {fmt(r['diff'])} "
                     f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] | {r['better']} | {fmt(r['p_boot'])} | "
                     f"{int(r['n_videos'])} |")
    return "\n".join(lines) + "\n\np_boot: share of paired bootstrap resamples in which the better method is not " \
                              "ahead (small = a robust difference).\n"


def per_video_table(results: Results, metric: str) -> pd.DataFrame:
    """Videos (rows) x methods (columns) of per-video means of one metric, in run order."""
    v = results.videos()
    v = v[v["metric"] == metric]
    t = v.pivot(index="video_id", columns="method", values="mean")
    return t[[m for m in results.methods if m in t.columns]]
