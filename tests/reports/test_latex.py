"""The LaTeX leaderboard: booktabs, best in bold, [low, high] intervals, a footnote with protocol, variant,
backends and coverage, untrusted labels escaped, and it compiles when a LaTeX engine is installed."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from reports import tables
from reports.merge import load_results
from tests.reports.test_merge import make_results

HOSTILE = r"<script>a&b_c%d\e"
CLIPS = [f"id{i:03d}#vid{i}#000000#000064" for i in range(8)]


def write_metadata(path, clips_present: int) -> None:
    """A vox-format metadata csv: 8 test clips and 1 train clip."""
    lines = ["video_id,person_id,start,end,bbox,fps,width,height,partition"]
    lines += [f"vid{i},id{i:03d},0,64,0-0-10-10,25,100,100,test" for i in range(8)]
    lines += ["vidT,id999,0,64,0-0-10-10,25,100,100,train"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def results(tmp_path):
    make_results(tmp_path / "r", {HOSTILE: 0.1, "oracle": 0.0, "copy_source": 0.2},
                 metrics=("l1", "aed_face"), videos=CLIPS[:6], skip={"copy_source": 2})
    write_metadata(tmp_path / "vox-metadata.csv", 6)
    return load_results(tmp_path / "r", official_list=tmp_path / "vox-metadata.csv")


def test_latex_is_booktabs_with_bold_best_and_intervals_not_plus_minus(results):
    tex = tables.to_latex(results, "frame", caption="Vox 50% test")
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lrcc}",
                  r"$\downarrow$", r"Vox 50\% test", r"{\scriptsize $["):
        assert token in tex, token
    assert r"\pm" not in tex
    oracle = next(line for line in tex.splitlines() if line.startswith("oracle &"))
    assert oracle.count(r"\mathbf") == 2  # best in both columns
    agg = results.leaderboard("frame")
    a = agg[(agg["method"] == HOSTILE) & (agg["metric"] == "l1")].iloc[0]
    assert f"[{tables.fmt(a['ci_low'])}, {tables.fmt(a['ci_high'])}]" in tex  # the uneven interval as it is


def test_untrusted_labels_are_escaped(results):
    tex = tables.to_latex(results)
    assert r"\textless{}script\textgreater{}a\&b\_c\%d\textbackslash{}e" in tex
    assert "<script>" not in tex and r"copy\_source" in tex
    assert tables.latex_escape("x\ny~^{}$#|") == \
        r"x y\textasciitilde{}\textasciicircum{}\{\}\$\#\textbar{}"


def test_footnote_names_protocol_variant_backends_coverage_and_skips(results):
    tex = tables.to_latex(results)
    note = tex[tex.index(r"\footnotesize"):]
    for text in ("Protocol: reconstruction (legacy)", "Metric backends: l1: numpy 2.0",
                 "Coverage: 6 of 8 VoxCeleb test clips; 2 unavailable", "frames skipped (no detection)",
                 "frame-weighted", "aed\\_face (FOMM AED: identity-embedding distance, OpenFace"):
        assert text in tex if text.startswith("aed") else text in note, text


def test_coverage_counts_the_official_test_list_and_the_report_lists_the_missing(results, tmp_path):
    from reports.report import write_report

    cov = results.coverage()
    assert (cov.expected, cov.present, cov.missing) == (8, 6, CLIPS[6:])
    assert len(cov.fingerprint) == 64
    written = write_report(tmp_path / "r", tmp_path / "rep", ("md", "csv"),
                           official_list=tmp_path / "vox-metadata.csv")
    md = written["md"][0].read_text(encoding="utf-8")
    assert "## Coverage" in md and cov.fingerprint in md and "id006#vid6#000000#000064" in md


HOSTILE2 = r"#1 $x{y}~z^w"


def test_paired_comparisons_table_states_n_intervals_and_p_boot_below_one_over_b(results):
    tex = tables.comparisons_latex(results, "frame")
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"$n$ (videos)", r"[95\% CI]"):
        assert token in tex, token
    assert r"\pm" not in tex and "<" not in tex.replace(r"\textless{}", "")
    c = results.comparisons()
    c = c[c["weighting"] == "frame"]
    r = c[(c["method_a"] == "copy_source") & (c["method_b"] == "oracle") & (c["metric"] == "l1")].iloc[0]
    line = next(x for x in tex.splitlines() if x.startswith(r"l1 & copy\_source & oracle &"))
    assert f"${tables.fmt(r['diff'])}$ {{\\scriptsize $[{tables.fmt(r['ci_low'])}, {tables.fmt(r['ci_high'])}]$}}" \
        in line
    assert float(r["p_boot"]) == 0 and rf"\textless{{}} 1/{int(r['n_boot'])}" in line  # 0 of B reads < 1/B
    assert line.endswith(" & 6 \\\\")
    hostile = r"\textless{}script\textgreater{}a\&b\_c\%d\textbackslash{}e"
    assert hostile in tex and "<script>" not in tex


def test_paired_comparisons_below_the_minimum_of_videos_have_no_interval_and_no_p(tmp_path):
    make_results(tmp_path / "few", {HOSTILE2: 0.1, "oracle": 0.0}, n_videos=3)
    tex = tables.comparisons_latex(load_results(tmp_path / "few"), "frame")
    line = next(x for x in tex.splitlines() if x.startswith("l1 & "))
    assert r"\#1 \$x\{y\}\textasciitilde{}z\textasciicircum{}w" in line
    assert "[" not in line and "(not tested) & -- & 3 " in line
    assert "fewer than 5 common videos get no interval and no p\\_boot" in tex


def test_one_method_has_no_comparison_and_says_why(tmp_path):
    make_results(tmp_path / "one", {"oracle": 0.0})
    tex = tables.comparisons_latex(load_results(tmp_path / "one"), "frame")
    assert "No paired comparison" in tex and "only one method was scored" in tex


def test_the_report_s_tex_file_holds_the_comparisons(results, tmp_path):
    from reports.report import write_report

    tex = write_report(tmp_path / "r", tmp_path / "rep", ("tex",))["tex"][0].read_text(encoding="utf-8")
    assert tex.count(r"\begin{table}") == 2 and r"$p_\mathrm{boot}$" in tex


def _engine() -> list[str] | None:
    if shutil.which("pdflatex"):
        return ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"]
    if shutil.which("tectonic"):
        return ["tectonic", "doc.tex"]
    return None


@pytest.mark.skipif(_engine() is None, reason="no LaTeX engine installed (neither pdflatex nor tectonic on PATH)")
@pytest.mark.parametrize("n_videos", [6, 3])  # with intervals and p_boot < 1/B; below the minimum: neither
def test_the_tables_compile(tmp_path, n_videos):
    """The leaderboard and the paired comparisons, with every LaTeX special character in a method label."""
    make_results(tmp_path / "r", {HOSTILE: 0.1, HOSTILE2: 0.05, "oracle": 0.0, "copy_source": 0.2},
                 metrics=("l1", "aed_face"), n_videos=n_videos, skip={"copy_source": 2})
    doc = tables.latex_document(load_results(tmp_path / "r"), caption="50% & <more>")
    assert doc.count(r"\begin{tabular}") == 2 and "{y}~z^w" not in doc
    (tmp_path / "doc.tex").write_text(doc, encoding="utf-8")
    run = subprocess.run(_engine(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]
    assert (tmp_path / "doc.pdf").is_file()
