"""Driving a latent-pose avatar through methods/infer_set.py (`animate_set`): a fine-tuned checkpoint without
sources, a meta checkpoint with a set of source images (identity = their mean EMA embedding), the --no-crop path
(the official loader's read of crops) and the latent-pose crop, outputs equal to calling the model; one-line errors.

The family hooks this path calls (`source_images = "set"`, `input_crop = "latentpose"`, `holds_identity`,
`animate_sources`) are defined below on a subclass while methods/latent_pose.py does not define them yet (its owner
adds them: see the L5 report); once it does, the registered class itself is tested."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from animbench.cli import main
from methods.checkpoints import load_into, save_checkpoint
from methods.infer_set import animate_set
from methods.latent_pose import LatentPose
from plumbing.errors import AnimbenchError
from prep.latentpose_crop import crop_frame, read_cropped

from .tiny_store import moving_square_video

REPO = Path(__file__).resolve().parents[2]
TINY, TINY_FT = REPO / "configs/latent_pose-tiny.yaml", REPO / "configs/latent_pose-tiny-finetune.yaml"


Driven = LatentPose  # the registered class, with its driving hooks


def _load(config: Path, path: Path) -> LatentPose:
    model = Driven.from_config(str(config))
    load_into(model, model.read_checkpoint(path), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A tiny meta checkpoint and a fine-tuned one (its identity set by hand), saved by the checkpoint path."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    meta = LatentPose.from_config(str(TINY))
    torch.manual_seed(1)
    tuned = LatentPose.from_config(str(TINY_FT))
    identity = torch.randn(1, 64) * 1e-2
    tuned.generator.enable_finetuning(identity)
    tuned.running_averages["generator"].enable_finetuning(identity)
    return {"meta": save_checkpoint(root / "meta.pth.tar", meta, {}, 0, meta.checkpoint_entries(0)),
            "tuned": save_checkpoint(root / "tuned.pth.tar", tuned, {}, 0, tuned.checkpoint_entries(0))}


@pytest.fixture(scope="module")
def models(checkpoints) -> dict[str, LatentPose]:
    return {"meta": _load(TINY, checkpoints["meta"]), "tuned": _load(TINY_FT, checkpoints["tuned"])}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """64 px crops: two source images of one person, three driving frames (names out of order on purpose)."""
    root = tmp_path_factory.mktemp("img")
    (root / "src").mkdir()
    (root / "drv").mkdir()
    for i, frame in enumerate(moving_square_video(2, 64, seed=3)):
        cv2.imwrite(str(root / "src" / f"s{i}.png"), frame[..., ::-1])
    for name, frame in zip(["b.png", "c.png", "a.png"], moving_square_video(3, 64, seed=4), strict=True):
        cv2.imwrite(str(root / "drv" / name), frame[..., ::-1])
    return {"src": root / "src", "drv": root / "drv"}


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def _tensor(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)


def _raw(folder: Path) -> torch.Tensor:
    """The files as infer hands them over with --no-crop: uint8 RGB / 255 at their own size."""
    return _tensor([cv2.imread(str(p))[..., ::-1].astype(np.float32) / 255.0 for p in _files(folder)])


def _official(folder: Path) -> torch.Tensor:
    return _tensor([read_cropped(p, 64) for p in _files(folder)])


def _drive(model, source, folders, out: Path, **kw) -> tuple[np.ndarray, dict]:
    record = animate_set(model, {"method": "latent_pose"}, source, folders["drv"], out, progress=False, **kw)
    assert json.loads(out.with_name(out.name + ".json").read_text()) == json.loads(json.dumps(record, default=str))
    return np.load(out), record


def test_a_finetuned_avatar_needs_no_source(models, folders, tmp_path, capsys):
    model = models["tuned"]
    assert model.holds_identity()
    frames, record = _drive(model, None, folders, tmp_path / "a.npy", no_crop=True)
    assert frames.shape == (3, 64, 64, 3) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    with torch.no_grad():
        direct = model.animate_sources(None, _raw(folders["drv"]))
    np.testing.assert_array_equal(frames, direct.permute(0, 2, 3, 1).numpy())  # drivers in sorted name order
    assert record["identity"] == "the checkpoint's own (fine-tuned)" and record["source"] is None
    assert record["crop"]["style"] == "none" and record["num_frames"] == 3
    again, record = _drive(model, folders["src"], folders, tmp_path / "b.npy", no_crop=True)
    np.testing.assert_array_equal(again, frames)  # the source is not used ...
    assert "is not used" in capsys.readouterr().err and record["sources"] == []  # ... and it is said


def test_a_meta_checkpoint_pools_the_source_images_and_no_crop_reads_as_load_cropped(models, folders, tmp_path):
    model = models["meta"]
    assert not model.holds_identity()
    frames, record = _drive(model, folders["src"], folders, tmp_path / "m.npy", no_crop=True)
    assert record["sources"] == ["s0.png", "s1.png"] and record["identity"] == "pooled over 2 source image(s)"
    with torch.no_grad():
        direct = model.animate_sources(_raw(folders["src"]), _raw(folders["drv"]))
        # by hand: the EMA networks on the official loader's read of the crops (load_cropped)
        embedder, generator = model.running_averages["embedder"], model.running_averages["generator"]
        identity = embedder.identity_embedding(_official(folders["src"])[None])[0]  # mean over both images
        pose = embedder.pose_embedding(_official(folders["drv"]))
        by_hand = generator(pose, identity.expand(3, -1)).fake_rgbs.clamp(0, 1)
        single = generator(pose, embedder.identity_embedding(_official(folders["src"])[:1, None])[0].expand(3, -1))
    np.testing.assert_array_equal(frames, direct.permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(frames, by_hand.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    assert not torch.allclose(single.fake_rgbs.clamp(0, 1), by_hand, atol=1e-7)  # both sources count
    pngs = animate_set(model, {"method": "latent_pose"}, folders["src"], folders["drv"], tmp_path / "pngs",
                       no_crop=True, progress=False)
    assert pngs["format"] == "png_dir" and sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [
        "0000000.png", "0000001.png", "0000002.png"]


def test_the_latent_pose_crop_cuts_every_image(models, folders, tmp_path, capsys):
    """Every driver is cut by the official procedure; frames without a face (the moving squares) are cut at the
    official fallback window, and the user is told how many (a note on stderr, counts in OUT.json)."""
    model = models["tuned"]
    frames, record = _drive(model, None, folders, tmp_path / "c.npy", detector="dlib")
    assert frames.shape == (3, 256, 256, 3) and record["crop"]["style"] == "latentpose"
    assert record["crop"]["detector"] == "dlib" and len(record["crop"]["driving_boxes"]) == 3
    assert record["crop"]["no_face"] == {"driving": 3}
    assert "no face found in 3 of 3 driving frame(s)" in capsys.readouterr().err
    from prep.detect import make_detector

    crops = [crop_frame(cv2.imread(str(p))[..., ::-1], make_detector("dlib"))[0] for p in _files(folders["drv"])]
    with torch.no_grad():
        direct = model.animate_sources(None, _tensor([c.astype(np.float32) / 255.0 for c in crops]))
    np.testing.assert_array_equal(frames, direct.permute(0, 2, 3, 1).numpy())


def _one_line_exit_2(capsys, argv: list[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_wrong_inputs_are_one_line_errors(models, checkpoints, folders, tmp_path, capsys):
    from plumbing.errors import AnimbenchError

    with pytest.raises(AnimbenchError, match="holds no identity"):
        animate_set(models["meta"], {"method": "latent_pose"}, None, folders["drv"], tmp_path / "x.npy",
                    no_crop=True, progress=False)
    with pytest.raises(AnimbenchError, match="no such file or folder"):
        animate_set(models["tuned"], {"method": "latent_pose"}, None, tmp_path / "none", tmp_path / "y.npy",
                    no_crop=True, progress=False)
    with pytest.raises(AnimbenchError, match="--detector: only for the latent-pose crop"):
        animate_set(models["tuned"], {"method": "latent_pose"}, None, folders["drv"], tmp_path / "z.npy",
                    no_crop=True, detector="dlib", progress=False)
    odd = tmp_path / "odd"
    odd.mkdir()
    for name, size in (("a.png", 64), ("b.png", 48)):
        cv2.imwrite(str(odd / name), np.zeros((size, size, 3), np.uint8))
    with pytest.raises(AnimbenchError, match="crop of one size"):
        animate_set(models["tuned"], {"method": "latent_pose"}, None, odd, tmp_path / "w.npy", no_crop=True,
                    progress=False)
    base = ["animate", "latent_pose", "--checkpoint", str(checkpoints["tuned"]), "--config", str(TINY_FT)]
    _one_line_exit_2(capsys, [*base, "--source", str(folders["src"]), "--out", str(tmp_path / "o.npy")],
                     "--driving")
    _one_line_exit_2(capsys, [*base, "--source", str(folders["src"]), "--driving", str(folders["drv"]), "--out",
                              str(tmp_path / "o.txt")], "expected a .mp4, .gif or .npy file")
    _one_line_exit_2(capsys, [*base, "--poses", str(folders["drv"]), "--out", str(tmp_path / "p.npy")],
                     "--poses is for pose-driven families")
    _one_line_exit_2(capsys, ["animate", "pose2img", "--poses", str(folders["drv"]), "--no-crop", "--out",
                              str(tmp_path / "q.npy")], "--no-crop is for video-driven families")


def test_no_crop_refuses_frames_that_are_not_square_crops(models, checkpoints, tmp_path, capsys):
    """A raw 4:3 video given with --no-crop was read as a crop of its left columns and the square output then
    stretched back to 4:3; a latent-pose crop is square, so such frames are a one-line error and no output."""
    wide = tmp_path / "wide"
    wide.mkdir()
    cv2.imwrite(str(wide / "a.png"), np.zeros((48, 64, 3), np.uint8))
    for model, source in ((models["tuned"], None), (models["meta"], wide)):
        with pytest.raises(AnimbenchError, match=r"64x48.*not a latent-pose crop \(square\)"):
            animate_set(model, {"method": "latent_pose"}, source, wide, tmp_path / "w.npy", no_crop=True,
                        progress=False)
        assert not (tmp_path / "w.npy").exists()
    base = ["animate", "latent_pose", "--checkpoint", str(checkpoints["tuned"]), "--config", str(TINY_FT),
            "--driving", str(wide), "--no-crop"]
    _one_line_exit_2(capsys, [*base, "--no-progress", "--out", str(tmp_path / "w.mp4")],
                     "not a latent-pose crop (square)")
    assert not (tmp_path / "w.mp4").exists()


def test_motion_flags_that_latent_pose_lacks_are_refused(checkpoints, folders, tmp_path, capsys):
    """Its pose code is absolute: --relative / --adapt-scale would change nothing yet were recorded as used."""
    base = ["animate", "latent_pose", "--checkpoint", str(checkpoints["tuned"]), "--config", str(TINY_FT),
            "--driving", str(folders["drv"]), "--no-crop", "--out", str(tmp_path / "r.npy")]
    for flag in ("--relative", "--adapt-scale"):
        _one_line_exit_2(capsys, [*base, flag], f"{flag}: latent_pose has no such setting")
        assert not (tmp_path / "r.npy").exists()
    assert main([*base, "--absolute", "--no-progress"]) == 0  # what it does anyway
    capsys.readouterr()
