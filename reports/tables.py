"""Leaderboard tables from one or several results directories: Markdown, LaTeX (booktabs, best per column bold,
[low, high] intervals), CSV.

Reads results files only (bench.results / reports.merge, which need pandas and pyarrow, never torch). Every
function takes a `bench.results.Results` or a `reports.merge.MergedResults`; with several runs a `run` column
names where each row came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.results import MIN_VIDEOS_FOR_CI, WEIGHTING_LABELS, interval_is_shown, p_boot_text

# What a metric measures, where its name alone misleads (later papers reuse the acronyms: "AED" there is an
# L1 on expression/pose coefficients, "AKD" a normalised landmark distance); the header adds the backend.
METRIC_MEANINGS = {
    "aed_face": "FOMM AED: identity-embedding distance, OpenFace, squared L2",
    "aed_body": "FOMM AED: identity-embedding distance, re-id ResNet-50, squared L2",
    "aed_face_dlib": "identity-embedding distance, dlib, squared L2; proxy",
    "akd_face": "keypoint distance, FAN, pixels at 256 px",
    "akd_face_dlib": "keypoint distance, dlib, pixels; proxy",
    "akd_body": "keypoint distance, rtpose, pixels",
    "mkr": "missing keypoint rate, rtpose",
    "identity_error": "ArcFace identity error",
}


@dataclass
class Board:
    """A leaderboard in one weighting: methods (rows) x metrics (columns) of aggregate rows."""

    by: str
    methods: list[str]
    metrics: list[str]
    cells: dict[tuple[str, str], pd.Series]
    higher_is_better: dict[str, bool]
    runs: dict[str, str]

    def best(self, metric: str) -> set[str]:
        """Methods with the best estimate in a column (all of them on a tie; none if no value)."""
        vals = {m: float(c["mean"]) for (m, k), c in self.cells.items() if k == metric and not math.isnan(c["mean"])}
        if not vals:
            return set()
        target = max(vals.values()) if self.higher_is_better.get(metric) else min(vals.values())
        return {m for m, v in vals.items() if v == target}

    def n_videos(self, method: str) -> int:
        """The videos a method was scored on: with at least one valid frame (the most over its metrics; what the
        intervals count and the HTML report shows)."""
        ns = [int(c["n_videos_used"]) for (m, _), c in self.cells.items()
              if m == method and c["weighting"] != "set"]
        return max(ns) if ns else 0

    @property
    def multi_run(self) -> bool:
        """Whether the rows come from more than one run (tables then show a run column)."""
        return len(set(self.runs.values())) > 1


def board(results: Any, by: str = "frame") -> Board:
    """Collect the leaderboard cells of one weighting ('frame' or 'video'); set metrics (FID) always join."""
    a = results.leaderboard(by)
    cells = {(r["method"], r["metric"]): r for _, r in a.iterrows()}
    metrics = [m for m in results.metrics if any(k == m for _, k in cells)]
    hib = {r["metric"]: bool(r["higher_is_better"]) for _, r in a.iterrows()}
    runs = {r["method"]: str(r["run"]) for _, r in a.iterrows()} if "run" in a.columns else {}
    return Board(by, results.methods, metrics, cells, hib, runs)


def fmt(x: float) -> str:
    """A number for a table: 4 significant digits, 'inf', or '–' for no value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def has_interval(cell: pd.Series) -> bool:
    """Whether a cell's interval is reported: a finite CI from at least MIN_VIDEOS_FOR_CI videos."""
    lo, hi = float(cell["ci_low"]), float(cell["ci_high"])
    return not (math.isnan(lo) or math.isnan(hi)) and interval_is_shown(int(cell["n_videos_used"]))


def metric_backend(results: Any, metric: str) -> str:
    """The backend (and weight files) that computed a metric, from the results manifest."""
    d = results.manifest.get("run", {}).get("metrics", {}).get(metric, {}).get("describe", {})
    backend = str(d.get("backend") or "")
    weights = [str(w.get("name")) for w in d.get("weights", []) if w.get("name")]
    return "; ".join(x for x in [backend, ", ".join(weights)] if x)


def metric_header(results: Any, metric: str) -> str:
    """A column header naming the metric, what it measures where the name is ambiguous, and its backend."""
    inner = "; ".join(x for x in (METRIC_MEANINGS.get(metric, ""), metric_backend(results, metric)) if x)
    return f"{metric} ({inner})" if inner else metric


def _arrow(b: Board, metric: str, up: str = "↑", down: str = "↓") -> str:
    return up if b.higher_is_better.get(metric) else down


def _interval_note(b: Board) -> str | None:
    few = sorted({int(c["n_videos_used"]) for c in b.cells.values()
                  if c["weighting"] != "set" and not interval_is_shown(int(c["n_videos_used"]))})
    if not few:
        return None
    return (f"No interval where fewer than {MIN_VIDEOS_FOR_CI} videos were scored (here n = "
            f"{', '.join(map(str, few))}): a bootstrap over so few videos has a handful of distinct resamples "
            "and its percentile interval understates the uncertainty.")


def skipped_note(c: pd.Series) -> str:
    """'3 of 120 frames skipped (no detection), 1 videos without any' for a cell with skipped frames, else ''."""
    if c["weighting"] == "set" or int(c["n_skipped"]) <= 0:
        return ""
    return (f"{int(c['n_skipped'])} of {int(c['n_frames'])} frames skipped (no detection), "
            f"{int(c['n_videos']) - int(c['n_videos_used'])} videos without any")


def footnotes(results: Any, b: Board) -> list[str]:
    """What a reader needs to interpret the numbers: weighting, CI and n, protocol, store, coverage, runs,
    metric backends, skipped frames."""
    run, boot = results.manifest.get("run", {}), results.manifest.get("bootstrap", {})
    proto = run.get("protocol", {})
    store = run.get("store", {})
    notes = [
        f"Weighting: {WEIGHTING_LABELS[b.by]}.",
        f"Intervals: {int(100 * boot.get('ci_level', 0.95))}% percentile bootstrap over videos "
        f"({boot.get('n_boot')} resamples, seed {boot.get('seed')}), n = videos scored.",
    ]
    note = _interval_note(b)
    if note:
        notes.append(note)
    runs = results.manifest.get("runs", [])
    if results.manifest.get("mixed"):
        for r in runs:
            rr = r["manifest"].get("run", {})
            p, st = rr.get("protocol", {}), rr.get("store", {})
            notes.append(f"Run {r['run']}: protocol {p.get('name')} ({p.get('variant')}), store "
                         f"{str(st.get('fingerprint', ''))[:12]}, split {st.get('split')}, {st.get('videos')} videos "
                         "(runs differ: compare rows of different runs with care).")
    else:
        notes.append(f"Protocol: {proto.get('name')} ({proto.get('variant')}); predictions quantised "
                     f"{proto.get('quantisation', '')}.")
        notes.append(f"Store {str(store.get('fingerprint', ''))[:12]}, split {store.get('split')}, "
                     f"{store.get('videos')} videos.")
        if len(runs) > 1:
            notes.append("Runs: " + "; ".join(f"{r['run']} ({r['root']})" for r in runs) + ".")
    cov = results.coverage() if hasattr(results, "coverage") else None
    if cov is not None:
        notes.append(f"Coverage: {cov.summary()}.")
    backends = [f"{m}: {metric_backend(results, m)}" for m in b.metrics if metric_backend(results, m)]
    if backends:
        notes.append("Metric backends: " + "; ".join(backends) + ".")
    for (method, metric), c in sorted(b.cells.items()):
        if c["weighting"] == "set":
            notes.append(f"{metric} ({method}): one distance over {int(c['n_frames'])} frames, no CI.")
        elif skipped_note(c):
            notes.append(f"{metric} ({method}): {skipped_note(c)}.")
    return notes


def _md(text: Any) -> str:
    """An untrusted label for a Markdown table cell: pipes, markup characters and HTML escaped."""
    out = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("&", "&amp;").replace("<", "&lt;")
    out = out.replace(">", "&gt;")
    for ch in "*_`[]":
        out = out.replace(ch, "\\" + ch)
    return " ".join(out.split())  # a newline would end the row


def to_markdown(results: Any, by: str = "frame") -> str:
    """A Markdown leaderboard: `mean [low, high]` per cell (intervals only from MIN_VIDEOS_FOR_CI videos on),
    best per column in bold, n per method, footnotes below."""
    b = board(results, by)
    lead = ["method"] + (["run"] if b.multi_run else []) + ["n"]
    head = "| " + " | ".join(lead + [f"{_md(metric_header(results, m))} {_arrow(b, m)}" for m in b.metrics]) + " |"
    lines = [head, "|" + "---|" * (len(lead) + len(b.metrics))]
    for method in b.methods:
        cells = [_md(method)] + ([_md(b.runs.get(method, ""))] if b.multi_run else []) + [str(b.n_videos(method))]
        for metric in b.metrics:
            c = b.cells.get((method, metric))
            if c is None:
                cells.append("–")
                continue
            text = fmt(c["mean"])
            if method in b.best(metric):
                text = f"**{text}**"
            if has_interval(c):
                text += f" [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"
            if int(c["n_skipped"]) > 0 and c["weighting"] != "set":
                text += "†"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    notes = footnotes(results, b)
    if any("frames skipped" in n for n in notes):
        notes.append("†: some frames skipped (see above).")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {_md_note(n)}" for n in notes) + "\n"


def _md_note(text: str) -> str:
    """A footnote line: the same escapes as a cell (paths and labels may hold _ [ ] ` * < &), on one line."""
    return _md(text)


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", "–": "--", "—": "---",
                  "−": "-", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "×": r"$\times$", "†": r"\dag{}",
                  "\n": " ", "\r": " ", "\t": " "}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters in a label (characters beyond Latin-1 become '?': pdflatex has no
    glyph for them)."""
    return "".join(_LATEX_ESCAPES.get(ch, ch if ord(ch) < 256 else "?") for ch in str(text))


def _latex_number(x: float) -> str:
    if not math.isnan(x) and math.isinf(x):
        return r"\infty" if x > 0 else r"-\infty"
    return fmt(x).replace("–", "--")


def to_latex(results: Any, by: str = "frame", caption: str | None = None) -> str:
    """A booktabs table: `mean [low, high]` (intervals only from MIN_VIDEOS_FOR_CI videos on), best per column
    bold, a footnote with protocol, variant, backends, coverage; needs \\usepackage{booktabs}."""
    b = board(results, by)
    lead = ["Method"] + (["Run"] if b.multi_run else []) + ["$n$"]
    cols = "l" * (len(lead) - 1) + "r" + "c" * len(b.metrics)
    up, down = r"\uparrow", r"\downarrow"
    head = " & ".join(lead + [f"{latex_escape(metric_header(results, m))} ${_arrow(b, m, up, down)}$"
                              for m in b.metrics])
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             head + r" \\", r"\midrule"]
    for method in b.methods:
        row = [latex_escape(method)] + ([latex_escape(b.runs.get(method, ""))] if b.multi_run else []) + \
            [str(b.n_videos(method))]
        for metric in b.metrics:
            c = b.cells.get((method, metric))
            if c is None:
                row.append("--")
                continue
            value = _latex_number(float(c["mean"]))
            if method in b.best(metric):
                value = rf"\mathbf{{{value}}}"
            text = f"${value}$"
            if has_interval(c):
                text += rf" {{\scriptsize $[{_latex_number(float(c['ci_low']))}, " \
                        rf"{_latex_number(float(c['ci_high']))}]$}}"
            if int(c["n_skipped"]) > 0 and c["weighting"] != "set":
                text += r"\textsuperscript{\dag}"
            row.append(text)
        lines.append(" & ".join(row) + r" \\")
    notes = footnotes(results, b)
    lines += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip",
              r"\parbox{\linewidth}{\footnotesize " + " ".join(latex_escape(n) for n in notes) + "}"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _latex_value(x: float) -> str:
    """A number in a LaTeX cell: math mode, or a text dash for no value (`--` in math is two minus signs)."""
    return "--" if x is None or math.isnan(x) else f"${_latex_number(x)}$"


def comparisons_latex(results: Any, by: str = "frame") -> str:
    """Paired comparisons in one weighting as a booktabs table, by the rules of comparisons_markdown: n stated,
    no interval or p_boot below MIN_VIDEOS_FOR_CI paired videos, p_boot 0 as '< 1/B', intervals as [low, high]."""
    c = results.comparisons()
    c = c[c["weighting"] == by]
    if c.empty:
        why = "only one method was scored" if len(results.methods) == 1 else \
            "no two methods were scored on common videos of one comparable run"
        return f"\\par\\noindent No paired comparison ({latex_escape(WEIGHTING_LABELS[by])}): {why}.\n"
    levels = {round(100 * float(x)) for x in c.get("ci_level", pd.Series(dtype=float)).dropna()} or {95}
    pct = "/".join(str(x) for x in sorted(levels))
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{lllcllr}", r"\toprule",
             rf"Metric & $a$ & $b$ & $a - b$ [{pct}\% CI] & Better & $p_\mathrm{{boot}}$ & $n$ (videos) \\",
             r"\midrule"]
    for _, r in c.iterrows():
        n = int(r["n_videos"])
        diff = _latex_value(float(r["diff"]))
        better = latex_escape(r["better"])
        if interval_is_shown(n):
            lo, hi = float(r["ci_low"]), float(r["ci_high"])
            if not (math.isnan(lo) or math.isnan(hi)):
                diff += rf" {{\scriptsize $[{_latex_number(lo)}, {_latex_number(hi)}]$}}"
            p = latex_escape(p_boot_text(float(r["p_boot"]), int(r["n_boot"])))
        else:
            p = "--"
            if r["better"] not in ("tie", "undefined"):
                better += " (not tested)"
        lines.append(" & ".join([latex_escape(r["metric"]), latex_escape(r["method_a"]), latex_escape(r["method_b"]),
                                 diff, better, p, str(n)]) + r" \\")
    note = (f"Paired comparisons, {WEIGHTING_LABELS[by]}: a - b over the videos both methods scored, percentile "
            "bootstrap interval. p_boot: share of paired bootstrap resamples in which the better method is not "
            "ahead (small = a robust difference; 0 of B resamples reads < 1/B). Pairs scored on fewer than "
            f"{MIN_VIDEOS_FOR_CI} common videos get no interval and no p_boot (not tested).")
    lines += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip",
              r"\parbox{\linewidth}{\footnotesize " + latex_escape(note) + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def latex_document(results: Any, by: str = "frame", caption: str | None = None) -> str:
    """to_latex and comparisons_latex wrapped in a minimal article that compiles on its own (booktabs only)."""
    return ("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n"
            "\\usepackage[margin=1cm,landscape]{geometry}\n\\begin{document}\n"
            + to_latex(results, by, caption) + comparisons_latex(results, by) + "\\end{document}\n")


CSV_COLUMNS = ["run", "method", "metric", "metric_label", "weighting", "mean", "ci_low", "ci_high", "ci_shown",
               "ci_level", "n_videos", "n_videos_used", "n_frames", "n_valid", "n_skipped", "note",
               "higher_is_better", "protocol", "protocol_variant", "checkpoint_sha256", "config_sha256",
               "store_fingerprint", "metric_backend", "versions_id"]


def to_csv(results: Any, by: str = "frame") -> str:
    """The leaderboard rows (one per method and metric) with CI bounds (empty below MIN_VIDEOS_FOR_CI videos,
    `ci_shown` says which), counts and skipped-frame notes, as CSV text."""
    a = results.leaderboard(by).copy()
    if "run" not in a.columns:
        a.insert(0, "run", results.root.name)
    shown = [has_interval(r) for _, r in a.iterrows()]
    a["ci_shown"] = shown
    a.loc[[not s for s in shown], ["ci_low", "ci_high"]] = math.nan
    a["metric_label"] = [metric_header(results, m) for m in a["metric"]]
    a["note"] = [skipped_note(r) for _, r in a.iterrows()]
    return a[CSV_COLUMNS].map(_inert).to_csv(index=False)


def _inert(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (=, +, -, @, tab, CR first: a method label or a run
    name from a user) gets a leading apostrophe, as OWASP advises; numbers are left alone."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def comparisons_markdown(results: Any, by: str = "frame") -> str:
    """Paired comparisons in one weighting as a Markdown table; n stated, no interval or p_boot below
    MIN_VIDEOS_FOR_CI paired videos, p_boot 0 as '< 1/B'."""
    c = results.comparisons()
    c = c[c["weighting"] == by]
    if c.empty:  # an empty table renders as a bare header row: say why there is nothing
        why = "only one method was scored" if len(results.methods) == 1 else \
            "no two methods were scored on common videos of one comparable run"
        return f"No paired comparison: {why}.\n"
    lines = ["| metric | a | b | a − b [95% CI] | better | p_boot | n (videos) |", "|---|---|---|---|---|---|---|"]
    for _, r in c.iterrows():
        n = int(r["n_videos"])
        if interval_is_shown(n):
            diff = f"{fmt(r['diff'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
            p = p_boot_text(float(r["p_boot"]), int(r["n_boot"]))
            better = _md(r["better"])
        else:
            diff, p = fmt(r["diff"]), "–"
            better = f"{_md(r['better'])} (not tested)" if r["better"] not in ("tie", "undefined") \
                else _md(r["better"])
        lines.append(f"| {_md(r['metric'])} | {_md(r['method_a'])} | {_md(r['method_b'])} | {diff} | {better} | "
                     f"{p} | {n} |")
    return "\n".join(lines) + (
        "\n\np_boot: share of paired bootstrap resamples in which the better method is not ahead (small = a "
        "robust difference; 0 of B resamples reads < 1/B). Pairs scored on fewer than "
        f"{MIN_VIDEOS_FOR_CI} common videos get no interval and no p_boot.\n")


def per_video_table(results: Any, metric: str) -> pd.DataFrame:
    """Videos (rows) x methods (columns) of per-video means of one metric, in run order."""
    v = results.videos()
    v = v[v["metric"] == metric]
    t = v.pivot(index="video_id", columns="method", values="mean")
    return t[[m for m in results.methods if m in t.columns]]
