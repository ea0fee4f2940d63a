"""Inference: the reconstruction protocol over a store, animation to every OUT format, exact reloads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from methods.checkpoints import save_checkpoint
from methods.infer import (
    animate_video,
    animation_settings,
    quantise,
    reconstruct,
    reconstruct_store,
    write_animation,
)
from methods.infer_inputs import read_image, read_video
from methods.infer_set import animate
from methods.registry import load_config, load_model
from methods.train import make_optimizers, train_step
from plumbing.errors import AnimbenchError
from prep.pairs import FramePairDataset, to_tensor
from prep.store import FrameStore, verify_store
from tests.methods.tiny_store import make_store

REPO = Path(__file__).resolve().parents[2]
FOMM_TINY = REPO / "configs/fomm-tiny.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("infer") / "store", train=2, test=2, frames=6)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, store) -> Path:
    """A FOMM tiny checkpoint after two real training steps (so batch-norm statistics are not the defaults)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, _ = load_model("fomm", config=FOMM_TINY)
    model.train()
    optimizers = make_optimizers(model, load_config(FOMM_TINY))
    data = FramePairDataset(store, "train", num_repeats=2, seed=0)
    for step in range(2):
        batch = [data[2 * step], data[2 * step + 1]]
        train_step(model, optimizers, torch.stack([b["source"] for b in batch]),
                   torch.stack([b["driving"] for b in batch]))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "00000000-checkpoint.pth.tar", model, optimizers, 0)


def _driving_frames(n: int = 7) -> np.ndarray:
    """A square moving diagonally: every frame differs from the previous one."""
    frames = np.full((n, 64, 64, 3), 40, np.uint8)
    for t in range(n):
        frames[t, 10 + 3 * t:30 + 3 * t, 12 + 2 * t:28 + 2 * t] = (230, 120, 30)
    return frames


def _write_video(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width, stream.pix_fmt = 64, 64, "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_reconstruction_protocol(store, checkpoint, tmp_path):
    model, prov = load_model("fomm", checkpoint=checkpoint, config=FOMM_TINY)
    summary = reconstruct_store(model, store, tmp_path / "rec", batch_size=4, provenance=prov)
    frames_store = FrameStore(store)
    preds = FrameStore(tmp_path / "rec" / "predictions")
    l1_all = []
    for row in summary["videos"]:
        gt = frames_store.read(row["video_id"])
        # the protocol: source = frame 0, every frame (0 included) driven with its own absolute keypoints
        with torch.no_grad():
            expected = model.reconstruct(to_tensor(gt[:1]).expand(len(gt), -1, -1, -1), to_tensor(gt))
        expected = expected.permute(0, 2, 3, 1).numpy()
        per_frame = np.abs(expected - gt / 255.0).mean(axis=(1, 2, 3))
        assert row["l1"] == pytest.approx(per_frame.mean(), abs=1e-6)
        l1_all.extend(per_frame)
        stored = preds.read(row["video_id"])  # floor(255 * pred), as the official png strips
        assert stored.shape == gt.shape
        assert np.abs(stored.astype(int) - quantise(expected).astype(int)).max() <= 1
    assert summary["l1"] == pytest.approx(np.mean(l1_all), abs=1e-6)  # frame-weighted
    assert summary["num_frames"] == 12 and summary["quantisation"] == "floor(255*pred)"
    saved = json.loads((tmp_path / "rec" / "reconstruction.json").read_text())
    assert saved["provenance"]["checkpoint"]["sha256"] == prov["checkpoint"]["sha256"]
    assert saved["provenance"]["align_corners"] is True
    with pytest.raises(AnimbenchError, match="--overwrite"):
        reconstruct_store(model, store, tmp_path / "rec")


def test_reconstruction_never_writes_over_the_store_it_reads(tmp_path):
    """--out the store itself (predictions would land inside it) or the folder whose predictions/ is the store
    (--overwrite would replace it): one line, nothing written, the store intact."""
    nested = make_store(tmp_path / "run" / "predictions", train=1, test=2, frames=4, person_ids=False)
    before = FrameStore(nested).manifest["content_hash"]
    for out in (nested, tmp_path / "run"):
        with pytest.raises(AnimbenchError, match=r"--out .* \(its predictions/\): (lies inside|is) the input --store"):
            reconstruct("copy-source", nested, out, overwrite=True)
    assert not (nested / "reconstruction.json").exists() and not (tmp_path / "run" / "reconstruction.json").exists()
    assert FrameStore(nested).manifest["content_hash"] == before and verify_store(nested) == []


def test_baselines_through_the_protocol(tmp_path):
    store = make_store(tmp_path / "store", train=1, test=2, frames=6, person_ids=False)  # as prep's folder recipe
    oracle = reconstruct("oracle", store, tmp_path / "oracle")
    assert oracle["l1"] == 0.0
    copy = reconstruct("copy-source", store, tmp_path / "copy", batch_size=5, limit_videos=1)
    gt = FrameStore(store).read(copy["videos"][0]["video_id"]).astype(np.float64) / 255
    assert copy["num_videos"] == 1
    assert copy["l1"] == pytest.approx(np.abs(gt - gt[:1]).mean(), abs=1e-6)


def test_animate_to_every_format(checkpoint, tmp_path):
    source = _driving_frames(1)[0][::-1].copy()
    Image.fromarray(source).save(tmp_path / "source.png")
    drive = _write_video(tmp_path / "driving.mp4", _driving_frames())
    model, _ = load_model("fomm", checkpoint=checkpoint, config=FOMM_TINY)
    frames, fps = read_video(drive, (64, 64))
    expected = animate_video(model, read_image(tmp_path / "source.png", (64, 64)), frames, relative=False)

    common = dict(checkpoint=str(checkpoint), config=str(FOMM_TINY), relative=False)
    rec = animate("fomm", tmp_path / "source.png", drive, tmp_path / "out.npy", **common)
    raw = np.load(tmp_path / "out.npy")
    assert raw.dtype == np.float32 and raw.shape == (7, 64, 64, 3)
    assert np.array_equal(raw, expected)  # exactly the in-memory prediction
    assert rec["mode"]["relative"] is False and rec["provenance"]["align_corners"] is True
    assert json.loads((tmp_path / "out.npy.json").read_text())["fps"] == fps == 10

    animate("fomm", tmp_path / "source.png", drive, tmp_path / "frames", **common)
    names = sorted(os.listdir(tmp_path / "frames"))
    assert names == [f"{i:07d}.png" for i in range(7)]
    for i, name in enumerate(names):  # lossless: exactly floor(255 * pred)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "frames" / name)), quantise(raw[i]))

    animate("fomm", tmp_path / "source.png", drive, tmp_path / "out.mp4", **common)
    mp4, _ = read_video(tmp_path / "out.mp4")
    assert mp4.shape == (7, 64, 64, 3) and np.abs(mp4 - raw).mean() < 0.05
    animate("fomm", tmp_path / "source.png", drive, tmp_path / "out.gif", **common)
    gif, _ = read_video(tmp_path / "out.gif")
    assert gif.shape == (7, 64, 64, 3) and np.abs(gif - raw).mean() < 0.05

    with pytest.raises(AnimbenchError, match="already exists"):
        animate("fomm", tmp_path / "source.png", drive, tmp_path / "out.npy", **common)
    with pytest.raises(AnimbenchError, match=".mp4, .gif or .npy"):
        animate("fomm", tmp_path / "source.png", drive, tmp_path / "out.avi", **common)


@pytest.mark.parametrize("suffix", [".mkv", ".mov", ".gif"])
def test_driving_containers(tmp_path, suffix):
    frames = _driving_frames()
    path = tmp_path / f"driving{suffix}"
    if suffix == ".gif":
        write_animation(frames / 255.0, path, fps=10)
    else:
        _write_video(path, frames)
    decoded, fps = read_video(path, (32, 32))  # resized like the official demo
    assert decoded.shape == (7, 32, 32, 3) and decoded.dtype == np.float32 and fps == pytest.approx(10)
    (tmp_path / "not-a-video.mp4").write_text("plain text")
    with pytest.raises(AnimbenchError, match="cannot be decoded"):
        read_video(tmp_path / "not-a-video.mp4")


def test_checkpoint_reproduces_bit_for_bit_in_a_fresh_process(checkpoint, tmp_path):
    Image.fromarray(_driving_frames(3)[2]).save(tmp_path / "source.png")
    drive = _write_video(tmp_path / "driving.mp4", _driving_frames())
    model, _ = load_model("fomm", checkpoint=checkpoint, config=FOMM_TINY)
    frames, _ = read_video(drive, (64, 64))
    expected = animate_video(model, read_image(tmp_path / "source.png", (64, 64)), frames, relative=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "animbench", "animate", "fomm", "--checkpoint", str(checkpoint), "--config",
           str(FOMM_TINY), "--source", str(tmp_path / "source.png"), "--driving", str(drive), "--out",
           str(tmp_path / "fresh.npy"), "--relative"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.array_equal(np.load(tmp_path / "fresh.npy"), expected)


def test_config_decides_the_animation_mode_unless_told(checkpoint):
    fomm, _ = load_model("fomm", checkpoint=checkpoint, config=FOMM_TINY)
    assert animation_settings(fomm, None, None) == {"relative": True, "adapt_scale": False,
                                                    "relative_jacobian": True}  # fomm-tiny animate_params
    assert animation_settings(fomm, False, True)["relative"] is False
    source, driving = _driving_frames(1)[0], _driving_frames(4)
    by_config = animate_video(fomm, source, driving)
    assert np.array_equal(by_config, animate_video(fomm, source, driving, relative=True))
    assert not np.array_equal(by_config, animate_video(fomm, source, driving, relative=False))
    mnet, _ = load_model("monkey_net", config=REPO / "configs/monkey_net-tiny.yaml")
    mode = animation_settings(mnet, None, None)  # transfer_params.normalization_params
    assert mode["move_location"] is True and mode["movement_mult"] is False and mode["adapt_variance"] is False
    assert animation_settings(mnet, False, True) == mode | {"relative": False, "adapt_scale": True,
                                                                 "move_location": False, "movement_mult": True}


def _flip_frame_byte(root: Path, video_id: str, index: int) -> Path:
    """Flip one byte in the middle of one stored frame's encoded bytes, inside its shard."""
    data = FrameStore(root).read_encoded(video_id, [index])[0]
    shard = next(p for p in (root / "frames").glob("*.parquet") if data in p.read_bytes())
    raw = bytearray(shard.read_bytes())
    at = raw.find(data)
    raw[at + len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(raw))
    return shard


def test_a_failed_reconstruction_leaves_nothing_that_blocks_the_rerun(tmp_path):
    """A corrupt store: a one-line error naming the shard, video and frame, and no predictions/ left behind
    (it used to stay, so the rerun refused a non-empty folder)."""
    store = make_store(tmp_path / "store", train=1, test=2, frames=5)
    vid = FrameStore(store).videos("test")[-1]
    shard = _flip_frame_byte(store, vid, 3)
    with pytest.raises(AnimbenchError) as err:
        reconstruct("copy-source", store, tmp_path / "rec")
    message = str(err.value)
    assert "\n" not in message and shard.name in message and repr(vid) in message and "frame 3" in message
    assert not (tmp_path / "rec").exists()
    (tmp_path / "kept").mkdir()  # a folder the user made is kept, without the half-written predictions
    with pytest.raises(AnimbenchError):
        reconstruct("copy-source", store, tmp_path / "kept")
    assert list((tmp_path / "kept").iterdir()) == []
    good = make_store(tmp_path / "good", train=1, test=2, frames=5)
    assert reconstruct("copy-source", good, tmp_path / "kept")["num_videos"] == 2  # no --overwrite needed


def test_a_truncated_checkpoint_is_one_line_and_writes_nothing(store, checkpoint, tmp_path):
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(checkpoint.read_bytes()[:20_000])
    with pytest.raises(AnimbenchError, match=f"checkpoint {truncated}") as err:
        reconstruct("fomm", store, tmp_path / "rec", checkpoint=str(truncated), config=str(FOMM_TINY))
    assert "\n" not in str(err.value) and not (tmp_path / "rec").exists()


def test_a_store_larger_than_the_config_is_resized_and_the_choice_recorded(checkpoint, tmp_path):
    """The official loader delivers frames at the config's frame_shape: a 96 px store runs a 64 px model at 64 px
    (not at 96 px, where its numbers would differ), ground truth included, and reconstruction.json says so."""
    store = make_store(tmp_path / "s96", train=0, test=1, frames=4, size=96)
    summary = reconstruct("fomm", store, tmp_path / "rec", checkpoint=str(checkpoint), config=str(FOMM_TINY))
    assert summary["evaluation"]["resized"] is True and summary["evaluation"]["frame_size"] == [64, 64]
    assert summary["evaluation"]["store_frame_sizes"] == [[96, 96]] and "skimage" in summary["evaluation"]["rule"]
    model, _ = load_model("fomm", checkpoint=checkpoint, config=FOMM_TINY)
    from methods.data import resize_frames

    gt = resize_frames(FrameStore(store).read(summary["videos"][0]["video_id"]), (64, 64))
    with torch.no_grad():
        expected = model.reconstruct(to_tensor(gt[:1]).expand(len(gt), -1, -1, -1), to_tensor(gt))
    expected = expected.permute(0, 2, 3, 1).numpy()
    assert summary["l1"] == pytest.approx(np.abs(expected - gt / 255.0).mean(), abs=1e-6)
    saved = json.loads((tmp_path / "rec" / "reconstruction.json").read_text())
    assert saved["evaluation"] == summary["evaluation"]


# --- animate: streamed driving video, non-square inputs centre-cropped with a warning, progress ---


def _write_video_sized(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_animate_non_square_inputs_are_centre_cropped_with_a_warning(checkpoint, tmp_path, capsys):
    wide = np.zeros((5, 64, 96, 3), np.uint8)
    wide[:, :, 16:80] = _driving_frames(5)  # the square content in the middle, black bars left and right
    drive = _write_video_sized(tmp_path / "wide.mp4", wide)
    tall = np.zeros((80, 64, 3), np.uint8)
    tall[8:72] = _driving_frames(1)[0]
    Image.fromarray(tall).save(tmp_path / "tall.png")
    capsys.readouterr()
    rec = animate("fomm", tmp_path / "tall.png", drive, tmp_path / "out.npy", checkpoint=str(checkpoint),
                  config=str(FOMM_TINY), progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("animbench: warning:") for line in err)
    driving_line = next(line for line in err if "driving video" in line)
    source_line = next(line for line in err if "source image" in line)
    assert "is 96x64 (W x H)" in driving_line and "centre-cropped to 64x64" in driving_line
    assert "is 64x80 (W x H)" in source_line and "centre-cropped to 64x64" in source_line
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (5, 64, 64, 3) and rec["frame_size"] == [64, 64]
    assert rec["crop"] == {"source": [8, 0, 64, 64], "driving": [0, 16, 64, 64]}  # top, left, height, width
    # the same as animating the centre crops themselves: nothing squashed
    model, _ = load_model("fomm", checkpoint=checkpoint, config=FOMM_TINY)
    frames, _ = read_video(drive, (64, 64))
    assert np.array_equal(out, animate_video(model, read_image(tmp_path / "tall.png", (64, 64)), frames))


def test_animate_streams_long_videos_in_chunks(checkpoint):
    """Chunked driving frames give the whole-video result (frame 0 stays the reference of every chunk); a video
    of up to ANIMATE_CHUNK frames is one model call, exactly as before streaming."""
    model, _ = load_model("fomm", checkpoint=checkpoint, config=FOMM_TINY)
    source, driving = _driving_frames(1)[0], _driving_frames(11)
    whole = animate_video(model, source, driving, relative=True)
    with torch.no_grad():
        direct = model.animate(to_tensor(source), to_tensor(driving), model.animation_mode(True, False))
    assert np.array_equal(whole, direct.permute(0, 2, 3, 1).numpy())
    chunked = animate_video(model, source, iter(driving), relative=True, chunk=4)
    assert chunked.shape == whole.shape
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)
    assert np.array_equal(chunked[:4], whole[:4])  # the first chunk is the same call


def test_animate_progress_bar_and_no_progress(checkpoint, tmp_path, capsys):
    Image.fromarray(_driving_frames(1)[0]).save(tmp_path / "source.png")
    drive = _write_video(tmp_path / "driving.mp4", _driving_frames())
    common = dict(checkpoint=str(checkpoint), config=str(FOMM_TINY))
    animate("fomm", tmp_path / "source.png", drive, tmp_path / "a.mp4", **common)
    assert "animate fomm" in capsys.readouterr().err
    animate("fomm", tmp_path / "source.png", drive, tmp_path / "b.mp4", progress=False, **common)
    assert capsys.readouterr().err == ""


def test_animate_memory_stays_bounded_on_a_large_driving_video(checkpoint, tmp_path):
    """A 1280x720 driving video is decoded and resized frame by frame: the driving frames are never all held."""
    import tracemalloc

    frames = np.zeros((48, 720, 1280, 3), np.uint8)
    for t in range(len(frames)):
        frames[t, 200 + 4 * t:500 + 4 * t, 500:800] = (230, 120, 30)
    drive = _write_video_sized(tmp_path / "large.mp4", frames, fps=25)
    del frames
    Image.fromarray(_driving_frames(1)[0]).save(tmp_path / "source.png")
    tracemalloc.start()
    animate("fomm", tmp_path / "source.png", drive, tmp_path / "out.mp4", checkpoint=str(checkpoint),
            config=str(FOMM_TINY), progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    whole_video_float = 48 * 720 * 1280 * 3 * 4  # 530 MB: what reading it all at once held
    assert peak < whole_video_float / 10, peak


# --- .npy output streamed into a memory map when the frame count is known --------------------------------


def _ramp(n: int, h: int = 6, w: int = 10) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    return [rng.uniform(-0.2, 1.2, (h, w, 3)).astype(np.float32) for _ in range(n)]


def test_npy_streams_into_a_memory_map_beside_the_output(tmp_path):
    frames = _ramp(5)
    out = tmp_path / "out" / "clip.npy"
    seen = []

    def produced():
        for i, frame in enumerate(frames):
            if i == 3:  # mid-way: only a full-size temporary file beside the output, never the final name
                others = [p for p in out.parent.iterdir() if p != out]
                seen.append((out.exists(), [(p.name, p.stat().st_size) for p in others]))
            yield frame

    assert write_animation(produced(), out, num_frames=5) == out
    (final_exists, others), = seen
    header = 128  # numpy's .npy v1 header for this shape
    assert not final_exists and len(others) == 1 and others[0][1] == header + 5 * 6 * 10 * 3 * 4
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.npy"]
    got = np.load(out)
    assert got.dtype == np.float32 and np.array_equal(got, np.stack(frames))  # unclamped values, exactly
    # the same bytes' values as the gathered path (count unknown) and as an array
    write_animation(iter(frames), tmp_path / "gathered.npy")
    write_animation(np.stack(frames), tmp_path / "array.npy")
    assert np.array_equal(np.load(tmp_path / "gathered.npy"), got)
    assert np.array_equal(np.load(tmp_path / "array.npy"), got)


def test_a_failed_or_miscounted_npy_never_reaches_the_final_name(tmp_path):
    out = tmp_path / "clip.npy"

    def failing():
        yield from _ramp(2)
        raise RuntimeError("generation failed")

    with pytest.raises(RuntimeError, match="generation failed"):
        write_animation(failing(), out, num_frames=4)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AnimbenchError, match=r"clip.npy: 3 frames made, 4 expected"):
        write_animation(iter(_ramp(3)), out, num_frames=4)
    with pytest.raises(AnimbenchError, match="more frames than the 2 expected"):
        write_animation(iter(_ramp(3)), out, num_frames=2)
    with pytest.raises(AnimbenchError, match=r"frame 1 is \(6, 8, 3\), expected \(6, 10, 3\) as the first"):
        write_animation(iter([_ramp(1)[0], _ramp(1, w=8)[0]]), out, num_frames=2)
    assert list(tmp_path.iterdir()) == []
    # an existing output is replaced only by a complete one
    write_animation(iter(_ramp(2)), out, num_frames=2)
    with pytest.raises(AnimbenchError):
        write_animation(iter(_ramp(1)), out, num_frames=2, overwrite=True)
    assert np.array_equal(np.load(out), np.stack(_ramp(2)))


# --- OUT never replaces an input; OUT.json sizes are [width, height] -----------------------------------------


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _label_maps(folder: Path, width: int = 96, height: int = 64, count: int = 3) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        label = np.zeros((height, width, 3), np.uint8)
        label[10:30, 20 + i:40 + i] = 1
        Image.fromarray(label).save(folder / f"f{i}.png")
    return folder


POSE2IMG_TINY = REPO / "configs/pose2img-tiny.yaml"


def test_animate_poses_never_writes_over_its_inputs(tmp_path, capsys):
    """`--out` equal to, holding or inside --poses / --face-boxes / the face box folder found beside --poses is
    refused before any work, --overwrite or not: one line naming both paths, the inputs unchanged."""
    from animbench.cli import main

    labels = _label_maps(tmp_path / "data" / "test_label")
    boxes = tmp_path / "data" / "test_label_facetexts128"  # found beside the label maps
    boxes.mkdir()
    for i in range(3):
        (boxes / f"f{i}.txt").write_text("10 30 20 40\n")
    given_boxes = tmp_path / "boxes"
    given_boxes.mkdir()
    (given_boxes / "f0.txt").write_text("10 30 20 40\n")
    before = {d: _tree(d) for d in (labels, boxes, given_boxes)}
    cases = [(labels, [], "is", "--poses", labels), (tmp_path / "data", [], "holds", "--poses", labels),
             (labels / "out", [], "lies inside", "--poses", labels), (labels / "out.mp4", [], "lies inside",
                                                                      "--poses", labels),
             (boxes, [], "is", "face box folder (found beside --poses)", boxes),
             (given_boxes, ["--face-boxes", str(given_boxes)], "is", "--face-boxes", given_boxes)]
    for out, extra, how, flag, given in cases:
        code = main(["animate", "pose2img", "--config", str(POSE2IMG_TINY), "--poses", str(labels), "--out",
                     str(out), "--overwrite", "--no-progress", *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert f"--out {out}: {how} the input {flag} {given}" in err
        assert {d: _tree(d) for d in before} == before
    assert not (tmp_path / "data" / "test_label.json").exists()


def test_animate_video_driven_never_writes_over_source_or_driving(checkpoint, tmp_path, capsys):
    from animbench.cli import main

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    drive = _write_video(inputs / "drive.mp4", _driving_frames(3))
    Image.fromarray(_driving_frames(1)[0]).save(inputs / "source.png")
    before = _tree(inputs)
    for out, how, flag, given in ((drive, "is", "--driving", drive),
                                  (inputs, "holds", "--source", inputs / "source.png")):
        code = main(["animate", "fomm", "--checkpoint", str(checkpoint), "--config", str(FOMM_TINY), "--source",
                     str(inputs / "source.png"), "--driving", str(drive), "--out", str(out), "--overwrite",
                     "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert f"--out {out}: {how} the input {flag} {given}" in err
        assert _tree(inputs) == before


def test_animate_overwrite_replaces_only_an_earlier_animation(checkpoint, tmp_path, capsys):
    """--overwrite replaces an earlier PNG-folder output (frames only) but not a folder holding anything else,
    and a folder is never taken for a .mp4 path."""
    from animbench.cli import main

    drive = _write_video(tmp_path / "drive.mp4", _driving_frames(3))
    Image.fromarray(_driving_frames(1)[0]).save(tmp_path / "source.png")
    argv = ["animate", "fomm", "--checkpoint", str(checkpoint), "--config", str(FOMM_TINY), "--source",
            str(tmp_path / "source.png"), "--driving", str(drive), "--no-progress", "--overwrite", "--out"]
    frames = tmp_path / "frames"
    assert main([*argv, str(frames)]) == 0 and main([*argv, str(frames)]) == 0  # an earlier output: replaced
    assert sorted(p.name for p in frames.iterdir()) == [f"{i:07d}.png" for i in range(3)]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    capsys.readouterr()
    for out, expected in ((mine, "holding 'notes.txt', which no animation writes"),
                          (tmp_path / "clip.mp4", "is a folder; expected a path for the mp4 file")):
        out.mkdir(exist_ok=True)
        assert main([*argv, str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err
    assert (mine / "notes.txt").read_text() == "mine"


def test_animate_record_sizes_are_width_then_height(tmp_path):
    """OUT.json: frame_size is [width, height], the order of poses.frame_size and --frame-size WxH."""
    from methods.infer_pose import animate_poses

    labels = _label_maps(tmp_path / "labels", width=96, height=64)
    rec = animate_poses("pose2img", labels, tmp_path / "out.npy", config=str(POSE2IMG_TINY), progress=False)
    assert np.load(tmp_path / "out.npy").shape == (3, 64, 96, 3)  # frames are (T, H, W, 3)
    saved = json.loads((tmp_path / "out.npy.json").read_text())
    assert rec["frame_size"] == saved["frame_size"] == [96, 64] and saved["frame_size_order"] == "width, height"
