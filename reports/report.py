"""Render every report format of a results directory into one folder (what `animbench report` calls)."""

from __future__ import annotations

import os
from pathlib import Path

from bench.results import Results
from plumbing.errors import AnimbenchError

FORMATS = ("md", "tex", "csv", "html", "png")


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_report(results_dir: str | os.PathLike, out: str | os.PathLike, formats: tuple[str, ...] = FORMATS,
                 by: str = "frame") -> dict[str, list[Path]]:
    """Write leaderboard.{md,tex,csv}, report.html and figures/*.png for the formats asked; return the paths."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise AnimbenchError(f"--formats {','.join(unknown)}: expected a subset of {','.join(FORMATS)}")
    results = Results(results_dir)
    results.leaderboard(by)  # a bad --by fails before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    if "md" in formats:
        from reports.tables import comparisons_markdown, to_markdown

        text = to_markdown(results, by) + "\n## Paired comparisons\n\n" + comparisons_markdown(results, by)
        written["md"] = [_write_text(out / "leaderboard.md", text)]
    if "tex" in formats:
        from reports.tables import to_latex

        written["tex"] = [_write_text(out / "leaderboard.tex", to_latex(results, by))]
    if "csv" in formats:
        from reports.tables import to_csv

        written["csv"] = [_write_text(out / "leaderboard.csv", to_csv(results, by))]
    if "html" in formats:
        from reports.html import write_html

        written["html"] = [write_html(results, out / "report.html", by=by)]
    if "png" in formats:
        from reports.plots import plot_all

        written["png"] = plot_all(results, out / "figures", by)
    return written
