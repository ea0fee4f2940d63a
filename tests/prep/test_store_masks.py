"""The store's masks table: uint8 masks at the stored frame size, readable with plain pyarrow and through
FrameStore.masks (float32 in [0, 1]), recorded in the manifest, covered by verify and the content hash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from plumbing.errors import AnimbenchError
from prep.store import FrameStore, FrameStoreWriter, content_hash, verify_store

FACTS = {"source": "files:/somewhere", "backend": "test", "weights": None}


def _video(seed: int, n: int = 5, h: int = 12, w: int = 16) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    masks = [rng.integers(0, 256, (h, w), dtype=np.uint8) for _ in range(n)]
    return frames, masks


def _store(root: Path, masks: bool = True) -> dict[str, list[np.ndarray]]:
    written = {}
    with FrameStoreWriter(root, masks=FACTS if masks else None, shard_frames=6) as writer:
        for k, vid in enumerate(["a", "b", "c"]):
            frames, m = _video(k, n=4 + k)
            writer.add_video(vid, frames, masks=m if masks else None, split="train")
            written[vid] = m
    return written


def test_masks_round_trip_through_pyarrow_and_the_reader(tmp_path):
    written = _store(tmp_path / "s")
    # plain pyarrow: one row per frame, raw uint8 bytes at the stored size
    table = pq.read_table(tmp_path / "s" / "masks")
    assert table.num_rows == sum(len(m) for m in written.values())
    for row in table.to_pylist():
        mask = np.frombuffer(row["mask"], np.uint8).reshape(row["height"], row["width"])
        np.testing.assert_array_equal(mask, written[row["video_id"]][row["frame_index"]])
    store = FrameStore(tmp_path / "s")
    assert store.mask_info["source"] == FACTS["source"] and store.mask_info["num_frames"] == table.num_rows
    assert "255" in store.mask_info["values"]
    for vid, masks in written.items():
        read = store.masks(vid)
        assert sorted(read) == list(range(len(masks)))
        for i, m in read.items():
            assert m.dtype == np.float32 and m.shape == (12, 16)
            np.testing.assert_array_equal(m, masks[i].astype(np.float32) / 255)
    assert verify_store(tmp_path / "s") == []


def test_a_store_without_masks_is_unchanged(tmp_path):
    _store(tmp_path / "plain", masks=False)
    _store(tmp_path / "masked")
    plain, masked = FrameStore(tmp_path / "plain"), FrameStore(tmp_path / "masked")
    assert plain.mask_info is None and not (tmp_path / "plain" / "masks").exists()
    rows = pq.read_table(tmp_path / "plain" / "videos.parquet").to_pylist()
    assert plain.fingerprint == content_hash(rows)  # the frames-only hash, as before masks existed
    assert masked.fingerprint != plain.fingerprint  # the masks are part of the content
    with pytest.raises(AnimbenchError, match="has no masks"):
        plain.masks("a")


def test_verify_and_the_reader_catch_a_flipped_byte(tmp_path):
    _store(tmp_path / "s")
    shard = sorted((tmp_path / "s" / "masks").glob("*.parquet"))[0]
    column = pq.ParquetFile(shard).metadata.row_group(0).column(4)  # the mask bytes
    assert column.path_in_schema == "mask"
    data = bytearray(shard.read_bytes())
    start = column.dictionary_page_offset or column.data_page_offset
    data[start + column.total_compressed_size // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    problems = verify_store(tmp_path / "s")
    assert len(problems) == 1 and problems[0].startswith(f"masks {shard.name}: sha256"), problems
    store = FrameStore(tmp_path / "s")
    errors = []
    for vid in store.videos():
        if store.info(vid)["shard"] == shard.name:
            try:
                store.masks(vid)
            except AnimbenchError as exc:
                errors.append(str(exc))
    assert errors and all(f"masks/{shard.name}, video " in e and "damaged" in e and "\n" not in e for e in errors)


def test_mask_errors_are_one_line(tmp_path):
    frames, masks = _video(0)
    with FrameStoreWriter(tmp_path / "s", masks=FACTS) as writer:
        with pytest.raises(AnimbenchError, match=r"frame 2: uint8 \(6, 16\), expected uint8 \(12, 16\)"):
            writer.add_video("a", frames, masks=[*masks[:2], masks[2][:6], *masks[3:]])
        with pytest.raises(AnimbenchError, match="4 masks for its 5 frames"):
            writer.add_video("b", frames, masks=masks[:4])
        with pytest.raises(AnimbenchError, match="every video needs them"):
            writer.add_video("c", frames)
        writer.add_video("d", frames, masks=masks)
