"""Fault injection: broken inputs become failure rows, a hung decoder times out, a killed worker is retried,
a crashed run resumes to the same store, and the download stage turns unavailable videos into failures."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from plumbing.errors import AnimbenchError
from prep.config import PrepConfig
from prep.pipeline import WORK_DIR, release_workers, run_prep, unit_name
from prep.recipes import folder, vox
from prep.store import FrameStore
from prep.worker import UnitProcessor
from tests.prep import prep_helpers
from tests.prep.prep_helpers import make_video, write_metadata

ray_session = prep_helpers.ray_session  # the one local Ray session of the prep tests

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 3.0


def _row(vid: str, start: int, end: int) -> dict:
    return dict(video_id=vid, start=start, end=end, bbox="8-4-72-60", fps=25, width=96, height=64,
                partition="train", person_id="id1")


ROWS = [_row("good1", 0, 24), _row("good2", 2, 20), _row("trunc", 0, 24), _row("zero", 0, 10),
        _row("text", 0, 10), _row("one", 0, 10), _row("short", 0, 20), _row("short", 2, 10),
        _row("hang", 0, 10), _row("kill", 0, 16)]
GOOD = {"id1#good1#000000#000024", "id1#good2#000002#000020", "id1#short#000002#000010", "id1#kill#000000#000016"}
BAD = {  # video id -> (stage, error)
    "id1#trunc#000000#000024": ("decode", "InvalidDataError"),
    "id1#zero#000000#000010": ("decode", "InvalidDataError"),
    "id1#text#000000#000010": ("decode", "InvalidDataError"),
    "id1#one#000000#000010": ("decode", "ShortVideo"),
    "id1#short#000000#000020": ("decode", "ShortVideo"),
    "id1#hang#000000#000010": ("decode", "Timeout"),
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The real files: good videos and every kind of broken one, plus the video that will replace a FIFO."""
    root = tmp_path_factory.mktemp("faults")
    make_video(root / "good1.mp4", 24, 96, 64, seed=1)
    make_video(root / "good2.mp4", 24, 96, 64, seed=2)
    data = make_video(root / "full.mp4", 24, 96, 64, seed=3, faststart=True).read_bytes()
    (root / "trunc.mp4").write_bytes(data[: len(data) // 2])  # index intact, half the frames missing
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 20)
    make_video(root / "one.mp4", 1, 96, 64, seed=4)
    make_video(root / "short.mp4", 12, 96, 64, seed=5)
    make_video(root / "kill.real", 16, 96, 64, seed=6)
    (root / "full.mp4").unlink()
    write_metadata(root / "meta.csv", ROWS)
    write_metadata(root / "meta-nohang.csv", [r for r in ROWS if r["video_id"] != "hang"])
    return root


def _raw_dir(sources: Path, dest: Path, kill_is_fifo: bool) -> Path:
    """A raw folder: the real files, `hang.mp4` a FIFO nobody writes (opening it blocks forever, a real hang
    in the decoder's open), and `kill.mp4` either the real video or another FIFO."""
    dest.mkdir()
    for p in sources.glob("*.mp4"):
        shutil.copy(p, dest / p.name)
    os.mkfifo(dest / "hang.mp4")
    if kill_is_fifo:
        os.mkfifo(dest / "kill.mp4")
    else:
        shutil.copy(sources / "kill.real", dest / "kill.mp4")
    return dest


def _heartbeat(store: Path, key: str, deadline: float = 60.0, proc: subprocess.Popen | None = None) -> dict:
    path = store / WORK_DIR / "progress" / f"{unit_name(key)}.json"
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            assert proc is None or proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.05)
    raise AssertionError(f"no heartbeat for {key} within {deadline} s")


def _check(store_dir: Path) -> FrameStore:
    store = FrameStore(store_dir)
    assert set(store.videos()) == GOOD
    failures = {r.video_id: (r.stage, r.error) for r in store.failures().itertuples()}
    assert failures == BAD
    return store


@pytest.fixture(scope="module")
def clean_run(sources, tmp_path_factory, ray_session):
    """An uninterrupted run over the same inputs (the hang still times out): the reference store."""
    base = tmp_path_factory.mktemp("clean")
    raw = _raw_dir(sources, base / "raw", kill_is_fifo=False)
    run_prep(vox.plan(raw, sources / "meta.csv"), base / "store", PrepConfig("vox", size=32), workers=2,
             timeout=TIMEOUT_S, progress=False)
    return _check(base / "store")


def test_faults_and_a_worker_killed_mid_run(sources, clean_run, tmp_path, ray_session):
    """Every good video is stored, every bad one is a failure row with its reason; the video whose worker
    was killed mid-decode is retried on a fresh worker; the frames equal the uninterrupted run's.

    The hung video is left out here: a worker death must be seen before the hang timeout fires, so this
    run uses a long timeout."""
    raw = _raw_dir(sources, tmp_path / "raw", kill_is_fifo=True)
    out = tmp_path / "store"
    result: dict = {}

    def go():
        try:
            result["summary"] = run_prep(vox.plan(raw, sources / "meta-nohang.csv"), out,
                                         PrepConfig("vox", size=32), workers=2, timeout=120, progress=False)
        except BaseException as exc:  # surfaced below
            result["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    beat = _heartbeat(out, "vox/kill")  # its worker is blocked opening the FIFO
    shutil.copy(sources / "kill.real", raw / "k")
    os.replace(raw / "k", raw / "kill.mp4")  # the retry will find a real video
    os.kill(beat["pid"], signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    store = FrameStore(out)
    assert set(store.videos()) == GOOD
    assert {r.video_id: (r.stage, r.error) for r in store.failures().itertuples()} == {
        k: v for k, v in BAD.items() if "hang" not in k}
    assert store.manifest["content_hash"] == clean_run.manifest["content_hash"]
    assert store.manifest["shards"] == clean_run.manifest["shards"]
    assert store.manifest["run"]["retried"] == {"vox/kill": 2}
    assert not (out / WORK_DIR).exists()  # a finished store keeps no resume state
    assert "no progress" in clean_run.failures().set_index("video_id").loc["id1#hang#000000#000010", "message"]


def test_crashed_run_resumes_to_the_same_store(sources, clean_run, tmp_path, ray_session):
    """Kill the whole prep process mid-run: the store does not open; --resume finishes only what was left
    and the result equals the uninterrupted run (content hashes, shards, failures)."""
    raw = _raw_dir(sources, tmp_path / "raw", kill_is_fifo=True)
    out = tmp_path / "store"
    # three workers: two end up blocked on the FIFOs (a long timeout keeps them there), one does the rest
    cmd = [sys.executable, "-m", "prep.pipeline_cli", "vox", "--src", str(raw), "--metadata",
           str(sources / "meta.csv"), "--out", str(out), "--size", "32", "--workers", "3", "--timeout", "120",
           "--address", ray_session, "--no-progress"]
    release_workers()  # this process's idle workers would hold the session's CPUs
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        blocked = [_heartbeat(out, key, deadline=90, proc=proc) for key in ("vox/kill", "vox/hang")]
        units_dir = out / WORK_DIR / "units"
        end = time.monotonic() + 60
        while len(list(units_dir.glob("*.json"))) < 7 and time.monotonic() < end:  # all but kill and hang
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.1)
        assert len(list(units_dir.glob("*.json"))) == 7
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the crash
        proc.wait()
    for beat in blocked:  # the crashed run's workers, still blocked on the FIFOs
        os.kill(beat["pid"], signal.SIGKILL)
    with pytest.raises(AnimbenchError, match="incomplete"):
        FrameStore(out)
    shutil.copy(sources / "kill.real", raw / "k")
    os.replace(raw / "k", raw / "kill.mp4")
    summary = run_prep(vox.plan(raw, sources / "meta.csv"), out, PrepConfig("vox", size=32), workers=2,
                       resume=True, timeout=TIMEOUT_S, progress=False)
    assert (summary.run, summary.skipped) == (2, 7)
    store = _check(out)
    assert store.manifest["content_hash"] == clean_run.manifest["content_hash"]
    assert store.manifest["shards"] == clean_run.manifest["shards"]
    columns = ["video_id", "stage", "error"]  # messages name the input paths, which differ between the runs
    assert store.failures()[columns].equals(clean_run.failures()[columns])


def test_one_frame_video_in_a_folder(tmp_path, ray_session):
    """Without metadata a one-frame video is still a failure: an output video needs two frames."""
    make_video(tmp_path / "src" / "one.mp4", 1, 64, 64)
    make_video(tmp_path / "src" / "ok.mp4", 5, 64, 64)
    summary = run_prep(folder.plan(tmp_path / "src", split="train"), tmp_path / "store", PrepConfig("folder"),
                       workers=2, progress=False)
    assert summary.videos == 1
    assert [(f["video_id"], f["stage"], f["error"]) for f in summary.failures] == [("one", "decode", "TooFewFrames")]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def http_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www (never the internet)."""
    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=www))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_stage(http_server, tmp_path, ray_session):
    """--download fetches missing videos with yt-dlp; an unavailable one becomes a download failure."""
    pytest.importorskip("yt_dlp", reason="the download stage needs yt-dlp")
    www, base = http_server
    make_video(www / "served.mp4", 12, 96, 64, seed=9)
    meta = write_metadata(tmp_path / "meta.csv", [_row("served", 0, 12), _row("gone", 0, 12)])
    with pytest.raises(AnimbenchError, match="no such directory"):
        vox.plan(tmp_path / "raw", meta, url_template=base + "/{video_id}.mp4")
    units = vox.plan(tmp_path / "raw", meta, url_template=base + "/{video_id}.mp4", download=True)
    config = PrepConfig("vox", size=32, download=True, download_timeout=10)
    summary = run_prep(units, tmp_path / "store", config, workers=2, progress=False)
    assert FrameStore(tmp_path / "store").videos() == ["id1#served#000000#000012"]
    assert (tmp_path / "raw" / "served.mp4").read_bytes() == (www / "served.mp4").read_bytes()
    [row] = summary.failures
    assert (row["video_id"], row["stage"], row["error"]) == ("id1#gone#000000#000012", "download", "Unavailable")
    assert "404" in row["message"] and not list((tmp_path / "raw").glob(".*"))
    assert summary.manifest["timings"]["download_s"] > 0


def test_frames_of_changing_size_are_a_failure_not_a_broken_shard(tmp_path):
    """A frame folder whose images change size (kept at source size) fails as one video; nothing is written."""
    folder_dir = tmp_path / "src" / "v.mp4"
    folder_dir.mkdir(parents=True)
    for i, side in enumerate((32, 32, 48)):
        (folder_dir / f"{i:07d}.png").write_bytes(cv2.imencode(".png", np.zeros((side, side, 3), np.uint8))[1])
    [unit] = folder.plan(tmp_path / "src", split="train")
    result = UnitProcessor(PrepConfig("folder", size=0)).run(unit, tmp_path / "shard.parquet")
    assert result["videos"] == [] and not (tmp_path / "shard.parquet").exists()
    [row] = result["failures"]
    assert (row["video_id"], row["stage"]) == ("v", "decode") and "differs from frame 0" in row["message"]


def test_a_finished_store_has_no_work_folder_and_still_resumes(tmp_path, ray_session):
    """Finalizing removes `_work/`; `--resume` of the finished store has nothing to do and gives the same
    store, `--retry-failed` redoes only the failed video, and changed settings are refused."""
    make_video(tmp_path / "src" / "one.mp4", 1, 64, 64)
    make_video(tmp_path / "src" / "ok.mp4", 5, 64, 64)
    units, out = folder.plan(tmp_path / "src", split="train"), tmp_path / "store"
    first = run_prep(units, out, PrepConfig("folder", size=32), workers=2, progress=False)
    assert not (out / WORK_DIR).exists() and sorted(p.name for p in out.iterdir()) == [
        "failures.parquet", "frames", "manifest.json", "videos.parquet"]
    again = run_prep(units, out, PrepConfig("folder", size=32), workers=2, resume=True, progress=False)
    assert (again.run, again.skipped, again.videos) == (0, 2, 1)
    assert again.manifest["content_hash"] == first.manifest["content_hash"]
    assert FrameStore(out).failures()["video_id"].tolist() == ["one"] and not (out / WORK_DIR).exists()
    retried = run_prep(units, out, PrepConfig("folder", size=32), workers=2, resume=True, retry_failed=True,
                       progress=False)
    assert (retried.run, retried.skipped) == (1, 1)
    assert retried.manifest["content_hash"] == first.manifest["content_hash"]
    with pytest.raises(AnimbenchError, match="different settings"):
        run_prep(units, out, PrepConfig("folder", size=48), workers=2, resume=True, progress=False)
    assert FrameStore(out).fingerprint == first.manifest["content_hash"]  # the refused resume changed nothing
