"""`animbench store export`: refuses to clobber, never leaves partial output that looks complete, never writes
outside --out, and every user error is one line (exit 2)."""

from __future__ import annotations

import numpy as np
import pytest

from animbench import cli
from plumbing.errors import AnimbenchError
from prep.store import FrameStore, FrameStoreWriter, verify_store


def _frames(n: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(n)]


def _store(root, videos=(("a", "train"), ("b", "test"))):
    with FrameStoreWriter(root, {"recipe": "test"}) as writer:
        for k, (vid, split) in enumerate(videos):
            writer.add_video(vid, _frames(seed=k), split=split, person_id=vid, fps=25.0)
    return root


def _export(capsys, *args) -> tuple[int, str]:
    code = cli.main(["store", "export", *map(str, args)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == (1 if code else 0), err
    return code, err


def test_export_refuses_a_non_empty_folder_unless_overwrite(tmp_path, capsys):
    """A non-empty --out is refused; --overwrite replaces an earlier export as a whole (old files do not
    linger) but never a folder holding anything an export does not write."""
    store = _store(tmp_path / "store")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = _export(capsys, store, "--out", out)
    assert code == 2 and "is not empty" in err and "--overwrite" in err
    assert (out / "notes.txt").read_text() == "mine"
    code, err = _export(capsys, store, "--out", out, "--overwrite")
    assert code == 2 and "holds 'notes.txt', which no export writes" in err
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    (out / "train" / "old.mp4").mkdir(parents=True)  # an earlier export's video, not in the store any more
    (out / "train" / "old.mp4" / "0000000.png").write_bytes(b"stale")
    assert _export(capsys, store, "--out", out, "--overwrite")[0] == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        f"{s}/{v}.mp4/{i:07d}.png" for s, v in (("test", "b"), ("train", "a")) for i in range(3)]
    assert not (out / "train" / "old.mp4").exists()
    code, err = _export(capsys, store, "--out", store / "frames", "--overwrite")
    assert code == 2 and "lies inside the store" in err and verify_store(store) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_export_into_an_empty_existing_folder(tmp_path, capsys):
    """An existing empty folder is fine (e.g. one made with mkdir beforehand)."""
    store = _store(tmp_path / "store")
    (tmp_path / "out").mkdir()
    assert _export(capsys, store, "--out", tmp_path / "out", "--format", "mp4")[0] == 0
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.mp4")) == ["a.mp4", "b.mp4"]


def test_out_is_a_file_or_holds_the_store(tmp_path, capsys):
    """--out naming a file, a folder under a file, or a folder that holds the store: one-line errors."""
    store = _store(tmp_path / "store")
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        code, err = _export(capsys, store, "--out", out)
        assert code == 2 and str(out) in err
    assert (tmp_path / "file").read_text() == "x"
    for out in (store, tmp_path):
        code, err = _export(capsys, store, "--out", out, "--overwrite")
        assert code == 2 and "holds the store" in err
    assert FrameStore(store).videos() == ["b", "a"]
    code, err = _export(capsys, store, "--out", tmp_path / "m", "--format", "mp4", "--fps", "-5")
    assert code == 2 and "--fps -5" in err


def test_mp4_export_onto_an_occupied_path(tmp_path, capsys):
    """An mp4 export where a png export put folders named `<id>.mp4` is refused, then replaced on request."""
    store = _store(tmp_path / "store")
    out = tmp_path / "out"
    assert _export(capsys, store, "--out", out)[0] == 0
    code, err = _export(capsys, store, "--out", out, "--format", "mp4")
    assert code == 2 and "is not empty" in err
    assert _export(capsys, store, "--out", out, "--format", "mp4", "--overwrite")[0] == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "test/b.mp4", "train/a.mp4"]


@pytest.mark.parametrize("fmt", ["png", "mp4"])
def test_interrupted_export_leaves_nothing_that_looks_complete(tmp_path, capsys, monkeypatch, fmt):
    """Stopped after the first video (Ctrl-C), an export leaves --out as it was and no stray folder; the rerun
    succeeds."""
    store = _store(tmp_path / "store")
    out = tmp_path / "out"
    real = FrameStore.read_encoded if fmt == "png" else FrameStore.iter_frames
    calls = []

    def stop_at_the_second_video(self, vid, *a, **k):
        calls.append(vid)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, vid, *a, **k)

    monkeypatch.setattr(FrameStore, real.__name__, stop_at_the_second_video)
    assert cli.main(["store", "export", str(store), "--out", str(out), "--format", fmt]) == 130
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    monkeypatch.undo()
    assert _export(capsys, store, "--out", out, "--format", fmt)[0] == 0


@pytest.mark.parametrize("fmt", ["png", "mp4"])
@pytest.mark.parametrize(("vid", "split"), [("../evil", "train"), ("a", "../../x"), ("sub/name", "train"),
                                            (".", "train"), ("a", "")])
def test_export_of_a_store_with_hostile_ids_stays_inside_out(tmp_path, capsys, fmt, vid, split):
    """A store written by other tools may hold any id: export refuses the one that would leave --out."""
    store = _store(tmp_path / "a" / "b" / "store", videos=[(vid, split)])
    out = tmp_path / "a" / "b" / "out"
    code, err = _export(capsys, store, "--out", out, "--format", fmt)
    assert code == 2 and "refusing to write" in err
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()
                  and "store" not in p.parts) == []


def test_export_from_python_raises_the_project_error(tmp_path):
    """The library call raises AnimbenchError (the CLI turns it into one line)."""
    from prep.export import export_png_layout

    store = _store(tmp_path / "store")
    (tmp_path / "out").write_text("a file")
    with pytest.raises(AnimbenchError, match="not a folder"):
        export_png_layout(store, tmp_path / "out")
