"""Stores other tools open: Hugging Face `datasets` and Ray Data read the frames without animbench (the README's
one-liners, run as they are in a Python that cannot import animbench), pixel-exact against the store's own
reads; DuckDB reads the bytes; stores of schema v2 still open, verify and catch damage."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from animbench.cli import main as cli_main
from plumbing.errors import AnimbenchError
from plumbing.files import sha256_file
from prep.store import SCHEMA_VERSION, EncodeOptions, FrameStore, FrameStoreWriter, verify_store
from tests.prep.prep_helpers import flip_frame_byte, pattern_frame

README = Path(__file__).resolve().parents[2] / "README.md"
OURS = ("animbench", "prep", "plumbing", "methods", "bench", "reports")
# Run first in every subprocess: importing any of animbench's packages fails, as where it is not installed (the
# venv has it as an editable install, so removing it from sys.path would not be enough).
NO_ANIMBENCH = f"""
import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {OURS!r}:
            raise ImportError(name + ": animbench is not installed here")
sys.meta_path.insert(0, _NotInstalled())
"""


def _store(root: Path, image_format: str = "png", shard_frames: int = 5) -> Path:
    with FrameStoreWriter(root, {"recipe": "test"}, encode=EncodeOptions(image_format), row_group_size=4,
                          shard_frames=shard_frames) as w:
        for k, vid in enumerate(["a", "b"]):
            w.add_video(vid, [pattern_frame(i, 40, 24, seed=k) for i in range(6)], split="test")
    return root


def _readme_block(language: str, marker: str) -> str:
    """The README's ```language block under "### Open a store elsewhere" that contains `marker`."""
    text = README.read_text()
    section = text.split("### Open a store elsewhere", 1)[1].split("\n## ", 1)[0]
    blocks = [b for b in re.findall(rf"```{language}\n(.*?)```", section, re.S) if marker in b]
    assert len(blocks) == 1, f"README: expected one {language} block with {marker!r} under 'Open a store elsewhere'"
    return blocks[0]


def _run_without_animbench(code: str, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(cwd / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    check = f"\nassert not [m for m in sys.modules if m.split('.')[0] in {OURS!r}]\n"
    proc = subprocess.run([sys.executable, "-c", NO_ANIMBENCH + code + check], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _assert_same_frames(store: FrameStore, got: Path) -> None:
    out = np.load(got)
    ids, idx, images = out["video_id"].tolist(), out["frame_index"].tolist(), out["images"]
    assert sorted(zip(ids, idx, strict=True)) == [(v, i) for v in store.videos() for i in range(store.num_frames(v))]
    expected = {vid: store.read(vid) for vid in store.videos()}
    for vid, i, image in zip(ids, idx, images, strict=True):
        np.testing.assert_array_equal(image, expected[vid][i], err_msg=f"video {vid} frame {i}")


def test_hugging_face_datasets_decodes_frames_as_pil_images(tmp_path):
    """The README's `load_dataset("parquet", ...)` gives PIL RGB images equal to the store's frames."""
    root = _store(tmp_path / "s")
    code = _readme_block("python", "load_dataset").replace("STORE", str(root)) + """
import numpy as np
from datasets import Image
assert isinstance(ds.features["image"], Image), ds.features
assert ds[0]["image"].mode == "RGB"
np.savez("got.npz", video_id=np.array(ds["video_id"]), frame_index=np.array(ds["frame_index"]),
         images=np.stack([np.asarray(ds[i]["image"]) for i in range(len(ds))]))
"""
    _run_without_animbench(code, tmp_path)
    _assert_same_frames(FrameStore(root), tmp_path / "got.npz")


def test_ray_data_reads_frames_whose_bytes_decode_with_pil(tmp_path):
    """The README's `ray.data.read_parquet` rows (a local Ray with one CPU) decode to the store's frames."""
    root = _store(tmp_path / "s")
    ray_tmp = tempfile.mkdtemp(prefix="abt-ray-", dir="/tmp")  # short: Ray puts unix sockets in it
    start = (f"import ray\nray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, "
             f"_temp_dir={ray_tmp!r})\n")
    code = start + _readme_block("python", "ray.data").replace("STORE", str(root)) + """
import numpy as np
assert PIL.Image.open(io.BytesIO(row["image"]["bytes"])).mode == "RGB"
got = rows.take_all()
np.savez("got.npz", video_id=np.array([r["video_id"] for r in got]),
         frame_index=np.array([r["frame_index"] for r in got]),
         images=np.stack([np.asarray(PIL.Image.open(io.BytesIO(r["image"]["bytes"]))) for r in got]))
ray.shutdown()
"""
    try:
        _run_without_animbench(code, tmp_path)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    _assert_same_frames(FrameStore(root), tmp_path / "got.npz")


def test_duckdb_reads_the_stored_bytes(tmp_path):
    """The README's DuckDB query returns each frame's stored bytes, in frame order."""
    duckdb = pytest.importorskip("duckdb")
    root = _store(tmp_path / "s")
    store = FrameStore(root)
    rows = duckdb.connect().execute(_readme_block("sql", "read_parquet").replace("STORE", str(root))).fetchall()
    assert [(v, i) for v, i, _ in rows] == [(v, i) for v in store.videos() for i in range(store.num_frames(v))]
    for vid in store.videos():
        assert [bytes(b) for v, _, b in rows if v == vid] == store.read_encoded(vid)


@pytest.mark.parametrize(("image_format", "suffix"), [("png", ".png"), ("jpeg", ".jpg")])
def test_image_struct_paths_and_hf_features_in_the_shard_metadata(tmp_path, image_format, suffix):
    """Each shard declares the HF features; `image.path` is "<video_id>/<frame_index:07d>" + the format's suffix."""
    root = _store(tmp_path / "s", image_format)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION == 3 and len(manifest["shards"]) == 2
    for shard in manifest["shards"]:
        schema = pq.read_schema(root / "frames" / shard["name"])
        assert schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
        assert features["image"] == {"_type": "Image"}
    table = pq.read_table(root / "frames")
    paths = [r["path"] for r in table["image"].to_pylist()]
    assert paths == [f"{v}/{i:07d}{suffix}" for v, i in zip(table["video_id"].to_pylist(),
                                                              table["frame_index"].to_pylist(), strict=True)]


def _downgrade_to_v2(root: Path) -> None:
    """Rewrite a store as schema v2 wrote it, with plain pyarrow: `image` a binary column of the encoded bytes,
    no HF metadata, manifest version 2 (the frames' digests and the content hash are as v2 had them)."""
    manifest = json.loads((root / "manifest.json").read_text())
    for shard in manifest["shards"]:
        path = root / "frames" / shard["name"]
        pf = pq.ParquetFile(path)
        table = pf.read().replace_schema_metadata()
        table = table.set_column(2, "image", table["image"].combine_chunks().field("bytes"))
        pq.write_table(table, path, row_group_size=pf.metadata.row_group(0).num_rows,
                       compression={"video_id": "zstd", "frame_index": "zstd", "image": "none", "sha256": "none"})
        assert pq.read_schema(path).field("image").type == pa.binary()
        shard["sha256"] = sha256_file(path)
    manifest["schema_version"] = 2
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_a_v2_store_still_opens_verifies_and_catches_damage(tmp_path, capsys):
    root = _store(tmp_path / "s", shard_frames=100)
    before = {vid: FrameStore(root).read(vid) for vid in ("a", "b")}
    _downgrade_to_v2(root)
    store = FrameStore(root)
    for vid, frames in before.items():
        np.testing.assert_array_equal(store.read(vid), frames)
        np.testing.assert_array_equal(store.read(vid, [5, 1]), frames[[5, 1]])
    assert verify_store(root) == []
    assert cli_main(["store", "info", str(root)]) == 0 and "v2" in capsys.readouterr().out
    assert cli_main(["store", "verify", str(root)]) == 0
    flip_frame_byte(root, "b", 3)
    with pytest.raises(AnimbenchError, match=r"video 'b', frame 3: stored bytes do not match their sha256"):
        FrameStore(root).read("b", [3])
    assert verify_store(root)
