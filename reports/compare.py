"""The regression gate: compare a new results directory against a baseline, method by method and metric by metric.

`compare_results(new, baseline, ...)` returns a `GateResult` (one `GateRow` per method x metric both runs scored,
plus what only one side has); `to_markdown` / `to_text` render it; `animbench compare` prints it and exits 1 when
the gate fails. The rules, as documented in the README:

- Sign: `delta` is new - baseline in the metric's units; `worse_by` is the same change signed so that a positive
  number is always worse (baseline - new for higher-is-better metrics such as SSIM and PSNR).
- Tolerance (default 0: any worsening fails): `METRIC=ABS` (metric units) or `METRIC=PCT%` (of the baseline's
  absolute value); `*=...` sets it for every metric not named. A row regresses when worse_by > tolerance.
- `tolerance_ci=True`: a row regresses when the interval of the difference lies wholly on the worse side of 0
  (more than bootstrap noise). Metrics without an interval (set metrics such as FID, and rows scored on fewer
  than MIN_VIDEOS_FOR_CI videos, whose interval is neither printed nor trusted) fall back to the numeric
  tolerance.
- Several runs per side: NEW and BASELINE may each be several results directories, merged as `animbench report`
  merges them (reports.merge.load_results: store, split and protocol must agree unless allow_mixed; a method
  label scored in several runs of one side becomes `label@run`, run = directory name, and is matched by that
  label). A directory may not be on both sides.
- Paired or not: when both runs of a method scored the same videos (same store fingerprint, split, protocol and
  protocol variant) the difference and its interval are a paired bootstrap over the videos both scored
  (bench.results.paired_comparison); otherwise the interval resamples each run's videos independently and the
  result says "unpaired" and why.
- Coverage: a method (or a method's metric) that the baseline has and the new run lacks fails the gate, unless
  allow_missing: a gate must not pass because something stopped being measured. A method or metric only in the
  new run is listed and not gated (it has nothing to be compared with).
- A value the baseline had and the new run lost (no valid frame: NaN) is a regression; a value only the new run
  has is not.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.results import (
    DEFAULT_BOOT,
    DEFAULT_CI,
    MIN_VIDEOS_FOR_CI,
    POOLINGS,
    WEIGHTING_LABELS,
    WEIGHTINGS,
    Results,
    bootstrap_rng,
    interval_is_shown,
    paired_comparison,
    psnr_from_mse,
)
from plumbing.errors import AnimbenchError
from reports.merge import MergedResults, load_results
from reports.tables import fmt

# relative slack on "worse_by > tolerance", so that tolerance 0 does not fail on float rounding of equal numbers
_EPS = 1e-12
_PAIRING_FIELDS = (("store fingerprint", ("store", "fingerprint")), ("split", ("store", "split")),
                   ("protocol", ("protocol", "name")), ("protocol variant", ("protocol", "variant")))


@dataclass
class Tolerance:
    """How much worse a metric may get: `value` in metric units, or percent of the baseline when `relative`."""

    value: float = 0.0
    relative: bool = False

    def absolute(self, baseline: float) -> float:
        """The tolerance in metric units for this baseline value."""
        return self.value / 100.0 * abs(baseline) if self.relative and math.isfinite(baseline) else self.value

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.relative else f"{self.value:g}"


@dataclass
class GateRow:
    """One method x metric: baseline and new estimates, the signed change, the interval and the verdict."""

    method: str
    metric: str
    higher_is_better: bool
    weighting: str
    old: float
    new: float
    delta: float  # new - old
    worse_by: float  # > 0: worse, whatever the metric's direction
    tolerance: Tolerance
    diff: float = math.nan  # the bootstrap difference new - old (paired: over the videos both scored)
    ci_low: float = math.nan
    ci_high: float = math.nan
    n_videos: int = 0  # paired: the videos both runs scored; unpaired: the smaller side
    n_new: int = 0  # unpaired: the videos each side scored
    n_baseline: int = 0
    paired: bool = False
    verdict: str = "ok"  # regression | lost value | worse (within tolerance) | unchanged | improved | ...

    @property
    def regressed(self) -> bool:
        """Whether this row fails the gate."""
        return self.verdict in ("regression", "lost value")

    @property
    def has_interval(self) -> bool:
        """Whether a bootstrap interval of the difference is reported: it exists (not for set metrics or missing
        values) and comes from MIN_VIDEOS_FOR_CI videos or more (the tables' rule)."""
        return not (math.isnan(self.ci_low) or math.isnan(self.ci_high)) and interval_is_shown(self.n_videos)


@dataclass
class GateResult:
    """The whole comparison: rows, coverage differences, pairing, and whether the gate passes."""

    new_root: Path  # the first directory of each side (new_roots / baseline_roots: all of them)
    baseline_root: Path
    by: str
    mode: str  # "tolerance" or "ci"
    level: float
    tolerances: dict[str, Tolerance]
    default_tolerance: Tolerance
    paired: bool
    unpaired_reason: str
    rows: list[GateRow]
    methods_only_baseline: list[str] = field(default_factory=list)
    methods_only_new: list[str] = field(default_factory=list)
    metrics_only_baseline: list[tuple[str, str]] = field(default_factory=list)  # (method, metric)
    metrics_only_new: list[tuple[str, str]] = field(default_factory=list)
    allow_missing: bool = False
    notes: list[str] = field(default_factory=list)
    new_roots: list[Path] = field(default_factory=list)
    baseline_roots: list[Path] = field(default_factory=list)

    @property
    def regressions(self) -> list[GateRow]:
        """Rows that fail the gate."""
        return [r for r in self.rows if r.regressed]

    @property
    def missing(self) -> bool:
        """Whether the new run lacks a method or a metric that the baseline has."""
        return bool(self.methods_only_baseline or self.metrics_only_baseline)

    @property
    def passed(self) -> bool:
        """True when no row regressed and (unless allow_missing) nothing the baseline measured is missing."""
        return not self.regressions and (self.allow_missing or not self.missing)


def parse_tolerance(text: str | None) -> dict[str, Tolerance]:
    """`l1=0.002,ssim=0.005,psnr=1%,*=0` -> {metric: Tolerance}; a malformed entry is a one-line error."""
    out: dict[str, Tolerance] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([^=\s]+)\s*=\s*([^%\s]+)\s*(%?)", part)
        value = _float(m.group(2)) if m else None
        if m is None or value is None or not math.isfinite(value) or value < 0:
            raise AnimbenchError(f"--tolerance {part!r}: expected METRIC=VALUE or METRIC=PERCENT% with a finite "
                                 "value >= 0, comma-separated (e.g. l1=0.002,ssim=0.005,psnr=1%,*=0)")
        if m.group(1) in out:
            raise AnimbenchError(f"--tolerance: metric {m.group(1)!r} given twice")
        out[m.group(1)] = Tolerance(value, relative=bool(m.group(3)))
    return out


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _get(d: dict, path: tuple[str, ...]) -> object:
    for key in path:
        d = d.get(key, {}) if isinstance(d, dict) else {}
    return d if d != {} else None


def _pairing(new: dict, old: dict) -> tuple[bool, str]:
    """Paired when two runs (their manifests) scored the same videos under the same protocol; else the first
    difference."""
    for label, path in _PAIRING_FIELDS:
        a, b = _get(new.get("run", {}), path), _get(old.get("run", {}), path)
        if a != b:
            show = (lambda v: str(v)[:12]) if label == "store fingerprint" else str
            return False, f"{label} differs (new {show(a)}, baseline {show(b)})"
    return True, ""


def _poolings(results: Results) -> dict[str, str]:
    """Metric -> pooling key ('mean' or 'psnr'), read back from the manifest's pooling descriptions."""
    by_text = {text: key for key, text in POOLINGS.items()}
    return {m: by_text.get(text, "mean") for m, text in results.manifest.get("pooling", {}).items()}


def _stat(sums: np.ndarray, counts: np.ndarray, idx: np.ndarray, weighting: str, pooling: str) -> np.ndarray:
    """The weighted statistic of resampled videos, as bench.results computes it (for the unpaired bootstrap)."""
    s, c = sums[idx], counts[idx]  # for 'psnr' pooling, sums of squared errors: converted after averaging
    with np.errstate(invalid="ignore", divide="ignore"):
        if weighting == "frame":
            pooled = s.sum(axis=-1) / c.sum(axis=-1)
            return psnr_from_mse(pooled) if pooling == "psnr" else pooled
        per_video = s / c
        return (psnr_from_mse(per_video) if pooling == "psnr" else per_video).mean(axis=-1)


def _unpaired(new_v: pd.DataFrame, old_v: pd.DataFrame, weighting: str, *, pooling: str, n_boot: int, level: float,
              rng: np.random.Generator) -> tuple[float, float, float]:
    """(diff, low, high) of new - old, each run's videos resampled independently (percentile bootstrap)."""
    a, b = new_v[new_v["n_valid"] > 0], old_v[old_v["n_valid"] > 0]
    if a.empty or b.empty:
        return math.nan, math.nan, math.nan
    sa, ca = a["sum"].to_numpy(float), a["n_valid"].to_numpy(float)
    sb, cb = b["sum"].to_numpy(float), b["n_valid"].to_numpy(float)
    every = (np.arange(len(a)), np.arange(len(b)))
    diff = float(_stat(sa, ca, every[0], weighting, pooling) - _stat(sb, cb, every[1], weighting, pooling))
    boot = (_stat(sa, ca, rng.integers(0, len(a), (n_boot, len(a))), weighting, pooling)
            - _stat(sb, cb, rng.integers(0, len(b), (n_boot, len(b))), weighting, pooling))
    boot = boot[~np.isnan(boot)]
    if boot.size == 0:
        return diff, math.nan, math.nan
    lo, hi = np.quantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2])
    return diff, float(lo), float(hi)


def _verdict(row: GateRow, mode: str) -> str:
    old_ok, new_ok = math.isfinite(row.old), math.isfinite(row.new)
    if not old_ok and not new_ok:
        return "no value"
    if not new_ok:
        return "lost value"
    if not old_ok:
        return "new value"
    if mode == "ci" and row.has_interval:
        worse = row.ci_high < 0 if row.higher_is_better else row.ci_low > 0
        better = row.ci_low > 0 if row.higher_is_better else row.ci_high < 0
        if worse:
            return "regression"
        return "improved" if better else ("unchanged" if row.worse_by == 0 else "within noise")
    tol = row.tolerance.absolute(row.old)
    if row.worse_by > tol + _EPS * max(1.0, abs(row.old)):
        return "regression"
    if row.worse_by > 0:
        return "worse (within tolerance)"
    return "improved" if row.worse_by < 0 else "unchanged"


Side = str | os.PathLike | Results | MergedResults | list[str | os.PathLike]


def _side(side: Side, allow_mixed: bool) -> Results | MergedResults:
    """One side of the gate: a results directory as it is, or several merged (reports.merge.load_results)."""
    if isinstance(side, (Results, MergedResults)):
        return side
    if isinstance(side, (str, os.PathLike)):
        return Results(side)
    dirs = list(side)
    return Results(dirs[0]) if len(dirs) == 1 else load_results(dirs, allow_mixed=allow_mixed)


def _roots(r: Results | MergedResults) -> list[Path]:
    return list(r.roots) if isinstance(r, MergedResults) else [r.root]


def _manifest_of(r: Results | MergedResults, method: str) -> dict:
    """The manifest of the run a method label came from (what its scores were computed on)."""
    if isinstance(r, MergedResults):
        label = r.run_of(method)
        return next(run.manifest for run in r.runs if run.label == label)
    return r.manifest


def compare_results(new: Side, baseline: Side, *, tolerance: dict[str, Tolerance] | str | None = None,
                    tolerance_ci: bool = False, by: str = "frame", allow_missing: bool = False,
                    allow_mixed: bool = False, n_boot: int = DEFAULT_BOOT, level: float = DEFAULT_CI,
                    seed: int = 0) -> GateResult:
    """Compare NEW against BASELINE (each one results directory or several, merged) per method x metric in one
    weighting; see the module docstring for the rules."""
    if by not in WEIGHTINGS:
        raise AnimbenchError(f"compare --by {by!r}: expected one of {list(WEIGHTINGS)}")
    new_r, old_r = _side(new, allow_mixed), _side(baseline, allow_mixed)
    old_real = {os.path.realpath(p) for p in _roots(old_r)}
    for root in _roots(new_r):
        if os.path.realpath(root) in old_real:  # would pass forever, gating nothing
            raise AnimbenchError(f"compare {root}: NEW and --baseline are the same results directory; give the "
                                 "baseline run's directory")
    tol = parse_tolerance(tolerance) if isinstance(tolerance, str) or tolerance is None else dict(tolerance)
    default = tol.pop("*", Tolerance())

    new_a, old_a = new_r.leaderboard(by), old_r.leaderboard(by)
    new_cells = {(r["method"], r["metric"]): r for _, r in new_a.iterrows()}
    old_cells = {(r["method"], r["metric"]): r for _, r in old_a.iterrows()}
    known = {k for _, k in new_cells} | {k for _, k in old_cells}
    unknown = sorted(set(tol) - known)
    if unknown:
        raise AnimbenchError(f"--tolerance: unknown metric {', '.join(map(repr, unknown))} (these runs score "
                             f"{', '.join(sorted(known)) or 'no metric'})")
    common = [k for k in old_cells if k in new_cells]
    if not common:
        raise AnimbenchError(f"compare {new_r.root} with {old_r.root}: no method x metric in common (new has "
                             f"{sorted(set(new_r.methods))}, baseline {sorted(set(old_r.methods))}): nothing to gate")
    poolings = _poolings(new_r)
    new_v, old_v = new_r.videos(), old_r.videos()
    new_groups = dict(iter(new_v.groupby(["method", "metric"], sort=False)))
    old_groups = dict(iter(old_v.groupby(["method", "metric"], sort=False)))
    empty = new_v.iloc[0:0]

    morder = {m: i for i, m in enumerate(list(old_r.metrics) + list(new_r.metrics))}
    order = {m: i for i, m in enumerate(list(old_r.methods) + list(new_r.methods))}
    common.sort(key=lambda k: (order.get(k[0], len(order)), morder.get(k[1], len(morder))))
    rows, reasons = [], {}  # unpaired reason -> methods
    for method, metric in common:
        n, o = new_cells[(method, metric)], old_cells[(method, metric)]
        hib = bool(n["higher_is_better"])
        new_x, old_x = float(n["mean"]), float(o["mean"])
        delta = new_x - old_x
        paired, reason = _pairing(_manifest_of(new_r, method), _manifest_of(old_r, method))
        if not paired:
            reasons.setdefault(reason, []).append(method)
        row = GateRow(method, metric, hib, str(n["weighting"]), old_x, new_x, delta,
                      -delta if hib else delta, tol.get(metric, default), paired=paired)
        if n["weighting"] != "set" and o["weighting"] != "set":
            a = new_groups.get((method, metric), empty)
            b = old_groups.get((method, metric), empty)
            rng = bootstrap_rng(seed, metric, by, a["video_id"], b["video_id"])  # the scores', not the label's
            pooling = poolings.get(metric, "mean")
            if paired:
                c = paired_comparison(a, b, by, higher_is_better=hib, names=("new", "baseline"), n_boot=n_boot,
                                      level=level, rng=rng, pooling=pooling)
                row.diff, row.ci_low, row.ci_high, row.n_videos = c["diff"], c["ci_low"], c["ci_high"], c["n_videos"]
            else:
                row.diff, row.ci_low, row.ci_high = _unpaired(a, b, by, pooling=pooling, n_boot=n_boot, level=level,
                                                              rng=rng)
                row.n_new, row.n_baseline = int((a["n_valid"] > 0).sum()), int((b["n_valid"] > 0).sum())
                row.n_videos = min(row.n_new, row.n_baseline)
        row.verdict = _verdict(row, "ci" if tolerance_ci else "tolerance")
        rows.append(row)

    new_methods, old_methods = {m for m, _ in new_cells}, {m for m, _ in old_cells}
    paired = not reasons
    if len(reasons) == 1 and len({r.paired for r in rows}) == 1:
        reason = next(iter(reasons))  # every method unpaired for one reason (one directory per side: always)
    else:
        reason = "; ".join(f"{', '.join(dict.fromkeys(ms))}: {why}" for why, ms in reasons.items())
    result = GateResult(
        new_root=new_r.root, baseline_root=old_r.root, by=by, mode="ci" if tolerance_ci else "tolerance",
        level=level, tolerances=tol, default_tolerance=default, paired=paired, unpaired_reason=reason, rows=rows,
        methods_only_baseline=[m for m in old_r.methods if m not in new_methods],
        methods_only_new=[m for m in new_r.methods if m not in old_methods],
        metrics_only_baseline=[k for k in old_cells if k not in new_cells and k[0] in new_methods],
        metrics_only_new=[k for k in new_cells if k not in old_cells and k[0] in old_methods],
        allow_missing=allow_missing, new_roots=_roots(new_r), baseline_roots=_roots(old_r))
    result.notes = _provenance_notes(new_a, old_a, common)
    return result


def _provenance_notes(new_a: pd.DataFrame, old_a: pd.DataFrame, common: list[tuple[str, str]]) -> list[str]:
    """Differences a reader must know about: the method, checkpoint, config or metric backend behind a label
    changed between the runs."""
    notes = []
    key = ["method", "metric"]
    m = new_a.merge(old_a, on=key, suffixes=("_new", "_old"))
    m = m[[tuple(k) in set(common) for k in m[key].itertuples(index=False)]]
    for column, what in (("metric_backend", "metric backend"), ("metric_weights_sha256", "metric weights")):
        changed = sorted({r["metric"] for _, r in m.iterrows() if r[f"{column}_new"] != r[f"{column}_old"]})
        if changed:
            notes.append(f"{what} changed for {', '.join(changed)}: differences may come from the metric, not "
                         "the method")
    for column, what in (("method_name", "method"), ("checkpoint_sha256", "checkpoint"),
                         ("config_sha256", "config")):
        changed = {r["method"]: (r[f"{column}_old"], r[f"{column}_new"]) for _, r in m.iterrows()
                   if r[f"{column}_new"] != r[f"{column}_old"]}
        for label, (a, b) in sorted(changed.items()):
            short = (lambda v: str(v)[:12]) if column != "method_name" else str
            notes.append(f"{what} of {label} changed: baseline {short(a)}, new {short(b)}")
    return notes


# ------------------------------------------------------------------------------------------------ rendering
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md_escape(text: object) -> str:
    """A label safe in one Markdown table cell: no cell break (`|`), no HTML (`<script>`), no emphasis/links."""
    s = " ".join(str(text).split())  # newlines and tabs would end the row
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def _text_escape(text: object) -> str:
    """A label on one plain-text line: control characters shown as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _signed(x: float) -> str:
    return fmt(x) if not math.isfinite(x) else ("+" if x > 0 else "") + fmt(x)


def _change(r: GateRow) -> str:
    if not math.isfinite(r.worse_by):
        return "–"
    if r.worse_by == 0:
        return "same"
    return f"{'worse' if r.worse_by > 0 else 'better'} by {fmt(abs(r.worse_by))}"


def _tolerance_cell(r: GateRow, mode: str, level: float) -> str:
    if mode == "ci" and r.has_interval:
        return f"{int(round(100 * level))}% CI"
    return str(r.tolerance)


def _interval_cell(r: GateRow) -> str:
    kind = f"paired, {r.n_videos} videos" if r.paired else \
        f"unpaired, {r.n_new} new / {r.n_baseline} baseline videos"
    if r.weighting == "set":
        return "– (set metric)"
    if math.isnan(r.ci_low) or math.isnan(r.ci_high):
        return "–"
    if not r.has_interval:  # too few videos: the difference, no interval (the tables' rule)
        return f"{_signed(r.diff)} ({kind}; no interval below {MIN_VIDEOS_FOR_CI})"
    return f"{_signed(r.diff)} [{fmt(r.ci_low)}, {fmt(r.ci_high)}] ({kind})"


HEADER = ("method", "metric", "baseline", "new", "Δ new − base", "change", "tolerance", "Δ [CI]", "verdict")


def _cells(result: GateResult, escape) -> list[list[str]]:
    out = []
    for r in result.rows:
        arrow = "↑" if r.higher_is_better else "↓"
        out.append([escape(r.method), f"{escape(r.metric)} {arrow}", fmt(r.old), fmt(r.new), _signed(r.delta),
                    _change(r), _tolerance_cell(r, result.mode, result.level), _interval_cell(r), r.verdict.upper()
                    if r.regressed else r.verdict])
    return out


def _summary_lines(result: GateResult, escape) -> list[str]:
    pct = int(round(100 * result.level))
    if result.mode == "ci":
        gate = (f"a regression is a {pct}% bootstrap interval of new − baseline wholly on the worse side of 0; "
                f"metrics without an interval (set metrics, fewer than {MIN_VIDEOS_FOR_CI} videos) use the tolerance "
                f"({_tolerance_text(result)})")
    else:
        gate = f"a regression is a change worse than the tolerance ({_tolerance_text(result)})"
    new_roots = ", ".join(escape(p) for p in result.new_roots or [result.new_root])
    old_roots = ", ".join(escape(p) for p in result.baseline_roots or [result.baseline_root])
    if result.paired:
        pairing = f"paired bootstrap over the videos both runs scored ({pct}% interval)."
    elif any(r.paired for r in result.rows):
        pairing = (f"paired bootstrap over the videos both runs scored ({pct}% interval) where a method's runs "
                   f"share store, split and protocol; unpaired ({escape(result.unpaired_reason)}): each run's "
                   "videos resampled independently.")
    else:
        pairing = (f"unpaired ({escape(result.unpaired_reason)}): each run's videos resampled independently "
                   f"({pct}% interval).")
    lines = [f"New: {new_roots}; baseline: {old_roots}.", f"Means: {WEIGHTING_LABELS[result.by]}. Gate: {gate}.",
             "Δ [CI]: " + pairing]
    missing_rule = "listed, not gated: --allow-missing" if result.allow_missing else "fails the gate"
    if result.methods_only_baseline:
        lines.append(f"Methods only in the baseline ({missing_rule}): "
                     f"{', '.join(escape(m) for m in result.methods_only_baseline)}.")
    if result.metrics_only_baseline:
        lines.append(f"Metrics only in the baseline ({missing_rule}): "
                     f"{', '.join(f'{escape(a)} {escape(b)}' for a, b in result.metrics_only_baseline)}.")
    if result.methods_only_new:
        lines.append(f"Methods only in the new run (not gated): "
                     f"{', '.join(escape(m) for m in result.methods_only_new)}.")
    if result.metrics_only_new:
        lines.append(f"Metrics only in the new run (not gated): "
                     f"{', '.join(f'{escape(a)} {escape(b)}' for a, b in result.metrics_only_new)}.")
    lines += [f"Note: {escape(n)}." for n in result.notes]
    return lines


def _tolerance_text(result: GateResult) -> str:
    named = [f"{m}={t}" for m, t in sorted(result.tolerances.items())]
    return ", ".join(named + [f"{'others' if named else 'every metric'} {result.default_tolerance}"])


def _headline(result: GateResult) -> str:
    if result.passed:
        return f"PASS: no regression in {len(result.rows)} method x metric comparisons"
    parts = []
    if result.regressions:
        parts.append(f"{len(result.regressions)} regression{'s' if len(result.regressions) != 1 else ''}")
    if result.missing and not result.allow_missing:
        counts = [(len(result.methods_only_baseline), "method"), (len(result.metrics_only_baseline), "metric")]
        parts.append("missing from the new run: " + ", ".join(f"{n} {word}{'s' if n != 1 else ''}"
                                                                for n, word in counts if n))
    return "FAIL: " + "; ".join(parts)


def to_markdown(result: GateResult) -> str:
    """The comparison as Markdown for a pull request: headline, table, then the rules and coverage notes."""
    lines = [f"### animbench compare — {_headline(result)}", "", "| " + " | ".join(HEADER) + " |",
             "|" + "---|" * len(HEADER)]
    for cells in _cells(result, md_escape):
        if cells[-1] in ("REGRESSION", "LOST VALUE"):
            cells[-1] = f"**{cells[-1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {line}" for line in _summary_lines(result, md_escape)]
    return "\n".join(lines) + "\n"


def to_text(result: GateResult) -> str:
    """The comparison as aligned plain text for a terminal or a CI log."""
    table = [list(HEADER)] + _cells(result, _text_escape)
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = [_headline(result), ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.append("")
    lines += _summary_lines(result, _text_escape)
    return "\n".join(lines) + "\n"
