"""MRAA: official state-dict layout per config, the PCA affine and its sign, motion, animation modes, both training
stages, checkpoints in the official layout (fresh process, bit for bit), --avd and --stage plumbing."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from animbench.cli import main
from methods.checkpoints import load_checkpoint
from methods.infer import check_avd, resolve_mode
from methods.layers import make_coordinate_grid
from methods.mraa import MRAA
from methods.mraa_regions import (
    pca_affine,
    region_moments,
    region_transform,
    relative_region_params,
)
from methods.registry import load_config, load_model
from methods.train import make_optimizers, train, train_batch
from plumbing.errors import AnimbenchError
from tests.methods.tiny_store import make_store

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "mraa-tiny.yaml"
ENTRIES = ("generator", "region_predictor", "bg_predictor", "avd_network")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _parse_dump(path: Path) -> dict[str, list[tuple[str, tuple]]]:
    """`<entry> <key> (<shape>)` lines of reference/state-dicts/mraa_<cfg>.txt; '#' lines open a section."""
    entries: dict[str, list[tuple[str, tuple]]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("####"):
            entries.setdefault(line.split()[1], [])
        elif line.strip() and not line.startswith("#"):
            entry, key, shape = line.split(" ", 2)
            entries[entry].append((key, tuple(ast.literal_eval(shape))))
    return entries


def _official(path: Path) -> dict:
    """An official YAML as it is, validated against MRAA's schema (its own path and sha256 kept)."""
    cfg = load_config(path, method="mraa")
    assert cfg["_meta"]["path"] == str(path) and "method" not in cfg
    assert cfg["_meta"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    return cfg


def test_state_dicts_equal_the_official_dumps_for_every_config(shared_dir):
    configs = sorted((shared_dir / "data" / "official-configs" / "mraa").glob("*.yaml"))
    for path in configs:
        dump = _parse_dump(shared_dir / "reference" / "state-dicts" / f"mraa_{path.stem}.txt")
        with torch.device("meta"):  # shapes only
            model = MRAA.from_config(_official(path))
        for entry in ENTRIES:
            got = [(k, tuple(v.shape)) for k, v in getattr(model, entry).state_dict().items()]
            assert got == dump[entry], f"{path.name}: {entry}"
    assert len(configs) == 5


def test_official_config_files_load_through_load_config_as_mraa(shared_dir):
    for path in sorted((shared_dir / "data" / "official-configs" / "mraa").glob("*.yaml")):
        cfg = load_config(path)  # detected, no method named
        assert cfg["_meta"]["method"] == "mraa", path


def test_region_pad_is_per_config():
    torch.manual_seed(0)
    cfg = load_config(TINY)
    heat = MRAA.from_config(cfg).region_predictor(torch.rand(1, 3, 64, 64))["heatmap"]
    assert heat.shape == (1, 10, 26, 26)  # pad 0: the valid-conv grid, as taichi/ted/mgif
    cfg["model_params"]["region_predictor_params"]["pad"] = 3
    heat = MRAA.from_config(cfg).region_predictor(torch.rand(1, 3, 64, 64))["heatmap"]
    assert heat.shape == (1, 10, 32, 32)  # pad 3: vox256's (key absent)


def _gaussian_heatmap(mean: torch.Tensor, covar: torch.Tensor, size: int = 64) -> torch.Tensor:
    d = make_coordinate_grid((size, size)) - mean
    e = torch.exp(-0.5 * (d @ torch.inverse(covar) * d).sum(-1))
    return (e / e.sum()).view(1, 1, size, size)


def test_affine_sign_convention_on_a_hand_made_ellipse():
    theta = math.radians(30)
    rotation = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    covar = rotation @ torch.diag(torch.tensor([0.2**2, 0.08**2])) @ rotation.T
    moments = region_moments(_gaussian_heatmap(torch.tensor([0.1, -0.2]), covar))
    assert torch.allclose(moments["shift"], torch.tensor([[[0.1, -0.2]]]), atol=1e-5)
    assert torch.allclose(moments["covar"][0, 0], covar, atol=1e-5)
    pca = pca_affine(moments["covar"])
    # CPU LAPACK's U: column 0 the major axis pointing against (cos, sin), column 1 the minor axis, det(U) = -1
    c, s = math.cos(theta), math.sin(theta)
    assert torch.allclose(pca["u"][0], torch.tensor([[-c, -s], [-s, c]]), atol=1e-4)
    assert torch.det(pca["u"][0]) < 0
    expected = torch.tensor([[-0.2 * c, -0.08 * s], [-0.2 * s, 0.08 * c]])
    assert torch.allclose(pca["affine"][0, 0], expected, atol=1e-4)
    affine = pca["affine"]
    assert torch.allclose(affine @ affine.transpose(-1, -2), moments["covar"], atol=1e-6)


def test_revert_axis_swap_cancels_half_turns_not_reflections():
    a = torch.tensor([[[[0.3, 0.1], [-0.05, 0.2]]]])
    source = {"affine": a}
    flipped = region_transform(source, {"affine": -a})  # the SVD turned the driving axes by 180 degrees
    assert torch.allclose(flipped, torch.eye(2).view(1, 1, 2, 2), atol=1e-6)
    assert torch.allclose(region_transform(source, {"affine": -a}, revert=False), -torch.eye(2), atol=1e-6)
    reflected = region_transform(source, {"affine": a @ torch.diag(torch.tensor([1.0, -1.0]))})
    assert not torch.allclose(reflected, torch.eye(2).view(1, 1, 2, 2), atol=1e-3)


@pytest.fixture()
def tiny() -> MRAA:
    torch.manual_seed(0)
    return MRAA.from_config(TINY)


def test_identical_regions_give_identity_region_motions_and_bg_starts_at_identity(tiny):
    torch.manual_seed(1)
    params = tiny.region_predictor(torch.rand(2, 3, 64, 64))
    flow = tiny.generator.pixelwise_flow_predictor
    motions = flow.sparse_motions((16, 16), params, params, None)
    assert torch.allclose(motions, make_coordinate_grid((16, 16)).expand_as(motions), atol=1e-5)
    bg = tiny.bg_predictor(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    assert torch.equal(bg, torch.eye(3).expand(2, 3, 3))  # zero-initialised fc, identity bias
    assert tiny.align_corners is False and flow.align_corners is False and tiny.generator.align_corners is False


def test_relative_params_scale_by_the_hull_and_keep_the_driving_covariance():
    square = torch.tensor([[[-0.1, -0.1], [0.1, -0.1], [0.1, 0.1], [-0.1, 0.1]]])
    eye = torch.eye(2).expand(1, 4, 2, 2)
    initial = {"shift": square, "affine": eye}
    source = {"shift": 2 * square, "affine": 0.5 * eye}
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]]).expand(1, 4, 2, 2)
    driving = {"shift": square + 0.05, "affine": rotation, "covar": torch.full((1, 4, 2, 2), 7.0)}
    new = relative_region_params(source, driving, initial)
    assert torch.allclose(new["shift"], 2 * square + 2 * 0.05)  # scale sqrt(4 area) / sqrt(area) = 2
    assert torch.allclose(new["affine"], 0.5 * rotation)
    assert torch.equal(new["covar"], driving["covar"])  # official: not recomputed from the new affine
    line = {"shift": torch.tensor([[[0.0, 0.0], [0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]]), "affine": eye}
    with pytest.raises(AnimbenchError, match="--absolute or --avd"):
        relative_region_params(source, driving, line)


def test_animation_modes_on_hand_made_inputs(tiny):
    torch.manual_seed(2)
    tiny.set_training_stage("avd")  # the AVD network present (untrained weights are enough for the maths)
    source, frame = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    still = frame.expand(3, 3, 64, 64)
    with torch.no_grad():
        tiny.eval()
        src = tiny.region_predictor(source)
        drv = tiny.region_predictor(frame)
        # relative on a still video: the source's centres and affines (no region motion), the driving covariance
        moved = relative_region_params(src, drv, drv)
        assert torch.equal(moved["covar"], drv["covar"])
        itself = tiny.generator(source, moved, src, None)["prediction"]
        motions = tiny.generator.pixelwise_flow_predictor.sparse_motions((16, 16), moved, src, None)
        standard = tiny.generator(source, drv, src, None)["prediction"]
        avd = tiny.generator(source, tiny.avd_network(src, drv), src, None)["prediction"]
    relative = tiny.animate(source, still, tiny.animation_mode(relative=True))
    assert torch.allclose(motions, make_coordinate_grid((16, 16)).expand_as(motions), atol=1e-5)  # no motion
    # the chunk's regions (batch of 3) and frame 0's (batch of 1) differ by float rounding, which the hull ratio of
    # untrained regions amplifies: equal up to that, and every frame of the still video is the same frame
    assert torch.allclose(relative, itself.expand(3, -1, -1, -1), atol=1e-3)
    assert torch.equal(relative[0], relative[2])
    absolute = tiny.animate(source, still, tiny.animation_mode(relative=False))
    assert torch.allclose(absolute, standard.expand(3, -1, -1, -1), atol=1e-4)  # batch-of-3 vs batch-of-1 rounding
    assert torch.allclose(tiny.animate(source, still, resolve_mode(tiny, None, None, avd=True)),
                          avd.expand(3, -1, -1, -1), atol=1e-4)
    assert not torch.allclose(absolute, relative, atol=1e-3)  # the modes differ
    assert tiny.animation_mode().option("avd") is True  # the official default mode, when an AVD network exists


def test_avd_needs_the_avd_network_and_a_family_that_has_one(tiny):
    assert tiny.animation_mode().option("avd") is False  # no AVD network: the config's avd falls back to relative
    with pytest.raises(AnimbenchError, match="--stage avd"):
        tiny.animate(torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64), resolve_mode(tiny, None, None, avd=True))
    with pytest.raises(AnimbenchError, match="method fomm has no .*: mraa"):
        check_avd("fomm", True)
    assert main(["animate", "fomm", "--source", "a.png", "--driving", "b.mp4", "--out", "x.npy", "--avd"]) == 2


def test_a_few_adam_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model, _ = load_model("mraa", config=TINY)
    model.train()
    optimizers = make_optimizers(model, model.config)
    assert list(optimizers) == ["reconstruction"]
    assert len(optimizers["reconstruction"].param_groups[0]["params"]) == len(
        [*model.generator.parameters(), *model.region_predictor.parameters(), *model.bg_predictor.parameters()])
    torch.manual_seed(3)
    batch = (torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    totals = []
    for _ in range(5):
        torch.manual_seed(4)  # the same equivariance transform every step
        totals.append(sum(train_batch(model, optimizers, batch).values()))
    assert totals[-1] < totals[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One main-stage step, then one AVD-stage step started from it, with the generic loop."""
    root = tmp_path_factory.mktemp("mraa")
    store = make_store(root / "store", train=2, test=1, frames=4)
    main_run = train("mraa", store, TINY, root / "main", max_steps=1, batch_size=2, device="cpu", progress=False)
    ckpt = root / "main" / main_run["last_checkpoint"]
    avd_run = train("mraa", store, TINY, root / "avd", max_steps=1, batch_size=2, device="cpu", progress=False,
                    stage="avd", init_from=ckpt)
    return root, ckpt, root / "avd" / avd_run["last_checkpoint"]


def test_checkpoints_hold_the_official_entries_and_stage_avd_trains_only_the_avd(runs):
    root, main_ckpt, avd_ckpt = runs
    first = load_checkpoint(main_ckpt, required=MRAA.required_entries)
    assert {"generator", "bg_predictor", "region_predictor", "optimizer_reconstruction",
            "epoch_reconstruction"} <= set(first) and "avd_network" not in first
    second = load_checkpoint(avd_ckpt, required=MRAA.required_entries)
    assert {"avd_network", "optimizer_avd", "epoch_avd"} <= set(second) and "optimizer_reconstruction" not in second
    run = json.loads((root / "avd" / "run.json").read_text())
    assert run["stage"] == "avd" and run["frozen_networks"] == ["bg_predictor", "generator", "region_predictor"]
    assert run["schedule"]["epoch_milestones"] == [21, 26]  # official step(epoch): [20, 25] one epoch later
    assert run["schedule"]["learning_rates"] == {"avd_network": 1e-3}
    for entry in ("generator", "region_predictor", "bg_predictor"):
        model = getattr(MRAA.from_config(TINY), entry)
        params = {name for name, _ in model.named_parameters()}
        for key in params:  # weights frozen; BN running statistics move, as the official AVD stage leaves BN in train
            assert torch.equal(first[entry][key], second[entry][key]), f"{entry}.{key} changed"


def test_saved_checkpoint_reproduces_outputs_bit_for_bit_in_a_fresh_process(runs, tmp_path):
    _, _, ckpt = runs
    torch.manual_seed(5)
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(3, 3, 64, 64)
    torch.save({"source": source, "driving": driving}, tmp_path / "inputs.pt")
    model, provenance = load_model("mraa", checkpoint=ckpt, config=TINY)
    assert provenance["align_corners"] is False
    expected = {"rec": model.reconstruct(source, driving[:2]), "avd": model.animate(source[0], driving)}
    script = textwrap.dedent(f"""
        import torch
        torch.set_num_threads(1)
        from methods.registry import load_model
        model, _ = load_model("mraa", checkpoint={str(ckpt)!r}, config={str(TINY)!r})
        x = torch.load({str(tmp_path / "inputs.pt")!r}, weights_only=True)
        torch.save({{"rec": model.reconstruct(x["source"], x["driving"][:2]),
                    "avd": model.animate(x["source"][0], x["driving"])}}, {str(tmp_path / "out.pt")!r})
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, env=env, timeout=120)
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(got["rec"], expected["rec"]) and torch.equal(got["avd"], expected["avd"])


def test_official_layout_files_load_weights_only(tmp_path):
    torch.manual_seed(0)
    model = MRAA.from_config(TINY)
    params = [*model.generator.parameters(), *model.region_predictor.parameters(), *model.bg_predictor.parameters()]
    stage1 = {"generator": model.generator.state_dict(), "bg_predictor": model.bg_predictor.state_dict(),
              "region_predictor": model.region_predictor.state_dict(),
              "optimizer_reconstruction": torch.optim.Adam(params, lr=2e-4).state_dict(), "epoch_reconstruction": 99}
    torch.save(stage1, tmp_path / "stage1.pth")
    loaded, provenance = load_model("mraa", checkpoint=tmp_path / "stage1.pth", config=TINY)
    assert provenance["checkpoint"]["epoch"] == 99 and not loaded.has_avd
    optimizer = torch.optim.Adam(model.avd_network.parameters(), lr=1e-3).state_dict()
    stage2 = {**{k: v for k, v in stage1.items() if k != "epoch_reconstruction"},
              "optimizer_reconstruction": optimizer, "avd_network": model.avd_network.state_dict(),
              "optimizer_avd": optimizer, "epoch_avd": 29}
    torch.save(stage2, tmp_path / "stage2.pth")
    loaded, provenance = load_model("mraa", checkpoint=tmp_path / "stage2.pth", config=TINY)
    assert provenance["checkpoint"]["epoch"] == 29 and loaded.has_avd
    assert torch.equal(loaded.avd_network.decoder[0].weight, model.avd_network.decoder[0].weight)


def test_stage_and_align_corners_errors(tmp_path):
    with pytest.raises(AnimbenchError, match=r"--stage bogus: method mraa has the training stages \['main', 'avd'\]"):
        train("mraa", make_store(tmp_path / "s", train=1, test=0, frames=2), TINY, tmp_path / "r", stage="bogus",
              progress=False)
    with pytest.raises(AnimbenchError, match="align_corners=false"):
        train("mraa", tmp_path / "s", TINY, tmp_path / "r", align_corners=True, progress=False)


def test_cli_avd_stage_and_animate_avd_to_npy(runs, tmp_path, capsys):
    import av
    import numpy as np
    from PIL import Image

    root, main_ckpt, _ = runs
    frames = np.full((4, 64, 64, 3), 40, np.uint8)
    for t in range(4):
        frames[t, 10 + 3 * t:30 + 3 * t, 12:28] = (230, 120, 30)
    with av.open(str(tmp_path / "driving.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width, stream.pix_fmt = 64, 64, "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    Image.fromarray(frames[0]).save(tmp_path / "source.png")
    store = root / "store"
    assert main(["train", "mraa", "--store", str(store), "--config", str(TINY), "--out", str(tmp_path / "avd"),
                 "--stage", "avd", "--init-from", str(main_ckpt), "--max-steps", "1", "--batch-size", "2",
                 "--device", "cpu", "--no-progress"]) == 0
    common = ["--config", str(TINY), "--source", str(tmp_path / "source.png"), "--driving",
              str(tmp_path / "driving.mp4")]
    ckpt = str(tmp_path / "avd" / "last-checkpoint.pth.tar")
    assert main(["animate", "mraa", "--checkpoint", ckpt, *common, "--out", str(tmp_path / "a.npy"), "--avd"]) == 0
    out = np.load(tmp_path / "a.npy")
    assert out.dtype == np.float32 and out.shape == (4, 64, 64, 3)
    record = json.loads((tmp_path / "a.npy.json").read_text())
    assert record["mode"] == {"relative": False, "adapt_scale": False, "avd": True}
    assert record["provenance"]["align_corners"] is False
    capsys.readouterr()
    assert main(["animate", "mraa", "--checkpoint", str(main_ckpt), *common, "--out", str(tmp_path / "b.npy"),
                 "--avd"]) == 2
    err = capsys.readouterr().err
    assert "--stage avd" in err and not (tmp_path / "b.npy").exists()
    assert "animate mraa" not in err  # refused before the progress bar starts
