"""Render every report format of one or several results directories into one folder (what `animbench report`
calls)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from plumbing.errors import AnimbenchError
from plumbing.files import atomic_write_text
from reports.merge import load_results

FORMATS = ("md", "tex", "csv", "html", "png", "pdf")


def _write_text(path: Path, text: str) -> Path:
    atomic_write_text(text, path)
    return path


def coverage_markdown(results: object) -> str:
    """The coverage section of the Markdown report: counts, the test list's fingerprint, the missing clips."""
    cov = results.coverage()  # type: ignore[attr-defined]
    if cov is None:
        return ""
    from reports.tables import _md

    lines = ["## Coverage", "", f"{cov.summary()}.", "", f"Official list: {_md(cov.source)} (partition "
             f"{_md(cov.split)}); sha256 of its sorted clip ids: `{cov.fingerprint}`.", ""]
    if cov.missing:
        lines += ["Missing clips:", ""] + [f"- {_md(c)}" for c in cov.missing] + [""]
    return "\n".join(lines)


def write_report(results_dirs: str | os.PathLike | list[str | os.PathLike], out: str | os.PathLike,
                 formats: tuple[str, ...] = FORMATS, by: str = "frame", *, allow_mixed: bool = False,
                 official_list: str | os.PathLike | None = None) -> dict[str, list[Path]]:
    """Write leaderboard.{md,tex,csv}, report.html and figures/*.{png,pdf} for the formats asked, from one or several
    results directories merged (reports.merge.load_results); return the paths. An earlier report's files in `out`
    are removed first (listed under "removed" when not written again), so the folder holds one report."""
    unknown = [f for f in formats if f not in FORMATS]
    if not formats:
        raise AnimbenchError(f"--formats: empty; expected one or more of {','.join(FORMATS)}")
    if unknown:
        raise AnimbenchError(f"--formats {','.join(unknown)}: expected a subset of {','.join(FORMATS)}")
    results = load_results(results_dirs, allow_mixed=allow_mixed, official_list=official_list)
    results.leaderboard(by)  # a bad --by fails before anything is written
    results.coverage()  # so does an unreadable official list
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    removed = _clear_previous(out)
    written: dict[str, list[Path]] = {}
    if "md" in formats:
        from reports.tables import comparisons_markdown, to_markdown

        text = to_markdown(results, by) + "\n## Paired comparisons\n\n" + comparisons_markdown(results, by)
        cov = coverage_markdown(results)
        written["md"] = [_write_text(out / "leaderboard.md", text + ("\n" + cov if cov else ""))]
    if "tex" in formats:
        from reports.tables import comparisons_latex, to_latex

        text = to_latex(results, by) + "\n" + comparisons_latex(results, by)
        written["tex"] = [_write_text(out / "leaderboard.tex", text)]
    if "csv" in formats:
        from reports.tables import to_csv

        written["csv"] = [_write_text(out / "leaderboard.csv", to_csv(results, by))]
    if "html" in formats:
        from reports.html import write_html

        written["html"] = [write_html(results, out / "report.html", by=by)]
    for kind in ("png", "pdf"):  # the same figures (bars, distributions, intervals, speed vs quality); PDF for papers
        if kind in formats:
            from reports.plots import figures

            written[kind] = figures(results, out / "figures", by, formats=(kind,))
    rewritten = {p for paths in written.values() for p in paths}
    gone = [p for p in removed if p not in rewritten]
    if gone:
        written["removed"] = gone
    return written


_FIGURE = re.compile(r"(bar|intervals|speed|videos)_.+\.(png|pdf)")


def _clear_previous(out: Path) -> list[Path]:
    """Remove the files an earlier report wrote into `out` (its own names only; anything else stays), so the
    folder never mixes this report with another run's tables or figures; return what was removed."""
    own = [out / n for n in ("leaderboard.md", "leaderboard.tex", "leaderboard.csv", "report.html")]
    figures = out / "figures"
    if figures.is_dir():
        own += sorted(p for p in figures.iterdir() if _FIGURE.fullmatch(p.name))
    removed = [p for p in own if p.is_file() and not p.is_symlink()]
    for p in removed:
        p.unlink()
    return removed
