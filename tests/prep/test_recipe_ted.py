"""`animbench prep ted`: the TED metadata as MRAA ships it (its defects raised or warned with counts), the
test split by held-out talks, and a real tiny video cut end to end at 384 px."""

from __future__ import annotations

import json

import numpy as np
import pytest

from animbench.cli import main as animbench_main
from plumbing.errors import AnimbenchError
from prep.recipes import ted
from prep.store import FrameStore, verify_store
from tests.prep import prep_helpers
from tests.prep.prep_helpers import make_video, write_metadata, yuv_area_reference

ray_session = prep_helpers.ray_session  # the one local Ray session of the prep tests


def _row(video_id, start, end, partition="train", bbox="64-16-224-176", fps=25, size=(256, 192)):
    return dict(video_id=video_id, start=start, end=end, bbox=bbox, fps=fps, width=size[0], height=size[1],
                partition=partition)


def _plan(src, meta, **kwargs):
    warnings = []
    units = ted.plan(src, meta, warn=warnings.append, **kwargs)
    return units, warnings


def test_clip_list_as_shipped_is_one_line_error(tmp_path):
    """MRAA's ted-metadata.csv layout (clip-name ids, start = end = 0, all train) cannot be cut: one line says why."""
    rows = [_row("VM6HZqQKhok#016609#016737", 0, 0, bbox="104-10-665-570", fps=10.0, size=(944, 944)),
            _row("VM6HZqQKhok#017000#017200", 0, 0, bbox="100-10-660-570", fps=10.0, size=(944, 944)),
            _row("4E_1AB1rsSw#014854#015029", 0, 0, bbox="288-75-746-532", fps=10.0, size=(960, 960))]
    meta = write_metadata(tmp_path / "ted-metadata.csv", rows, with_person=False)
    report = ted.read_metadata(meta)
    assert (report.rows, len(report.videos), report.partitions) == (3, 2, {"train": 3})
    assert report.zeroed_lines == (2, 3, 4) and report.clip_name_lines == (2, 3, 4)
    assert report.named_frames == 128 + 200 + 175 and report.square_refs == 3 and report.non_square_boxes == 2
    with pytest.raises(AnimbenchError) as err:
        ted.plan(tmp_path, meta)
    msg = str(err.value)
    assert "\n" not in msg and "start = end = 0 on all 3 rows (2 videos)" in msg
    assert "clip list" in msg and "ted384-metadata.csv" in msg and "3 rows give a square" in msg


def test_some_zeroed_rows_skipped_and_no_test_split_warned(tmp_path):
    """Zeroed rows among good ones are skipped with a counted warning; a file without test rows warns too."""
    rows = [_row("AAAA", 2, 14), _row("AAAA", 0, 0), _row("BBBB", 0, 20), _row("CCCC", 0, 0)]
    meta = write_metadata(tmp_path / "m.csv", rows, with_person=False)
    units, warnings = _plan(tmp_path, meta)
    assert [c.video_id for u in units for c in u.clips] == ["AAAA#000002#000014", "BBBB#000000#000020"]
    assert [c.person_id for u in units for c in u.clips] == ["AAAA", "BBBB"]  # the talk is the identity
    assert len(warnings) == 2
    assert "skipping 2 of 4 rows with start = end = 0 (first on line 3)" in warnings[0]
    assert "all 2 clips (2 videos) are train, there is no test split" in warnings[1]


def test_clip_name_with_a_range_and_traversal_ids_are_refused(tmp_path):
    """A clip name where a YouTube id belongs, and ids that would leave the folders, are one-line errors."""
    meta = write_metadata(tmp_path / "a.csv", [_row("AAAA", 0, 10), _row("BBBB#000001#000009", 1, 9)],
                          with_person=False)
    with pytest.raises(AnimbenchError, match=r"line 3: video_id is a clip name"):
        ted.plan(tmp_path, meta)
    for bad in ("../../etc/passwd", "..", "a/b#000001#000009"):
        meta = write_metadata(tmp_path / "b.csv", [_row("AAAA", 0, 10), _row(bad, 0, 10)], with_person=False)
        with pytest.raises(AnimbenchError, match=r"b\.csv line 3: video_id .* expected one file name"):
            ted.read_metadata(meta)
    meta = write_metadata(tmp_path / "c.csv", [_row("AAAA", 0, 10), _row("BBBB", 0, 10)], with_person=False)
    with pytest.raises(AnimbenchError, match=r"--test-videos: video id '\.\./AAAA'"):
        ted.plan(tmp_path, meta, test_videos=["../AAAA"])


def test_hold_out_is_deterministic_and_checked(tmp_path):
    """--hold-out picks the same whole talks whatever the file order; impossible requests are errors."""
    ids = [f"TALK{i:02d}" for i in range(8)]
    rows = [_row(v, s, s + 10) for v in ids for s in (0, 20)]
    a = write_metadata(tmp_path / "a.csv", rows, with_person=False)
    b = write_metadata(tmp_path / "b.csv", rows[::-1], with_person=False)
    tests = []
    for meta in (a, b):
        units, warnings = _plan(tmp_path, meta, hold_out=3, hold_out_seed=7)
        assert warnings == []
        tests.append(sorted({c.person_id for u in units for c in u.clips if c.split == "test"}))
        assert all(len({c.split for c in u.clips}) == 1 for u in units)  # a talk is never split across splits
    assert tests[0] == tests[1] == ted.held_out(ids, 3, 7) and len(tests[0]) == 3
    assert ted.held_out(ids, 3, 8) != tests[0]  # the seed matters
    units, _ = _plan(tmp_path, a, test_videos=["TALK01"])
    assert [u.key for u in units if u.clips[0].split == "test"] == ["ted/TALK01"]
    with pytest.raises(AnimbenchError, match="8 usable videos"):
        ted.plan(tmp_path, a, hold_out=8)
    with pytest.raises(AnimbenchError, match="'NOPE' is not a video"):
        ted.plan(tmp_path, a, test_videos=["NOPE"])
    with_test = write_metadata(tmp_path / "t.csv", [_row("AAAA", 0, 10), _row("BBBB", 0, 10, "test")],
                               with_person=False)
    with pytest.raises(AnimbenchError, match=r"already has a test split \(1 clips\)"):
        ted.plan(tmp_path, with_test, hold_out=1)


def test_cli_prep_ted_end_to_end(tmp_path, capsys, ray_session):
    """`animbench prep ted`: real h264 videos cut by the official rule at 384 px, one talk held out as test."""
    raw = tmp_path / "raw"
    make_video(raw / "TEDaaaaaaaa.mp4", 30, 128, 96, seed=1)
    make_video(raw / "TEDbbbbbbbb.mp4", 24, 128, 96, seed=2)
    rows = [_row("TEDaaaaaaaa", 2, 14), _row("TEDaaaaaaaa", 0, 0),  # the zeroed row is skipped (warned)
            _row("TEDbbbbbbbb", 0, 20, bbox="0-0-256-192", fps=50)]  # ref fps 50: source frames [0, 10)
    meta = write_metadata(tmp_path / "ted384-metadata.csv", rows, with_person=False)
    out = tmp_path / "store"
    code = animbench_main(["prep", "ted", "--src", str(raw), "--metadata", str(meta), "--out", str(out),
                           "--hold-out", "1", "--workers", "1", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "skipping 1 of 3 rows" in captured.err and "no test split" not in captured.err
    store = FrameStore(out)
    assert verify_store(out) == []
    test_vid = ted.held_out(["TEDaaaaaaaa", "TEDbbbbbbbb"], 1)[0]
    expect = {  # id: (frames, first source frame, box on the 128x96 frame)
        "TEDaaaaaaaa#000002#000014": (12, 2, (32, 8, 112, 88)), "TEDbbbbbbbb#000000#000020": (10, 0, (0, 0, 128, 96))}
    assert sorted(store.videos()) == sorted(expect)
    for vid, (frames, first, box) in expect.items():
        info = store.info(vid)
        assert info["split"] == ("test" if vid.startswith(test_vid) else "train")
        assert info["person_id"] == vid.split("#")[0] and list(info["crop_box"]) == list(box)
        got = store.read(vid)
        assert got.shape == (frames, 384, 384, 3)  # the recipe's default size
        # cropped as is (not squared), then scaled: what libswscale's area filter makes of the box, exactly
        assert np.array_equal(got[0], yuv_area_reference(raw / f"{info['person_id']}.mp4", first, box, (384, 384)))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["config"]["size"] == 384
    assert manifest["config"]["plan"]["test"]["clips"] == [v for v in expect if v.startswith(test_vid)]


def test_shared_ted_metadata_as_counted(shared_dir):
    """The official clip list parses; its figures and defects are the counted ones; it is refused in one line."""
    path = shared_dir / "data" / "metadata" / "ted-metadata.csv"
    report = ted.read_metadata(path)
    assert report.rows == 1320 and len(report.videos) == 411 and report.partitions == {"train": 1320}
    assert len(report.zeroed_lines) == 1320 and len(report.clip_name_lines) == 1320
    assert report.named_frames == 291_924 and report.fps == (10.0,)
    assert report.square_refs == 1320 and report.non_square_boxes == 415
    assert report.summary() == ("1320 rows of 411 videos (train 1320); start = end = 0 on 1320 rows; 1320 video_ids "
                                "are clip names (291924 frames named)")
    with pytest.raises(AnimbenchError, match=r"start = end = 0 on all 1320 rows \(411 videos\)"):
        ted.plan(shared_dir, path)
