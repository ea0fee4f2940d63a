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
