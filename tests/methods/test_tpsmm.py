"""TPSMM: official state-dict layout per config, the TPS numerics, checkpoints, training stages, animation modes."""

from __future__ import annotations

import ast
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from methods.checkpoints import load_into, save_checkpoint
from methods.interface import AnimationMode
from methods.layers import make_coordinate_grid
from methods.registry import get_method, load_config
from methods.tpsmm import TPSMM
from methods.tpsmm_tps import (
    KeypointTPS,
    RandomTPS,
    dropout_probability,
    dropout_softmax,
    relative_keypoints,
    tps_system,
)
from methods.train import make_optimizers, train_batch
from plumbing.errors import AnimbenchError

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tpsmm-tiny.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny() -> TPSMM:
    torch.manual_seed(0)
    model = TPSMM.from_config(TINY)
    model.networks = (*model.networks, "avd_network")  # as after reading a checkpoint that holds an AVD network
    return model


def _parse_dump(path: Path) -> dict[str, list[tuple[str, tuple]]]:
    entries: dict[str, list[tuple[str, tuple]]] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            entry, key, shape = line.split(" ", 2)
            entries.setdefault(entry, []).append((key, tuple(ast.literal_eval(shape))))
    return entries


def test_official_configs_load_as_they_are_and_give_the_official_keys_and_shapes(shared_dir):
    configs = sorted((shared_dir / "data" / "official-configs" / "tpsmm").glob("*.yaml"))
    assert [p.stem for p in configs] == ["mgif-256", "taichi-256", "ted-384", "vox-256"]
    for path in configs:
        cfg = load_config(path)  # no `method:` key: told apart from FOMM's by common_params.num_tps
        assert cfg["_meta"]["method"] == "tpsmm" and cfg["_meta"]["path"] == str(path)
        dump = _parse_dump(shared_dir / "reference" / "state-dicts" / f"tpsmm_{path.stem}.txt")
        with torch.device("meta"):  # shapes only: no 88M-parameter initialisation
            model = TPSMM.from_config(cfg)
        assert list(model.networks) == [n for n in ("inpainting_network", "dense_motion_network", "kp_detector",
                                                    "bg_predictor") if n in dump], path.name
        assert set(dump) == {*model.networks, "avd_network"}
        for entry in dump:
            got = [(k, tuple(v.shape)) for k, v in getattr(model, entry).state_dict().items()]
            assert got == dump[entry], f"{path.name}: {entry}"


def test_a_typo_in_a_config_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("warp_loss: 10", "warp_los: 10"))
    with pytest.raises(AnimbenchError, match=r"bad.yaml: unknown key train_params.loss_weights.warp_los"):
        TPSMM.from_config(str(bad))


def test_tps_with_equal_keypoints_is_not_the_identity_by_the_documented_amount():
    """The ridge 0.01·I on the whole 8×8 system (§2.4) makes p = q a non-identity warp. Measured here (100 draws
    of 50 keypoints uniform on [-0.8, 0.8], 64² grid, per-coordinate |T(z) - z|): median of the mean deviation
    0.013, median of the max 0.12 (reference: 0.012 / 0.117); the control points map to within 3e-4 (median of
    the worst point per draw; the worst draw 1.4e-3)."""
    g = torch.Generator().manual_seed(0)
    identity = make_coordinate_grid((64, 64)).view(1, 1, 64, 64, 2)
    means, maxes, at_points = [], [], []
    for _ in range(100):
        kp = torch.rand(1, 50, 2, generator=g) * 1.6 - 0.8
        tps = KeypointTPS.fit(kp, kp)
        deviation = (tps.grids((64, 64)) - identity).abs()
        means.append(deviation.mean().item())
        maxes.append(deviation.amax().item())
        points = kp.view(1, 10, 1, 5, 2)
        mapped = torch.stack([tps.warp_coordinates(points[:, k, 0])[0, k] for k in range(10)])
        at_points.append((mapped - points[0, :, 0]).abs().max().item())
    assert 0.010 < statistics.median(means) < 0.016
    assert 0.09 < statistics.median(maxes) < 0.15
    assert 1e-5 < statistics.median(at_points) < 6e-4 and max(at_points) < 3e-3


def test_tps_fit_is_the_official_float32_inverse_and_reordering_changes_it():
    """The official fit is inverse(L) @ Y in float32. Reordering those float ops (torch.linalg.solve, or float64)
    moves the motion grid by (50 draws, max |Δ| over a 64² grid, normalised units):
      - keypoints spread over [-0.8, 0.8]: median 8e-6, worst 9e-5 (solve); the same for float64;
      - each TPS group clustered within ±0.05 (what detectors give on small parts): median 5e-5, worst 4.6e-4
        (solve); float64: median 1.5e-4, worst 1.1e-2.
    Random-weight tiny models move their predictions by ~1e-5; trained flows amplify it. So the official order
    is what this implementation runs, and 1e-4 is not a meaningful bound for TPSMM outputs with clustered
    keypoints."""
    g = torch.Generator().manual_seed(0)
    diffs = []
    for _ in range(50):
        centre = torch.rand(1, 10, 1, 2, generator=g) * 1.4 - 0.7
        kp_driving = (centre + (torch.rand(1, 10, 5, 2, generator=g) * 2 - 1) * 0.05).reshape(1, 50, 2)
        kp_source = kp_driving + (torch.rand(1, 50, 2, generator=g) * 2 - 1) * 0.1
        system, targets = tps_system(kp_driving, kp_source)
        official = KeypointTPS.fit(kp_driving, kp_source)
        assert torch.equal(official.weights, torch.matmul(torch.inverse(system), targets)[:, :, :5])
        solved = KeypointTPS(torch.linalg.solve(system, targets), kp_driving)
        diffs.append((official.grids((64, 64)) - solved.grids((64, 64))).abs().max().item())
    assert 1e-5 < statistics.median(diffs) < 2e-4 and max(diffs) < 2e-3


def _spec_tps_grid(p: torch.Tensor, q: torch.Tensor, size: int) -> torch.Tensor:
    """§2.4 written out with the grouped driving points p (B, K, 5, 2) as ONE tensor feeding the kernel K, the
    affine block P and the control points of T(z), in the official float32 order -> (B, K, size², 2)."""
    b, k = p.shape[:2]
    kernel = torch.norm(p[:, :, :, None] - p[:, :, None, :], dim=4, p=2) ** 2
    kernel = kernel * torch.log(kernel + 1e-9)
    p1 = torch.cat([p, torch.ones(b, k, 5, 1)], 3)
    system = torch.cat([torch.cat([kernel, p1], 3), torch.cat([p1.permute(0, 1, 3, 2), torch.zeros(b, k, 3, 3)], 3)], 2)
    system = system + torch.eye(8).expand(system.shape) * 0.01
    params = torch.matmul(torch.inverse(system), torch.cat([q, torch.zeros(b, k, 3, 2)], 2))
    affine, weights = params[:, :, 5:].permute(0, 1, 3, 2), params[:, :, :5]
    z = make_coordinate_grid((size, size)).view(1, size * size, 2)
    out = torch.matmul(affine[:, :, :, :2], z.permute(0, 2, 1)) + affine[:, :, :, 2:]
    r2 = ((z.view(1, 1, 1, -1, 2) - p.view(b, k, 5, 1, 2)) ** 2).sum(-1)
    return out.permute(0, 1, 3, 2) + torch.matmul((r2 * torch.log(r2 + 1e-9)).permute(0, 1, 3, 2), weights)


def test_tps_keypoint_gradient_is_that_of_one_grouped_tensor_bit_for_bit():
    """Training reproduces the official gradients bit for bit only if the grouped driving points feed K, P and
    the control points as one tensor, so autograd sums their three gradients in one place. The earlier code
    grouped the flat keypoints twice ((K + P) + C): outputs and losses stayed bit-identical to the official
    GeneratorFullModel, but the keypoint detector's gradient moved by ~2e-6 relative (tiny config, one step)."""
    g = torch.Generator().manual_seed(0)
    mismatches = 0
    for _ in range(20):
        kp_driving = torch.rand(2, 50, 2, generator=g) * 1.6 - 0.8
        kp_source = kp_driving + 0.1 * torch.randn(2, 50, 2, generator=g)
        weight = torch.randn(2, 10, 16 * 16, 2, generator=g)
        ours = kp_driving.clone().requires_grad_()
        grid = KeypointTPS.fit(ours, kp_source).grids((16, 16)).view(2, 10, -1, 2)
        (grid * weight).sum().backward()
        spec = kp_driving.clone().requires_grad_()
        spec_grid = _spec_tps_grid(spec.view(2, 10, 5, 2), kp_source.view(2, 10, 5, 2), 16)
        (spec_grid * weight).sum().backward()
        assert torch.equal(grid, spec_grid)
        mismatches += not torch.equal(ours.grad, spec.grad)
    assert mismatches == 0


def test_random_tps_without_noise_is_the_identity_and_uses_the_euclidean_kernel():
    transform = RandomTPS(2, sigma_affine=0.0, sigma_tps=0.0, points_tps=5)
    z = torch.rand(2, 7, 2) * 2 - 1
    assert torch.allclose(transform.warp_coordinates(z), z)
    transform.control_params = torch.full((2, 1, 25), 0.01)
    point = torch.tensor([[[0.3, -0.2]]]).expand(2, 1, 2)
    r2 = ((point.view(2, 1, 1, 2) - make_coordinate_grid((5, 5)).view(1, 1, 25, 2)) ** 2).sum(-1)
    expected = point + (0.01 * r2 * torch.log(r2 + 1e-9)).sum(-1, keepdim=True)
    assert torch.allclose(transform.warp_coordinates(point), expected, atol=1e-6)


def test_dropout_softmax_keeps_the_background_and_renormalises():
    logits = torch.randn(3, 11, 4, 4)
    torch.manual_seed(0)
    everything_dropped = dropout_softmax(logits, 1.0)
    # the official + 1e-6 in the partition: weight e / (e + 1e-6), e = exp(x_0 - max_k x_k) >= exp(-|range|)
    assert torch.allclose(everything_dropped[:, 0], torch.ones(3, 4, 4), atol=1e-3)
    assert torch.equal(everything_dropped[:, 1:], torch.zeros(3, 10, 4, 4))
    assert torch.allclose(dropout_softmax(logits, 0.0), torch.softmax(logits, 1), atol=1e-5)
    some = dropout_softmax(logits, 0.5)
    assert torch.allclose(some.sum(1), torch.ones(3, 4, 4), atol=1e-5)
    kept = some[:, :, 0, 0] > 0
    assert kept[:, 0].all() and torch.equal(kept[:, :, None, None].expand_as(some), some > 0)  # constant in space


def test_dropout_schedules_of_the_official_configs():
    vox = [dropout_probability(e, 35, 0.1, 0.3, 10) for e in (0, 1, 7, 34, 35)]
    assert vox[:2] == [0.1, pytest.approx(0.13)] and vox[2:4] == [0.3, 0.3] and vox[4] is None
    assert dropout_probability(10, 35, 0.0, 0.7, 10) == pytest.approx(0.7)  # taichi


def test_relative_keypoints_scale_by_the_hull_of_batch_element_zero():
    square = torch.tensor([[0.0, 0.0], [0.2, 0.0], [0.2, 0.2], [0.0, 0.2]])  # area 0.04
    big = torch.tensor([[-0.4, -0.4], [0.0, -0.4], [0.0, 0.0], [-0.4, 0.0]])  # area 0.16
    kp_source, initial = square.expand(2, 4, 2), big.expand(2, 4, 2)
    driving = initial + torch.tensor([0.1, -0.2])
    out = relative_keypoints(kp_source, driving, initial)
    assert torch.allclose(out, kp_source + 0.5 * torch.tensor([0.1, -0.2]))  # sqrt(0.04 / 0.16)
    assert torch.allclose(relative_keypoints(kp_source, driving, initial, adapt_scale=False),
                          kp_source + torch.tensor([0.1, -0.2]))


def test_animation_modes_on_hand_made_inputs(tiny):
    torch.manual_seed(3)
    source, still = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    video = torch.cat([still, torch.rand(2, 3, 64, 64)])
    tiny.train()
    with torch.no_grad():
        tiny.eval()
        kp_source, kp_video = tiny.kp_detector(source), tiny.kp_detector(video)
        want_standard = torch.cat([tiny.generate(source, kp_source, kp) for kp in kp_video.split(1)])
        itself = tiny.generate(source, kp_source, kp_source)
        tiny.train()
    standard = tiny.animate(source, video, AnimationMode.of(False, False), batch_size=2)
    assert tiny.kp_detector.training and tiny.avd_network.training  # modes restored
    assert torch.allclose(standard, want_standard, atol=1e-5) and 0 <= standard.min() and standard.max() <= 1
    # relative: no driving motion since frame 0 -> the source keeps its own keypoints
    relative = tiny.animate(source, still.expand(3, 3, 64, 64), AnimationMode.of(True, True))
    assert torch.allclose(relative, itself.expand_as(relative), atol=1e-5)
    # avd: the driving keypoints replaced by avd_network(kp_source, kp_driving); with a hand-made AVD that
    # returns the identity's keypoints every frame is the source as it is
    real_avd = tiny.avd_network
    try:
        tiny.avd_network = _ReturnsIdentity()
        avd = tiny.animate(source, video, AnimationMode.of(False, False, {"avd": True}))
    finally:
        tiny.avd_network = real_avd
    assert torch.allclose(avd, itself.expand_as(avd), atol=1e-5)
    assert not torch.allclose(standard, itself.expand_as(standard), atol=1e-3)  # the modes differ


class _ReturnsIdentity(torch.nn.Module):
    def forward(self, kp_source, kp_driving):
        return kp_source


def test_reconstruction_uses_the_bg_affine(tiny):
    source, driving = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        tiny.bg_predictor.bg_encoder.fc.bias.add_(torch.tensor([0.0, 0.0, 0.3, 0.0, 0.0, 0.0]))  # shift x
        shifted = tiny.reconstruct(source, driving)
        tiny.bg_predictor.bg_encoder.fc.bias.sub_(torch.tensor([0.0, 0.0, 0.3, 0.0, 0.0, 0.0]))
    assert not torch.allclose(shifted, tiny.reconstruct(source, driving), atol=1e-4)


_FRESH_PROCESS = """
import sys, torch
torch.set_num_threads(1)
from methods.tpsmm import TPSMM
from methods.checkpoints import load_into
from methods.interface import AnimationMode
model = TPSMM.from_config(sys.argv[1])
load_into(model, model.read_checkpoint(sys.argv[2]), strict=True)
x = torch.load(sys.argv[3])
torch.save({"reconstruct": model.reconstruct(x["source"], x["driving"]),
            "avd": model.animate(x["source"][:1], x["driving"], AnimationMode.of(False, False, {"avd": True}))},
           sys.argv[4])
"""


def test_saved_checkpoint_reproduces_outputs_bit_for_bit_in_a_fresh_process(tiny, tmp_path):
    torch.manual_seed(5)
    inputs = {"source": torch.rand(2, 3, 64, 64), "driving": torch.rand(2, 3, 64, 64)}
    torch.save(inputs, tmp_path / "inputs.pt")
    path = save_checkpoint(tmp_path / "00000000-checkpoint.pth.tar", tiny, None, 0)
    subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(TINY), str(path), str(tmp_path / "inputs.pt"),
                    str(tmp_path / "out.pt")], check=True, cwd=REPO, timeout=120)
    got = torch.load(tmp_path / "out.pt")
    assert torch.equal(got["reconstruct"], tiny.reconstruct(inputs["source"], inputs["driving"]))
    avd = tiny.animate(inputs["source"][:1], inputs["driving"], AnimationMode.of(False, False, {"avd": True}))
    assert torch.equal(got["avd"], avd)


def test_an_official_layout_checkpoint_loads_with_weights_only(tiny, tmp_path):
    """`Logger.save_cpk` of train.py: the networks, one `optimizer` over inpainting + dense + kp, the bg
    optimizer, epoch; read with weights_only=True and loaded strictly."""
    trained = [tiny.inpainting_network, tiny.dense_motion_network, tiny.kp_detector]
    optimizer = torch.optim.Adam([p for net in trained for p in net.parameters()], lr=2e-4, weight_decay=1e-4)
    official = {name: getattr(tiny, name).state_dict() for name in tiny.networks}
    official.update(optimizer=optimizer.state_dict(),
                    optimizer_bg_predictor=torch.optim.Adam(tiny.bg_predictor.parameters()).state_dict(), epoch=99)
    torch.save(official, tmp_path / "vox.pth.tar")
    torch.manual_seed(1)
    other = TPSMM.from_config(TINY)
    ckpt = other.read_checkpoint(tmp_path / "vox.pth.tar")
    assert load_into(other, ckpt, strict=True).keys() == set(tiny.networks)
    other.train()
    make_optimizers(other, other.config, "main")["generator"].load_state_dict(ckpt["optimizer_generator"])
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(other.reconstruct(x, x.flip(-1)), tiny.reconstruct(x, x.flip(-1)))
    del official["kp_detector"]
    torch.save(official, tmp_path / "broken.pth.tar")
    with pytest.raises(AnimbenchError, match="entry 'kp_detector' missing"):
        other.read_checkpoint(tmp_path / "broken.pth.tar")


def test_training_hooks_follow_the_official_optimisers():
    cfg = load_config(TINY)
    model = TPSMM.from_config(cfg)
    assert model.optimizer_groups(cfg, "main") == {
        "generator": ("inpainting_network", "dense_motion_network", "kp_detector"), "bg_predictor": ("bg_predictor",)}
    assert model.optimizer_options(cfg, "main")["weight_decay"] == 1e-4
    assert "weight_decay" not in model.optimizer_options(cfg, "avd")
    assert model.learning_rates(cfg, "avd") == {"avd_network": 1e-3}
    cfg["train_params"]["bg_start"] = 10  # vox: the bg predictor waits 10 epochs
    assert model.frozen_networks(cfg, 9) == {"bg_predictor"} and model.frozen_networks(cfg, 10) == set()
    card = get_method("tpsmm")
    assert card.checkpoints["vox.pth.tar"] == "vox" and card.configs["tiny"] == "configs/tpsmm-tiny.yaml"


def test_a_few_adam_steps_lower_the_loss_and_the_flow_gradients_are_clipped(monkeypatch):
    cfg = load_config(TINY)
    cfg["train_params"]["lr_generator"] = 5e-4
    cfg["train_params"]["bg_start"] = 100  # the bg cycle loss starts at 0 (identity init): judged below
    torch.manual_seed(0)
    model = TPSMM.from_config(cfg)
    model.train()
    optimizers = make_optimizers(model, cfg, "main")
    assert set(optimizers) == {"generator", "bg_predictor"}
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    # epoch 0 with bg_start 0: dropout on, the bg affine and its cycle loss; without the clip the gradients of
    # the untrained keypoint detector exceed 10 (so the bound checked in the steps below can fail)
    with monkeypatch.context() as patch:
        patch.setitem(model.train_params, "bg_start", 0)
        patch.setattr(TPSMM, "clip_gradients", lambda self, bg_active=True: None)
        losses, outputs = model.generator_step(source, driving, torch.tensor([0, 0]))
        assert set(losses) == {"perceptual", "equivariance_value", "warp_loss", "bg"}
        assert outputs["dropout_p"] == 0.1 and outputs["bg_param"].shape == (2, 3, 3)
        sum(losses.values()).backward()
        assert max(p.grad.abs().max() for p in model.kp_detector.parameters() if p.grad is not None) > 10
        assert any(p.grad is not None for p in model.bg_predictor.parameters())
    model.zero_grad(set_to_none=True)
    epoch = torch.tensor([40, 40])  # past dropout_epoch: no TPS dropout
    totals = []
    for _ in range(5):
        torch.manual_seed(123)  # the same equivariance transform every step
        losses = train_batch(model, optimizers, (source, driving, epoch), frozen=model.frozen_networks(cfg, 40))
        assert set(losses) == {"perceptual", "equivariance_value", "warp_loss"}
        totals.append(sum(losses.values()))
        for net in (model.kp_detector, model.dense_motion_network):
            assert max(p.grad.abs().max() for p in net.parameters() if p.grad is not None) <= 10 * (1 + 1e-6)
    assert totals[-1] < totals[0], totals
    assert all(p.grad is None for p in model.bg_predictor.parameters())  # not used before bg_start


def test_avd_stage_trains_only_the_avd_network():
    cfg = load_config(TINY)
    torch.manual_seed(0)
    model = TPSMM.from_config(cfg)
    model.train()
    with pytest.raises(AnimbenchError, match="no avd_network"):
        model.animate(torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64), AnimationMode.of(False, False, {"avd": True}))
    model.set_training_stage("avd")
    assert model.networks[-1] == "avd_network" and model.stage_config(cfg, "avd")["train_params"]["batch_size"] == 8
    optimizers = make_optimizers(model, cfg, "avd")
    assert set(optimizers) == {"avd"} and optimizers["avd"].param_groups[0]["lr"] == 1e-3
    before = {name: {k: v.clone() for k, v in getattr(model, name).state_dict().items()} for name in model.networks}
    source, driving = torch.rand(8, 3, 64, 64), torch.rand(8, 3, 64, 64)
    totals = []
    for _ in range(3):
        torch.manual_seed(7)  # the same random scale every step
        losses = train_batch(model, optimizers, (source, driving, torch.zeros(8, dtype=torch.long)))
        assert set(losses) == {"rec_kp"}
        totals.append(losses["rec_kp"])
    assert totals[-1] < totals[0], totals
    for name in model.networks:
        after = getattr(model, name).state_dict()
        same = all(torch.equal(before[name][k], after[k]) for k in after)
        assert same == (name != "avd_network"), name  # BatchNorm statistics of the detector included
    assert model.kp_detector.training  # modes restored after the eval-mode keypoints
    assert math.isfinite(totals[-1])


def test_a_stage_one_checkpoint_before_bg_start_has_neither_bg_nor_avd(tmp_path):
    torch.manual_seed(2)
    model = TPSMM.from_config(TINY)
    stage_one = {name: getattr(model, name).state_dict() for name in
                 ("inpainting_network", "dense_motion_network", "kp_detector")}
    torch.save({**stage_one, "epoch": 3}, tmp_path / "00000003-checkpoint.pth.tar")
    other = TPSMM.from_config(TINY)
    load_into(other, other.read_checkpoint(tmp_path / "00000003-checkpoint.pth.tar"), strict=True)
    assert other.networks == ("inpainting_network", "dense_motion_network", "kp_detector")
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(other.reconstruct(x, x.flip(-1)), model.reconstruct(x, x.flip(-1)))  # bg: the identity


def test_keypoints_motion_and_losses_stay_float32_under_bf16_autocast(tiny):
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses, outputs = tiny.generator_step(source, driving, 0)
        motion = tiny.dense_motion_network(source, outputs["kp_driving"], outputs["kp_source"])
    assert outputs["kp_driving"].dtype == torch.float32 and outputs["bg_param"].dtype == torch.float32
    assert motion["deformation"].dtype == torch.float32  # the TPS solve ran in float32
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
