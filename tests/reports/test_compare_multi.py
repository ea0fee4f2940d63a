"""`animbench compare NEW... --baseline OLD...`: each side several results directories merged as for `report`."""

from __future__ import annotations

from animbench.cli import main
from reports.compare import compare_results, md_escape
from tests.reports.test_compare import row, videos, write


def _side(root, shift: float = 0.0, copy_fingerprint: str = "f" * 64):
    """Two results directories: `fomm` (l1 shifted by `shift`) in one, `copy-source` in the other."""
    a = write(root / "fomm-run", {("fomm", "l1"): videos(0.10, shift=shift), ("fomm", "psnr"): videos(25.0)})
    b = write(root / "copy-run", {("copy-source", "l1"): videos(0.20), ("copy-source", "psnr"): videos(20.0)},
              fingerprint=copy_fingerprint)
    return [str(a), str(b)]


def test_several_runs_per_side_gate_the_whole_leaderboard(tmp_path, capsys):
    old, new = _side(tmp_path / "old"), _side(tmp_path / "new", shift=0.01)
    assert main(["compare", *new, "--baseline", *old]) == 1
    out = capsys.readouterr().out
    assert "FAIL: 1 regression" in out and "| fomm | l1 ↓ |" in out and "| copy-source | l1 ↓ |" in out
    assert f"New: {', '.join(map(md_escape, new))}; baseline: {', '.join(map(md_escape, old))}." in out
    r = compare_results(new, old)
    assert r.paired and len(r.rows) == 4 and [x.method for x in r.regressions] == ["fomm"]
    assert row(r, "fomm", "l1").n_videos == 12 and row(r, "copy-source", "l1").verdict == "unchanged"
    assert main(["compare", *new, "--baseline", *old, "--tolerance", "l1=0.02"]) == 0


def test_a_method_of_one_baseline_run_missing_from_new_fails(tmp_path, capsys):
    old = _side(tmp_path / "old")
    assert main(["compare", old[0], "--baseline", *old[:1], str(tmp_path / "old" / "copy-run")]) == 2  # both sides
    assert capsys.readouterr().err.count("\n") == 1
    new = _side(tmp_path / "new")
    assert main(["compare", new[0], "--baseline", *old]) == 1
    assert "Methods only in the baseline (fails the gate): copy-source." in capsys.readouterr().out


def test_mismatched_runs_on_one_side_are_refused_unless_allow_mixed(tmp_path, capsys):
    old = _side(tmp_path / "old")
    new = _side(tmp_path / "new", copy_fingerprint="e" * 64)
    assert main(["compare", *new, "--baseline", *old]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "store fingerprint" in err and "--allow-mixed" in err
    assert main(["compare", *new, "--baseline", *old, "--allow-mixed"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "where a method's runs share store, split and protocol" in out
    r = compare_results(new, old, allow_mixed=True)
    assert row(r, "fomm", "l1").paired and not row(r, "copy-source", "l1").paired
    assert r.unpaired_reason.startswith("copy-source: store fingerprint differs (new eeeeeeeeeeee")


def test_a_method_in_several_runs_is_matched_by_run_label(tmp_path):
    def side(root, shift):
        return [str(write(root / name, {("fomm", "l1"): videos(0.1, shift=shift if name == "r2" else 0.0)}))
                for name in ("r1", "r2")]

    r = compare_results(side(tmp_path / "new", 0.01), side(tmp_path / "old", 0.0))
    assert [(x.method, x.verdict) for x in r.rows] == [("fomm@r1", "unchanged"), ("fomm@r2", "regression")]
