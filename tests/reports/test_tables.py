"""Leaderboard tables: numbers from the results Parquet, best in bold, honest intervals, notes in every format."""

from __future__ import annotations

import io
import re

import pandas as pd
import pyarrow.parquet as pq

from bench.results import MIN_VIDEOS_FOR_CI
from reports import tables
from reports.merge import load_results
from tests.reports.test_merge import make_results


def test_markdown_and_csv_numbers_round_trip_from_the_aggregates_parquet(tmp_path):
    make_results(tmp_path / "r", {"fomm": 0.10, "copy-source": 0.20}, metrics=("l1", "psnr"))
    res = load_results(tmp_path / "r")
    agg = pq.read_table(tmp_path / "r" / "aggregates.parquet").to_pandas()
    agg = agg[agg["weighting"] == "video"]
    md = tables.to_markdown(res, "video")
    csv = pd.read_csv(io.StringIO(tables.to_csv(res, "video")))
    for _, a in agg.iterrows():
        row = next(line for line in md.splitlines() if line.startswith(f"| {a['method']} |")).replace("**", "")
        assert f"{tables.fmt(a['mean'])} [{tables.fmt(a['ci_low'])}, {tables.fmt(a['ci_high'])}]" in row
        c = csv[(csv["method"] == a["method"]) & (csv["metric"] == a["metric"])].iloc[0]
        assert c["mean"] == a["mean"] and c["ci_low"] == a["ci_low"] and c["ci_high"] == a["ci_high"]
        assert c["n_videos"] == a["n_videos"] == 6 and bool(c["ci_shown"])
    assert "video-weighted" in md and "frame-weighted" in tables.to_markdown(res, "frame")


def test_the_best_value_per_column_is_bold_whichever_direction_is_better(tmp_path):
    make_results(tmp_path / "r", {"a": 0.30, "b": 0.10, "c": 0.20}, metrics=("l1", "psnr"))
    res = load_results(tmp_path / "r")
    md = tables.to_markdown(res, "frame")
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[2:] for line in md.splitlines()[2:5]}
    # columns: l1 (lower is better: b), psnr (higher is better: a)
    assert rows["b"][0].startswith("**") and not rows["a"][0].startswith("**")
    assert rows["a"][1].startswith("**") and not rows["b"][1].startswith("**")
    tex = tables.to_latex(res, "frame")
    b_row = next(line for line in tex.splitlines() if line.startswith("b &"))
    assert b_row.count(r"\mathbf") == 1
    assert "↓" in md.splitlines()[0] and "↑" in md.splitlines()[0]


def test_intervals_appear_only_with_enough_videos(tmp_path):
    make_results(tmp_path / "few", {"fomm": 0.1, "oracle": 0.0}, n_videos=MIN_VIDEOS_FOR_CI - 1)
    make_results(tmp_path / "many", {"fomm": 0.1, "oracle": 0.0}, n_videos=MIN_VIDEOS_FOR_CI)
    few, many = load_results(tmp_path / "few"), load_results(tmp_path / "many")
    md_few, md_many = tables.to_markdown(few, "frame"), tables.to_markdown(many, "frame")
    fomm_few = next(line for line in md_few.splitlines() if line.startswith("| fomm"))
    assert "[" not in fomm_few and f"fewer than {MIN_VIDEOS_FOR_CI} videos" in md_few
    assert f"| fomm | {MIN_VIDEOS_FOR_CI - 1} |" in fomm_few  # n stated
    assert "[" in next(line for line in md_many.splitlines() if line.startswith("| fomm"))
    assert "fewer than" not in md_many
    assert r"\scriptsize" not in tables.to_latex(few) and r"\scriptsize $[" in tables.to_latex(many)
    csv = pd.read_csv(io.StringIO(tables.to_csv(few)))
    assert csv["ci_low"].isna().all() and not csv["ci_shown"].any()
    # paired comparisons: n stated, no interval or p_boot below the minimum
    cmp_few = tables.comparisons_markdown(few, "frame")
    assert "(not tested)" in cmp_few and f"| {MIN_VIDEOS_FOR_CI - 1} |" in cmp_few
    cmp_many = tables.comparisons_markdown(many, "frame")
    assert re.search(r"\| oracle \| < 1/200 \| 5 \|", cmp_many), cmp_many  # p_boot 0 reads < 1/B


def test_skipped_frame_notes_reach_markdown_latex_and_csv(tmp_path):
    make_results(tmp_path / "r", {"fomm": 0.1, "oracle": 0.0}, metrics=("aed_face",), skip={"fomm": 4})
    res = load_results(tmp_path / "r")
    note = "4 of 24 frames skipped (no detection), 1 videos without any"
    assert note in tables.to_markdown(res) and "†" in tables.to_markdown(res)
    assert note in tables.to_latex(res) and r"\dag" in tables.to_latex(res)
    csv = pd.read_csv(io.StringIO(tables.to_csv(res)))
    assert csv.loc[csv["method"] == "fomm", "note"].iloc[0] == note


def test_headers_name_the_metric_its_meaning_and_backend(tmp_path):
    make_results(tmp_path / "r", {"fomm": 0.1}, metrics=("aed_face", "l1"))
    res = load_results(tmp_path / "r")
    assert tables.metric_header(res, "l1") == "l1 (numpy 2.0)"
    assert tables.metric_header(res, "aed_face") == \
        "aed_face (FOMM AED: identity-embedding distance, OpenFace, squared L2; numpy 2.0)"
    assert "identity-embedding distance" in tables.to_markdown(res).splitlines()[0]
    assert "metric_label" in pd.read_csv(io.StringIO(tables.to_csv(res))).columns


def test_markdown_escapes_untrusted_method_labels(tmp_path):
    label = "<script>x|y</script>*_&"
    make_results(tmp_path / "r", {label: 0.1, "oracle": 0.0})
    md = tables.to_markdown(load_results(tmp_path / "r"))
    assert "<script>" not in md and "&lt;script&gt;x\\|y&lt;/script&gt;\\*\\_&amp;" in md
    lines = md.splitlines()
    assert all(len(re.findall(r"(?<!\\)\|", lines[i])) == 4 for i in (0, 2, 3))  # no pipe broke a row


def test_figures_draw_no_interval_below_the_minimum_of_videos(tmp_path):
    # the plots follow the tables' rule: below MIN_VIDEOS_FOR_CI videos no error bar and no interval line
    from matplotlib.collections import LineCollection

    from reports.plots import bar_figure, interval_figure

    make_results(tmp_path / "few", {"fomm": 0.1, "copy-source": 0.3}, n_videos=MIN_VIDEOS_FOR_CI - 1)
    make_results(tmp_path / "many", {"fomm": 0.1, "copy-source": 0.3}, n_videos=MIN_VIDEOS_FOR_CI)

    def interval_lines(fig):
        return [ln for ln in fig.axes[0].lines if len(ln.get_xdata()) == 2]

    def error_bars(fig):  # zero-width caps count too: they would read as an interval of no width
        return [s for c in fig.axes[0].collections if isinstance(c, LineCollection) for s in c.get_segments()]

    few, many = load_results(tmp_path / "few"), load_results(tmp_path / "many")
    assert interval_lines(interval_figure(many, "l1")) and not interval_lines(interval_figure(few, "l1"))
    assert error_bars(bar_figure(many, "l1")) and not error_bars(bar_figure(few, "l1"))
    assert "no interval" in interval_figure(few, "l1").axes[0].get_xlabel()
    assert "no interval" in bar_figure(few, "l1").axes[0].get_title()


def test_html_leaderboard_names_the_run_and_marks_skipped_frames(tmp_path):
    from reports.html import render_html

    make_results(tmp_path / "r1", {"fomm": 0.1}, metrics=("aed_face",), skip={"fomm": 4})
    make_results(tmp_path / "r2", {"monkey_net": 0.2}, metrics=("aed_face",), seed=1)
    html = render_html(load_results([tmp_path / "r1", tmp_path / "r2"]), plots=False)
    board = html.split('class="leaderboard">', 1)[1].split("</table>", 1)[0]
    assert "<th>run</th>" in board and "<td>fomm</td><td>r1</td>" in board and "<td>monkey_net</td><td>r2</td>" in board
    fomm = next(r for r in board.split("<tr>") if r.startswith("<td>fomm</td>"))
    assert "†" in fomm and "†" not in next(r for r in board.split("<tr>") if r.startswith("<td>monkey_net</td>"))
    assert "<li>†: some frames skipped (see above).</li>" in html


def test_one_method_gets_a_sentence_not_an_empty_comparisons_table(tmp_path):
    make_results(tmp_path / "r", {"fomm": 0.1})
    text = tables.comparisons_markdown(load_results(tmp_path / "r"), "frame")
    assert "|" not in text and "one method" in text


def test_html_title_names_the_store_when_the_results_record_no_path(tmp_path):
    from reports.html import render_html

    make_results(tmp_path / "r", {"fomm": 0.1})  # store path ""
    assert "<title>animbench: reconstruction on store ffffffffffff</title>" in render_html(
        load_results(tmp_path / "r"), plots=False)


def test_markdown_notes_escape_markup_in_run_paths(tmp_path):
    # a results path such as /x/_a_/r or [b] would turn into emphasis or a link in the footnotes
    make_results(tmp_path / "_a_" / "r", {"fomm": 0.1})
    make_results(tmp_path / "[b]" / "r", {"oracle": 0.0}, seed=1)
    md = tables.to_markdown(load_results([tmp_path / "_a_" / "r", tmp_path / "[b]" / "r"]))
    runs = next(line for line in md.splitlines() if line.startswith("- Runs: "))
    assert r"/\_a\_/r" in runs and r"/\[b\]/r" in runs and "/_a_/" not in runs


def test_n_counts_the_videos_scored_in_every_format(tmp_path):
    # fomm's first video has no valid frame: it is not scored, so n is 5 in Markdown, LaTeX and HTML alike
    from reports.html import render_html

    make_results(tmp_path / "r", {"fomm": 0.1, "oracle": 0.0}, metrics=("aed_face",), skip={"fomm": 4})
    res = load_results(tmp_path / "r")
    assert "| fomm | 5 |" in tables.to_markdown(res) and "| oracle | 6 |" in tables.to_markdown(res)
    assert any(line.startswith("fomm & 5 &") for line in tables.to_latex(res).splitlines())
    assert "<tr><td>fomm</td><td>5</td>" in render_html(res, plots=False)


def test_csv_cells_a_spreadsheet_would_run_are_inert(tmp_path):
    """A method label starting with =, +, - or @ is written with a leading apostrophe (OWASP's CSV
    injection advice); numbers, negative ones included, are written as numbers."""
    make_results(tmp_path / "r", {"=HYPERLINK(\"http://x\")": 0.1, "-m": 0.2, "oracle": 0.0}, metrics=("l1",))
    csv = pd.read_csv(io.StringIO(tables.to_csv(load_results(tmp_path / "r"))))
    assert set(csv["method"]) == {"'=HYPERLINK(\"http://x\")", "'-m", "oracle"}
    assert pd.api.types.is_float_dtype(csv["mean"]) and not csv["mean"].isna().any()
