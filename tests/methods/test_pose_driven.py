"""The generic paths of pose-driven families, with a small real pose-driven method defined here (no method named):
the loop's discriminator side, frozen networks, pix2pixHD's linear decay across resume, --init-from, official
files; the generation path (generate_poses, store_pose_frames) and `animbench animate --poses` on label maps,
OpenPose files and a store; the wrong-inputs errors."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from animbench.cli import main
from methods import registry
from methods.checkpoints import folder_sha256, load_checkpoint, read_torch_file
from methods.config import LEAF, ConfigSpec
from methods.infer_pose import generate_poses, store_pose_frames
from methods.interface import Method, scale_box
from methods.registry import MethodCard, load_config, load_model, register_method
from methods.train import find_last_checkpoint, linear_decay, make_optimizers, train, train_batch
from plumbing.errors import AnimbenchError
from prep.poses.format import PoseFrame
from prep.poses.render import face_box
from prep.store import FrameStore, FrameStoreWriter

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAME = "tiny-pose"
OFFICIAL = {"generator": "G", "discriminator": "D", "face_generator": "Gface", "face_discriminator": "Dface"}
FRAME_W, FRAME_H = 64, 32


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def _crop(x: torch.Tensor, box: list[int]) -> torch.Tensor:
    return x[:, :, box[0]:box[1], box[2]:box[3]]


class PosePairs(torch.utils.data.Dataset):
    """Consecutive posed frames (t, t + 1) of the store's train videos, rendered with the model's hooks."""

    def __init__(self, model: TinyPose, store: FrameStore):
        self.model, self.store, self.videos = model, store, store.videos("train")
        self.poses = {v: store.poses(v) for v in self.videos}
        self.items = [(v, a, b) for v in self.videos
                      for a, b in zip(sorted(self.poses[v])[:-1], sorted(self.poses[v])[1:], strict=True)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        vid, a, b = self.items[i]
        info = self.store.info(vid)
        size = (int(info["width"]), int(info["height"]))
        frames = self.store.read(vid, [a, b])
        labels, boxes = zip(*(self.model.pose_condition(self.poses[vid][k], size) for k in (a, b)), strict=True)
        images = [torch.from_numpy(self.model.pose_target(f).copy()).permute(2, 0, 1).float() / 127.5 - 1
                  for f in frames]
        return {"labels": torch.stack([self.model.label_tensor(x) for x in labels]), "images": torch.stack(images),
                "face_box": torch.tensor(boxes[0] or (0, 8, 0, 8), dtype=torch.int64)}


class TinyPose(Method):
    """A two-stage pose-to-image family in miniature: G(label, previous) with a face residual in its face stage,
    a pair discriminator and a face discriminator (LSGAN), official per-network files."""

    driven_by = "poses"
    stages = ("base", "face")
    discriminators = ("discriminator", "face_discriminator")
    required_entries = ("generator",)
    label_size, canvas_size, generator_size, face_box_size = (64, 32), (64, 32), (32, 16), 8

    def __init__(self, stage: str = "base", channels: int = 8, d_channels: int = 8):
        super().__init__()
        self.stage = stage
        self.generator = nn.Sequential(_conv(6, channels), nn.ReLU(), _conv(channels, 3), nn.Tanh())
        self.discriminator = nn.Sequential(_conv(12, d_channels), nn.LeakyReLU(0.2), _conv(d_channels, 1))
        self.face_generator = self.face_discriminator = None
        if stage == "face":
            self.face_generator = nn.Sequential(_conv(6, channels), nn.ReLU(), _conv(channels, 3))
            self.face_discriminator = nn.Sequential(_conv(6, d_channels), nn.LeakyReLU(0.2), _conv(d_channels, 1))
        self.networks = tuple(n for n in OFFICIAL if getattr(self, n) is not None)

    @classmethod
    def from_config(cls, cfg: dict, align_corners: bool = True) -> TinyPose:
        mp = cfg["model_params"]
        return cls(cfg["train_params"].get("stage", "base"), mp["channels"], mp.get("d_channels", mp["channels"]))

    def _frame(self, label: torch.Tensor, prev: torch.Tensor, box: list[int] | None) -> torch.Tensor:
        out = self.generator(torch.cat([label, prev], 1))
        if self.face_generator is not None and box is not None and box[0] >= 0:
            out = out.clone()
            face = _crop(out, box) + self.face_generator(torch.cat([_crop(label, box), _crop(out, box)], 1))
            out[:, :, box[0]:box[1], box[2]:box[3]] = face
        return out

    def generate(self, labels, face_boxes=None, previous=None):
        prev = torch.zeros_like(labels[:1]) if previous is None else previous
        outs = []
        for t in range(labels.shape[0]):
            prev = self._frame(labels[t:t + 1], prev, None if face_boxes is None else face_boxes[t].tolist())
            outs.append(prev)
        return torch.cat(outs), prev

    @property
    def uses_gan(self) -> bool:
        return True

    def training_stage(self, cfg):
        return cfg["train_params"].get("stage", "base")

    def learning_rates(self, cfg, stage="base"):
        lr = float(cfg["train_params"]["lr"])
        trained = ("generator", "discriminator") if stage == "base" else self.networks[1:]
        return {n: lr for n in trained}

    def frozen_networks(self, cfg, epoch):
        return {"discriminator"} if self.stage == "face" and epoch < cfg["train_params"].get("niter_fix_main", 0) \
            else set()

    def training_dataset(self, store, cfg, *, num_repeats, seed, transform):
        return PosePairs(self, store)

    def step_inputs(self, batch):
        return batch["labels"], batch["images"], batch["face_box"]

    def generator_step(self, labels, images, face_box):
        box = face_box[0].tolist()
        i0 = self._frame(labels[:, 0], torch.zeros_like(labels[:, 0]), box)
        i1 = self._frame(labels[:, 1], i0, box)
        fake = torch.cat([labels[:, 0], labels[:, 1], i0, i1], 1)
        losses = {"l1": (i0 - images[:, 0]).abs().mean() + (i1 - images[:, 1]).abs().mean(),
                  "gan": ((self.discriminator(fake) - 1) ** 2).mean()}
        if self.face_discriminator is not None:
            pair = torch.cat([_crop(labels[:, 1], box), _crop(i1, box)], 1)
            losses["gan_face"] = ((self.face_discriminator(pair) - 1) ** 2).mean()
        return losses, {"i0": i0, "i1": i1, "box": box}

    def discriminator_step(self, labels, images, face_box, outputs):
        i0, i1, box = outputs["i0"].detach(), outputs["i1"].detach(), outputs["box"]
        real = torch.cat([labels[:, 0], labels[:, 1], images[:, 0], images[:, 1]], 1)
        fake = torch.cat([labels[:, 0], labels[:, 1], i0, i1], 1)
        losses = {"d_real": ((self.discriminator(real) - 1) ** 2).mean(), "d_fake": (self.discriminator(fake) ** 2).mean()}
        if self.face_discriminator is not None:
            real_face = torch.cat([_crop(labels[:, 1], box), _crop(images[:, 1], box)], 1)
            fake_face = torch.cat([_crop(labels[:, 1], box), _crop(i1, box)], 1)
            losses["d_face"] = ((self.face_discriminator(real_face) - 1) ** 2).mean() + \
                (self.face_discriminator(fake_face) ** 2).mean()
        return losses

    def official_files(self):
        return {f"latest_net_{OFFICIAL[n]}.pth": getattr(self, n).state_dict() for n in self.networks}

    def read_checkpoint(self, path):
        path = Path(path)
        if not path.is_dir():
            return super().read_checkpoint(path)
        ckpt = {n: read_torch_file(path / f"latest_net_{s}.pth") for n, s in OFFICIAL.items()
                if (path / f"latest_net_{s}.pth").is_file()}
        if "generator" not in ckpt:
            raise AnimbenchError(f"checkpoint {path}: latest_net_G.pth missing")
        return ckpt


SCHEMA = {"method": LEAF, "model_params": {"channels": LEAF, "d_channels": LEAF},
          "train_params": {k: LEAF for k in ("stage", "lr", "num_epochs", "niter", "niter_decay", "niter_fix_main",
                                             "batch_size", "num_repeats", "checkpoint_freq", "epoch_milestones")}}


@pytest.fixture()
def tiny_pose(monkeypatch):
    """TinyPose registered as `tiny-pose` for this test only."""
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    register_method(MethodCard(name=NAME, paper="test", family="pose-test", build=TinyPose.build,
                               config_spec=ConfigSpec(SCHEMA, ("model_params.channels",))))
    return TinyPose


def _config(tmp_path: Path, name: str = "cfg", **train: Any) -> Path:
    cfg = {"method": NAME, "model_params": {"channels": train.pop("channels", 8),
                                            "d_channels": train.pop("d_channels", 8)},
           "train_params": {"lr": 0.01, "batch_size": 2, "num_repeats": 1, "checkpoint_freq": 1, **train}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _pose(t: int) -> PoseFrame:
    """A BODY_25 figure walking right: nose, neck, shoulders, hips, knees, in a 64x32 frame's pixels."""
    body = np.zeros((25, 3), np.float32)
    x = 16 + 3 * t
    for joint, (dx, y) in {0: (0, 5), 1: (0, 9), 2: (-4, 10), 5: (4, 10), 8: (0, 18), 9: (-3, 18), 12: (3, 18),
                           10: (-3, 25), 13: (3, 25)}.items():
        body[joint] = (x + dx, y, 0.9)
    return PoseFrame(body, np.zeros((70, 3)), np.zeros((21, 3)), np.zeros((21, 3)))


def _frames(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.full((n, FRAME_H, FRAME_W, 3), rng.integers(20, 80, 3), np.uint8)
    for t in range(n):
        frames[t, 4:28, 12 + 3 * t:20 + 3 * t] = rng.integers(120, 255, 3)
    return frames


@pytest.fixture(scope="module")
def pose_store(tmp_path_factory) -> Path:
    """Two train videos and one test video of 5 posed 64x32 frames (test frame 2 has no pose)."""
    root = tmp_path_factory.mktemp("poses") / "store"
    with FrameStoreWriter(root, {"recipe": "tests.pose_store"}, poses_source="tests") as w:
        for i, split in enumerate(("train", "train", "test")):
            poses = {t: _pose(t) for t in range(5) if not (split == "test" and t == 2)}
            w.add_video(f"{split}{i}", _frames(5, i), split=split, fps=10.0, poses=poses,
                        pose_skipped={2: "no person"} if split == "test" else None)
    return root


def _batch(model: TinyPose, store: Path) -> tuple[torch.Tensor, ...]:
    data = PosePairs(model, FrameStore(store))
    return model.step_inputs(torch.utils.data.default_collate([data[0], data[1]]))


def _params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# --- the loop ---------------------------------------------------------------------------------------------


def test_train_batch_steps_the_generator_side_then_the_discriminators(tiny_pose, pose_store, tmp_path):
    torch.manual_seed(0)
    model = TinyPose("base")
    cfg = load_config(_config(tmp_path), method=NAME)
    reference = copy.deepcopy(model)
    inputs = _batch(model, pose_store)
    values = train_batch(model, make_optimizers(model, cfg), inputs)
    assert set(values) == {"l1", "gan", "d_real", "d_fake"}
    # by hand: generator losses -> G steps; then D's gradients from the D losses alone -> D steps
    opt_g = torch.optim.Adam(reference.generator.parameters(), lr=0.01, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(reference.discriminator.parameters(), lr=0.01, betas=(0.5, 0.999))
    losses, outputs = reference.generator_step(*inputs)
    sum(losses.values()).backward()
    opt_g.step()
    opt_d.zero_grad(set_to_none=True)
    sum(reference.discriminator_step(*inputs, outputs).values()).backward()
    opt_d.step()
    for name in ("generator", "discriminator"):
        assert _same(_params(getattr(model, name)), _params(getattr(reference, name))), name


def test_frozen_networks_and_networks_without_an_optimiser_do_not_move(tiny_pose, pose_store, tmp_path):
    torch.manual_seed(0)
    model = TinyPose("face")
    cfg = load_config(_config(tmp_path, stage="face", niter_fix_main=1), method=NAME)
    optimizers = make_optimizers(model, cfg)
    assert set(optimizers) == {"face_generator", "discriminator", "face_discriminator"}
    assert not any(p.requires_grad for p in model.generator.parameters())  # no optimiser: frozen
    before = {n: _params(getattr(model, n)) for n in model.networks}
    train_batch(model, optimizers, _batch(model, pose_store), frozen=model.frozen_networks(cfg, 0))
    moved = {n for n in model.networks if not _same(before[n], _params(getattr(model, n)))}
    assert moved == {"face_generator", "face_discriminator"}  # the main D waits niter_fix_main epochs
    assert optimizers["discriminator"].state == {}
    train_batch(model, optimizers, _batch(model, pose_store), frozen=model.frozen_networks(cfg, 1))
    assert not _same(before["discriminator"], _params(model.discriminator))


def test_linear_decay_per_epoch_and_across_resume(tiny_pose, pose_store, tmp_path):
    cfg = _config(tmp_path, niter=2, niter_decay=3)  # no num_epochs: niter + niter_decay = 5
    kwargs = dict(log_every=0, progress=False, batch_size=8)  # 8 pairs: one step per epoch
    straight = train(NAME, pose_store, cfg, tmp_path / "straight", **kwargs)
    assert straight["schedule"]["epochs"] == 5 and straight["steps"] == 5
    assert straight["schedule"]["lr_schedule"] == {"kind": "linear_decay", "niter": 2, "niter_decay": 3}
    # the lr each epoch trained at, as pix2pixHD (update_learning_rate after every epoch > niter, 1-based):
    official, lr = [], 0.01
    for epoch in range(1, 6):
        official.append(lr)
        if epoch > 2:
            lr -= 0.01 / 3
    assert [0.01 * linear_decay(2, 3)(e) for e in range(5)] == pytest.approx(official, abs=1e-12)
    saved = [load_checkpoint(tmp_path / "straight" / f"{e:08d}-checkpoint.pth.tar", required=("generator",))
             for e in range(5)]  # saved after the epoch's scheduler step: the next epoch's lr
    for name in ("generator", "discriminator"):
        assert [c[f"optimizer_{name}"]["param_groups"][0]["lr"] for c in saved] == \
            pytest.approx(official[1:] + [0.0], abs=1e-12)
    train(NAME, pose_store, cfg, tmp_path / "split", max_steps=3, **kwargs)
    resumed = train(NAME, pose_store, cfg, tmp_path / "split", resume=True, **kwargs)
    assert resumed["resumed_from"]["epoch"] == 3 and resumed["steps"] == 5
    a = load_checkpoint(find_last_checkpoint(tmp_path / "straight"), required=("generator",))
    b = load_checkpoint(find_last_checkpoint(tmp_path / "split"), required=("generator",))
    assert b["optimizer_generator"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    for net in ("generator", "discriminator"):
        for key, value in a[net].items():
            assert torch.equal(value, b[net][key]), f"{net}.{key}"


def test_schedule_errors(tiny_pose, pose_store, tmp_path):
    with pytest.raises(AnimbenchError, match="epoch_milestones and niter_decay both set"):
        train(NAME, pose_store, _config(tmp_path, niter=1, niter_decay=1, epoch_milestones=[1]), tmp_path / "a")
    with pytest.raises(AnimbenchError, match="train_params.niter: expected a whole number"):
        train(NAME, pose_store, _config(tmp_path, niter_decay=2), tmp_path / "b")


def test_official_files_init_from_and_folder_checkpoints(tiny_pose, pose_store, tmp_path):
    base = tmp_path / "base"
    summary = train(NAME, pose_store, _config(tmp_path, num_epochs=1), base, log_every=0, progress=False)
    files = sorted(p.name for p in base.iterdir() if p.name.startswith("latest_net"))
    assert files == ["latest_net_D.pth", "latest_net_G.pth"]
    assert not [p for p in base.iterdir() if p.name.startswith(".")]  # atomic: no temp files left
    ckpt = load_checkpoint(base / "last-checkpoint.pth.tar", required=("generator",))
    for name, short in (("generator", "G"), ("discriminator", "D")):
        state = read_torch_file(base / f"latest_net_{short}.pth")  # weights_only
        assert state.keys() == ckpt[name].keys() and all(torch.equal(state[k], ckpt[name][k]) for k in state)
        assert summary["official_files"][f"latest_net_{short}.pth"] == \
            hashlib.sha256((base / f"latest_net_{short}.pth").read_bytes()).hexdigest()
    # the run folder is a checkpoint: read_checkpoint reads the official files; its sha256 is the folder digest
    model, prov = load_model(NAME, checkpoint=base, config=_config(tmp_path, num_epochs=1))
    assert prov["checkpoint"]["sha256"] == folder_sha256(sorted(base.glob("*.pth")))
    assert torch.equal(model.generator[0].weight, ckpt["generator"]["0.weight"])
    # the face stage starts from it: matching keys AND shapes only (the narrower D keeps all but its last bias)
    torch.manual_seed(0)
    fresh = TinyPose("face", d_channels=4)
    face_cfg = _config(tmp_path, "face", stage="face", num_epochs=1, d_channels=4)
    report = fresh.load_pretrained(base)
    assert report["absent"] == ["face_generator", "face_discriminator"]
    assert report["networks"]["generator"] == {"loaded": 4, "skipped": [], "not_loaded": []}
    assert report["networks"]["discriminator"]["loaded"] == 1
    assert report["networks"]["discriminator"]["not_loaded"] == ["0.bias", "0.weight", "2.weight"]
    assert torch.equal(fresh.generator[2].bias, ckpt["generator"]["2.bias"])
    assert torch.equal(fresh.discriminator[2].bias, ckpt["discriminator"]["2.bias"])
    assert main(["train", NAME, "--store", str(pose_store), "--config", str(face_cfg), "--out", str(tmp_path / "face"),
                 "--init-from", str(base), "--max-steps", "1", "--log-every", "0", "--no-progress"]) == 0
    run = json.loads((tmp_path / "face" / "run.json").read_text())
    assert run["init_from"]["path"] == str(base) and run["init_from"]["sha256"] == prov["checkpoint"]["sha256"]
    assert run["init_from"]["loaded"]["networks"]["generator"]["loaded"] == 4
    assert run["frozen_networks"] == ["generator"] and run["stage"] == "face"
    face = load_checkpoint(tmp_path / "face" / "last-checkpoint.pth.tar", required=("generator",))
    assert all(torch.equal(face["generator"][k], ckpt["generator"][k]) for k in ckpt["generator"])  # frozen
    assert sorted(p.name for p in (tmp_path / "face").glob("latest_net_*")) == \
        ["latest_net_D.pth", "latest_net_Dface.pth", "latest_net_G.pth", "latest_net_Gface.pth"]


def test_a_failed_official_file_write_keeps_the_previous_file(tmp_path):
    from methods.train import _write_official_files

    good = _write_official_files(tmp_path, {"latest_net_G.pth": {"w": torch.ones(2)}})
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        _write_official_files(tmp_path, {"latest_net_G.pth": {"w": lambda: 0}})  # cannot be pickled
    assert folder_sha256([tmp_path / "latest_net_G.pth"]) and sorted(p.name for p in tmp_path.iterdir()) == \
        ["latest_net_G.pth"]
    assert hashlib.sha256((tmp_path / "latest_net_G.pth").read_bytes()).hexdigest() == \
        good["latest_net_G.pth"]
    with pytest.raises(AnimbenchError, match="refusing"):
        _write_official_files(tmp_path, {"../escape.pth": {"w": torch.ones(1)}})


# --- generation ---------------------------------------------------------------------------------------------


@pytest.fixture()
def face_model(tiny_pose, tmp_path) -> tuple[TinyPose, Path, Path]:
    """A face-stage TinyPose saved as a checkpoint, and its config."""
    torch.manual_seed(3)
    model = TinyPose("face")
    for p in model.face_generator.parameters():
        nn.init.normal_(p, std=0.3)  # a visible residual
    from methods.checkpoints import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "face.pth.tar", model, None, epoch=0)
    return model.eval(), ckpt, _config(tmp_path, "face", stage="face")


def _label_folder(model: TinyPose, root: Path, n: int = 5, boxes: bool = True) -> tuple[list, list]:
    (root / "labels").mkdir(parents=True)
    labels, face_boxes = [], []
    for t in range(n):
        label, box = model.pose_condition(_pose(t), (FRAME_W, FRAME_H))
        Image.fromarray(label).save(root / "labels" / f"frame{t:03d}.png")
        labels.append(label)
        face_boxes.append(box)
        if boxes:  # facetexts128 files hold the box in label pixels
            in_label = face_box(_pose(t), (FRAME_W, FRAME_H), model.label_size, canvas_size=model.canvas_size,
                                box=model.face_box_size)
            assert scale_box(in_label, model.label_size, model.generator_size) == box
            (root / "labels_facetexts128").mkdir(exist_ok=True)
            (root / "labels_facetexts128" / f"frame{t:03d}.txt").write_text(" ".join(map(str, in_label)))
    return labels, face_boxes


def _direct(model: TinyPose, labels: list, boxes: list | None) -> np.ndarray:
    with torch.no_grad():
        raw, _ = model.generate(torch.stack([model.label_tensor(x) for x in labels]),
                                None if boxes is None else torch.tensor(boxes))
    return ((raw + 1) / 2).permute(0, 2, 3, 1).numpy()


def test_generate_poses_streams_with_previous_carried(face_model, tmp_path):
    model, _, _ = face_model
    labels, boxes = _label_folder(model, tmp_path)
    want = _direct(model, labels, boxes)
    for chunk in (1, 2, 16):
        got = np.stack(list(generate_poses(model, labels, boxes, chunk=chunk)))
        assert got.dtype == np.float32 and np.array_equal(got, want), chunk
    without = np.stack(list(generate_poses(model, labels, [None] * len(labels))))
    assert not np.array_equal(without, want)  # -1 rows: no face residual
    assert np.array_equal(without, _direct(model, labels, [[-1] * 4] * len(labels)))


def test_animate_label_maps_to_npy(face_model, tmp_path, capsys):
    model, ckpt, cfg = face_model
    labels, boxes = _label_folder(model, tmp_path)
    out = tmp_path / "out.npy"
    assert main(["animate", NAME, "--checkpoint", str(ckpt), "--config", str(cfg), "--poses",
                 str(tmp_path / "labels"), "--out", str(out), "--no-progress"]) == 0
    frames = np.load(out)
    assert frames.shape == (5, 16, 32, 3) and frames.dtype == np.float32
    assert np.array_equal(frames, _direct(model, labels, boxes))  # (raw + 1) / 2, unclamped
    record = json.loads((tmp_path / "out.npy.json").read_text())
    assert record["poses"]["kind"] == "label_maps" and record["poses"]["face_boxes"].endswith("labels_facetexts128")
    assert record["provenance"]["checkpoint"]["sha256"] and record["frames"][0] == "frame000"
    assert main(["animate", NAME, "--checkpoint", str(ckpt), "--config", str(cfg), "--poses",
                 str(tmp_path / "labels"), "--out", str(tmp_path / "pngs"), "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir())[0] == "0000000.png"


def test_animate_label_maps_needs_face_boxes_for_a_face_model(face_model, tmp_path, capsys):
    model, ckpt, cfg = face_model
    _label_folder(model, tmp_path, boxes=False)
    args = ["animate", NAME, "--checkpoint", str(ckpt), "--config", str(cfg), "--poses", str(tmp_path / "labels"),
            "--out", str(tmp_path / "o.npy"), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--face-boxes" in err and len(err.splitlines()) == 1
    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / "frame000.txt").write_text("1 2 3")
    assert main(args + ["--face-boxes", str(tmp_path / "boxes")]) == 2
    assert "expected four integers" in capsys.readouterr().err


def test_store_pose_frames_and_animate_a_store(tiny_pose, pose_store, tmp_path):
    torch.manual_seed(1)
    model = TinyPose("base").eval()
    store = FrameStore(pose_store)
    rows = list(store_pose_frames(model, store, "test2"))
    assert [r["index"] for r in rows] == [0, 1, 3, 4]  # frame 2 has no pose
    frames = store.read("test2", [0, 1, 3, 4])
    for row, frame in zip(rows, frames, strict=True):
        assert row["prediction"].shape == (16, 32, 3) and 0 <= row["prediction"].min() <= row["prediction"].max() <= 1
        assert np.array_equal(row["target"], model.pose_target(frame).astype(np.float32) / 255)
        assert row["pose"] == store.poses("test2")[row["index"]]
        assert row["face_box"] == model.pose_condition(row["pose"], (FRAME_W, FRAME_H))[1]
    labels = [model.pose_condition(r["pose"], (FRAME_W, FRAME_H))[0] for r in rows]
    assert np.array_equal(np.stack([r["prediction"] for r in rows]), np.clip(_direct(model, labels, None), 0, 1))
    from methods.checkpoints import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", model, None, epoch=0)
    out = tmp_path / "store.npy"
    assert main(["animate", NAME, "--checkpoint", str(ckpt), "--config", str(_config(tmp_path)), "--poses",
                 str(pose_store), "--out", str(out), "--no-progress"]) == 0  # default: the first test video
    assert np.array_equal(np.load(out), _direct(model, labels, None))
    record = json.loads((tmp_path / "store.npy.json").read_text())
    assert record["poses"]["video"] == "test2" and record["fps"] == 10.0


def test_animate_openpose_files(tiny_pose, tmp_path):
    torch.manual_seed(2)
    model = TinyPose("base").eval()
    from methods.checkpoints import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", model, None, epoch=0)
    keypoints = tmp_path / "keypoints"
    keypoints.mkdir()
    for t in range(4):
        p = _pose(t)
        people = [{"pose_keypoints_2d": p.body.ravel().tolist(), "face_keypoints_2d": p.face.ravel().tolist(),
                   "hand_left_keypoints_2d": p.hand_left.ravel().tolist(),
                   "hand_right_keypoints_2d": p.hand_right.ravel().tolist()}]
        (keypoints / f"clip_{t:03d}_keypoints.json").write_text(json.dumps({"people": people * (1 + (t == 3))}))
    out = tmp_path / "op.npy"
    assert main(["animate", NAME, "--checkpoint", str(ckpt), "--config", str(_config(tmp_path)), "--poses",
                 str(keypoints), "--frame-size", "64x32", "--out", str(out), "--no-progress"]) == 0
    labels = [model.pose_condition(_pose(t), (FRAME_W, FRAME_H))[0] for t in range(3)]
    assert np.array_equal(np.load(out), _direct(model, labels, None))
    record = json.loads((tmp_path / "op.npy.json").read_text())
    assert list(record["poses"]["skipped"]) == ["clip_003"]  # two people: skipped as the official code does
    assert record["frames"] == ["clip_000", "clip_001", "clip_002"] and record["normalization"] is None


def test_wrong_inputs_are_one_line_errors(tiny_pose, tmp_path, capsys):
    cases = [
        (["animate", NAME, "--source", "a.png", "--driving", "b.mp4"], "generates frames from poses: pass --poses"),
        (["animate", NAME], "pass --poses P"),
        (["animate", NAME, "--poses", str(tmp_path), "--relative"], "--relative is for video-driven families"),
        (["animate", "fomm", "--poses", str(tmp_path)], "pass --source IMAGE and --driving VIDEO (--poses is for"),
        (["animate", "fomm", "--source", "a.png", "--driving", "b.mp4", "--normalize-to", "x"],
         "--normalize-to is for pose-driven families"),
        (["animate", NAME, "--poses", str(tmp_path / "nothing")], "not a folder"),
    ]
    for args, message in cases:
        assert main(args + ["--out", str(tmp_path / "o.npy")]) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


# --- end to end with the first family that uses these hooks ------------------------------------------------

POSE2IMG_TINY = Path(__file__).resolve().parents[2] / "configs/pose2img-tiny.yaml"


def test_pose2img_tiny_trains_writes_official_files_and_animates_from_them(pose_store, tmp_path):
    run = tmp_path / "run"
    summary = train("pose2img", pose_store, POSE2IMG_TINY, run, max_steps=2, log_every=0, progress=False)
    assert summary["stage"] == "global" and summary["schedule"]["lr_schedule"]["kind"] == "linear_decay"
    assert set(summary["official_files"]) == {"latest_net_G.pth", "latest_net_D.pth"}
    from_folder, prov = load_model("pose2img", checkpoint=run, config=POSE2IMG_TINY)
    from_file, _ = load_model("pose2img", checkpoint=run / "last-checkpoint.pth.tar", config=POSE2IMG_TINY)
    assert prov["checkpoint"]["sha256"] == folder_sha256([run / "latest_net_G.pth", run / "latest_net_D.pth"])
    for a, b in zip(from_folder.parameters(), from_file.parameters(), strict=True):
        assert torch.equal(a, b)
    out = tmp_path / "edn.npy"
    assert main(["animate", "pose2img", "--checkpoint", str(run), "--config", str(POSE2IMG_TINY), "--poses",
                 str(pose_store), "--out", str(out), "--no-progress"]) == 0
    rows = list(store_pose_frames(from_folder, FrameStore(pose_store), "test2", chunk=3))
    frames = np.load(out)
    assert frames.shape == (4, *rows[0]["prediction"].shape) and frames.dtype == np.float32
    assert np.array_equal(np.clip(frames, 0, 1), np.stack([r["prediction"] for r in rows]))
    labels = [from_folder.pose_condition(r["pose"], (FRAME_W, FRAME_H))[0] for r in rows]
    assert np.array_equal(frames, _direct(from_folder, labels, None))


def _standing(t: int, height: float, seed: int) -> PoseFrame:
    """BODY_25 nose, ears, neck and ankles of a person walking towards the camera (lower toes are closer)."""
    rng = np.random.default_rng([seed, t])
    body = np.zeros((25, 3), np.float32)
    toe = 18 + 0.25 * t + rng.uniform(0, 0.2)
    x = 20 + 0.5 * t
    body[0], body[17], body[18] = (x, toe - height, 0.9), (x - 1, toe - height, 0.9), (x + 1, toe - height, 0.9)
    body[1] = (x, toe - 0.8 * height, 0.9)
    body[11], body[14] = (x - 2, toe, 0.9), (x + 2, toe - 0.3, 0.9)
    return PoseFrame(body, np.zeros((70, 3)), np.zeros((21, 3)), np.zeros((21, 3)))


def _write_openpose(folder: Path, poses: list[PoseFrame]) -> Path:
    folder.mkdir()
    for t, p in enumerate(poses):
        person = {"pose_keypoints_2d": p.body.ravel().tolist(), "face_keypoints_2d": p.face.ravel().tolist(),
                  "hand_left_keypoints_2d": p.hand_left.ravel().tolist(),
                  "hand_right_keypoints_2d": p.hand_right.ravel().tolist()}
        (folder / f"f{t:04d}_keypoints.json").write_text(json.dumps({"people": [person]}))
    return folder


def test_animate_normalizes_openpose_files_to_a_target(tiny_pose, tmp_path):
    from prep.poses.normalize import fit_norm_params, normalize_poses

    torch.manual_seed(4)
    model = TinyPose("base").eval()
    from methods.checkpoints import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", model, None, epoch=0)
    source = [_standing(t, 8.0, 0) for t in range(40)]
    target = [_standing(t, 12.0, 1) for t in range(40)]
    src_dir, tgt_dir = _write_openpose(tmp_path / "src", source), _write_openpose(tmp_path / "tgt", target)
    out = tmp_path / "norm.npy"
    assert main(["animate", NAME, "--checkpoint", str(ckpt), "--config", str(_config(tmp_path)), "--poses",
                 str(src_dir), "--normalize-to", str(tgt_dir), "--frame-size", "64x32", "--out", str(out),
                 "--no-progress"]) == 0
    params = fit_norm_params(target, source)
    moved = [p for p in normalize_poses(source, params, frame_size=(FRAME_W, FRAME_H)) if p is not None]
    labels = [model.pose_condition(p, (FRAME_W, FRAME_H))[0] for p in moved]
    assert np.array_equal(np.load(out), _direct(model, labels, None))
    record = json.loads((tmp_path / "norm.npy.json").read_text())["normalization"]
    assert record["target"] == str(tgt_dir) and record["dropped"] == 40 - len(moved)
    assert record["params"] == pytest.approx({k: float(v) for k, v in vars(params).items()})
    assert params.s_close > 1.2  # the target is taller: the source is scaled up
