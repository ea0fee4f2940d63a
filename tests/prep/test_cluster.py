"""A two-node Ray cluster on this machine (two raylets) makes the same store as a local run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from prep.config import PrepConfig
from prep.pipeline import run_prep
from prep.recipes import synthetic
from prep.synth import make_synthetic
from tests.prep import prep_helpers

ray_session = prep_helpers.ray_session  # the one local Ray session of the prep tests
REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")
# the test cluster runs without token authentication, on 127.0.0.1 only
CLUSTER_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args: list[str], temp: str) -> int:
    """`ray start ...` in its own process group (its daemons inherit it); return the group id."""
    proc = subprocess.Popen([str(RAY), "start", *args, "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
                             "--temp-dir", temp, "--disable-usage-stats"], env=CLUSTER_ENV,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=180)
    if proc.returncode != 0:
        raise RuntimeError(f"ray start {' '.join(args)} failed:\n{out.decode()[-2000:]}")
    return proc.pid


def _kill_started(groups: list[int], temps: list[str]) -> None:
    """Stop exactly what this test started: its process groups, then any process naming its temp dirs."""
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(t in cmdline for t in temps):
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture()
def two_raylets():
    """A head raylet and a second raylet joined to it, one CPU each; always stopped afterwards."""
    if not RAY.is_file():
        pytest.skip(f"the ray command line is not at {RAY}")
    temps = [tempfile.mkdtemp(prefix="abt-head-", dir="/tmp"), tempfile.mkdtemp(prefix="abt-node-", dir="/tmp")]
    groups: list[int] = []
    port = _free_port()
    try:
        groups.append(_ray_start(["--head", "--port", str(port), "--include-dashboard=false"], temps[0]))
        groups.append(_ray_start(["--address", f"127.0.0.1:{port}"], temps[1]))
        yield f"127.0.0.1:{port}"
    finally:
        _kill_started(groups, temps)
        time.sleep(0.5)
        for t in temps:
            shutil.rmtree(t, ignore_errors=True)


def test_two_node_cluster_matches_local_run(two_raylets, tmp_path, ray_session):
    """`prep --address` on a two-raylet cluster: work lands on both nodes; the store equals a local run's; and
    `bench --address` on the same cluster scores it as an in-process bench does."""
    make_synthetic(tmp_path / "synth", kind="faces", num_videos=4, num_frames=10, width=128, height=96, seed=5)
    local = run_prep(synthetic.plan(tmp_path / "synth"), tmp_path / "local", PrepConfig("synthetic", size=48),
                     workers=2, progress=False)
    cmd = [sys.executable, "-m", "prep.pipeline_cli", "synthetic", "--src", str(tmp_path / "synth"), "--out",
           str(tmp_path / "cluster"), "--size", "48", "--address", two_raylets, "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO, env=CLUSTER_ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 processed" in done.stdout
    manifest = json.loads((tmp_path / "cluster" / "manifest.json").read_text())
    assert manifest["content_hash"] == local.manifest["content_hash"]
    assert manifest["shards"] == local.manifest["shards"]
    assert len(manifest["run"]["nodes"]) == 2  # one worker per raylet (one CPU each)
    # the same cluster serves `animbench bench --address`: its numbers equal an in-process bench's
    from bench.results import Results
    from bench.runner import MethodSpec, run_bench

    bench = [sys.executable, "-m", "animbench", "bench", "--methods", "copy-source,oracle", "--store",
             str(tmp_path / "cluster"), "--split", "train", "--protocol", "reconstruction", "--metrics", "l1",
             "--out", str(tmp_path / "results-cluster"), "--address", two_raylets]
    done = subprocess.run(bench, cwd=REPO, env=CLUSTER_ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    run_bench([MethodSpec("copy-source"), MethodSpec("oracle")], tmp_path / "cluster", "reconstruction", ["l1"],
              tmp_path / "results-local", split="train", workers=1)
    cols = ["method", "video_id", "frame_index", "value"]
    on_cluster, local_run = Results(tmp_path / "results-cluster").frames(), Results(tmp_path / "results-local").frames()
    assert on_cluster[cols].sort_values(cols[:3]).reset_index(drop=True).equals(
        local_run[cols].sort_values(cols[:3]).reset_index(drop=True))
