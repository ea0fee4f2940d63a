"""The training loop: a step lowers the loss, checkpoints and run.json, exact resume, DDP with 2 gloo processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from methods.checkpoints import load_checkpoint
from methods.registry import load_config, load_model
from methods.train import find_last_checkpoint, make_optimizers, train, train_step
from plumbing.errors import AnimbenchError
from prep.pairs import FramePairDataset
from prep.store import FrameStore
from tests.methods.tiny_store import make_store

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"fomm": REPO / "configs/fomm-tiny.yaml", "monkey_net": REPO / "configs/monkey_net-tiny.yaml"}
RECONSTRUCTION_LOSS = {"fomm": "perceptual", "monkey_net": "reconstruction"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("train") / "store", train=4, test=1, frames=6)


@pytest.mark.parametrize("method", ["fomm", "monkey_net"])
def test_one_step_lowers_the_loss(method, store):
    torch.manual_seed(0)
    model, _ = load_model(method, config=CONFIGS[method])
    model.train()
    cfg = load_config(CONFIGS[method])
    optimizers = make_optimizers(model, cfg)
    batch = [FramePairDataset(store, "train", seed=1)[i] for i in range(2)]
    source = torch.stack([b["source"] for b in batch])
    driving = torch.stack([b["driving"] for b in batch])

    def loss() -> float:
        torch.manual_seed(5)  # the same equivariance transform before and after
        losses, _ = model.generator_step(source, driving)  # with autograd: FOMM's jacobian loss needs it
        return float(losses[RECONSTRUCTION_LOSS[method]].detach())

    before = loss()
    values = train_step(model, optimizers, source, driving)
    assert set(values) >= {RECONSTRUCTION_LOSS[method]} and all(v == v for v in values.values())
    assert loss() < before


def test_run_outputs_and_provenance(store, tmp_path):
    out = tmp_path / "run"
    summary = train("fomm", store, CONFIGS["fomm"], out, max_steps=2, batch_size=2, log_every=0)
    run = json.loads((out / "run.json").read_text())
    assert run == json.loads(json.dumps(summary, default=str))
    assert run["status"] == "complete" and run["steps"] == 2 and run["method"] == "fomm"
    assert run["config"]["sha256"] == hashlib.sha256(CONFIGS["fomm"].read_bytes()).hexdigest()
    assert run["store"]["fingerprint"] == FrameStore(store).fingerprint
    assert run["device"] == "cpu" and run["amp"]["dtype"] is None and run["align_corners"] is True
    assert run["perceptual_loss"]["backend"] in ("vgg19_imagenet", "pixel_l1")  # the config allows pixel_l1
    assert "torch" in run["package_versions"] and run["wall_s"] > 0
    assert set(run["final_losses"]) == {"perceptual", "gen_gan", "feature_matching", "equivariance_value",
                                        "equivariance_jacobian", "disc_gan"}
    # 4 videos x 1 repeat / batch 2 = 2 steps: epoch 0 complete -> 00000000-checkpoint.pth.tar (official name)
    assert (out / "00000000-checkpoint.pth.tar").is_file()
    assert find_last_checkpoint(out).samefile(out / "00000000-checkpoint.pth.tar")
    ckpt = load_checkpoint(out / "last-checkpoint.pth.tar", weights_only=True)
    assert {"generator", "kp_detector", "discriminator", "optimizer_generator", "optimizer_kp_detector",
            "optimizer_discriminator"} <= set(ckpt) and ckpt["epoch"] == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert {f"loss/{k}" for k in run["final_losses"]} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("loss/perceptual")) == 2


def test_resume_continues_exactly(store, tmp_path):
    kwargs = dict(batch_size=2, epochs=4, log_every=0)
    train("fomm", store, CONFIGS["fomm"], tmp_path / "straight", max_steps=5, **kwargs)
    train("fomm", store, CONFIGS["fomm"], tmp_path / "split", max_steps=3, **kwargs)  # stops inside epoch 1
    with pytest.raises(AnimbenchError, match="--resume"):
        train("fomm", store, CONFIGS["fomm"], tmp_path / "split", max_steps=5, **kwargs)
    with pytest.raises(AnimbenchError, match="config_sha256"):
        train("fomm", store, load_config(CONFIGS["fomm"]) | {"visualizer_params": {"kp_size": 3}}, tmp_path / "split", max_steps=5,
              resume=True, **kwargs)
    summary = train("fomm", store, CONFIGS["fomm"], tmp_path / "split", max_steps=5, resume=True, **kwargs)
    assert summary["resumed_from"]["step"] == 3 and summary["steps"] == 5 and summary["steps_this_run"] == 2
    a = load_checkpoint(find_last_checkpoint(tmp_path / "straight"))
    b = load_checkpoint(find_last_checkpoint(tmp_path / "split"))
    for net in ("generator", "kp_detector", "discriminator"):
        for key, value in a[net].items():
            assert torch.equal(value, b[net][key]), f"{net}.{key}"
    assert a["optimizer_generator"]["state"][0]["step"] == b["optimizer_generator"]["state"][0]["step"]


def test_ddp_two_gloo_processes_keep_replicas_equal(store, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "animbench", "train", "monkey_net", "--store", str(store), "--config", str(CONFIGS["monkey_net"]),
           "--out", str(out), "--max-steps", "2", "--batch-size", "4", "--log-every", "0", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["steps"] == 2 and run["ddp"]["world_size"] == 2 and run["ddp"]["backend"] == "gloo"
    assert run["schedule"]["batch_size_per_rank"] == 2
    digests = run["ddp"]["replica_param_sha256"]  # each rank hashed its own parameters after the 2 steps
    assert len(digests) == 2 and digests[0] == digests[1]
    torch.manual_seed(0)  # train() initialises from its seed (0): the same starting weights
    initial, _ = load_model("monkey_net", config=CONFIGS["monkey_net"])
    trained = load_checkpoint(find_last_checkpoint(out))
    assert not torch.equal(trained["generator"]["appearance_encoder.down_blocks.0.conv.weight"],
                           initial.generator.state_dict()["appearance_encoder.down_blocks.0.conv.weight"])


def test_progress_bar_shows_step_of_total_and_no_progress_silences_it(store, tmp_path, capsys):
    train("fomm", store, CONFIGS["fomm"], tmp_path / "bar", max_steps=2, batch_size=2, log_every=1)
    captured = capsys.readouterr()
    assert "train fomm" in captured.err and "2/2" in captured.err  # step N of M, with rate and ETA
    assert "[fomm] epoch 0 step 2:" in captured.out  # the log lines keep working
    train("fomm", store, CONFIGS["fomm"], tmp_path / "quiet", max_steps=2, batch_size=2, log_every=1,
          progress=False)
    captured = capsys.readouterr()
    assert "train fomm" not in captured.err and "[fomm] epoch 0 step 2:" in captured.out


def test_keep_checkpoints_removes_the_older_ones(store, tmp_path):
    out = tmp_path / "keep"
    # 4 videos / batch 2 = 2 steps per epoch, a checkpoint per epoch (checkpoint_freq 1): epochs 0, 1, 2
    summary = train("fomm", store, CONFIGS["fomm"], out, max_steps=6, epochs=3, num_repeats=1, batch_size=2,
                    log_every=0, keep_checkpoints=1, progress=False)
    assert sorted(p.name for p in out.glob("*.pth.tar")) == ["00000002-checkpoint.pth.tar",
                                                               "last-checkpoint.pth.tar"]
    assert summary["checkpoints"] == ["00000002-checkpoint.pth.tar"]
    assert json.loads((out / "run.json").read_text())["schedule"]["keep_checkpoints"] == 1
    with pytest.raises(AnimbenchError, match="keep_checkpoints"):
        train("fomm", store, CONFIGS["fomm"], tmp_path / "bad", max_steps=1, keep_checkpoints=0)


def test_cli_train_flags(store, tmp_path, capsys):
    from animbench.cli import main

    out = tmp_path / "cli"
    assert main(["train", "fomm", "--store", str(store), "--config", "tiny", "--out", str(out), "--max-steps", "2",
                 "--batch-size", "2", "--log-every", "0", "--no-progress", "--keep-checkpoints", "1"]) == 0
    assert "train fomm" not in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["schedule"]["keep_checkpoints"] == 1


@pytest.mark.parametrize("flag, value, expected", [
    ("--batch-size", "0", "a positive whole number"), ("--batch-size", "-2", "a positive whole number"),
    ("--max-steps", "0", "a positive whole number"), ("--max-steps", "-1", "a positive whole number"),
    ("--epochs", "0", "a positive whole number"), ("--repeats", "-1", "a positive whole number"),
    ("--workers", "-1", "zero or more worker processes")])
def test_cli_train_refuses_counts_below_one_naming_the_flag(store, tmp_path, capsys, flag, value, expected):
    from animbench.cli import main

    out = tmp_path / "run"
    code = main(["train", "fomm", "--store", str(store), "--config", "tiny", "--out", str(out), "--no-progress",
                 "--device", "cpu", flag, value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"{flag} {value}: expected {expected}" in err and "Traceback" not in err
    assert not out.exists()  # refused before any work
