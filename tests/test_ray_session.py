"""plumbing.ray_session: a local session with the asked-for CPUs, reused when open, shut down only by its starter."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from plumbing.ray_session import ray_session  # noqa: E402


def test_a_session_is_reused_inside_and_closed_only_by_the_block_that_started_it(monkeypatch):
    tmp_path = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # Ray's socket paths must stay under 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray"))
    assert not ray.is_initialized()
    with ray_session(workers=1) as started:
        assert started and ray.cluster_resources().get("CPU") == 1
        with ray_session(workers=2) as inner:  # prep or bench called from code that holds Ray already
            assert not inner
        assert ray.is_initialized()  # the inner block left the caller's session open
    assert not ray.is_initialized()
    assert (tmp_path / "ray").is_dir()  # RAY_TMPDIR is made and used
    shutil.rmtree(tmp_path, ignore_errors=True)
