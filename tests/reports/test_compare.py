"""The regression gate `animbench compare`: exit 1 on a regression, 0 within tolerance, 2 on bad input."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from animbench.cli import main
from bench import results as R
from plumbing.errors import AnimbenchError
from plumbing.provenance import package_versions
from reports.compare import HEADER, compare_results, md_escape, parse_tolerance, to_markdown, to_text

VERSIONS = package_versions()
VID = R.versions_id(VERSIONS)
HIB = {"l1": False, "psnr": True, "ssim": True, "fid": False}
EVIL = "a|b<script>alert(1)</script>"


def frames(values: dict[tuple[str, str], dict[str, list[float | None]]], fingerprint: str = "f" * 64) -> pd.DataFrame:
    """Per-frame rows from {(method, metric): {video: [values]}}; None marks a skipped frame."""
    out = []
    for (method, metric), per_video in values.items():
        for video, vals in per_video.items():
            for t, v in enumerate(vals):
                out.append({
                    "method": method, "video_id": video, "frame_index": t, "source_video": video, "source_frame": 0,
                    "driving_video": video, "metric": metric, "value": math.nan if v is None else v,
                    "skipped": v is None, "method_name": method, "checkpoint_sha256": "none", "config_path": "",
                    "config_sha256": "none", "store_fingerprint": fingerprint, "split": "test",
                    "metric_backend": "numpy", "metric_weights_sha256": "none", "protocol": "reconstruction",
                    "protocol_variant": "legacy", "quantisation": "floor(255*pred)", "versions_id": VID})
    return pd.DataFrame(out)


def write(path, values, fingerprint: str = "f" * 64, fid: dict[str, float] | None = None):
    """A complete results directory, with the run settings compare reads (store, split, protocol); `fid` adds a
    set metric per method (one distance, no per-video values)."""
    out = R.prepare_results_dir(path)
    df = frames(values, fingerprint)
    prov = df.drop_duplicates("method").set_index("method")[list(R.PROVENANCE_COLUMNS)]
    set_rows = [{**prov.loc[m].to_dict(), "method": m, "metric": "fid", "mean": v, "n_frames": 36, "n_videos": 12,
                 "metric_backend": "pytorch-fid"} for m, v in (fid or {}).items()]
    methods = list(dict.fromkeys(df["method"]))
    run = {"method_order": methods, "metric_order": list(dict.fromkeys(df["metric"])),
           "store": {"fingerprint": fingerprint, "split": "test", "videos": int(df["video_id"].nunique())},
           "protocol": {"name": "reconstruction", "variant": "legacy"}}
    R.write_results(out, df, run=run, versions={VID: VERSIONS}, higher_is_better=HIB, n_boot=200,
                    pooling={"psnr": "psnr"}, set_rows=set_rows)
    return out


def videos(base: float, n: int = 12, shift: float = 0.0, noise: float = 0.0, seed: int = 0) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    return {f"v{i:02d}": [base + 0.01 * (i % 3) + shift + noise * rng.standard_normal() for _ in range(3)]
            for i in range(n)}


@pytest.fixture
def pair(tmp_path):
    """A baseline and a new run in which method `fomm` got worse on l1 by 0.01 and better on psnr."""
    old = write(tmp_path / "old", {("fomm", "l1"): videos(0.10), ("fomm", "psnr"): videos(25.0),
                                   ("copy-source", "l1"): videos(0.20), ("copy-source", "psnr"): videos(20.0)})
    new = write(tmp_path / "new", {("fomm", "l1"): videos(0.10, shift=0.01), ("fomm", "psnr"): videos(25.0, shift=1),
                                   ("copy-source", "l1"): videos(0.20), ("copy-source", "psnr"): videos(20.0)})
    return new, old


def row(result, method, metric):
    return next(r for r in result.rows if (r.method, r.metric) == (method, metric))


def test_a_planted_regression_fails_the_gate_and_a_tolerance_lets_it_pass(pair, capsys):
    new, old = pair
    assert main(["compare", str(new), "--baseline", str(old)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("### animbench compare — FAIL: 1 regression")
    line = next(x for x in out.splitlines() if x.startswith("| fomm | l1 ↓"))
    assert "| +0.01 | worse by 0.01 | 0 |" in line and line.endswith("| **REGRESSION** |")
    assert "(paired, 12 videos)" in line
    assert main(["compare", str(new), "--baseline", str(old), "--tolerance", "l1=0.011"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["compare", str(new), "--baseline", str(old), "--tolerance", "l1=0.009"]) == 1
    assert main(["compare", str(new), "--baseline", str(old), "--tolerance", "*=11%"]) == 0  # 11% of 0.1+


def test_delta_is_signed_so_worse_is_positive_for_either_direction(pair):
    result = compare_results(*pair)
    l1, psnr = row(result, "fomm", "l1"), row(result, "fomm", "psnr")
    assert l1.delta == pytest.approx(0.01) and l1.worse_by == pytest.approx(0.01) and l1.verdict == "regression"
    assert psnr.delta == pytest.approx(1.0, abs=1e-6) and psnr.worse_by == pytest.approx(-1.0, abs=1e-6)
    assert psnr.verdict == "improved"
    same = row(result, "copy-source", "l1")
    assert same.worse_by == 0 and same.verdict == "unchanged" and (same.ci_low, same.ci_high) == (0, 0)
    # the paired interval of a constant shift is the shift itself
    assert l1.paired and l1.ci_low == pytest.approx(0.01) and l1.ci_high == pytest.approx(0.01)


def test_tolerance_ci_fails_a_consistent_shift_and_passes_noise(tmp_path):
    old = write(tmp_path / "old", {("m", "ssim"): videos(0.8, noise=0.02, seed=1)})
    noisy = write(tmp_path / "noisy", {("m", "ssim"): videos(0.8, shift=-0.001, noise=0.02, seed=2)})
    quiet = write(tmp_path / "quiet", {("m", "ssim"): videos(0.8, noise=0.0005, seed=1)})
    shifted = write(tmp_path / "shifted", {("m", "ssim"): videos(0.8, shift=-0.005, noise=0.0005, seed=2)})
    r = compare_results(noisy, old, tolerance_ci=True)
    assert row(r, "m", "ssim").ci_low < 0 < row(r, "m", "ssim").ci_high and r.passed
    assert not compare_results(noisy, old).passed  # tolerance 0: any worsening fails
    r = compare_results(shifted, quiet, tolerance_ci=True)
    assert row(r, "m", "ssim").ci_high < 0 and not r.passed
    assert main(["compare", str(shifted), "--baseline", str(quiet), "--tolerance-ci"]) == 1


def test_different_stores_are_compared_unpaired_and_say_why(tmp_path, capsys):
    old = write(tmp_path / "old", {("m", "l1"): videos(0.1)})
    new = write(tmp_path / "new", {("m", "l1"): videos(0.1, shift=0.02)}, fingerprint="e" * 64)
    r = compare_results(new, old)
    assert not r.paired and r.unpaired_reason.startswith("store fingerprint differs (new eeeeeeeeeeee")
    assert row(r, "m", "l1").has_interval and row(r, "m", "l1").ci_low > 0
    assert main(["compare", str(new), "--baseline", str(old), "--format", "text"]) == 1
    out = capsys.readouterr().out
    assert "unpaired (store fingerprint differs" in out and "(unpaired, 12 new / 12 baseline videos)" in out


def test_a_method_missing_from_the_new_run_fails_unless_allowed(tmp_path, capsys):
    old = write(tmp_path / "old", {("a", "l1"): videos(0.1), ("b", "l1"): videos(0.2)})
    new = write(tmp_path / "new", {("a", "l1"): videos(0.1), ("c", "l1"): videos(0.3)})
    assert main(["compare", str(new), "--baseline", str(old)]) == 1
    out = capsys.readouterr().out
    assert "Methods only in the baseline (fails the gate): b." in out
    assert "Methods only in the new run (not gated): c." in out
    assert main(["compare", str(new), "--baseline", str(old), "--allow-missing"]) == 0
    assert "Methods only in the baseline (listed, not gated: --allow-missing): b." in capsys.readouterr().out


def test_a_value_lost_in_the_new_run_is_a_regression(tmp_path):
    old = write(tmp_path / "old", {("m", "l1"): {"v": [0.1, 0.1]}, ("m", "ssim"): {"v": [0.9, 0.9]}})
    new = write(tmp_path / "new", {("m", "l1"): {"v": [0.1, 0.1]}, ("m", "ssim"): {"v": [None, None]}})
    r = compare_results(new, old)
    assert row(r, "m", "ssim").verdict == "lost value" and not r.passed


@pytest.mark.parametrize("args, message", [
    (["--tolerance", "lpips=0.1"], "--tolerance: unknown metric 'lpips' (these runs score l1, psnr)"),
    (["--tolerance", "l1"], "--tolerance 'l1': expected METRIC=VALUE"),
    (["--tolerance", "l1=-1"], "--tolerance 'l1=-1': expected"),
    (["--tolerance", "l1=nan"], "--tolerance 'l1=nan': expected"),
])
def test_bad_input_is_one_line_and_exit_2(pair, capsys, args, message):
    new, old = pair
    assert main(["compare", str(new), "--baseline", str(old), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_directory_that_is_not_results_is_exit_2(pair, tmp_path, capsys):
    new, _ = pair
    assert main(["compare", str(new), "--baseline", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_nothing_in_common_is_an_error_not_a_pass(tmp_path):
    old = write(tmp_path / "old", {("a", "l1"): videos(0.1)})
    new = write(tmp_path / "new", {("b", "l1"): videos(0.1)})
    with pytest.raises(AnimbenchError, match="no method x metric in common"):
        compare_results(new, old)


def test_parse_tolerance_reads_absolute_percent_and_default():
    t = parse_tolerance("l1=0.002, psnr=1%,*=0.5")
    assert (t["l1"].value, t["l1"].relative) == (0.002, False)
    assert t["psnr"].relative and t["psnr"].absolute(30.0) == pytest.approx(0.3)
    assert t["*"].value == 0.5 and parse_tolerance(None) == {}
    with pytest.raises(AnimbenchError, match="given twice"):
        parse_tolerance("l1=1,l1=2")


def test_markdown_table_escapes_labels_with_pipes_and_html(tmp_path):
    old = write(tmp_path / "old", {(EVIL, "l1"): videos(0.1), ("ok_method", "l1"): videos(0.2)})
    new = write(tmp_path / "new", {(EVIL, "l1"): videos(0.1, shift=0.05), ("ok_method", "l1"): videos(0.2)})
    md = to_markdown(compare_results(new, old))
    assert "<script>" not in md and "&lt;script&gt;" in md
    table = [x for x in md.splitlines() if x.startswith("|")]
    assert len(table) == 2 + 2
    for line in table:  # an escaped \| does not split a cell: every row has the header's number of cells
        assert len(re.findall(r"(?<!\\)\|", line)) == len(HEADER) + 1, line
    evil_row = next(x for x in table if "alert" in x)
    assert evil_row.startswith(r"| a\|b&lt;script&gt;alert\(1\)&lt;/script&gt; | l1 ↓ |")
    assert "**REGRESSION**" in evil_row
    assert md_escape("x\ny") == "x y"
    text = to_text(compare_results(new, old))
    assert text.startswith("FAIL: 1 regression") and "REGRESSION" in text


def test_the_unpaired_difference_is_the_difference_of_the_leaderboard_means(tmp_path):
    old = write(tmp_path / "old", {("m", "psnr"): videos(20.0, noise=1, seed=3)})
    new = write(tmp_path / "new", {("m", "psnr"): videos(21.0, n=9, noise=1, seed=4)}, fingerprint="e" * 64)
    r = row(compare_results(new, old, by="video"), "m", "psnr")
    means = [R.Results(d).leaderboard("video").iloc[0]["mean"] for d in (new, old)]
    assert r.diff == pytest.approx(means[0] - means[1]) == pytest.approx(r.delta)
    assert r.ci_low < r.diff < r.ci_high and r.n_videos == 9


def test_a_set_metric_has_no_interval_and_uses_the_tolerance_even_under_tolerance_ci(tmp_path, capsys):
    old = write(tmp_path / "old", {("m", "l1"): videos(0.1)}, fid={"m": 30.0})
    new = write(tmp_path / "new", {("m", "l1"): videos(0.1)}, fid={"m": 31.0})
    r = compare_results(new, old, tolerance_ci=True)
    fid = row(r, "m", "fid")
    assert not fid.has_interval and fid.weighting == "set" and fid.verdict == "regression"
    assert compare_results(new, old, tolerance_ci=True, tolerance="fid=1.5").passed
    assert main(["compare", str(new), "--baseline", str(old), "--tolerance-ci", "--tolerance", "fid=0.5"]) == 1
    assert "| m | fid ↓ | 30 | 31 | +1 | worse by 1 | 0.5 | – (set metric) | **REGRESSION** |" in capsys.readouterr().out


def test_a_label_that_now_names_another_method_is_noted(tmp_path):
    old = write(tmp_path / "old", {("x", "l1"): videos(0.1)})
    df_new = {("x", "l1"): videos(0.1)}
    new = R.prepare_results_dir(tmp_path / "new")
    f = frames(df_new).assign(method_name="oracle")
    R.write_results(new, f, run={"method_order": ["x"]}, versions={VID: VERSIONS}, higher_is_better=HIB)
    assert "method of x changed: baseline x, new oracle" in compare_results(new, old).notes


def test_below_the_minimum_of_videos_no_interval_is_printed_or_gated_on(tmp_path, capsys):
    # 3 videos: a bootstrap has a handful of distinct resamples, so the gate neither prints nor trusts its interval
    old = write(tmp_path / "old", {("m", "ssim"): videos(0.8, n=3)})
    new = write(tmp_path / "new", {("m", "ssim"): videos(0.8, n=3, shift=-0.004)})
    r = row(compare_results(new, old, tolerance_ci=True), "m", "ssim")
    assert r.n_videos == 3 and not r.has_interval and r.verdict == "regression"  # falls back to tolerance 0
    assert main(["compare", str(new), "--baseline", str(old), "--tolerance-ci", "--tolerance", "ssim=0.005"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("| m | ssim ↑"))
    assert "[" not in line and "paired, 3 videos; no interval below 5" in line
    assert "| 0.005 |" in line  # the tolerance that decided, not "95% CI"


def test_the_headline_counts_what_is_missing_in_plain_english(tmp_path):
    old = write(tmp_path / "old", {("a", "l1"): videos(0.1), ("b", "l1"): videos(0.2)})
    new = write(tmp_path / "new", {("a", "l1"): videos(0.1)})
    assert to_text(compare_results(new, old)).splitlines()[0] == "FAIL: missing from the new run: 1 method"


def test_a_run_compared_with_itself_is_bad_input_not_a_pass(pair, capsys):
    # a CI step that passes the same folder twice would pass forever: refuse it, as merging does
    new, _ = pair
    assert main(["compare", str(new), "--baseline", str(new) + "/"]) == 2
    err = capsys.readouterr().err
    assert "same results directory" in err and len(err.strip().splitlines()) == 1


def test_a_corrupt_results_table_is_bad_input_exit_2_not_a_regression(pair, capsys):
    # exit 1 would tell CI "regression" when the baseline is merely damaged
    new, old = pair
    data = (old / "videos.parquet").read_bytes()
    (old / "videos.parquet").write_bytes(data[: len(data) // 2])
    assert main(["compare", str(new), "--baseline", str(old)]) == 2
    err = capsys.readouterr().err
    assert "videos.parquet" in err and "unreadable" in err and len(err.strip().splitlines()) == 1


def test_an_unpaired_row_states_each_side_s_videos(tmp_path):
    old = write(tmp_path / "old", {("m", "l1"): videos(0.1, n=6)})
    new = write(tmp_path / "new", {("m", "l1"): videos(0.1, n=9)}, fingerprint="e" * 64)
    line = next(x for x in to_text(compare_results(new, old)).splitlines() if x.startswith("m "))
    assert "(unpaired, 9 new / 6 baseline videos)" in line
