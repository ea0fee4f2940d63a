"""Shared test fixtures: the ../shared reference folder (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANIMBENCH_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder of reference data; tests that need it skip cleanly without it."""
    if not (SHARED / "README.md").is_file():
        pytest.skip(f"../shared reference folder not found at {SHARED} (set ANIMBENCH_SHARED to use another)")
    return SHARED


@pytest.fixture()
def one_torch_thread():
    """One torch intra-op thread: on a busy 2-core box spinning OpenMP threads make small convs ~10x slower,
    and a fixed thread count keeps CPU kernels (and so outputs) bit-reproducible across processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
