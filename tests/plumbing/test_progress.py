"""plumbing.progress: the bar's log-line form for long runs whose stderr goes to a log file."""

from __future__ import annotations

import re

from plumbing.progress import progress_bar


def test_log_lines_show_done_total_postfix_rate_and_eta_then_one_last_line(capsys):
    bar = progress_bar(4, "prep vox", "video", enabled=False, log_every=0)
    bar.update(1)
    bar.set_postfix_str("failed 0, 96 frames stored (50/s)")
    bar.update(1)
    bar.close()
    bar.close()  # closing twice writes nothing more
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4
    assert re.fullmatch(r"prep vox: 1/4 videos \(25%\), [\d.]+ videos/s, elapsed 0:00:00, ETA \d+:\d\d:\d\d",
                        lines[0]), lines[0]
    assert lines[-1].startswith("prep vox: 2/4 videos (50%), failed 0, 96 frames stored (50/s), ")


def test_log_lines_are_rate_limited_and_a_plain_disabled_bar_prints_nothing(capsys):
    bar = progress_bar(None, "animate", "frame", enabled=False, log_every=3600)
    for _ in range(100):
        bar.update(1)
    bar.close()
    silent = progress_bar(10, "prep vox", "video", enabled=False)
    silent.update(3)
    silent.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("animate: 100 frames, ") and "ETA" not in lines[0]
    assert silent.n == 3
