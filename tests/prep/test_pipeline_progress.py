"""What a long prep tells its user: a bar with videos done / total, failures, frames stored and decoded per
second and an ETA, then the summary lines; `--no-progress` keeps logs free of the bar."""

from __future__ import annotations

import json
import re

import pytest

from prep import pipeline_cli
from prep.config import PrepConfig
from prep.pipeline import progress_postfix, run_prep
from prep.recipes import synthetic
from prep.synth import make_synthetic
from tests.prep import prep_helpers

ray_session = prep_helpers.ray_session  # the one local Ray session of the prep tests


@pytest.fixture(scope="module")
def set_with_a_broken_video(tmp_path_factory):
    """Three tiny synthetic videos, the last one cut short to a few bytes (its decode fails)."""
    out = tmp_path_factory.mktemp("progress") / "faces"
    make_synthetic(out, kind="faces", num_videos=3, num_frames=8, width=96, height=64, seed=4)
    broken = sorted((out / "videos").glob("*.mp4"))[-1]
    broken.write_bytes(broken.read_bytes()[:64])
    return out


def test_postfix_names_failures_frames_and_both_rates():
    assert progress_postfix(2, 1500, 123.4, 456.7) == "failed 2, 1500 frames stored (123/s), decoding 457 frames/s"


def test_the_bar_counts_videos_failures_and_frames_then_the_summary_prints(set_with_a_broken_video, tmp_path,
                                                                          capsys, ray_session):
    args = ["synthetic", "--src", str(set_with_a_broken_video), "--out", str(tmp_path / "store"), "--workers", "2",
            "--size", "32"]
    assert pipeline_cli.main(args) == 0
    captured = capsys.readouterr()
    frames = json.loads((tmp_path / "store" / "manifest.json").read_text())["num_frames"]
    last = captured.err.replace("\r", "\n").strip().splitlines()[-1]  # the bar as it closed
    assert re.search(r"prep synthetic: 100%.* 3/3 \[", last), last
    assert f"failed 1, {frames} frames stored" in last and "decoding" in last, last
    assert frames > 0 and f"done     2 video(s), {frames} frames" in captured.out
    assert re.search(r"failed   1 video\(s\): \w+/\w+ 1", captured.out), captured.out


def test_no_progress_prints_no_bar_and_the_summary_counts_decoded_frames(set_with_a_broken_video, tmp_path,
                                                                         capsys, ray_session):
    summary = run_prep(synthetic.plan(set_with_a_broken_video), tmp_path / "store", PrepConfig("synthetic", size=32),
                       workers=2, progress=False)
    assert "frames stored" not in capsys.readouterr().err
    assert summary.videos == 2 and summary.frames > 0 and summary.decoded >= summary.frames and len(summary.failures) == 1


def test_log_every_writes_plain_status_lines_for_logs(set_with_a_broken_video, tmp_path, capsys, ray_session):
    args = ["synthetic", "--src", str(set_with_a_broken_video), "--out", str(tmp_path / "store"), "--workers", "2",
            "--size", "32", "--log-every", "0"]
    assert pipeline_cli.main(args) == 0
    err = capsys.readouterr().err
    assert "\r" not in err  # no bar redraws in a log
    last = err.strip().splitlines()[-1]
    assert last.startswith("prep synthetic: 3/3 videos (100%), failed 1, ") and "ETA 0:00:00" in last, last
