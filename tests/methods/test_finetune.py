"""`animbench finetune`: the official iteration rule, a fine-tuning run end to end on two tiny crops (its identity
embedding = the mean EMA identity embedding of the images), and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from animbench.cli import main
from methods.checkpoints import save_checkpoint
from methods.finetune import default_iterations, finetune, iterations_rule
from methods.latent_pose import LatentPose
from plumbing.errors import AnimbenchError
from prep.latentpose_crop import read_cropped
from prep.store import FrameStore

from .tiny_store import make_store, moving_square_video

REPO = Path(__file__).resolve().parents[2]
TINY, TINY_FT = REPO / "configs/latent_pose-tiny.yaml", REPO / "configs/latent_pose-tiny-finetune.yaml"


@pytest.fixture(scope="module")
def meta(tmp_path_factory) -> Path:
    """A tiny meta checkpoint saved through the method's checkpoint path (random weights, running averages)."""
    torch.manual_seed(0)
    model = LatentPose.from_config(str(TINY))
    path = tmp_path_factory.mktemp("meta") / "meta.pth.tar"
    return save_checkpoint(path, model, {}, 0, model.checkpoint_entries(0))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Two 64 px images of one 'person' that already are crops."""
    folder = tmp_path_factory.mktemp("images")
    for i, frame in enumerate(moving_square_video(2, 64, seed=7)):
        cv2.imwrite(str(folder / f"face{i}.png"), frame[..., ::-1])
    return folder


@pytest.fixture(scope="module")
def frozen_config(tmp_path_factory) -> Path:
    """The tiny fine-tuning config with both learning rates 0: the step leaves the initial identity in place."""
    cfg = yaml.safe_load(TINY_FT.read_text())
    cfg["train_params"].update(lr_gen=0.0, lr_dis=0.0)
    path = tmp_path_factory.mktemp("cfg") / "latent_pose-tiny-finetune-frozen.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run(meta, images, frozen_config, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ft") / "run"
    record = finetune("latent_pose", meta, images, out, iters=1, config=frozen_config, crop="none", device="cpu",
                      progress=False)
    return out, record


def test_default_iterations_follow_the_official_rule():
    assert default_iterations(1) == 125 and default_iterations(31) == 230 and default_iterations(500) == 230
    assert default_iterations(17) == 181  # 125 + 16 * 105 / 30
    # README: B = min(N, MAX_BATCH_SIZE = 8), num_epochs = ceil(iters / floor(N / B))
    assert iterations_rule(1, 8) == {"iterations": 125, "batch_size": 1, "steps_per_epoch": 1, "num_epochs": 125,
                                     "steps": 125}
    assert iterations_rule(40, 8) == {"iterations": 230, "batch_size": 8, "steps_per_epoch": 5, "num_epochs": 46,
                                      "steps": 230}
    # batched_finetune.py: 560 iterations, batch min(N, 7); whole epochs may overshoot the target
    assert iterations_rule(10, 7, "paper") == {"iterations": 560, "batch_size": 7, "steps_per_epoch": 1,
                                              "num_epochs": 560, "steps": 560}
    assert iterations_rule(20, 7, "paper")["num_epochs"] == 280
    assert iterations_rule(3, 2, 5) == {"iterations": 5, "batch_size": 2, "steps_per_epoch": 1, "num_epochs": 5,
                                        "steps": 5}
    for bad in (0, -3, "many", True):
        with pytest.raises(AnimbenchError, match="--iters"):
            iterations_rule(3, 2, bad)


def test_finetune_writes_a_run_whose_identity_is_the_mean_ema_embedding(run, meta, images):
    out, record = run
    assert record["train"]["status"] == "complete" and record["train"]["steps"] == 1
    assert record["schedule"] == {"iterations": 1, "batch_size": 2, "steps_per_epoch": 1, "num_epochs": 1, "steps": 1}
    assert record["train"]["frozen_networks"] == ["embedder"] and record["train"]["init_from"]["path"] == str(meta)
    assert json.loads((out / "finetune.json").read_text())["num_images"] == 2
    store = FrameStore(out / "store")
    assert store.videos("train") == ["face0.png", "face1.png"] and store.mask_info is None
    assert np.array_equal(store.read("face1.png")[0], cv2.imread(str(images / "face1.png"))[..., ::-1])  # no crop

    # the direct computation: the meta checkpoint's EMA identity encoder, eval mode, on the loader's crops
    model = LatentPose.from_config(str(TINY))
    ckpt = torch.load(meta, weights_only=True)
    ema = model.running_averages["embedder"]
    ema.load_state_dict(ckpt["running_averages"]["embedder"])
    crops = torch.stack([torch.from_numpy(read_cropped(images / f"face{i}.png", 64)).permute(2, 0, 1)
                         for i in range(2)])
    with torch.no_grad():
        expected = ema.eval().identity_embedding(crops[:, None])[1][:, 0].mean(0, keepdim=True)  # (1, 64)
    tuned = torch.load(out / "last-checkpoint.pth.tar", weights_only=True)
    assert tuned["args"]["finetune"] is True
    # a random trunk's embeddings are small (~1e-8): compared relatively
    for value in (tuned["generator"]["identity_embedding"], tuned["running_averages"]["generator"]["identity_embedding"],
                  tuned["discriminator"]["embed.weight_orig"]):
        torch.testing.assert_close(value, expected, rtol=1e-4, atol=0.0)
    single = ema.identity_embedding(crops[:1, None])[0]
    assert float((single - expected).norm() / expected.norm()) > 1e-2  # the mean over both images matters


def _one_line_exit_2(capsys, argv: list[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_wrong_inputs_are_one_line_errors(capsys, meta, images, tmp_path, run):
    _one_line_exit_2(capsys, ["finetune", "fomm", "--checkpoint", str(meta), "--images", str(images), "--out",
                              str(tmp_path / "a")], "method fomm: has no fine-tuning stage")
    _one_line_exit_2(capsys, ["finetune", "latent_pose", "--checkpoint", str(meta), "--images", str(images),
                              "--config", str(TINY), "--out", str(tmp_path / "b")], "trains the 'meta' stage")
    _one_line_exit_2(capsys, ["finetune", "latent_pose", "--checkpoint", str(meta), "--images", str(tmp_path / "no"),
                              "--config", str(TINY_FT), "--out", str(tmp_path / "c")], "not a folder of images")
    _one_line_exit_2(capsys, ["finetune", "latent_pose", "--checkpoint", str(tmp_path / "none.pth"), "--images",
                              str(images), "--config", str(TINY_FT), "--out", str(tmp_path / "d")], "no such file")
    # the full config wants masks: none given -> said before any training
    _one_line_exit_2(capsys, ["finetune", "latent_pose", "--checkpoint", str(meta), "--images", str(images),
                              "--crop", "none", "--out", str(tmp_path / "e")], "dataset_params.use_masks: true")
    assert not (tmp_path / "e").exists()  # nothing half-made left behind
    _one_line_exit_2(capsys, ["finetune", "latent_pose", "--checkpoint", str(meta), "--images", str(images),
                              "--config", str(TINY_FT), "--out", str(run[0])], "exists and is not empty")
    two_people = make_store(tmp_path / "store", train=2, test=0, frames=1)
    _one_line_exit_2(capsys, ["finetune", "latent_pose", "--checkpoint", str(meta), "--images", str(two_people),
                              "--config", str(TINY_FT), "--out", str(tmp_path / "f")], "holds 2 people")
    _one_line_exit_2(capsys, ["finetune", "latent_pose", "--checkpoint", str(meta), "--images", str(two_people),
                              "--crop", "none", "--config", str(TINY_FT), "--out", str(tmp_path / "g")],
                     "is a frame store, used as it is")


def test_images_without_a_face_are_named_when_cropped(tmp_path, capsys):
    """The official crop falls back to the window (0, 0, 200, 200) when the detector finds no face: the run goes
    on as officially, but the user is told which images had no face (they would train the avatar on background)."""
    from methods.finetune import write_image_store

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("wall.png", "floor.png"):
        cv2.imwrite(str(folder / name), np.full((96, 96, 3), 128, np.uint8))
    prepared = write_image_store(folder, tmp_path / "store", crop="latentpose", detector="dlib")
    err = capsys.readouterr().err
    assert "no face found in 2 of 2 image(s) (floor.png, wall.png)" in err, err
    assert prepared["no_face"] == ["floor.png", "wall.png"]
    assert FrameStore(tmp_path / "store").videos("train") == ["floor.png", "wall.png"]


def test_a_mask_file_of_another_shape_is_an_error(tmp_path):
    """A mask is resized to its image when only its size differs; a mask of another aspect ratio is the wrong
    file (it was stretched over the image without a word)."""
    from methods.finetune import write_image_store

    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    cv2.imwrite(str(photos / "me.png"), np.full((64, 64, 3), 128, np.uint8))
    cv2.imwrite(str(masks / "me.png"), np.full((32, 32), 255, np.uint8))  # half size: resized
    store = write_image_store(photos, tmp_path / "ok", crop="none", masks=str(masks))
    assert store["masks"] is not None and FrameStore(tmp_path / "ok").videos("train") == ["me.png"]
    cv2.imwrite(str(masks / "me.png"), np.full((100, 80), 255, np.uint8))
    with pytest.raises(AnimbenchError, match=r"me\.png: 80x100, its image me\.png is 64x64"):
        write_image_store(photos, tmp_path / "bad", crop="none", masks=str(masks))
