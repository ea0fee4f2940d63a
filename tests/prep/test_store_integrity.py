"""Corrupt data never passes silently: every frame store read checks what it read, and the error names the
store, the shard, the video and the frame."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from animbench.cli import main as cli_main
from plumbing.errors import AnimbenchError
from plumbing.files import sha256_file
from prep.export import export_png_layout
from prep.store import EncodeOptions, FrameStore, FrameStoreWriter, verify_store
from tests.prep.prep_helpers import flip_frame_byte


def _frames(seed: int, n: int = 40) -> np.ndarray:
    yy, xx = np.mgrid[0:32, 0:32]
    rng = np.random.default_rng(seed)
    return np.stack([np.stack([xx * 7 + t, yy * 5 + seed, (xx + yy + t) * 3], -1) + rng.integers(0, 9, (32, 32, 3))
                     for t in range(n)]).clip(0, 255).astype(np.uint8)


def _store(root: Path, image_format: str = "png") -> Path:
    with FrameStoreWriter(root, {"recipe": "test"}, encode=EncodeOptions(image_format)) as w:
        w.add_video("a", _frames(0), split="test")
        w.add_video("b", _frames(1), split="test")
    return root


@pytest.mark.parametrize("image_format", ["png", "jpeg"])
def test_a_flipped_byte_is_an_error_naming_store_shard_video_and_frame(tmp_path, image_format):
    """Random reads, whole-video reads and streaming reads all refuse the damaged frame; the others still
    read (JPEG decodes corrupt bytes without complaint, so only a checksum can tell)."""
    root = _store(tmp_path / "s", image_format)
    before = FrameStore(root).read("a")
    shard = flip_frame_byte(root, "a", 21)
    store = FrameStore(root)
    where = rf"store {root}: shard {shard.name}, video 'a', frame 21: "
    for read in (lambda: store.read("a", [3, 21]), lambda: store.read_encoded("a", [21]),
                 lambda: store.read("a"), lambda: list(store.iter_frames("a", chunk=8)), lambda: list(store)):
        with pytest.raises(AnimbenchError, match=where + "stored bytes do not match their sha256") as err:
            read()
        assert "\n" not in str(err.value)
    np.testing.assert_array_equal(store.read("a", [0, 16, 39]), before[[0, 16, 39]])  # other frames are fine
    assert len(store.read("b")) == 40
    assert verify_store(root) and shard.name in verify_store(root)[0]


def test_export_of_a_corrupt_store_fails_in_one_line(tmp_path, capsys):
    """`store export` used to print success and write an undecodable PNG."""
    root = _store(tmp_path / "s")
    flip_frame_byte(root, "b", 5)
    code = cli_main(["store", "export", str(root), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 2 and "exported" not in out
    assert err.count("\n") == 1 and "video 'b', frame 5" in err and "shard-00000.parquet" in err
    assert not (tmp_path / "out" / "test" / "b.mp4").exists()


def test_a_damaged_shard_footer_is_a_one_line_error(tmp_path):
    """A shard whose Parquet footer is damaged is named with its store and video, not a pyarrow traceback."""
    root = _store(tmp_path / "s")
    [shard] = (root / "frames").glob("*.parquet")
    raw = bytearray(shard.read_bytes())
    raw[-12:-8] = b"\xff\xff\xff\x7f"  # the footer length
    shard.write_bytes(bytes(raw))
    with pytest.raises(AnimbenchError, match=rf"store {root}: shard {shard.name}, video 'a': cannot read"):
        FrameStore(root).read("a", [0])
    shard.unlink()
    with pytest.raises(AnimbenchError, match=rf"shard {shard.name}, video 'a': cannot read .*(No such file|not found)"):
        FrameStore(root).read("a", [0])


def _downgrade_to_v1(root: Path) -> None:
    """Turn a store into what schema v1 wrote: the encoded bytes in a plain binary `image` column, no per-frame
    digest column, manifest version 1."""
    manifest = json.loads((root / "manifest.json").read_text())
    for shard in manifest["shards"]:
        path = root / "frames" / shard["name"]
        pf = pq.ParquetFile(path)
        table = pf.read().replace_schema_metadata()
        table = table.set_column(2, "image", table["image"].combine_chunks().field("bytes")).drop_columns(["sha256"])
        pq.write_table(table, path, row_group_size=pf.metadata.row_group(0).num_rows,
                       compression={"video_id": "zstd", "frame_index": "zstd", "image": "none"})
        assert pq.read_schema(path).field("image").type == pa.binary()
        shard["sha256"] = sha256_file(path)
    manifest["schema_version"] = 1
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_stores_written_before_per_frame_digests_still_open_and_whole_reads_are_checked(tmp_path):
    """A v1 store (no digest column) opens and reads as before; reading a whole video checks the video's
    frames_sha256, so a corrupt frame in it is still an error, not a silent pass."""
    root = _store(tmp_path / "s", "jpeg")
    _downgrade_to_v1(root)
    frames = FrameStore(root).read("a")
    assert frames.shape == (40, 32, 32, 3) and verify_store(root) == []
    shard = flip_frame_byte(root, "a", 30)
    store = FrameStore(root)
    assert len(store.read("a", [0, 5])) == 2
    for read in (lambda: store.read("a"), lambda: list(store.iter_frames("a", chunk=16)),
                 lambda: export_png_layout(root, tmp_path / "out")):
        with pytest.raises(AnimbenchError, match=rf"shard {shard.name}, video 'a': .*frames_sha256"):
            read()


def test_frame_digests_are_plain_sha256_of_the_stored_bytes(tmp_path):
    """Any Parquet reader can check a frame: the `sha256` column holds sha256 of the `image` bytes."""
    root = _store(tmp_path / "s")
    table = pq.read_table(root / "frames")
    assert table.schema.field("sha256").type == pa.binary(32)
    for image, digest in zip(table["image"].to_pylist()[:5], table["sha256"].to_pylist()[:5], strict=True):
        assert hashlib.sha256(image["bytes"]).digest() == digest
    assert json.loads((root / "manifest.json").read_text())["schema_version"] == 3
