"""pose2img (Everybody Dance Now): official state-dict layout, stage transfer, autoregressive generation,
checkpoints that reproduce outputs in a fresh process, and training (loss goes down, batch 4, face stage)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from methods.checkpoints import load_into, save_checkpoint
from methods.registry import get_method, load_config
from methods.train import make_optimizers, train, train_batch
from plumbing.errors import AnimbenchError
from prep.poses.format import PoseFrame
from prep.store import FrameStore, FrameStoreWriter

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "pose2img-tiny.yaml"
OFFICIAL = {"G": "generator", "D": "discriminator", "Gface": "face_generator", "Dface": "face_discriminator"}


def tiny_config(stage: str = "global", **train_params) -> dict:
    """The tiny config, as another stage: local = a local enhancer + 3-scale D, face = local + face networks."""
    raw = load_config(TINY, method="pose2img")
    raw.pop("_meta")
    cfg = copy.deepcopy(raw)
    cfg["model_params"]["stage"] = stage
    if stage in ("local", "face"):
        cfg["model_params"]["generator_params"].update(netG="local", ngf=4, n_local_enhancers=1, n_blocks_local=1)
        cfg["model_params"]["discriminator_params"]["num_D"] = 3
    if stage == "face":
        cfg["model_params"]["face_params"] = {"face_generator": True, "face_discrim": True, "faceGtype": "global",
                                              "ngf": 8, "n_downsample": 2, "n_blocks": 1}
        cfg["train_params"]["niter_fix_main"] = 1
    cfg["train_params"].update(train_params)
    return load_config(cfg, method="pose2img")


def build(cfg: dict, seed: int = 0):
    torch.manual_seed(seed)
    return get_method("pose2img").build(cfg, True)


def random_batch(batch: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(batch, 2, 3, size, size, generator=g) > 0.8).float()
    images = torch.rand(batch, 2, 3, size, size, generator=g) * 2 - 1
    return labels, images


# --- the official layout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["global", "local", "face"])
def test_state_dicts_equal_the_official_files(shared_dir, stage):
    cfg = load_config(REPO / "configs" / f"pose2img-edn-{stage}.yaml", method="pose2img")
    with torch.device("meta"):  # the full-size networks (182 M parameters), without memory or init time
        model = get_method("pose2img").build(cfg, True)
    ours = {(short, key): tuple(v.shape) for short, name in OFFICIAL.items() if name in model.networks
            for key, v in getattr(model, name).state_dict().items()}
    official = {}
    for line in (shared_dir / "reference" / "state-dicts" / f"edn_{stage}.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            net, key, shape = line.split(" ", 2)
            official[(net, key)] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    assert ours == official
    assert list(model.official_files()) == [f"latest_net_{s}.pth" for s, n in OFFICIAL.items() if n in model.networks]


def test_global_weights_load_into_the_local_enhancer(tmp_path):
    global_model = build(tiny_config("global"), seed=1)
    cfg = tiny_config("local")
    cfg["model_params"]["generator_params"]["ngf"] = 4  # its global part: ngf 8, as the tiny global stage
    local_model = build(load_config({k: v for k, v in cfg.items() if k != "_meta"}, method="pose2img"), seed=2)
    folder = tmp_path / "global_run"
    folder.mkdir()
    for name, state in global_model.official_files().items():
        torch.save(state, folder / name)
    before = {k: v.clone() for k, v in local_model.generator.state_dict().items()}
    local_model.load_pretrained(folder)
    after = local_model.generator.state_dict()
    source = global_model.generator.state_dict()
    global_part = [k for k in after if k.startswith("model.")]
    assert global_part and all(torch.equal(after[k], source[k]) for k in global_part)
    assert all(torch.equal(after[k], before[k]) for k in after if not k.startswith("model."))  # enhancer kept
    # the 2-scale D's scales load into the 3-scale D's matching ones
    d_after, d_source = local_model.discriminator.state_dict(), global_model.discriminator.state_dict()
    assert all(torch.equal(d_after[k], d_source[k]) for k in d_source)


# --- generation ------------------------------------------------------------------------------------------------


def _generator_inputs(model) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.generator.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    return seen


@pytest.mark.parametrize("stage", ["global", "face"])
def test_generate_conditions_on_zeros_then_the_previous_raw_output(stage, one_torch_thread):
    model = build(tiny_config(stage))
    labels = random_batch(2)[0].reshape(4, 3, 64, 64)
    boxes = torch.tensor([[4, 20, 10, 26], [6, 22, 12, 28], [-1, -1, -1, -1], [40, 56, 30, 46]])
    seen = _generator_inputs(model)
    outputs, last = model.generate(labels, boxes if stage == "face" else None)
    assert outputs.shape == (4, 3, 64, 64) and torch.equal(last, outputs[-1:])
    assert len(seen) == 4 and torch.equal(seen[0][:, 3:], torch.zeros(1, 3, 64, 64))
    for t in range(1, 4):
        assert torch.equal(seen[t][:, :3], labels[t:t + 1])
        assert torch.equal(seen[t][:, 3:], outputs[t - 1:t])  # the raw output, face residual included
    with torch.no_grad():  # the same frames by hand: G(cat(x_t, prev)) (+ the face residual at the box)
        prev = torch.zeros(1, 3, 64, 64)
        for t in range(4):
            raw = model.generator(torch.cat([labels[t:t + 1], prev], 1))
            if stage == "face" and t != 2:
                raw = model._with_face(labels[t:t + 1], raw, boxes[t:t + 1])
            assert torch.equal(raw, outputs[t:t + 1])
            prev = raw
    if stage == "face":  # the residual changes the face box only
        raw0 = model.generator(torch.cat([labels[:1], torch.zeros(1, 3, 64, 64)], 1)).detach()
        inside = torch.zeros(64, 64, dtype=torch.bool)
        inside[4:20, 10:26] = True
        diff = (outputs[0] - raw0[0]).abs().amax(0)
        assert diff[~inside].max() == 0 and diff[inside].max() > 0
    # streamed in two calls with `previous` carried: the same frames
    first, prev = model.generate(labels[:2], boxes[:2] if stage == "face" else None)
    second, _ = model.generate(labels[2:], boxes[2:] if stage == "face" else None, previous=prev)
    assert torch.equal(torch.cat([first, second]), outputs)


def test_face_stage_needs_boxes_and_video_protocols_say_use_poses():
    model = build(tiny_config("face"))
    with pytest.raises(AnimbenchError, match="face box"):
        model.generate(torch.zeros(2, 3, 64, 64))
    with pytest.raises(AnimbenchError, match="face box"):
        model.generate(torch.zeros(1, 3, 64, 64), torch.tensor([[60, 76, 0, 16]]))
    with pytest.raises(AnimbenchError, match="driven by poses"):
        model.reconstruct(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))
    with pytest.raises(AnimbenchError, match="driven by poses"):
        model.animate(torch.zeros(3, 64, 64), torch.zeros(2, 3, 64, 64))


def test_config_errors_name_the_key(tmp_path):
    cfg = tiny_config()
    cfg.pop("_meta")
    bad = copy.deepcopy(cfg)
    bad["model_params"]["generator_params"]["n_blocks"] = 3
    with pytest.raises(AnimbenchError, match="n_blocks"):
        load_config(bad, method="pose2img")
    bad = copy.deepcopy(cfg)
    bad["model_params"]["generator_params"]["label_nc"] = 3
    with pytest.raises(AnimbenchError, match="label_nc"):
        load_config(bad, method="pose2img")
    bad = copy.deepcopy(cfg)
    bad["dataset_params"].update(resize_or_crop="scale_width", load_size=66)  # 66x66: not a multiple of 4
    with pytest.raises(AnimbenchError, match="multiple of 4"):
        load_config(bad, method="pose2img")


# --- checkpoints in a fresh process ----------------------------------------------------------------------------

_FRESH = """
import sys, torch
torch.set_num_threads(1)
from methods.registry import load_config
from methods.checkpoints import load_into
from methods.registry import get_method
cfg_path, ckpt, inputs, out = sys.argv[1:5]
model = get_method("pose2img").build(load_config(cfg_path, method="pose2img"), True)
load_into(model, model.read_checkpoint(ckpt), strict=True)
data = torch.load(inputs, weights_only=True)
torch.save(model.generate(data["labels"], data["boxes"])[0], out)
"""


def test_checkpoints_reproduce_outputs_bit_for_bit_in_a_fresh_process(tmp_path, one_torch_thread):
    cfg = tiny_config("face")
    cfg_path = tmp_path / "face.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k != "_meta"}))
    model = build(load_config(cfg_path, method="pose2img"), seed=3)
    with torch.no_grad():  # non-trivial running statistics in the face D, saved with it
        model.face_discriminator(torch.rand(2, 6, 16, 16))
    labels = random_batch(2, seed=4)[0].reshape(4, 3, 64, 64)
    boxes = torch.tensor([[4, 20, 10, 26], [6, 22, 12, 28], [8, 24, 14, 30], [40, 56, 30, 46]])
    expected, _ = model.generate(labels, boxes)
    torch.save({"labels": labels, "boxes": boxes}, tmp_path / "inputs.pt")
    ours = save_checkpoint(tmp_path / "ckpt.pth.tar", model, None, 0)
    official = tmp_path / "official"
    official.mkdir()
    for name, state in model.official_files().items():
        torch.save(state, official / name)
    assert sorted(p.name for p in official.iterdir()) == [
        "latest_net_D.pth", "latest_net_Dface.pth", "latest_net_G.pth", "latest_net_Gface.pth"]
    for ckpt in (ours, official, official / "latest_net_G.pth"):
        out = tmp_path / "out.pt"
        subprocess.run([sys.executable, "-c", _FRESH, str(cfg_path), str(ckpt), str(tmp_path / "inputs.pt"),
                        str(out)], check=True, cwd=REPO, timeout=120)
        assert torch.equal(torch.load(out, weights_only=True), expected), ckpt
    # every network (and the face D's BatchNorm statistics) comes back from the official folder
    fresh = build(load_config(cfg_path, method="pose2img"), seed=9)
    load_into(fresh, fresh.read_checkpoint(official), strict=True)
    for name in model.networks:
        a, b = getattr(model, name).state_dict(), getattr(fresh, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    (official / "latest_net_G.pth").unlink()
    with pytest.raises(AnimbenchError, match="latest_net_G.pth missing"):
        fresh.read_checkpoint(official)


# --- training --------------------------------------------------------------------------------------------------


def test_training_steps_lower_the_loss(one_torch_thread):
    cfg = tiny_config("global")
    model = build(cfg)
    optimizers = make_optimizers(model, cfg)
    assert set(optimizers) == {"generator", "discriminator"}
    labels, _ = random_batch(2)
    images = labels[:, :, [2, 0, 1]] * 1.6 - 0.8  # a colour mapping of the skeleton: learnable
    box = torch.zeros(2, 4, dtype=torch.int64)
    history = [train_batch(model, optimizers, (labels, images, box)) for _ in range(6)]
    assert set(history[0]) == {"G_GAN", "G_GAN_Feat", "G_VGG", "D_fake", "D_real"}
    reconstruction = [h["G_VGG"] for h in history]
    assert all(b < a for a, b in zip(reconstruction[:-1], reconstruction[1:], strict=True))  # each step lowers it
    generator_side = [h["G_GAN"] + h["G_GAN_Feat"] + h["G_VGG"] for h in history]
    assert generator_side[-1] < 0.9 * generator_side[0]
    assert all(np.isfinite(list(h.values())).all() for h in history)


def test_batch_of_4_trains_the_face_stage_with_a_box_per_sample(one_torch_thread):
    cfg = tiny_config("face")
    model = build(cfg)
    optimizers = make_optimizers(model, cfg)
    assert set(optimizers) == {"face_generator", "discriminator", "face_discriminator"}
    labels, images = random_batch(4, seed=5)
    boxes = torch.tensor([[0, 16, 0, 16], [10, 26, 30, 46], [48, 64, 48, 64], [20, 36, 5, 21]])
    frozen = model.frozen_networks(cfg, 0)
    assert frozen == {"discriminator"} and model.frozen_networks(cfg, 1) == set()
    before = {n: {k: v.clone() for k, v in getattr(model, n).state_dict().items()} for n in model.networks}
    losses = train_batch(model, optimizers, (labels, images, boxes), frozen=frozen)
    assert {"G_GANface", "D_fakeface", "D_realface"} <= set(losses)
    changed = {n for n in model.networks
               if any(not torch.equal(v, before[n][k]) for k, v in getattr(model, n).state_dict().items())}
    assert changed == {"face_generator", "face_discriminator"}  # main G frozen, main D waits niter_fix_main
    # the residual lands in each sample's own box
    _, outputs = model.generator_step(labels, images, boxes)
    with torch.no_grad():
        raw = model.generator(torch.cat([labels[:, 0], torch.zeros_like(labels[:, 0])], 1))
    diff = (outputs["fake_0"].detach() - raw).abs().amax(1)
    for i, (y0, y1, x0, x1) in enumerate(boxes.tolist()):
        inside = torch.zeros(64, 64, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert diff[i][~inside].max() == 0 and diff[i][inside].max() > 0


# --- from a frame store with poses -----------------------------------------------------------------------------


def _pose(t: int, shift: int) -> PoseFrame:
    """A COCO-18 stick figure in 64x64 frame pixels, waving its arms."""
    body = np.zeros((18, 3), np.float32)
    joints = {0: (32, 12), 1: (32, 20), 2: (26, 20), 3: (22, 28 - t), 4: (20, 34 - 2 * t), 5: (38, 20),
              6: (42, 28 + t), 7: (44, 34 + 2 * t), 8: (28, 36), 9: (28, 46), 10: (28, 56), 11: (36, 36),
              12: (36, 46), 13: (36, 56), 14: (30, 10), 15: (34, 10), 16: (28, 11), 17: (36, 11)}
    for j, (x, y) in joints.items():
        body[j] = (x + shift, y, 0.9)
    zeros = np.zeros
    return PoseFrame(body, zeros((70, 3), np.float32), zeros((21, 3), np.float32), zeros((21, 3), np.float32))


def posed_store(root: Path, videos: int = 2, frames: int = 4) -> FrameStore:
    from prep.poses.render import render_label

    with FrameStoreWriter(root, {"recipe": "tests.pose2img"}, poses_source="tests") as writer:
        for v in range(videos):
            poses = {t: _pose(t, shift=4 * v) for t in range(frames)}
            clips = [255 - render_label(p, (64, 64), (64, 64), canvas_size=(64, 64)) for p in poses.values()]
            writer.add_video(f"v{v}", np.stack(clips), poses=poses, split="train", fps=25.0)
    return FrameStore(root)


def test_training_dataset_and_a_run_from_a_store_with_poses(tmp_path, one_torch_thread):
    store = posed_store(tmp_path / "store")
    model = build(tiny_config("face"))
    data = model.training_dataset(store, model.config, num_repeats=1, seed=0, transform=None)
    assert len(data) == 2 * 3  # consecutive posed frames (t, t+1), the last frame without successor
    item = data[4]
    assert item["labels"].shape == (2, 3, 64, 64) and item["images"].shape == (2, 3, 64, 64)
    assert 0 <= float(item["labels"].min()) and float(item["labels"].max()) <= 1
    assert -1 <= float(item["images"].min()) and float(item["images"].max()) <= 1
    miny, maxy, minx, maxx = item["face_box"].tolist()
    assert (maxy - miny, maxx - minx) == (16, 16)
    label, box = model.pose_condition(_pose(1, 4), (64, 64))
    assert torch.equal(model.label_tensor(label), item["labels"][0]) and list(box) == item["face_box"].tolist()
    summary = train("pose2img", store, TINY, tmp_path / "run", max_steps=2, batch_size=2, progress=False,
                    device="cpu", amp="off")
    assert summary["status"] == "complete" and summary["steps"] == 2
    assert (tmp_path / "run" / "latest_net_G.pth").is_file() and (tmp_path / "run" / "latest_net_D.pth").is_file()
    fresh = build(tiny_config("global"), seed=5)
    load_into(fresh, fresh.read_checkpoint(tmp_path / "run"), strict=True)
    ours = fresh.read_checkpoint(tmp_path / "run" / "last-checkpoint.pth.tar")
    assert all(torch.equal(v, ours["generator"][k]) for k, v in fresh.generator.state_dict().items())
