"""Monkey-Net: official checkpoint layout per config, keypoint math, dense motion, transfer, training, checkpoints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from methods.checkpoints import load_checkpoint, load_into, save_checkpoint
from methods.layers import make_coordinate_grid
from methods.monkey_net import MonkeyNet
from methods.monkey_net_keypoints import gaussian2kp, kp2gaussian, normalize_kp, symmetrise_positive
from methods.registry import load_config
from plumbing.errors import AnimbenchError

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "monkey_net-tiny.yaml"
OFFICIAL = ("actions", "bair", "moving-gif", "nemo", "shapes", "taichi", "vox", "vox-full")
NETWORKS = ("kp_detector", "generator", "discriminator")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_cfg() -> dict:
    return load_config(TINY)


def _tiny(cfg: dict, seed: int = 0, **overrides) -> MonkeyNet:
    torch.manual_seed(seed)
    return MonkeyNet.from_config(cfg, **overrides)


def _frames(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random (batch, 3, 64, 64) source and driving frames in [0, 1] (a tiny network can fit them)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(2, batch, 3, 4, 4, generator=g)
    source, driving = (F.interpolate(c, size=(64, 64), mode="bilinear", align_corners=False) for c in coarse)
    return source, driving


def _read_dump(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """mnet_<cfg>.txt -> ({'<network>.<key>': shape} in file order, {network: parameter count})."""
    shapes, params = {}, {}
    for line in path.read_text().splitlines():
        header = re.match(r"#### (\w+)\s+params=(\d+)", line)
        if header:
            params[header.group(1)] = int(header.group(2))
        elif line.strip() and not line.startswith("#"):
            network, key, shape = line.split(" ", 2)
            shapes[f"{network}.{key}"] = tuple(int(n) for n in re.findall(r"\d+", shape))
    return shapes, params


@pytest.mark.parametrize("name", OFFICIAL)
def test_official_config_builds_the_official_state_dict(shared_dir, name):
    """Every official YAML builds networks whose state_dict keys (in order) and shapes equal the official dump."""
    cfg = load_config(shared_dir / "data" / "official-configs" / "monkeynet" / f"{name}.yaml")
    # vox-full.yaml only changes scale factors (no weights): its dump equals vox's, and it has its own file
    expected, expected_params = _read_dump(shared_dir / "reference" / "state-dicts" / f"mnet_{name}.txt")
    with torch.device("meta"):  # shapes only: no memory, no init time for the 80 M-parameter vox generator
        model = MonkeyNet.from_config(cfg)
    got = {f"{n}.{k}": tuple(v.shape) for n in NETWORKS for k, v in getattr(model, n).state_dict().items()}
    assert list(got) == list(expected)
    assert got == expected
    assert {n: sum(p.numel() for p in getattr(model, n).parameters()) for n in NETWORKS} == expected_params


def test_config_errors_name_the_field(tiny_cfg):
    """A typo in a config section is a one-line user error naming the section and the field."""
    cfg = load_config(tiny_cfg)
    cfg["model_params"]["generator_params"]["dense_motion_params"]["num_blokcs"] = 5
    with pytest.raises(AnimbenchError, match=r"dense_motion_params.*num_blokcs"):
        MonkeyNet.from_config(cfg)
    cfg = load_config(tiny_cfg)
    del cfg["model_params"]["kp_detector_params"]["temperature"]
    with pytest.raises(AnimbenchError, match=r"kp_detector_params.*temperature"):
        MonkeyNet.from_config(cfg)


def test_gaussian_keypoints_round_trip():
    """A normalised Gaussian heatmap gives back its mean and covariance; clip_variance bounds a collapsed one."""
    mean = torch.tensor([0.2, -0.1])
    var = torch.tensor([[0.02, 0.005], [0.005, 0.01]])
    heat = kp2gaussian({"mean": mean.view(1, 1, 1, 2), "var": var.view(1, 1, 1, 2, 2)}, (64, 64), "matrix")
    heat = heat / heat.sum()
    kp = gaussian2kp(heat.permute(0, 2, 1, 3, 4), "matrix", clip_variance=None)  # (B, K, D, H, W) in
    assert kp["mean"].shape == (1, 1, 1, 2) and kp["var"].shape == (1, 1, 1, 2, 2)
    torch.testing.assert_close(kp["mean"][0, 0, 0], mean, atol=1e-3, rtol=0)
    torch.testing.assert_close(kp["var"][0, 0, 0], var, atol=1e-3, rtol=0)

    one_hot = torch.zeros(1, 1, 1, 64, 64)
    one_hot[..., 10, 20] = 1
    clipped = gaussian2kp(one_hot, "matrix", clip_variance=0.001)["var"][0, 0, 0]
    assert torch.linalg.svdvals(clipped).min() >= 0.001 * (1 - 1e-4)


def test_training_shapes_and_losses(tiny_cfg):
    """generator_step / discriminator_step: the configured loss terms and (B, 3, H, W) outputs."""
    model = _tiny(tiny_cfg)
    source, driving = _frames()
    losses, outputs = model.generator_step(source, driving)
    assert set(losses) == {"reconstruction", "generator_gan"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert outputs["prediction"].shape == outputs["deformed"].shape == (2, 3, 64, 64)
    assert outputs["kp_driving"]["mean"].shape == (2, 1, 10, 2)
    assert outputs["kp_driving"]["var"].shape == (2, 1, 10, 2, 2)
    assert 0 <= outputs["prediction"].min() and outputs["prediction"].max() <= 1
    d_losses = model.discriminator_step(source, driving, outputs)
    assert set(d_losses) == {"discriminator_gan"} and d_losses["discriminator_gan"].dim() == 0
    assert model.uses_gan and model.align_corners

    cfg = load_config(tiny_cfg)
    cfg["train_params"]["loss_weights"]["reconstruction_deformed"] = 10  # as bair.yaml
    losses, _ = _tiny(cfg).generator_step(source, driving)
    assert set(losses) == {"reconstruction", "reconstruction_deformed", "generator_gan"}


def test_bfloat16_autocast_keeps_keypoints_float32(tiny_cfg):
    """Mixed precision (the training loop's --amp) trains: keypoints and the motion grid stay float32."""
    model = _tiny(tiny_cfg)
    source, driving = _frames()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses, outputs = model.generator_step(source, driving)
        d_losses = model.discriminator_step(source, driving, outputs)
    assert outputs["kp_driving"]["var"].dtype == outputs["deformation"].dtype == torch.float32
    assert all(torch.isfinite(v) for v in [*losses.values(), *d_losses.values()])


def test_keypoint_gradients_follow_the_detach_flags(tiny_cfg):
    """detach_kp_generator False: generator losses train the detector; detach_kp_discriminator True: D's do not."""
    model = _tiny(tiny_cfg)
    source, driving = _frames()

    def grad_norm(module):
        return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)

    losses, outputs = model.generator_step(source, driving)
    sum(losses.values()).backward()
    assert grad_norm(model.kp_detector) > 0 and grad_norm(model.generator) > 0
    model.zero_grad()
    sum(model.discriminator_step(source, driving, outputs).values()).backward()
    assert grad_norm(model.kp_detector) == 0 and grad_norm(model.generator) == 0
    assert grad_norm(model.discriminator) > 0


def test_a_few_adam_steps_lower_the_reconstruction_loss(tiny_cfg):
    """The official training step (three Adam optimisers, GAN included) learns a fixed tiny batch."""
    model = _tiny(tiny_cfg)
    source, driving = _frames()
    opt_gen = torch.optim.Adam([*model.generator.parameters(), *model.kp_detector.parameters()], lr=1e-3)
    opt_disc = torch.optim.Adam(model.discriminator.parameters(), lr=1e-3)
    history = []
    for _ in range(5):
        losses, outputs = model.generator_step(source, driving)
        history.append(losses["reconstruction"].item())
        sum(losses.values()).backward()
        opt_gen.step()
        opt_gen.zero_grad()
        opt_disc.zero_grad()  # feature matching reached the discriminator; those gradients are not its own
        sum(model.discriminator_step(source, driving, outputs).values()).backward()
        opt_disc.step()
        opt_disc.zero_grad()
    assert history[-1] < 0.8 * history[0], history


def test_same_keypoints_give_identity_motion(tiny_cfg):
    """Identical source and driving keypoints: the dense motion is the identity grid whatever the mask is."""
    model = _tiny(tiny_cfg).eval()
    source = _frames(batch=1)[0].unsqueeze(2)
    with torch.no_grad():
        kp = model.kp_detector(source)
        identity = make_coordinate_grid((64, 64)).view(1, 1, 64, 64, 2)
        dense_motion = model.generator.dense_motion_module
        deformation = dense_motion(source, kp, kp)
        torch.testing.assert_close(deformation[..., :2], identity, atol=1e-6, rtol=0)
        assert torch.equal(deformation[..., 2], torch.zeros_like(deformation[..., 2]))
        # a trained-looking mask (random logits, no correction) still moves nothing: every displacement is 0
        final = dense_motion.hourglass.decoder.conv
        final.weight[:11].normal_(std=0.5)
        deformation = dense_motion(source, kp, kp)
        torch.testing.assert_close(deformation[..., :2], identity, atol=1e-6, rtol=0)

        # with the official align_corners=True the identity grid reproduces the source; False shifts it
        warped = model.generator(source, kp, kp)["video_deformed"]
        torch.testing.assert_close(warped, source, atol=1e-5, rtol=0)
        shifted = _tiny(tiny_cfg, align_corners=False).eval().generator(source, kp, kp)["video_deformed"]
        assert (shifted - source).abs().max() > 0.1  # half a pixel of shift, zero padding at the border


def test_transfer_relative_and_absolute_on_hand_made_keypoints():
    """move_location, movement_mult and clip_mean act on keypoint means as the official transfer does."""
    square = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) / 2  # side 1, area 1
    shift = torch.tensor([0.2, -0.1])
    driving = torch.stack([square, square + shift, square + 2 * shift]).unsqueeze(0)  # (1, T=3, K=4, 2)
    source = (square / 2 + torch.tensor([0.5, 0.3])).view(1, 1, 4, 2)  # area 1/4
    kp_driving, kp_source = {"mean": driving}, {"mean": source}

    absolute = normalize_kp(kp_driving, kp_source)
    assert torch.equal(absolute["mean"], driving)
    relative = normalize_kp(kp_driving, kp_source, move_location=True)
    torch.testing.assert_close(relative["mean"][0, 2], source[0, 0] + 2 * shift)
    scaled = normalize_kp(
        kp_driving, kp_source, move_location=True, movement_mult=True
    )  # sqrt(1/4) / sqrt(1)
    torch.testing.assert_close(scaled["mean"][0, 2], source[0, 0] + shift)
    clipped = normalize_kp(kp_driving, kp_source, move_location=True, clip_mean=True)
    assert clipped["mean"].max() == 1 and relative["mean"].max() > 1


def test_adapt_variance_is_symmetric_positive_definite():
    """var_drv_t inv(var_drv_0) var_src is made symmetric with positive eigenvalues; equal references cancel."""
    g = torch.Generator().manual_seed(0)

    def covariances(*shape):  # elongated keypoint covariances: eigenvalues in [5e-4, 0.05], random orientation
        rotation = torch.linalg.qr(torch.randn(*shape, 2, 2, generator=g)).Q
        scales = torch.diag_embed(0.0005 + 0.0495 * torch.rand(*shape, 2, generator=g))
        return rotation @ scales @ rotation.transpose(-1, -2)

    var_driving, var_source = covariances(1, 4, 10), covariances(1, 1, 10)
    kp_driving = {"mean": torch.zeros(1, 4, 10, 2), "var": var_driving}
    kp_source = {"mean": torch.zeros(1, 1, 10, 2), "var": var_source}
    var = normalize_kp(kp_driving, kp_source, adapt_variance=True)["var"]
    product = var_driving @ torch.linalg.inv(var_driving[:, :1]) @ var_source
    assert torch.linalg.eigvalsh((product + product.transpose(-1, -2)) / 2).min() < 0  # clipping is exercised
    torch.testing.assert_close(var, var.transpose(-1, -2))
    assert torch.linalg.eigvalsh(var).min() > 0
    same = normalize_kp(
        kp_driving, {"mean": torch.zeros(1, 1, 10, 2), "var": var_driving[:, :1]}, adapt_variance=True
    )
    torch.testing.assert_close(same["var"], var_driving, atol=1e-4, rtol=1e-3)
    # an indefinite matrix is pushed to the nearest positive one (eigenvalues <= 0 become 1e-6)
    fixed = symmetrise_positive(torch.tensor([[1.0, 0.0], [0.0, -2.0]]))
    torch.testing.assert_close(fixed, torch.tensor([[1.0, 0.0], [0.0, 1e-6]]))


def test_animate_absolute_matches_reconstruction(tiny_cfg):
    """Absolute transfer of every driving frame is the reconstruction protocol; relative follows the config."""
    model = _tiny(tiny_cfg).eval()
    source, driving = _frames(batch=3)
    absolute = model.animate(source[0], driving, model.animation_mode(relative=False))
    assert absolute.shape == (3, 3, 64, 64)
    torch.testing.assert_close(
        absolute, model.reconstruct(source[:1].expand(3, -1, -1, -1), driving), atol=1e-5, rtol=0
    )
    # relative motion from a driving video that starts on the source frame is the absolute motion
    video = torch.cat([source[:1], driving[1:]])
    absolute_mode = model.animation_mode(relative=False)
    torch.testing.assert_close(model.animate(source[0], video), model.animate(source[0], video, absolute_mode),
                               atol=1e-5, rtol=0)  # fmt: skip
    # relative=None follows the config (the tiny config says move_location: True)
    from_config = model.animate(source[0], driving)
    assert torch.equal(from_config, model.animate(source[0], driving, model.animation_mode(relative=True)))
    assert (from_config - absolute).abs().max() > 1e-3


def test_checkpoint_round_trip_is_bit_exact(tiny_cfg, tmp_path):
    """Saved in the official layout (hyphenated conv-last key included) and reloaded: identical outputs."""
    model = _tiny(tiny_cfg, seed=0)
    source, driving = _frames()
    model.generator_step(source, driving)  # moves the batch-norm running statistics off their init
    model.eval()
    optimizers = {n: torch.optim.Adam(getattr(model, n).parameters()) for n in NETWORKS}
    path = save_checkpoint(
        tmp_path / "00000001-checkpoint.pth.tar", model, optimizers, epoch=1, extra={"it": 7}
    )
    ckpt = load_checkpoint(path)
    assert "refinement_module.conv-last.weight" in ckpt["generator"] and ckpt["it"] == 7
    restored = _tiny(tiny_cfg, seed=123)
    load_into(restored, ckpt)
    restored.eval()
    assert torch.equal(model.reconstruct(source, driving), restored.reconstruct(source, driving))
    assert torch.equal(model.animate(source[0], driving), restored.animate(source[0], driving))
