"""Official checkpoint layout: save/load round trip in a fresh process, torch-1.0 files, clear errors."""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from methods.checkpoints import checkpoint_sha256, load_checkpoint, load_into, save_checkpoint
from methods.fomm import FOMM, Discriminator
from methods.registry import load_config
from plumbing.errors import AnimbenchError

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "fomm-tiny.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny FOMM after one optimisation step (BN statistics and Adam state non-trivial), saved once."""
    torch.manual_seed(0)
    model = FOMM.from_config(TINY)
    optimizers = {name: torch.optim.Adam(getattr(model, name).parameters(), lr=2e-4, betas=(0.5, 0.999))
                  for name in ("generator", "kp_detector", "discriminator")}
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    losses, outputs = model.generator_step(source, driving)
    sum(losses.values()).backward()
    optimizers["generator"].step()
    optimizers["kp_detector"].step()
    optimizers["discriminator"].zero_grad()
    sum(model.discriminator_step(source, driving, outputs).values()).backward()
    optimizers["discriminator"].step()
    path = tmp_path_factory.mktemp("ckpt") / "00000000-checkpoint.pth.tar"
    save_checkpoint(path, model, optimizers, epoch=3, extra={"note": "tiny"})
    return model, path


def test_saved_layout_is_the_official_one(trained):
    model, path = trained
    ckpt = load_checkpoint(path)
    assert set(ckpt) == set(FOMM.official_entries()) | {"note"}
    assert ckpt["epoch"] == 3
    assert ckpt["optimizer_generator"]["param_groups"][0]["betas"] == (0.5, 0.999)
    assert list(ckpt["generator"]) == list(model.generator.state_dict())
    assert not any(p.name.startswith(".") for p in path.parent.iterdir())  # no temp file left behind
    assert checkpoint_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_fresh_process_reproduces_outputs_bit_for_bit(trained, tmp_path):
    model, path = trained
    torch.manual_seed(1)
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    torch.save({"source": source, "driving": driving}, tmp_path / "inputs.pt")
    expected = model.reconstruct(source, driving)
    script = textwrap.dedent(f"""
        import torch
        torch.set_num_threads({torch.get_num_threads()})
        from methods.checkpoints import load_checkpoint, load_into
        from methods.fomm import FOMM, Discriminator
        model = FOMM.from_config({str(TINY)!r})
        load_into(model, load_checkpoint({str(path)!r}, weights_only=True))
        x = torch.load({str(tmp_path / "inputs.pt")!r}, weights_only=True)
        torch.save(model.reconstruct(x["source"], x["driving"]), {str(tmp_path / "out.pt")!r})
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, env=env, timeout=120)
    assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True), expected)


def _torch10_layout(modern: dict) -> OrderedDict:
    """torch 1.0 stored weight_orig, weight (= weight_orig / sigma) and weight_u, without weight_v."""
    old = OrderedDict()
    for key, value in modern.items():
        if key.endswith("weight_v"):
            continue
        old[key] = value.clone()
        if key.endswith("weight_orig"):
            prefix = key[: -len("_orig")]
            sigma = torch.dot(modern[prefix + "_u"], torch.mv(value.reshape(value.shape[0], -1), modern[prefix + "_v"]))
            old[prefix] = value / sigma
    return old


def test_torch10_spectral_norm_layout_loads(trained):
    model, _ = trained
    fresh = FOMM.from_config(TINY)
    old = _torch10_layout(model.discriminator.state_dict())
    report = load_into(fresh, {"generator": model.generator.state_dict(),
                               "kp_detector": model.kp_detector.state_dict(), "discriminator": old})
    assert report["discriminator"] == {"missing": [], "unexpected": []}
    x = torch.rand(1, 3, 64, 64)
    _, want = model.discriminator.eval()({"1": x})["1"]
    _, got = fresh.discriminator.eval()({"1": x})["1"]
    assert torch.allclose(got, want, atol=1e-4)


def test_torch10_conversion_matches_spectral_norms_own_hook():
    """load_into's fast weight_v gives the outputs spectral_norm's own pre-hook gives (tall and wide W)."""
    torch.manual_seed(0)
    disc = Discriminator(num_channels=3, block_expansion=16, num_blocks=2, max_features=32, sn=True)
    disc(torch.rand(2, 3, 32, 32))  # a training forward: u, v become consistent power-iteration vectors
    old = _torch10_layout(disc.state_dict())
    by_hook = Discriminator(num_channels=3, block_expansion=16, num_blocks=2, max_features=32, sn=True)
    by_hook.load_state_dict(old)
    holder = torch.nn.Module()
    holder.discriminator = Discriminator(num_channels=3, block_expansion=16, num_blocks=2, max_features=32, sn=True)
    load_into(holder, {"generator": {}, "kp_detector": {}, "discriminator": old}, entries=["discriminator"])
    x = torch.rand(1, 3, 32, 32)
    want = disc.eval()(x)[1]
    assert torch.allclose(by_hook.eval()(x)[1], want, atol=1e-5)
    assert torch.allclose(holder.discriminator.eval()(x)[1], want, atol=1e-5)
    # v is a proper solution: u = normalize(W_orig v), so training resumes from a consistent power iteration
    state = holder.discriminator.state_dict()
    for prefix in ("down_blocks.0.conv.weight", "down_blocks.1.conv.weight", "conv.weight"):
        w_mat = state[prefix + "_orig"].reshape(state[prefix + "_orig"].shape[0], -1)
        u = torch.nn.functional.normalize(w_mat @ state[prefix + "_v"], dim=0)
        assert torch.allclose(u, state[prefix + "_u"], atol=1e-4), prefix


def test_legacy_pickle_format_loads_with_weights_only(trained, tmp_path):
    """The released .pth.tar files use the pre-zip serialisation; weights_only=True must still read them."""
    model, _ = trained
    path = tmp_path / "vox-cpk.pth.tar"
    torch.save({"generator": model.generator.state_dict(), "kp_detector": model.kp_detector.state_dict()},
               path, _use_new_zipfile_serialization=False)
    ckpt = load_checkpoint(path)
    assert "discriminator" not in ckpt
    fresh = FOMM.from_config(TINY)
    assert set(load_into(fresh, ckpt)) == {"generator", "kp_detector"}  # no discriminator: fine
    assert torch.equal(fresh.generator.final.weight, model.generator.final.weight)


def test_pickled_objects_need_allow_pickle(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "pickled.pth.tar"
    torch.save({"generator": model.generator.state_dict(), "kp_detector": model.kp_detector.state_dict(),
                "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(AnimbenchError, match="allow_pickle=True"):
        load_checkpoint(path)
    with pytest.warns(UserWarning, match="unpickling fully"):
        ckpt = load_checkpoint(path, allow_pickle=True)
    assert ckpt["args"].lr == 1


def test_missing_file_and_entries(tmp_path):
    with pytest.raises(AnimbenchError, match="file not found"):
        load_checkpoint(tmp_path / "nope.pth.tar")
    torch.save({"kp_detector": {}}, tmp_path / "partial.pth.tar")
    with pytest.raises(AnimbenchError, match="entry 'generator' missing"):
        load_checkpoint(tmp_path / "partial.pth.tar")
    (tmp_path / "junk.pth.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(AnimbenchError, match="junk.pth.tar: cannot be read, corrupt or not a torch file"):
        load_checkpoint(tmp_path / "junk.pth.tar", allow_pickle=True)
    data = (tmp_path / "partial.pth.tar").read_bytes()
    (tmp_path / "truncated.pth.tar").write_bytes(data[: len(data) // 2])
    with pytest.raises(AnimbenchError, match="truncated.pth.tar: cannot be read, corrupt"):
        load_checkpoint(tmp_path / "truncated.pth.tar")


def test_wrong_config_is_reported_and_leaves_the_model_untouched(trained):
    model, path = trained
    cfg = load_config(TINY)
    cfg["model_params"]["common_params"]["num_kp"] = 5
    other = FOMM.from_config(cfg)
    before = other.generator.final.weight.clone()
    with pytest.raises(AnimbenchError, match=r"entry 'generator': 4 shape mismatches \(first: dense_motion_network"):
        load_into(other, load_checkpoint(path))
    assert torch.equal(other.generator.final.weight, before)
    cfg["model_params"]["common_params"]["num_kp"] = 10
    cfg["model_params"]["generator_params"]["num_bottleneck_blocks"] = 1
    with pytest.raises(AnimbenchError, match=r"entry 'generator' does not match.*unexpected keys \(first: bottleneck.r1"):
        load_into(FOMM.from_config(cfg), load_checkpoint(path))
    report = load_into(FOMM.from_config(cfg), load_checkpoint(path), strict=False, entries=["generator"])
    assert report["generator"]["unexpected"][0].startswith("bottleneck.r1.")


def test_failed_save_keeps_the_previous_file(trained, tmp_path):
    model, path = trained
    target = tmp_path / "keep.pth.tar"
    target.write_bytes(path.read_bytes())
    before = checkpoint_sha256(target)
    with pytest.raises(AnimbenchError, match="extra\\['bad'\\] contains a Namespace"):
        save_checkpoint(target, model, None, epoch=1, extra={"bad": argparse.Namespace()})
    with pytest.raises(AnimbenchError, match="would overwrite an official entry"):
        save_checkpoint(target, model, None, epoch=1, extra={"generator": 1})
    assert checkpoint_sha256(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.pth.tar"]


def test_folder_checkpoint_digest_is_stable(tmp_path):
    """A folder of official per-network files: sha256 over sorted (name, sha256) pairs, nothing else."""
    from methods.checkpoints import folder_sha256

    a, b = tmp_path / "a", tmp_path / "b"
    for folder, order in ((a, ("G", "D")), (b, ("D", "G"))):  # written in another order, at another time
        folder.mkdir()
        for short in order:
            torch.save({"w": torch.arange(4.0) * (short == "G")}, folder / f"latest_net_{short}.pth")
    (b / "loss_log.txt").write_text("not a checkpoint file")
    digest = checkpoint_sha256(a)
    pairs = sorted((p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in a.glob("*.pth"))
    assert digest == hashlib.sha256("".join(f"{n} {h}\n" for n, h in pairs).encode()).hexdigest()
    assert checkpoint_sha256(b) == digest == folder_sha256(sorted(a.glob("*.pth")))
    os.utime(a / "latest_net_G.pth", (0, 0))
    assert checkpoint_sha256(a) == digest
    torch.save({"w": torch.ones(4)}, b / "latest_net_D.pth")
    assert checkpoint_sha256(b) != digest
    (a / "latest_net_D.pth").rename(a / "latest_net_Dx.pth")  # a file's name is part of the digest
    assert checkpoint_sha256(a) != digest
    with pytest.raises(AnimbenchError, match="no checkpoint files"):
        checkpoint_sha256(tmp_path / "a" / "..", pattern="*.none")


def test_load_checkpoint_required_entries_and_model_networks(tmp_path):
    """A family's own entries: load_checkpoint(required=...), load_into / save_checkpoint on model.networks."""
    holder = torch.nn.Module()
    holder.networks = ("generator", "face_generator")
    holder.generator, holder.face_generator = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)
    path = save_checkpoint(tmp_path / "c.pth.tar", holder, {"face_generator": torch.optim.Adam(
        holder.face_generator.parameters())}, epoch=1)
    with pytest.raises(AnimbenchError, match="entry 'kp_detector' missing"):
        load_checkpoint(path)  # FOMM's default requirement
    ckpt = load_checkpoint(path, required=("generator",))
    assert {"generator", "face_generator", "optimizer_face_generator", "epoch"} == set(ckpt)
    other = torch.nn.Module()
    other.networks = ("generator", "face_generator")
    other.generator, other.face_generator = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)
    assert set(load_into(other, ckpt)) == {"generator", "face_generator"}
    assert torch.equal(other.face_generator.weight, holder.face_generator.weight)
    with pytest.raises(AnimbenchError, match="unknown entry 'kp_detector'"):
        load_into(other, ckpt, entries=["kp_detector"])
