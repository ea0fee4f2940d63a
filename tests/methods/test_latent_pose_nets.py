"""latent_pose networks: the release's keys and shapes, the output mappings, AdaIN slicing, the discriminator's
projection and ReLU quirk, spectral norm in eval mode, the 256x256 chain, and a bit-exact reload elsewhere."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.nn.utils.spectral_norm import SpectralNorm

from methods.interface import ShapeError
from methods.latent_pose import AdaIN, Discriminator, DiscriminatorResBlock, Embedder, Generator
from plumbing.errors import AnimbenchError

REPO = Path(__file__).resolve().parents[2]
NUM_LABELS = 98_000  # rows of the release's data/splits/train.csv: one label per video
# small widths where the architecture allows (the encoders are torchvision's, fixed): 32x32 images
SMALL_G = dict(num_channels=4, max_num_channels=16, identity_embedding_size=512, pose_embedding_size=256,
               image_size=32)
SMALL_D = dict(num_labels=5, num_channels=4, max_num_channels=16, embed_channels=16, image_size=32)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _dump(shared_dir: Path, name: str) -> dict[str, tuple[int, ...]]:
    """lpd_<name>.txt -> {key: shape} in file order (lines `key (d0, d1, ...)`)."""
    lines = (shared_dir / "reference" / "state-dicts" / f"lpd_{name}.txt").read_text().splitlines()
    return {key: tuple(int(n) for n in re.findall(r"\d+", shape))
            for key, shape in (line.split(" ", 1) for line in lines if line.strip())}


def _shapes(module: torch.nn.Module, prefix: str = "") -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if k.startswith(prefix)}


def test_state_dicts_equal_the_release(shared_dir):
    """Full-size networks have the release's keys (in order) and shapes: both encoders, the meta and the
    fine-tuned generator, and the discriminator with one embedding row per training video."""
    with torch.device("meta"):  # shapes only
        embedder, generator, discriminator = Embedder(), Generator(), Discriminator(NUM_LABELS)
        finetuned = Generator(finetuned=True)
    for got, name in [(_shapes(embedder, "identity_encoder."), "identity_embedder"),
                      (_shapes(embedder, "pose_encoder."), "pose_embedder"),
                      (_shapes(generator), "generator"), (_shapes(finetuned), "generator_finetuned"),
                      (_shapes(discriminator), "discriminator")]:
        expected = _dump(shared_dir, name)
        assert list(got) == list(expected), name
        assert got == expected, name
    assert len(_shapes(embedder)) == 320 + 314  # nothing beside the two encoders
    # enable_finetuning on a meta generator gives the fine-tuned layout too
    generator.enable_finetuning(torch.zeros(1, 512, device="meta"))
    assert list(_shapes(generator)) == list(_dump(shared_dir, "generator_finetuned"))


def test_parameter_counts_equal_the_reference():
    """Counts stated in reference metric-networks.md §6.1 for the release."""
    with torch.device("meta"):
        embedder, generator, discriminator = Embedder(), Generator(), Discriminator(NUM_LABELS)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(embedder.identity_encoder) == 24_028_992
    assert count(embedder.pose_encoder) == 2_551_808
    assert count(generator) == 37_516_996
    assert count(generator.affine_params_projector) == 10_630_656
    assert count(discriminator) == 69_719_233


def test_adain_slices_are_beta_then_gamma_in_module_order():
    """The projector's 13,056 outputs: per AdaIN layer in module order, C betas then C gammas (17 layers)."""
    torch.manual_seed(0)
    generator = Generator().eval()
    assert generator.adain_widths == [512] * 10 + [512, 256, 256, 128, 128, 64, 64]
    identity, pose = torch.randn(1, 512), torch.randn(1, 256)
    with torch.no_grad():
        flat = generator.affine_params_projector(torch.cat([identity, pose], dim=1))
        params = generator.adain_params(identity, pose)
    assert flat.shape == (1, 13_056) and len(params) == 17
    assert torch.equal(params[0][0], flat[:, :512]) and torch.equal(params[0][1], flat[:, 512:1024])
    assert torch.equal(params[-1][0], flat[:, 12_928:12_992]) and torch.equal(params[-1][1], flat[:, 12_992:])


def test_adain_is_instance_norm_eps_1e4_times_gamma_plus_beta():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 5.0]]]])  # mean 2, biased variance 3.5
    out = AdaIN(1)(x, beta=torch.tensor([[0.5]]), gamma=torch.tensor([[2.0]]))
    expected = (torch.tensor([0.0, 1.0, 2.0, 5.0]) - 2.0) / math.sqrt(3.5 + 1e-4) * 2.0 + 0.5
    torch.testing.assert_close(out.flatten(), expected, rtol=0, atol=1e-6)


def _hand_set_generator(head_bias: list[float]) -> Generator:
    """A generator whose head pre-activation is `head_bias` at every pixel: the projector's hidden layer is
    switched off (bias -1e4 before its ReLU), so every AdaIN's (beta, gamma) is the projector's output bias; the
    last AdaIN gets (0, 0), so the head conv sees zeros and outputs its bias."""
    torch.manual_seed(0)
    generator = Generator(**SMALL_G).eval()
    with torch.no_grad():
        generator.affine_params_projector[0].bias.fill_(-1e4)
        generator.affine_params_projector[2].bias[-2 * 4:].zero_()  # the last AdaIN (4 channels): beta, gamma
        generator.decoder_blocks[-2].bias.copy_(torch.tensor(head_bias))
    return generator


def test_output_mappings_on_hand_set_weights():
    """rgb = 0.75 tanh + 0.5, mask = 0.5 tanh + 0.5, fake_rgbs = rgb * mask, checked against math.tanh."""
    bias = [0.3, -1.2, 2.0, 0.7]
    generator = _hand_set_generator(bias)
    with torch.no_grad():
        out = generator(torch.randn(2, 256), torch.randn(2, 512))
    assert out.rgb.shape == out.fake_rgbs.shape == (2, 3, 32, 32) and out.fake_segm.shape == (2, 1, 32, 32)
    mask = 0.5 * math.tanh(bias[3]) + 0.5
    for c in range(3):
        rgb = 0.75 * math.tanh(bias[c]) + 0.5
        torch.testing.assert_close(out.rgb[:, c], torch.full((2, 32, 32), rgb), rtol=0, atol=1e-6)
        torch.testing.assert_close(out.fake_rgbs[:, c], torch.full((2, 32, 32), rgb * mask), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.fake_segm, torch.full((2, 1, 32, 32), mask), rtol=0, atol=1e-6)
    assert torch.equal(out.fake_rgbs, out.rgb * out.fake_segm)


def test_output_ranges_reach_their_ends_and_a_zero_mask_blacks_the_image():
    """Saturated tanh: rgb spans exactly [-0.25, 1.25], the mask [0, 1]; where the mask is 0 the image is 0."""
    with torch.no_grad():
        out = _hand_set_generator([30.0, -30.0, 30.0, 30.0])(torch.randn(1, 256), torch.randn(1, 512))
        blacked = _hand_set_generator([30.0, -30.0, 0.5, -30.0])(torch.randn(1, 256), torch.randn(1, 512))
    assert out.rgb[:, 0].eq(1.25).all() and out.rgb[:, 1].eq(-0.25).all() and out.fake_segm.eq(1.0).all()
    assert torch.equal(out.fake_rgbs, out.rgb)
    assert blacked.fake_segm.eq(0.0).all() and blacked.fake_rgbs.eq(0.0).all()
    assert blacked.rgb[:, 0].eq(1.25).all()  # the colour is still there, only masked out


def test_finetuned_generator_uses_its_own_identity():
    """After enable_finetuning(e) the generator ignores the identity input and reproduces g(pose, e) exactly."""
    torch.manual_seed(0)
    generator = Generator(**SMALL_G).eval()
    pose, embeds = torch.randn(3, 256), torch.randn(1, 512)
    with torch.no_grad():
        before = generator(pose, embeds.expand(3, -1))
        generator.enable_finetuning(embeds)
        after, ignored = generator(pose), generator(pose, torch.randn(3, 512))
    assert generator.identity_embedding.requires_grad
    for a, b, c in zip(before, after, ignored, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    with pytest.raises(ShapeError, match="identity embedding"):
        Generator(**SMALL_G)(pose)
    with pytest.raises(AnimbenchError, match="image_size 48 must be constant_size 4 times a power of 2"):
        Generator(**{**SMALL_G, "image_size": 48})


def test_discriminator_projection_and_features():
    """score = linear(h) + <h, W[label]> with h the ReLU'd, sum-pooled last map; 7 feature maps, the first six
    after the in-place ReLU of the next block (non-negative)."""
    torch.manual_seed(0)
    disc = Discriminator(**SMALL_D).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        s0, feats = disc(images, torch.tensor([0, 0]))
        s3, _ = disc(images, torch.tensor([3, 3]))
        h = torch.relu(feats[-1]).sum(dim=(2, 3))
        rows = disc.embed.weight  # spectral-normed in eval mode, from the stored u and v
    # 32 px: stem 16x16, two down-blocks to 4x4 (widths 8, 16 = max), then four same-size blocks
    assert [tuple(f.shape) for f in feats] == [(2, 4, 16, 16), (2, 8, 8, 8)] + [(2, 16, 4, 4)] * 5
    assert all(f.min() >= 0 for f in feats[:-1]) and feats[-1].min() < 0
    torch.testing.assert_close(s0 - s3, h @ (rows[0] - rows[3]), rtol=1e-5, atol=1e-4)


def test_discriminator_block_skip_sees_relu_of_its_input():
    """The official block's first ReLU is in place, so the identity skip adds relu(x), not x."""
    torch.manual_seed(0)
    block = DiscriminatorResBlock(4, 4, downsample=False).eval()
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        assert torch.equal(block(x), block.block(torch.relu(x)) + torch.relu(x))


def test_discriminator_finetuning_keeps_one_row():
    """enable_finetuning: one embedding row = the mean identity embedding, spectral norm eps 1e-12 (the
    official re-wrap passes no eps), label 0 scores."""
    torch.manual_seed(0)
    disc = Discriminator(**SMALL_D)
    embeds = torch.randn(1, 16)
    disc.enable_finetuning(embeds)
    assert _shapes(disc, "embed.") == {"embed.weight_orig": (1, 16), "embed.weight_u": (1,), "embed.weight_v": (16,)}
    assert torch.equal(disc.embed.weight_orig, embeds)
    assert _sn_eps(disc.embed) == [1e-12]
    assert disc(torch.rand(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))[0].shape == (2,)
    u = disc.embed.weight_u.clone()
    disc.enable_finetuning(2 * embeds)  # again: the row's value changes, its u and v stay
    assert torch.equal(disc.embed.weight_orig, 2 * embeds) and torch.equal(disc.embed.weight_u, u)
    assert list(_shapes(Discriminator(**SMALL_D, finetuned=True))) == list(_shapes(disc))


def _sn_eps(module: torch.nn.Module) -> list[float]:
    """The eps of every spectral-norm hook under `module` (one per spectral-normed layer)."""
    return [h.eps for m in module.modules() for h in m._forward_pre_hooks.values()
            if isinstance(h, SpectralNorm)]


def test_spectral_norm_eps_is_1e4_everywhere():
    """Every official spectral_norm call passes eps=1e-4 (25 layers in G, 22 in D, the label embedding included)."""
    with torch.device("meta"):
        generator, disc = Generator(), Discriminator(NUM_LABELS)
    assert _sn_eps(generator) == [1e-4] * 25
    assert _sn_eps(disc) == [1e-4] * 22


def test_eval_mode_spectral_norm_uses_the_stored_u_and_v():
    """Driving (eval) divides W_orig by u . (W_orig v) with the stored u, v and leaves them unchanged; training
    runs a power iteration that updates them."""
    torch.manual_seed(0)
    generator = Generator(**SMALL_G)
    head = generator.decoder_blocks[-2]
    pose, identity = torch.randn(1, 256), torch.randn(1, 512)
    generator.train()(pose, identity)  # one power iteration: u, v no longer the init
    u, v = head.weight_u.clone(), head.weight_v.clone()
    with torch.no_grad():
        generator.eval()(pose, identity)
    assert torch.equal(head.weight_u, u) and torch.equal(head.weight_v, v)
    w = head.weight_orig.flatten(1)
    torch.testing.assert_close(head.weight, head.weight_orig / torch.dot(u, w @ v))
    generator.train()(pose, identity)
    assert not torch.equal(head.weight_u, u)


def test_whole_chain_at_256_with_k2():
    """Full-size encoders, generator and discriminator at 256x256: K=2 identity frames, batch 1 (eval mode)."""
    torch.manual_seed(0)
    embedder, generator, disc = Embedder().eval(), Generator().eval(), Discriminator(num_labels=3).eval()
    enc_rgbs, pose_rgbs = torch.rand(1, 2, 3, 256, 256), torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        embeds, embeds_elemwise, pose = embedder(enc_rgbs, pose_rgbs)
        out = generator(pose, embeds)
        score, feats = disc(out.fake_rgbs, torch.tensor([2]))
    assert embeds.shape == (1, 512) and embeds_elemwise.shape == (1, 2, 512) and pose.shape == (1, 256)
    assert torch.equal(embeds, embeds_elemwise.mean(1))
    assert out.fake_rgbs.shape == out.rgb.shape == (1, 3, 256, 256) and out.fake_segm.shape == (1, 1, 256, 256)
    assert out.rgb.min() >= -0.25 and out.rgb.max() <= 1.25
    assert out.fake_segm.min() >= 0 and out.fake_segm.max() <= 1
    assert score.shape == (1,) and [f.shape[1:] for f in feats] == [
        (64, 128, 128), (128, 64, 64), (256, 32, 32), (512, 16, 16), (512, 8, 8), (512, 4, 4), (512, 4, 4)]
    with pytest.raises(ShapeError, match=r"enc_rgbs \(B, K, 3, H, W\)"):
        embedder.identity_embedding(enc_rgbs[0])


_FRESH_PROCESS = """
import sys, torch
torch.set_num_threads(1)
from methods.latent_pose import Discriminator, Embedder, Generator
torch.manual_seed(123)  # other initial weights than the saver's: everything must come from the file
saved = torch.load(sys.argv[1], weights_only=True)
nets = (Embedder(), Generator(**saved["small_g"], finetuned=True), Discriminator(**saved["small_d"]))
for net, key in zip(nets, ("embedder", "generator", "discriminator")):
    net.load_state_dict(saved[key])
    net.eval()
embedder, generator, disc = nets
with torch.no_grad():
    embeds, _, pose = embedder(saved["enc"], saved["pose_rgbs"])
    out = generator(pose)
    score, feats = disc(out.fake_rgbs, saved["labels"])
torch.save({"embeds": embeds, "pose": pose, "out": tuple(out), "score": score, "feats": feats}, sys.argv[2])
"""


def _outputs(embedder, generator, disc, inputs) -> dict:
    with torch.no_grad():
        embeds, _, pose = embedder(inputs["enc"], inputs["pose_rgbs"])
        out = generator(pose)
        score, feats = disc(out.fake_rgbs, inputs["labels"])
    return {"embeds": embeds, "pose": pose, "out": tuple(out), "score": score, "feats": feats}


def test_state_dict_reloads_bit_for_bit_in_a_fresh_process(tmp_path):
    """Saved after a few training-mode passes (BatchNorm statistics and spectral-norm u, v have moved), the
    state_dicts load in a new interpreter (weights_only) and give the same eval outputs bit for bit."""
    torch.manual_seed(0)
    embedder, generator, disc = Embedder(), Generator(**SMALL_G), Discriminator(**SMALL_D)
    inputs = {"enc": torch.rand(2, 2, 3, 64, 64), "pose_rgbs": torch.rand(2, 3, 64, 64),
              "labels": torch.tensor([1, 4])}
    for _ in range(2):
        embeds, _, pose = embedder(inputs["enc"], inputs["pose_rgbs"])
        disc(generator(pose, embeds).fake_rgbs, inputs["labels"])
    generator.enable_finetuning(embeds[:1])
    for net in (embedder, generator, disc):
        net.eval()
    expected = _outputs(embedder, generator, disc, inputs)
    torch.save({"embedder": embedder.state_dict(), "generator": generator.state_dict(),
                "discriminator": disc.state_dict(), "small_g": SMALL_G, "small_d": SMALL_D, **inputs},
               tmp_path / "nets.pt")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", textwrap.dedent(_FRESH_PROCESS), str(tmp_path / "nets.pt"),
                    str(tmp_path / "out.pt")], check=True, cwd=REPO, env=env, timeout=120)
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    for key in ("embeds", "pose", "score"):
        assert torch.equal(got[key], expected[key]), key
    for name, a, b in [("out", got["out"], expected["out"]), ("feats", got["feats"], expected["feats"])]:
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)), name
    # the file, not the seed, made them equal: freshly built networks differ
    torch.manual_seed(123)
    fresh = Embedder().eval(), Generator(**SMALL_G, finetuned=True).eval(), Discriminator(**SMALL_D).eval()
    assert not torch.equal(_outputs(*fresh, inputs)["out"][0], expected["out"][0])
