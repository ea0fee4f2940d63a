"""Metadata from files users download is checked at the door: bad identifiers and bad numbers are one-line
errors naming the file, line and field, and nothing a metadata row says can make prep or export write (or read)
outside the folders the user gave."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from animbench import cli
from plumbing.errors import AnimbenchError
from plumbing.ids import id_problem
from prep.export import import_png_layout
from prep.recipes import fashion, folder, read_splits, taichi, vox
from tests.prep import prep_helpers
from tests.prep.prep_helpers import make_video, write_metadata

ray_session = prep_helpers.ray_session  # the one local Ray session of the prep tests

GOOD = dict(video_id="AAAA", start=0, end=8, bbox="0-0-64-48", fps=25, width=64, height=48, partition="train",
            person_id="id10001")


def _meta(tmp_path: Path, *rows: dict, name: str = "meta.csv") -> Path:
    return write_metadata(tmp_path / name, [{**GOOD, **r} for r in rows])


def _plan_error(tmp_path: Path, *rows: dict) -> str:
    (tmp_path / "raw").mkdir(exist_ok=True)
    with pytest.raises(AnimbenchError) as err:
        vox.plan(tmp_path / "raw", _meta(tmp_path, *rows))
    return str(err.value)


@pytest.mark.parametrize(("field", "value"), [
    ("person_id", "../../evil"), ("partition", "../../x"), ("video_id", "sub/name"), ("video_id", "../name"),
    ("video_id", "a#b"), ("person_id", "p#1"), ("partition", ""), ("video_id", ""), ("person_id", ".."),
    ("video_id", "x\x00y"), ("partition", "a\\b"), ("video_id", "v" * 200), ("video_id", ".hidden"),
])
def test_hostile_identifiers_are_refused_naming_line_and_field(tmp_path, field, value):
    """video_id, person_id and partition are one file name each (ids may not hold '#', which joins clip names)."""
    msg = _plan_error(tmp_path, {}, {field: value, "start": 10, "end": 20})
    assert f"meta.csv line 3: {field} " in msg and "\n" not in msg


@pytest.mark.parametrize(("row", "expected"), [
    ({"fps": 0}, "fps 0"), ({"fps": -25}, "fps -25"), ({"fps": "nan"}, "fps nan"), ({"width": 0}, "width 0"),
    ({"height": -48}, "height -48"), ({"start": -1}, "start -1"), ({"start": 9, "end": 9}, "frame range [9, 9)"),
    ({"start": "x"}, "start 'x'"), ({"bbox": "inf-0-10-10"}, "bbox 'inf-0-10-10'"),
])
def test_bad_numbers_are_refused_naming_the_line(tmp_path, row, expected):
    """fps, width and height must be positive, start >= 0 and end > start; the line and the value are named."""
    msg = _plan_error(tmp_path, row)
    assert "meta.csv line 2: " in msg and expected in msg and "\n" not in msg


def test_repeated_clips_skipped_or_kept_in_test_or_refused(tmp_path, capsys):
    """As in the official vox csv: a row repeated exactly is prepared once, a clip listed as train and as test
    stays in test only (both warned, counted, lines named); the same clip with other values is an error."""
    (tmp_path / "raw").mkdir()
    meta = _meta(tmp_path, {}, {}, {"start": 20, "end": 30}, {"start": 20, "end": 30, "partition": "test"})
    units = vox.plan(tmp_path / "raw", meta)
    clips = {c.video_id: c.split for u in units for c in u.clips}
    assert clips == {"id10001#AAAA#000000#000008": "train", "id10001#AAAA#000020#000030": "test"}
    err = capsys.readouterr().err
    assert "1 row(s) repeat an earlier row exactly (line 3 = line 2)" in err
    assert "1 clip(s) are listed as train and as test (line 5 = line 4): kept in test only" in err
    msg = _plan_error(tmp_path, {}, {"bbox": "0-0-32-32"})
    assert "meta.csv line 3: clip 'id10001#AAAA#000000#000008' is also on line 2 with other values" in msg
    meta = _meta(tmp_path, {})
    meta.write_text(meta.read_text() + "AAAA,0,8\n")
    with pytest.raises(AnimbenchError, match=r"meta.csv line 3: 3 field\(s\), expected 9"):
        vox.plan(tmp_path / "raw", meta)


HEADER = b"video_id,start,end,bbox,fps,width,height,partition,person_id\n"


@pytest.mark.parametrize(("data", "expected"), [
    (HEADER + b"\xff\xfe,0,8,0-0-64-48,25,64,48,train,p\n", "meta.csv: not UTF-8 text"),
    (HEADER + b"v" * 200_000 + b",0,8,0-0-64-48,25,64,48,train,p\n", "meta.csv line 2: unreadable CSV"),
])
def test_unreadable_csv_is_a_one_line_error(tmp_path, data, expected):
    """Text that is not UTF-8 and fields too large for a CSV are errors naming the file, not tracebacks (a
    byte-order mark, as spreadsheet programs write, is fine)."""
    (tmp_path / "raw").mkdir()
    meta = tmp_path / "meta.csv"
    meta.write_bytes(data)
    with pytest.raises(AnimbenchError, match=expected):
        vox.plan(tmp_path / "raw", meta)
    meta.write_bytes(b"\xef\xbb\xbf" + _meta(tmp_path, {}, name="plain.csv").read_bytes())
    assert len(vox.plan(tmp_path / "raw", meta)) == 1


def test_taichi_ids_may_not_hold_hash_either(tmp_path):
    """taichi (no person ids) applies the same rule to video_id and partition."""
    (tmp_path / "raw").mkdir()
    meta = write_metadata(tmp_path / "t.csv", [{**GOOD, "video_id": "a#000001"}], with_person=False)
    with pytest.raises(AnimbenchError, match="t.csv line 2: video_id 'a#000001' contains '#'"):
        taichi.plan(tmp_path / "raw", meta)


def test_split_files_boxes_and_lists_are_checked(tmp_path):
    """Split files, crop-box files, fashion lists and --split are identifiers too, checked with their line."""
    splits = tmp_path / "splits.csv"
    splits.write_text("video_id,split,person_id\nx,train,p1\ny,../test,p2\n")
    with pytest.raises(AnimbenchError, match="splits.csv line 3: split '../test'"):
        read_splits(splits)
    splits.write_text("video_id,split\nx,train\nx,test\n")
    with pytest.raises(AnimbenchError, match="splits.csv line 3: video 'x' is also on line 2"):
        read_splits(splits)
    make_video(tmp_path / "src" / "x.mp4", 4, 32, 32)
    with pytest.raises(AnimbenchError, match="--split: split '../up'"):
        folder.plan(tmp_path / "src", split="../up")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("video_id,bbox,width,height\nx,0-0-10-10,0,32\n")
    with pytest.raises(AnimbenchError, match="boxes.csv line 2: width/height 0x32"):
        folder.plan(tmp_path / "src", split="all", boxes=boxes)
    (tmp_path / "src" / "._x.mp4").write_bytes(b"macOS resource fork")  # hidden files are not videos
    assert [u.clips[0].video_id for u in folder.plan(tmp_path / "src", split="all")] == ["x"]
    listing = tmp_path / "train.txt"
    listing.write_text("# comment\n\nv1.mp4\n..\n")
    with pytest.raises(AnimbenchError, match=r"train.txt line 4: '\.\.' names no file"):
        fashion.plan(tmp_path / "src", train_list=listing)


def test_import_refuses_hostile_folder_names(tmp_path):
    """Importing FOMM's png layout checks the folder names it turns into video ids."""
    src = tmp_path / "png" / "train" / "bad\x01name.mp4"
    src.mkdir(parents=True)
    shutil.copy(Path(prep_helpers.__file__).parent / "__init__.py", src / "0000000.png")
    with pytest.raises(AnimbenchError, match="video_id 'bad\\\\x01name' contains"):
        import_png_layout(tmp_path / "png", tmp_path / "store")
    assert not (tmp_path / "store" / "manifest.json").exists()


def test_a_clip_past_the_end_is_a_failure_with_the_numbers(tmp_path, ray_session, capsys):
    """A clip running past the end of its video is refused with its range and the video's length (the store
    keeps no clip shorter than its name says); one starting past the end likewise."""
    make_video(tmp_path / "raw" / "AAAA.mp4", 12, 64, 48)
    meta = _meta(tmp_path, {}, {"start": 6, "end": 20}, {"start": 30, "end": 40})
    args = ["prep", "vox", "--src", str(tmp_path / "raw"), "--metadata", str(meta), "--out",
            str(tmp_path / "store"), "--workers", "1", "--size", "32", "--no-progress"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "done     1 video(s)" in out and "failed   2 video(s): decode/ShortVideo 2" in out
    from prep.store import FrameStore

    store = FrameStore(tmp_path / "store")
    failures = store.failures().set_index("video_id")["message"].to_dict()
    # the unit was redone without the failed clip: only the kept attempt's frames are counted
    assert store.manifest["run"]["scaled_frames"] == {"ffmpeg": store.manifest["num_frames"]}
    assert "clip [6, 20) runs past the end of the video (12 frames)" in failures["id10001#AAAA#000006#000020"]
    assert "clip [30, 40) starts after the end of the video (12 frames)" in failures["id10001#AAAA#000030#000040"]


# --- fuzz: hostile rows through the real command line ----------------------------------------------------------

FRAGMENTS = ["..", "/", "\\", "\x00", "\n", "#", " ", ".", "é", "名", "\u202e", "~", "$HOME", "*", "-", "abc",
             "x" * 90, "\t", "%2e%2e", "\ud800"]


def _hostile(rng: random.Random) -> str:
    return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 4)))


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]


def test_fuzz_hostile_metadata_rows(tmp_path, ray_session, capsys):
    """Hostile video_id / person_id / partition values through `animbench prep vox` and `store export`: either
    a one-line error (exit 2) or a store and exports whose every file lies under their --out."""
    rng = random.Random(8)
    base = make_video(tmp_path / "base.mp4", 6, 64, 48)
    cases = [(field, _hostile(rng)) for _ in range(12) for field in ("video_id", "person_id", "partition")]
    cases += [("video_id", "zoë-名前"), ("partition", "dev#1"), ("person_id", "p" * 160)]  # valid, unusual
    made = 0
    for k, (field, value) in enumerate(cases):
        case = tmp_path / f"case{k}"
        sandbox = case / "sandbox"  # every output must stay inside this folder
        raw = case / "raw"
        raw.mkdir(parents=True)
        row = {**GOOD, "end": 4, field: value}
        if id_problem(row["video_id"].strip()) is None:  # the csv reader strips surrounding blanks
            shutil.copy(base, raw / f"{row['video_id'].strip()}.mp4")
        try:
            meta = write_metadata(case / "meta.csv", [row])
        except UnicodeEncodeError:  # a lone surrogate cannot even be written to a csv
            continue
        code = cli.main(["prep", "vox", "--src", str(raw), "--metadata", str(meta), "--out",
                         str(sandbox / "store"), "--workers", "1", "--size", "16", "--no-progress"])
        out, err = capsys.readouterr()
        if code == 2:
            assert err.count("\n") == 1 and err.startswith("animbench: error: ") and "Traceback" not in err
            assert not sandbox.exists() or all(p.is_relative_to(sandbox / "store") for p in _files_under(sandbox))
            continue
        assert code == 0 and "done     1 video(s)" in out, (field, value, err)
        made += 1
        for fmt in ("png", "mp4"):
            assert cli.main(["store", "export", str(sandbox / "store"), "--out", str(sandbox / fmt), "--format",
                             fmt]) == 0, capsys.readouterr().err
        assert {p.name for p in sandbox.iterdir()} == {"store", "png", "mp4"}
        for fmt in ("png", "mp4"):
            files = _files_under(sandbox / fmt)
            assert files and all(p.resolve().is_relative_to((sandbox / fmt).resolve()) for p in files)
            assert all(len(p.relative_to(sandbox / fmt).parts) == (3 if fmt == "png" else 2) for p in files)
        assert {p.name for p in case.iterdir()} <= {"sandbox", "raw", "meta.csv"}
    assert made >= 3, made  # the valid unusual ids went all the way through
