"""The console script never shows a traceback for what a user does: an `--out` that is an existing file is a
one-line error, and output piped into `head` ends quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from animbench.cli import main as cli_main
from prep.store import FrameStoreWriter
from tests.prep.prep_helpers import make_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "store"
    with FrameStoreWriter(root, {"recipe": "test"}) as w:
        for i in range(3):
            frames = np.random.default_rng(i).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
            w.add_video(f"v{i}", frames, split="test" if i else "train", person_id=f"p{i}")
    return root


def _commands(store: Path, src: Path, out: Path) -> dict[str, list[str]]:
    tiny = str(REPO / "configs" / "fomm-tiny.yaml")
    return {
        "prep": ["prep", "folder", "--src", str(src), "--split", "train", "--out", str(out), "--no-progress"],
        "bench": ["bench", "--store", str(store), "--protocol", "reconstruction", "--methods", "copy-source",
                  "--metrics", "l1", "--out", str(out), "--workers", "1"],
        "train": ["train", "fomm", "--store", str(store), "--config", tiny, "--out", str(out), "--max-steps", "1",
                  "--device", "cpu"],
        "reconstruct": ["reconstruct", "fomm", "--config", tiny, "--store", str(store), "--out", str(out),
                        "--device", "cpu"],
        "export": ["store", "export", str(store), "--out", str(out)],
    }


@pytest.mark.parametrize("command", ["prep", "bench", "train", "reconstruct", "export"])
def test_out_being_an_existing_file_is_a_one_line_error(command, store, tmp_path, capsys):
    make_video(tmp_path / "src" / "a.mp4", 4, 32, 32)
    out = tmp_path / "taken"
    out.write_text("not a directory\n")
    code = cli_main(_commands(store, tmp_path / "src", out)[command])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("animbench: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert str(out) in err and ("directory" in err or "folder" in err)
    assert out.read_text() == "not a directory\n"


@pytest.mark.parametrize("argv", [["methods"], ["store", "info", "STORE"], ["metrics"]])
def test_output_into_a_closed_pipe_ends_quietly(argv, store):
    """`animbench methods | head -1`: the reader is gone before we write; no traceback, exit 141 (SIGPIPE's
    status in a shell)."""
    argv = [str(store) if a == "STORE" else a for a in argv]
    proc = subprocess.Popen([sys.executable, "-m", "animbench", *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader exits at once, as `head -1` does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141, err
    assert err == ""


def test_head_reads_the_first_line(store):
    """Through a real shell pipe, `| head -1` prints the first line and nothing else."""
    result = subprocess.run(f"{sys.executable} -m animbench store info {store} | head -1", shell=True, cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("store ") and result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr
