"""The house is enforced: import-linter's layers contract (pyproject.toml) passes on the code and fails on an
arrow against the data flow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("animbench", "reports", "bench", "methods", "prep", "plumbing")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def _copy_tree(dst: Path) -> None:
    shutil.copy(REPO / "pyproject.toml", dst / "pyproject.toml")
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))


def test_the_code_keeps_the_layers_contract(tmp_path):
    _copy_tree(tmp_path)
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    _copy_tree(tmp_path)
    (tmp_path / "prep" / "planted.py").write_text('"""An arrow against the flow."""\n\nimport bench.results\n')
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "prep is not allowed to import bench" in result.stdout


def test_plumbing_imports_no_stage(tmp_path):
    _copy_tree(tmp_path)
    (tmp_path / "plumbing" / "planted.py").write_text('"""A stage below the plumbing."""\n\nimport prep.store\n')
    result = _lint(tmp_path)
    assert result.returncode != 0 and "plumbing is not allowed to import prep" in result.stdout
