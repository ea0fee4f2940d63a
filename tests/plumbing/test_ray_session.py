"""plumbing.ray_session: a local session with the asked-for CPUs, reused when open, shut down only by its starter.

The scenario runs in a fresh interpreter: other test modules hold a session-wide Ray of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]

SCENARIO = """
import ray
from plumbing.ray_session import ray_session

assert not ray.is_initialized()
with ray_session(workers=1) as started:
    assert started and ray.cluster_resources().get("CPU") == 1
    with ray_session(workers=2) as inner:  # prep or bench called from code that holds Ray already
        assert not inner
    assert ray.is_initialized()  # the inner block left the caller's session open
assert not ray.is_initialized()
print("ok")
"""


def test_a_session_is_reused_inside_and_closed_only_by_the_block_that_started_it():
    with tempfile.TemporaryDirectory(prefix="rs", dir="/tmp") as tmp:  # Ray's socket paths stay under 107 bytes
        env = {**os.environ, "RAY_TMPDIR": f"{tmp}/ray", "PYTHONPATH": str(REPO)}
        result = subprocess.run([sys.executable, "-c", SCENARIO], env=env, cwd=REPO, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
        assert Path(tmp, "ray").is_dir()  # RAY_TMPDIR is made and used
