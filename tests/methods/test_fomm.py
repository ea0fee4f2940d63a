"""FOMM: official state-dict layout per config, identity motion, animation modes, training, perceptual loss."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from methods.fomm import FOMM
from methods.fomm_keypoints import normalize_kp
from methods.interface import AnimationMode
from methods.layers import make_coordinate_grid, warp
from methods.losses import VGG19_SLICES, PerceptualPyramidLoss, random_vgg19
from methods.registry import load_config
from plumbing import weights
from plumbing.errors import AnimbenchError
from plumbing.files import sha256_file

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "fomm-tiny.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def tiny() -> FOMM:
    torch.manual_seed(0)
    return FOMM.from_config(TINY)


def _parse_dump(path: Path) -> dict[str, list[tuple[str, tuple]]]:
    """`<entry> <key> (<shape>)` lines of reference/state-dicts/fomm_<cfg>.txt; '#' lines are headers."""
    entries: dict[str, list[tuple[str, tuple]]] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        entry, key, shape = line.split(" ", 2)
        entries.setdefault(entry, []).append((key, tuple(ast.literal_eval(shape))))
    return entries


def test_state_dicts_equal_the_official_dumps_for_every_config(shared_dir):
    configs = sorted((shared_dir / "data" / "official-configs" / "fomm").glob("*.yaml"))
    checked = 0
    for path in configs:
        dump_path = shared_dir / "reference" / "state-dicts" / f"fomm_{path.stem}.txt"
        if not dump_path.is_file():
            continue
        dump = _parse_dump(dump_path)
        with torch.device("meta"):  # shapes only: no 62M-parameter initialisation
            model = FOMM.from_config(path)
        for entry in ("kp_detector", "generator", "discriminator"):
            got = [(k, tuple(v.shape)) for k, v in getattr(model, entry).state_dict().items()]
            assert got == dump[entry], f"{path.name}: {entry}"
        checked += 1
    assert checked == 8


def test_identical_keypoints_give_the_identity_deformation(tiny):
    tiny.eval()
    torch.manual_seed(1)
    source = torch.rand(2, 3, 64, 64)
    value = torch.rand(2, 10, 2) * 1.6 - 0.8
    kp = {"value": value, "jacobian": torch.eye(2).expand(2, 10, 2, 2)}
    with torch.no_grad():
        motion = tiny.generator.dense_motion_network(source, kp_driving=kp, kp_source=kp)
    identity = make_coordinate_grid((16, 16)).expand(2, 16, 16, 2)
    assert torch.allclose(motion["deformation"], identity, atol=1e-5)
    # with align_corners=True (the official weights' convention) the identity warp reproduces its input
    small = tiny.generator.dense_motion_network.down(source)  # the 16x16 image the motion is estimated on
    assert torch.allclose(warp(small, motion["deformation"], align_corners=True), small, atol=1e-4)
    for slot in range(11):  # every sparse motion is the identity when source and driving keypoints agree
        assert torch.allclose(motion["sparse_deformed"][:, slot], small, atol=1e-4)


def test_align_corners_flag_reaches_every_sampling_site(tiny):
    assert tiny.align_corners is True and tiny.generator.dense_motion_network.align_corners is True
    other = FOMM.from_config(TINY, align_corners=False)
    assert other.generator.align_corners is False and other.generator.dense_motion_network.align_corners is False
    other.load_state_dict(tiny.state_dict())
    x = torch.rand(1, 3, 64, 64)
    assert not torch.allclose(other.reconstruct(x, x), tiny.reconstruct(x, x), atol=1e-4)


def test_kp_detector_starts_with_identity_jacobians_on_the_valid_conv_grid(tiny):
    kp = tiny.kp_detector(torch.rand(3, 3, 64, 64))
    assert kp["value"].shape == (3, 10, 2) and kp["jacobian"].shape == (3, 10, 2, 2)
    assert torch.allclose(kp["jacobian"], torch.eye(2).expand(3, 10, 2, 2), atol=1e-5)
    assert kp["value"].abs().max() <= 1
    assert tiny.kp_detector.kp(tiny.kp_detector.predictor(torch.rand(1, 3, 32, 32))).shape[-2:] == (26, 26)


def _kp(values, jacobians=None):
    value = torch.tensor(values, dtype=torch.float32).unsqueeze(0)
    jac = torch.eye(2).expand(1, value.shape[1], 2, 2) if jacobians is None else torch.tensor(jacobians).unsqueeze(0)
    return {"value": value, "jacobian": jac}


def test_normalize_kp_absolute_relative_and_adapt_scale():
    square = [[0.0, 0.0], [0.2, 0.0], [0.2, 0.2], [0.0, 0.2]]  # area 0.04
    big = [[-0.4, -0.4], [0.0, -0.4], [0.0, 0.0], [-0.4, 0.0]]  # area 0.16
    kp_source, kp_initial = _kp(square), _kp(big)
    kp_driving = _kp([[p[0] + 0.1, p[1] - 0.2] for p in big])
    absolute = normalize_kp(kp_source, kp_driving, kp_initial)
    assert torch.equal(absolute["value"], kp_driving["value"])
    relative = normalize_kp(kp_source, kp_driving, kp_initial, use_relative_movement=True)
    assert torch.allclose(relative["value"], kp_source["value"] + torch.tensor([0.1, -0.2]))
    scaled = normalize_kp(kp_source, kp_driving, kp_initial, adapt_movement_scale=True, use_relative_movement=True)
    assert torch.allclose(scaled["value"], kp_source["value"] + 0.5 * torch.tensor([0.1, -0.2]))  # sqrt(.04/.16)


def test_normalize_kp_relative_jacobian():
    rot = [[0.0, -1.0], [1.0, 0.0]]
    kp_source = _kp([[0.0, 0.0]], [[[2.0, 0.0], [0.0, 2.0]]])
    kp_initial = _kp([[0.0, 0.0]], [rot])
    kp_driving = _kp([[0.0, 0.0]], [rot])
    out = normalize_kp(kp_source, kp_driving, kp_initial, use_relative_movement=True, use_relative_jacobian=True)
    assert torch.allclose(out["jacobian"], kp_source["jacobian"])  # no change since frame 0: J_source kept
    out = normalize_kp(kp_source, kp_driving, kp_initial, use_relative_movement=True)
    assert torch.equal(out["jacobian"], kp_driving["jacobian"])


def test_adapt_scale_on_degenerate_keypoints_is_a_clear_error():
    line = _kp([[0.0, 0.0], [0.1, 0.1], [0.2, 0.2]])
    with pytest.raises(AnimbenchError, match="degenerate"):
        normalize_kp(line, line, line, adapt_movement_scale=True, use_relative_movement=True)


def test_relative_animation_of_a_still_video_reconstructs_the_source_pose(tiny):
    torch.manual_seed(2)
    source, still = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    tiny.train()
    video = still.expand(3, 3, 64, 64)
    out = tiny.animate(source, video, AnimationMode(relative=True, adapt_scale=False), batch_size=2)
    assert out.shape == (3, 3, 64, 64)
    assert tiny.generator.training and tiny.kp_detector.training  # modes restored
    # no driving motion since frame 0: the source keeps its own keypoints, i.e. reconstruct(source, source)
    assert torch.allclose(out, tiny.reconstruct(source, source).expand_as(out), atol=1e-5)


def test_absolute_animation_matches_per_frame_reconstruction(tiny):
    torch.manual_seed(3)
    source, video = torch.rand(3, 64, 64), torch.rand(4, 3, 64, 64)
    out = tiny.animate(source, video, AnimationMode(relative=False, adapt_scale=False), batch_size=3)
    want = torch.cat([tiny.reconstruct(source[None], frame[None]) for frame in video])
    assert torch.allclose(out, want, atol=1e-5)
    assert 0 <= out.min() and out.max() <= 1  # sigmoid output


def test_generator_step_has_every_configured_loss_and_discriminator_step(tiny):
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    losses, outputs = tiny.generator_step(source, driving)
    assert set(losses) == {"perceptual", "gen_gan", "feature_matching", "equivariance_value",
                           "equivariance_jacobian"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert outputs["prediction"].shape == (2, 3, 64, 64) and outputs["kp_driving"]["value"].shape == (2, 10, 2)
    d_losses = tiny.discriminator_step(source, driving, outputs)
    assert set(d_losses) == {"disc_gan"}
    d_losses["disc_gan"].backward()
    assert all(p.grad is None for p in tiny.generator.parameters())  # the prediction is detached
    assert any(p.grad is not None for p in tiny.discriminator.parameters())


def test_keypoints_and_losses_stay_float32_under_bf16_autocast(tiny):
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses, outputs = tiny.generator_step(source, driving)
        d_losses = tiny.discriminator_step(source, driving, outputs)
    assert outputs["kp_driving"]["value"].dtype == torch.float32
    assert outputs["kp_driving"]["jacobian"].dtype == torch.float32
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in {**losses, **d_losses}.values())


def test_no_gan_config_has_no_discriminator_losses():
    cfg = load_config(TINY)
    cfg["train_params"]["loss_weights"]["generator_gan"] = 0
    model = FOMM.from_config(cfg)
    assert not model.uses_gan
    source = torch.rand(2, 3, 64, 64)
    losses, outputs = model.generator_step(source, source)
    assert "gen_gan" not in losses and "feature_matching" not in losses
    assert model.discriminator_step(source, source, outputs) == {}


def test_a_few_adam_steps_lower_the_loss_on_a_fixed_batch():
    cfg = load_config(TINY)
    cfg["train_params"]["loss_weights"]["generator_gan"] = 0
    torch.manual_seed(0)
    model = FOMM.from_config(cfg)
    params = list(model.generator.parameters()) + list(model.kp_detector.parameters())
    optimizer = torch.optim.Adam(params, lr=2e-3, betas=(0.5, 0.999))
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    totals = []
    for _ in range(5):
        torch.manual_seed(123)  # the same equivariance transform every step
        losses, _ = model.generator_step(source, driving)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < totals[0], totals


def test_official_entries():
    assert FOMM.official_entries() == ["generator", "discriminator", "kp_detector", "optimizer_generator",
                                       "optimizer_discriminator", "optimizer_kp_detector", "epoch"]


# --- perceptual loss: the real VGG19 file, its absence, and the documented fallbacks --------------------------

@pytest.fixture()
def torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path / "hub" / "checkpoints"


def test_missing_vgg_without_fallback_names_the_file_and_folder(torch_home):
    cfg = load_config(TINY)
    del cfg["train_params"]["perceptual_fallback"]
    model = FOMM.from_config(cfg)  # inference needs no VGG: building still works
    with pytest.raises(AnimbenchError, match=rf"vgg19-dcbb9e9d.pth: place it in {torch_home}"):
        model.generator_step(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))


@pytest.mark.parametrize("fallback", ["pixel_l1", "random_vgg19"])
def test_fallbacks_work_and_say_so(torch_home, fallback):
    loss = PerceptualPyramidLoss([1, 0.5], [10] * 5, fallback=fallback)
    assert loss.backend == fallback and "FALLBACK" in loss.backend_description
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert loss(x, y) > 0 and loss(x, x) == 0


def test_random_vgg19_is_reproducible():
    a, b = random_vgg19(), random_vgg19()
    assert torch.equal(a.slices[3][0].weight, b.slices[3][0].weight)


def _vgg_file(path: Path) -> None:
    """A torchvision-layout VGG19 state_dict (features up to relu5_1 are all the loss reads)."""
    features = random_vgg19(seed=5)
    state = {}
    offset = 0
    for block in features.slices:
        for i, layer in enumerate(block):
            for name, tensor in layer.state_dict().items():
                state[f"features.{offset + i}.{name}"] = tensor
        offset += len(block)
    assert offset == VGG19_SLICES[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_vgg_file_with_the_wrong_hash_is_rejected_even_with_a_fallback(torch_home):
    _vgg_file(torch_home / "vgg19-dcbb9e9d.pth")
    with pytest.raises(AnimbenchError, match="does not start with dcbb9e9d"):
        PerceptualPyramidLoss([1], [10] * 5, fallback="pixel_l1")


def test_vgg_file_with_a_matching_hash_is_loaded(torch_home, monkeypatch):
    name = "vgg19-testfile.pth"
    _vgg_file(torch_home / name)
    digest = sha256_file(torch_home / name)
    entry = weights.WeightFile(name, "torch_hub", ("test",), "test", sha256_prefix=digest[:8])
    monkeypatch.setitem(weights.WEIGHTS, name, entry)
    loss = PerceptualPyramidLoss([1], [10] * 5, fallback="pixel_l1", weight_name=name)
    assert loss.backend == "vgg19_imagenet" and name in loss.backend_description  # a present file wins
    assert torch.equal(loss.vgg.slices[0][0].weight, random_vgg19(seed=5).slices[0][0].weight)
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x) == 0 and loss(x, torch.rand(1, 3, 32, 32)) > 0
