"""Reports from a results directory: Markdown, LaTeX, CSV, self-contained HTML and figures, without torch."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from animbench.cli import main
from bench.results import Results
from reports import tables
from reports.html import render_html
from reports.report import write_report

SIZE = 24


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Results:
    """A real bench run: copy-source and an oracle labelled with LaTeX-hostile characters, on three videos."""
    from bench.runner import MethodSpec, run_bench
    from prep.store import FrameStoreWriter

    root = tmp_path_factory.mktemp("rep")
    with FrameStoreWriter(root / "store", {"recipe": "test"}) as w:
        rng = np.random.default_rng(0)
        for i in range(3):
            base = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            vid = f"clip#{i}" if i < 2 else "dir/clip#2"  # a '/' in an id must not break the samples layout
            w.add_video(vid, [np.roll(base, t, axis=1) for t in range(4 + i)], split="test")
    run_bench([MethodSpec("copy-source"), MethodSpec("oracle", label="my_oracle")], root / "store",
              "reconstruction", ["l1", "ssim"], root / "res", workers=1, n_boot=100)
    return Results(root / "res")


def test_markdown_leaderboard_bolds_the_best_and_states_n_without_intervals_below_five_videos(results):
    md = tables.to_markdown(results, "frame")
    header = md.splitlines()[0]
    assert header.startswith("| method | n | l1 (numpy ") and " ↓ | ssim (torch " in header and header.endswith(" ↑ |")
    row = next(line for line in md.splitlines() if line.startswith("| my"))
    assert row == "| my\\_oracle | 3 | **0** | **1** |"  # the label's markdown '_' escaped; 3 videos: no interval
    cs = results.aggregates().query("method == 'copy-source' and metric == 'l1' and weighting == 'frame'").iloc[0]
    assert f"| copy-source | 3 | {tables.fmt(cs['mean'])} |" in md and "[" not in row
    assert "No interval where fewer than 5 videos were scored (here n = 3)" in md
    assert "frame-weighted" in md and "bootstrap over videos (100 resamples, seed 0)" in md
    assert "video-weighted" in tables.to_markdown(results, "video")


def test_latex_table_is_booktabs_with_escaped_labels_and_bold_best(results):
    tex = tables.to_latex(results, "video", caption="Tai-Chi 50% test")
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lrcc}", r"my\_oracle",
                  r"$\mathbf{0}$", r"$\downarrow$", r"$\uparrow$", r"Tai-Chi 50\% test", "No interval where fewer"):
        assert token in tex, token
    cs_row = next(line for line in tex.splitlines() if line.startswith("copy-source"))
    assert r"\mathbf" not in cs_row and r"\pm" not in tex  # intervals are never printed as a symmetric +-


def test_csv_has_one_row_per_method_and_metric_and_no_bounds_below_five_videos(results):
    df = pd.read_csv(io.StringIO(tables.to_csv(results, "frame")))
    assert len(df) == 4 and list(df.columns) == tables.CSV_COLUMNS
    assert df["ci_low"].isna().all() and df["ci_high"].isna().all() and not df["ci_shown"].any()
    assert (df["n_videos"] == 3).all() and set(df["weighting"]) == {"frame"}


def test_html_is_self_contained_with_grids_provenance_and_per_video_table(results):
    html = render_html(results)
    assert "src=\"http" not in html and "src=\"file" not in html and "<link" not in html
    n_imgs = html.count("data:image/png;base64,")
    # 3 videos x (one source + 4 sample frames x (ground truth + 2 methods))
    assert n_imgs == 3 * (1 + 4 * 3)
    assert results.sample_videos() == ["clip#0", "clip#1", "dir/clip#2"]
    for text in ("Leaderboard", "Paired comparisons", "Provenance", "Per video", "dir/clip#2", "my_oracle",
                 "ground truth", results.manifest["run"]["store"]["fingerprint"]):
        assert text in html, text


def test_report_writes_every_format_and_the_cli_prints_the_paths(results, tmp_path, capsys):
    written = write_report(results.root, tmp_path / "rep")
    assert set(written) == {"md", "tex", "csv", "html", "png", "pdf"}
    pngs, pdfs = written["png"], written["pdf"]
    assert {p.name for p in pngs} >= {"bar_l1.png", "bar_ssim.png", "videos_l1.png", "videos_ssim.png",
                                      "intervals_l1.png", "intervals_ssim.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert sorted(p.stem for p in pdfs) == sorted(p.stem for p in pngs)  # the same figures for papers
    assert all(p.read_bytes()[:5] == b"%PDF-" for p in pdfs)
    assert main(["report", str(results.root), "--out", str(tmp_path / "cli"), "--formats", "md,csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"md\t{tmp_path / 'cli' / 'leaderboard.md'}", f"csv\t{tmp_path / 'cli' / 'leaderboard.csv'}"]
    assert main(["report", str(results.root), "--out", str(tmp_path / "x"), "--formats", "md,docx"]) == 2
    assert "--formats docx" in capsys.readouterr().err


def test_reports_render_without_importing_torch(results, tmp_path):
    code = (  # through the console script's own entry point, as a user on a machine without torch runs it
        "import sys\n"
        "from animbench.cli import main\n"
        f"assert main(['report', {str(results.root)!r}, '--out', {str(tmp_path / 'nt')!r}]) == 0\n"
        f"assert main(['leaderboard', {str(results.root)!r}]) == 0\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
    assert (tmp_path / "nt" / "report.html").is_file()


def test_a_figure_that_fails_to_save_leaves_no_file_looking_complete(results, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def half_written(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_report(results.root, tmp_path / "rep", ("png",))
    assert [p.name for p in (tmp_path / "rep").rglob("*") if p.is_file()] == []


def test_an_empty_formats_list_is_a_one_line_error_not_an_empty_report(results, tmp_path, capsys):
    assert main(["report", str(results.root), "--out", str(tmp_path / "rep"), "--formats", " , "]) == 2
    err = capsys.readouterr().err
    assert "--formats" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "rep").exists()


def test_a_new_report_into_the_same_folder_leaves_nothing_of_the_previous_one(results, tmp_path, capsys):
    out = tmp_path / "rep"
    write_report(results.root, out, ("md", "html", "png"))
    (out / "notes.txt").write_text("mine")  # not a report file: kept
    assert main(["report", str(results.root), "--out", str(out), "--formats", "csv"]) == 0
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert left == ["leaderboard.csv", "notes.txt"]
    assert f"removed\t{out / 'report.html'}" in capsys.readouterr().out
