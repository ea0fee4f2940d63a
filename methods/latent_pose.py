"""Neural Head Reenactment with Latent Pose Descriptors (Burkov et al., CVPR 2020): the networks.

Faithful to shrubb/latent-pose-reenactment (configs/default.yaml; reference edn-latentpose.md §2.4-2.8 and
metric-networks.md §5). State-dict keys and shapes equal the released checkpoint's (`lpd_*.txt` dumps), spectral
norm included (`weight_orig`, `weight_u`, `weight_v`: torch's hook API, whose eval mode uses the stored u and v
without a power iteration, as driving with the EMA weights needs).

Conventions (official sizes):
- images are RGB float in [0, 1], 256x256, with NO mean/std normalisation; the discriminator sees masked images
  (background black): targets `image * mask` in [0, 1], fakes `fake_rgbs` in (-0.25, 1.25);
- identity frames `enc_rgbs` (B, K, 3, 256, 256), K = 8 in meta-learning; pose frame (B, 3, 256, 256);
- identity embedding (B, 512) = mean over the K frames of ResNeXt-50 outputs; pose embedding (B, 256);
- the generator returns rgb in (-0.25, 1.25), a mask in (0, 1) and `fake_rgbs = rgb * mask`;
- discriminator labels are dataset indices of videos (num_labels = 98,000 for the release), or 0 after fine-tuning.

The tiny configs swap the identity trunk for a MobileNetV2 and narrow both encoders (`model_params.identity_encoder`,
`encoder_width_mult`): not the official architecture, for CPU tests and the demo; the official configs leave both
keys out.

Then the `LatentPose` method (training hooks, running averages, fine-tuning, driving), its config and its card. The
training samples are in methods/latent_pose_data.py, the losses in methods/latent_pose_losses.py.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import pathlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from methods.checkpoints import load_checkpoint, load_matching
from methods.config import LEAF, SHARED_SECTIONS, TRAIN_COMMON, ConfigSpec, get_path
from methods.interface import (
    AnimationMode,
    Method,
    ShapeError,
    check_animate_shapes,
    check_reconstruct_shapes,
    inference_mode,
)
from methods.latent_pose_augment import PoseAugmentation
from methods.latent_pose_data import FinetuneDataset, LatentPoseDataset, official_image
from methods.latent_pose_losses import (
    FALLBACKS,
    CaffePerceptualLoss,
    central_crop,
    dice_loss,
    dis_embed_loss,
    feature_matching,
    hinge_losses,
)
from methods.registry import MethodCard, load_config, register_method
from plumbing.errors import AnimbenchError
from plumbing.weights import CAFFE_VGG19_FILE, VGG_FACE_FILE

SN_EPS = 1e-4  # every official spectral_norm call passes eps=1e-4 ...
FINETUNED_EMBED_SN_EPS = 1e-12  # ... except the one re-wrapping D's fine-tuned embedding (torch's default)
NORM_EPS = 1e-4  # InstanceNorm inside AdaIN


def _sn(module: nn.Module, eps: float = SN_EPS) -> nn.Module:
    """nn.utils.spectral_norm (not the parametrization API): its keys and load pre-hook match the release."""
    return nn.utils.spectral_norm(module, eps=eps)


def _padding_slot() -> nn.Module:
    """The official blocks hold an empty `nn.Sequential()` where reflection padding would go (`gen_padding:
    zero` pads inside the conv instead); it keeps the Sequential indices, hence the key names, as released."""
    return nn.Identity()


# --- encoders ----------------------------------------------------------------------------------------------------


IDENTITY_ENCODERS = ("resnext50_32x4d", "mobilenet_v2")  # the official one first


class Embedder(nn.Module):
    """Identity encoder (ResNeXt-50 32x4d -> 512) and pose encoder (MobileNetV2 -> 256), randomly initialised.

    Keys `identity_encoder.*` / `pose_encoder.*` are torchvision's, as in the release's `embedder` entry.
    `identity_encoder="mobilenet_v2"` and `width_mult` < 1 (MobileNetV2's width multiplier, for both MobileNetV2
    trunks) are NOT the official architecture: small trunks for CPU tests and the demo (the tiny configs).
    """

    def __init__(self, identity_embedding_size: int = 512, pose_embedding_size: int = 256,
                 identity_encoder: str = "resnext50_32x4d", width_mult: float = 1.0):
        super().__init__()
        self.identity_embedding_size = identity_embedding_size
        if identity_encoder == "resnext50_32x4d":
            if width_mult != 1.0:
                raise AnimbenchError(f"latent_pose embedder: width_mult {width_mult} needs identity_encoder "
                                     "mobilenet_v2 (ResNeXt-50 has no width multiplier)")
            self.identity_encoder = torchvision.models.resnext50_32x4d(weights=None,
                                                                       num_classes=identity_embedding_size)
        elif identity_encoder == "mobilenet_v2":
            self.identity_encoder = torchvision.models.mobilenet_v2(
                weights=None, num_classes=identity_embedding_size, width_mult=width_mult)
        else:
            raise AnimbenchError(f"latent_pose embedder: identity_encoder must be one of {list(IDENTITY_ENCODERS)}, "
                                 f"got {identity_encoder!r}")
        self.pose_encoder = torchvision.models.mobilenet_v2(weights=None, num_classes=pose_embedding_size,
                                                            width_mult=width_mult)

    def identity_embedding(self, enc_rgbs: Tensor) -> tuple[Tensor, Tensor]:
        """(B, K, 3, H, W) in [0, 1] -> (embeds (B, 512) = mean over K, embeds_elemwise (B, K, 512))."""
        if enc_rgbs.dim() != 5 or enc_rgbs.shape[2] != 3:
            raise ShapeError(f"latent_pose identity encoder: expected enc_rgbs (B, K, 3, H, W), got "
                             f"{tuple(enc_rgbs.shape)}")
        batch, k = enc_rgbs.shape[:2]
        embeds_elemwise = self.identity_encoder(enc_rgbs.flatten(0, 1)).view(batch, k, -1)
        # the official `average_function: sum` takes the mean
        return embeds_elemwise.mean(1), embeds_elemwise

    def pose_embedding(self, pose_rgbs: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] (augmented in training) -> (B, 256)."""
        if pose_rgbs.dim() != 4 or pose_rgbs.shape[1] != 3:
            raise ShapeError(f"latent_pose pose encoder: expected pose_rgbs (B, 3, H, W), got "
                             f"{tuple(pose_rgbs.shape)}")
        return self.pose_encoder(pose_rgbs)

    def forward(self, enc_rgbs: Tensor | None, pose_rgbs: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """-> (embeds (B, 512), embeds_elemwise (B, K, 512), pose_embedding (B, 256)); identity skipped if None."""
        embeds, embeds_elemwise = (None, None) if enc_rgbs is None else self.identity_embedding(enc_rgbs)
        return embeds, embeds_elemwise, self.pose_embedding(pose_rgbs)


# --- generator ---------------------------------------------------------------------------------------------------


class AdaIN(nn.Module):
    """InstanceNorm (no affine, eps 1e-4) x per-sample gamma + beta; gamma and beta come from the projector."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor, beta: Tensor, gamma: Tensor) -> Tensor:
        """(B, C, H, W), beta and gamma (B, C) -> (B, C, H, W)."""
        return F.instance_norm(x, eps=NORM_EPS) * gamma[:, :, None, None] + beta[:, :, None, None]


AdaINParams = Iterator[tuple[Tensor, Tensor]]  # (beta, gamma) per AdaIN layer, in module order


def _run(layers: nn.Sequential, x: Tensor, params: AdaINParams) -> Tensor:
    """Apply `layers` in order, feeding each AdaIN (also those inside residual blocks) the next (beta, gamma)."""
    for layer in layers:
        if isinstance(layer, AdaIN):
            x = layer(x, *next(params))
        elif isinstance(layer, GeneratorResBlock):
            x = layer(x, params)
        else:
            x = layer(x)
    return x


class GeneratorResBlock(nn.Module):
    """Pre-activation residual block: AdaIN, ReLU, [nearest x2], SN-conv3 (no bias), AdaIN, ReLU, SN-conv3.

    Skip: [nearest x2] + SN-conv1 (bias) when the shape changes, else identity. (B, C_in, H, W) -> (B, C_out,
    2H, 2W) when upsampling.
    """

    def __init__(self, in_channels: int, out_channels: int, upsample: bool):
        super().__init__()
        up = [nn.Upsample(scale_factor=2)] if upsample else []
        self.block = nn.Sequential(
            AdaIN(in_channels), nn.ReLU(), *up, _padding_slot(),
            _sn(nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)),
            AdaIN(out_channels), nn.ReLU(), _padding_slot(),
            _sn(nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)),
        )
        self.skip: nn.Sequential | None = None
        if in_channels != out_channels or upsample:
            self.skip = nn.Sequential(*up, _sn(nn.Conv2d(in_channels, out_channels, 1)))

    def forward(self, x: Tensor, params: AdaINParams) -> Tensor:
        """See the class docstring; consumes two (beta, gamma) pairs."""
        return _run(self.block, x, params) + (x if self.skip is None else self.skip(x))


class Constant(nn.Module):
    """The generator's learned input, initialised to ones: (1, C, s, s) expanded to the batch."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.constant = nn.Parameter(torch.ones(1, channels, size, size))

    def forward(self, batch_size: int) -> Tensor:
        """-> (B, C, s, s), a view of the one parameter."""
        return self.constant.expand(batch_size, -1, -1, -1)


class GeneratorOutput(NamedTuple):
    fake_rgbs: Tensor  # (B, 3, H, W) = rgb * fake_segm: the foreground on black, in (-0.25, 1.25)
    fake_segm: Tensor  # (B, 1, H, W) foreground mask in (0, 1)
    rgb: Tensor  # (B, 3, H, W) unmasked colour in (-0.25, 1.25)


def map_outputs(t: Tensor) -> GeneratorOutput:
    """The head's tanh output (B, 4, H, W) -> rgb = 0.75 t[:3] + 0.5, mask = 0.5 t[3] + 0.5, fake = rgb * mask."""
    rgb = t[:, :-1] * 0.75 + 0.5
    segm = t[:, -1:] * 0.5 + 0.5
    return GeneratorOutput(rgb * segm, segm, rgb)


class Generator(nn.Module):
    """AdaIN decoder from a learned constant; the projector maps cat(identity, pose) to every AdaIN's beta, gamma.

    Official sizes: constant (512, 4, 4) -> 2 ResBlocks 512@4 -> up-ResBlocks 512@8, 512@16, 512@32, 256@64,
    128@128, 64@256 -> AdaIN(64), ReLU, SN-conv3 64->4 (bias), tanh -> `map_outputs`. The projector is
    SN-Linear(768->768), ReLU, SN-Linear(768->13,056) for 17 AdaIN layers (6,528 channels): per layer in module
    order, beta (C values) then gamma (C). After `enable_finetuning` the generator holds its own
    `identity_embedding` (1, 512) and ignores the identity input.
    """

    def __init__(self, num_channels: int = 64, max_num_channels: int = 512, identity_embedding_size: int = 512,
                 pose_embedding_size: int = 256, image_size: int = 256, constant_size: int = 4,
                 num_residual_blocks: int = 2, out_channels: int = 3, finetuned: bool = False):
        super().__init__()
        num_up = math.log2(image_size / constant_size)
        if not num_up.is_integer() or num_up < 0:
            raise AnimbenchError(f"latent_pose generator: image_size {image_size} must be constant_size "
                                 f"{constant_size} times a power of 2")
        widths = [min(num_channels * 2 ** (int(num_up) - i), max_num_channels) for i in range(int(num_up) + 1)]
        self.identity_embedding_size = identity_embedding_size
        if finetuned:  # a fine-tuned checkpoint's generator; its value comes with the state_dict
            self.identity_embedding = nn.Parameter(torch.zeros(1, identity_embedding_size))
        self.constant = Constant(widths[0], constant_size)
        blocks: list[nn.Module] = [GeneratorResBlock(widths[0], widths[0], upsample=False)
                                   for _ in range(num_residual_blocks)]
        blocks += [GeneratorResBlock(c_in, c_out, upsample=True) for c_in, c_out in itertools.pairwise(widths)]
        blocks += [AdaIN(widths[-1]), nn.ReLU(), _sn(nn.Conv2d(widths[-1], out_channels + 1, 3, 1, 1)), nn.Tanh()]
        self.decoder_blocks = nn.Sequential(*blocks)
        self.adain_widths = [m.num_features for m in self.decoder_blocks.modules() if isinstance(m, AdaIN)]
        joint = identity_embedding_size + pose_embedding_size
        hidden = max(joint, 512)
        self.affine_params_projector = nn.Sequential(
            _sn(nn.Linear(joint, hidden)), nn.ReLU(), _sn(nn.Linear(hidden, 2 * sum(self.adain_widths))))

    @property
    def finetuned(self) -> bool:
        return "identity_embedding" in self._parameters

    def enable_finetuning(self, embeds: Tensor) -> None:
        """Hold `embeds` (1, 512), the mean identity embedding of the fine-tuning images, as a trainable vector."""
        embeds = embeds.detach().reshape(1, self.identity_embedding_size).to(self.constant.constant)
        if self.finetuned:
            with torch.no_grad():
                self.identity_embedding.copy_(embeds)
        else:
            # the module's own parameter: state_dict lists it before the submodules' keys, as the release does
            self.identity_embedding = nn.Parameter(embeds.clone())

    def adain_params(self, identity: Tensor, pose: Tensor) -> list[tuple[Tensor, Tensor]]:
        """identity (B, 512), pose (B, 256) -> [(beta (B, C), gamma (B, C))] per AdaIN layer in module order."""
        flat = self.affine_params_projector(torch.cat([identity, pose], dim=1))  # (B, 13056)
        chunks = flat.split([c for c in self.adain_widths for _ in (0, 1)], dim=1)
        return list(zip(chunks[0::2], chunks[1::2], strict=True))

    def forward(self, pose: Tensor, identity: Tensor | None = None) -> GeneratorOutput:
        """pose (B, 256) and identity (B, 512) (ignored once fine-tuned) -> masked image, mask, rgb at 256x256."""
        if self.finetuned:
            identity = self.identity_embedding.expand(len(pose), -1)
        elif identity is None:
            raise ShapeError("latent_pose generator: an identity embedding (B, 512) is needed before fine-tuning")
        x = _run(self.decoder_blocks, self.constant(len(pose)), iter(self.adain_params(identity, pose)))
        return map_outputs(x)  # x: (B, 4, 256, 256) in (-1, 1), from (B, 512, 4, 4)


# --- discriminator -----------------------------------------------------------------------------------------------


class DiscriminatorResBlock(nn.Module):
    """No norm: ReLU, SN-conv3 (bias), ReLU, SN-conv3 (bias), [avg pool 2]; skip SN-conv1 + [avg pool] if the shape
    changes. The official leading ReLU is in place on the block's input, so the skip path sees relu(x) too."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        pool = [nn.AvgPool2d(2)] if downsample else []
        self.block = nn.Sequential(
            nn.ReLU(), _padding_slot(), _sn(nn.Conv2d(in_channels, out_channels, 3, 1, 1)),
            nn.ReLU(), _padding_slot(), _sn(nn.Conv2d(out_channels, out_channels, 3, 1, 1)), *pool)
        self.skip: nn.Sequential | None = None
        if in_channels != out_channels or downsample:
            self.skip = nn.Sequential(_sn(nn.Conv2d(in_channels, out_channels, 1)), *pool)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H/2, W/2) when downsampling."""
        x = F.relu(x)  # what the official in-place ReLU leaves in x; block.0 then finds nothing left to clip
        return self.block(x) + (x if self.skip is None else self.skip(x))


class Discriminator(nn.Module):
    """Projection discriminator on masked RGB, no pose input.

    Official sizes: stem (SN-conv3 3->64, ReLU, SN-conv3, avg pool) + (SN-conv1 + avg pool) -> 64@128; down-ResBlocks
    128@64, 256@32, 512@16, 512@8, 512@4; ResBlock 512@4; ReLU, spatial sum -> h (B, 512);
    score = SN-Linear(512->1)(h) + <h, SN-Embedding(label)>. `embed` holds one 512-row per label (U(-0.1, 0.1)
    before spectral norm); `enable_finetuning` replaces it with the one mean identity embedding.
    """

    def __init__(self, num_labels: int, num_channels: int = 64, max_num_channels: int = 512,
                 embed_channels: int = 512, num_blocks: int = 7, image_size: int = 256, in_channels: int = 3,
                 finetuned: bool = False):
        super().__init__()
        self.embed_channels = embed_channels
        self.down_block = nn.Sequential(
            _sn(nn.Conv2d(in_channels, num_channels, 3, 1, 1)), nn.ReLU(),
            _sn(nn.Conv2d(num_channels, num_channels, 3, 1, 1)), nn.AvgPool2d(2))
        self.skip = nn.Sequential(_sn(nn.Conv2d(in_channels, num_channels, 1)), nn.AvgPool2d(2))
        num_down = min(int(math.log2(image_size)) - 2, num_blocks)
        self.blocks = nn.ModuleList()
        c_in = num_channels
        for i in range(1, num_blocks):  # down-blocks double the width until 4x4, then same-size blocks
            c_out = min(2 * c_in, max_num_channels) if i < num_down else c_in
            if i == num_blocks - 1:
                c_out = embed_channels
            self.blocks.append(DiscriminatorResBlock(c_in, c_out, downsample=i < num_down))
            c_in = c_out
        self.linear = _sn(nn.Linear(embed_channels, 1))
        self.finetuned = finetuned  # a fine-tuned checkpoint's discriminator: one row, filled by the state_dict
        embed = nn.Embedding(1 if finetuned else num_labels, embed_channels)
        nn.init.uniform_(embed.weight, -0.1, 0.1)
        self.embed = _sn(embed, FINETUNED_EMBED_SN_EPS if finetuned else SN_EPS)

    def enable_finetuning(self, embeds: Tensor) -> None:
        """Replace the label embeddings by one row, `embeds` (1, 512), re-wrapped in spectral norm (eps 1e-12);
        once fine-tuned, only the row's value changes (u and v stay), as in the official code."""
        weight = self.embed.weight_orig
        if self.finetuned:
            with torch.no_grad():
                weight.copy_(embeds.detach().reshape(1, self.embed_channels))
            return
        row = nn.Embedding(1, self.embed_channels, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            row.weight.copy_(embeds.detach().reshape(1, self.embed_channels))
        self.embed = _sn(row, FINETUNED_EMBED_SN_EPS)
        self.finetuned = True

    def score(self, images: Tensor, embed: Tensor) -> tuple[Tensor, list[Tensor]]:
        """images (B, 3, 256, 256), masked; embed (B, 512) = `self.embed(labels)`, which the official code looks
        up once per step for its three passes (fake, fake detached, real) -> (scores (B,), 7 feature maps)."""
        feats = [self.down_block(images) + self.skip(images)]  # (B, 64, 128, 128)
        for block in self.blocks:
            feats.append(block(feats[-1]))  # ... -> (B, 512, 4, 4)
        h = F.relu(feats[-1]).sum(dim=(2, 3))  # (B, 512)
        scores = self.linear(h)[:, 0] + (h * embed).sum(1)
        # feature matching sees the maps after the next block's in-place ReLU rewrote them (all but the last)
        return scores, [F.relu(f) for f in feats[:-1]] + feats[-1:]

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, list[Tensor]]:
        """images (B, 3, 256, 256), masked; labels (B,) int64 -> (scores (B,), 7 feature maps)."""
        return self.score(images, self.embed(labels))


# --- the LatentPose method (config, card, training and driving hooks) follows here ------------------------------


STAGES = ("meta", "finetune")
NETWORKS = ("embedder", "generator", "discriminator")
AVERAGED = ("embedder", "generator")  # the official running averages (EMA) are of these two
CRITERIA = ("idt_embed", "perceptual", "adversarial", "featmat", "dis_embed", "dice")
# the release's `args` is an argparse.Namespace holding pathlib paths: exactly these may be rebuilt on load
ARGS_SAFE_GLOBALS: tuple[Any, ...] = (argparse.Namespace, pathlib.PosixPath) + (
    () if pathlib.PosixPath.__module__ == "pathlib" else ((pathlib.PosixPath, "pathlib.PosixPath"),))
# the official argparse names `args` holds (ours: a plain dict of them, so our files need no allow-list)
_ARGS_KEYS = {"image_size": "dataset_params.image_size", "n_frames_for_encoder": "dataset_params.num_frames_for_encoder",
              "num_channels": "model_params.num_channels", "max_num_channels": "model_params.max_num_channels",
              "embed_channels": "model_params.embed_channels",
              "pose_embedding_size": "model_params.pose_embedding_size",
              "gen_constant_input_size": "model_params.gen_constant_input_size",
              "gen_num_residual_blocks": "model_params.gen_num_residual_blocks",
              "dis_num_blocks": "model_params.dis_num_blocks", "num_labels": "model_params.num_labels",
              "optimizer": "train_params.optimizer", "lr_gen": "train_params.lr_gen", "lr_dis": "train_params.lr_dis",
              "beta1": "train_params.beta1", "batch_size": "train_params.batch_size"}


class LatentPose(Method):
    """Latent-pose reenactment: identity + pose encoders (`embedder`), AdaIN generator, projection discriminator.

    Two stages, one config each (`model_params.stage`): `meta` (meta-learning on many videos: one optimiser `G`
    over generator + embedder, `D` over the discriminator, Adam beta1 0 eps 1e-5, EMA 0.999) and `finetune` (one
    identity, started `--init-from` a meta checkpoint: the generator holds the mean identity embedding, the
    discriminator one row; only `G` = generator and `D` train, RAdam; the embedder is frozen but stays in train
    mode, so its BatchNorm statistics move; EMA 0.972). Driving uses the running averages in eval mode.
    """

    stages: ClassVar[tuple[str, ...]] = STAGES
    required_entries: ClassVar[tuple[str, ...]] = ("embedder", "generator")

    def __init__(self, embedder: Embedder, generator: Generator, discriminator: Discriminator, *,
                 stage: str = "meta", image_size: int = 256, config: Mapping[str, Any] | None = None):
        super().__init__()
        self.embedder, self.generator, self.discriminator = embedder, generator, discriminator
        self.networks = NETWORKS
        self.stage, self.image_size = stage, int(image_size)
        self.config = dict(config or {})
        self.train_params = dict(self.config.get("train_params") or {})
        self.dataset_params = dict(self.config.get("dataset_params") or {})
        self._losses: dict[str, Any] | None = None  # the VGG losses, built on first use
        # the running averages: plain attributes (not submodules: no gradients, not in parameters(); _apply moves
        # them with the model), always in eval mode as officially
        self.running_averages: dict[str, nn.Module] = {}
        if self.train_params.get("weights_running_average", True):
            self.running_averages = {n: copy.deepcopy(getattr(self, n)).eval().requires_grad_(False)
                                     for n in AVERAGED}

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - nn.Module's signature
        super()._apply(fn, recurse)
        for module in self.running_averages.values():
            module._apply(fn, recurse)
        return self

    @classmethod
    def from_config(cls, cfg: dict | str, align_corners: bool = True) -> LatentPose:
        """Build the networks of the config's stage (randomly initialised as officially)."""
        if not isinstance(cfg, dict) or "_meta" not in cfg:
            cfg = load_config(cfg, method="latent_pose")
        m, size = cfg["model_params"], int(get_path(cfg, "dataset_params.image_size", 256))
        finetune = m["stage"] == "finetune"
        identity = int(m.get("embed_channels", 512))
        embedder = Embedder(identity, int(m.get("pose_embedding_size", 256)),
                            str(m.get("identity_encoder", "resnext50_32x4d")), float(m.get("encoder_width_mult", 1.0)))
        generator = Generator(int(m.get("num_channels", 64)), int(m.get("max_num_channels", 512)), identity,
                              int(m.get("pose_embedding_size", 256)), size, int(m.get("gen_constant_input_size", 4)),
                              int(m.get("gen_num_residual_blocks", 2)), finetuned=finetune)
        discriminator = Discriminator(1 if finetune else int(m["num_labels"]), int(m.get("num_channels", 64)),
                                      int(m.get("max_num_channels", 512)), identity, int(m.get("dis_num_blocks", 7)),
                                      size, finetuned=finetune)
        return cls(embedder, generator, discriminator, stage=m["stage"], image_size=size, config=cfg)

    # --- training hooks ---
    @property
    def uses_gan(self) -> bool:
        """The discriminator always trains."""
        return True

    @property
    def retains_generator_graph(self) -> bool:
        """As officially (loss_G.backward(retain_graph=True)): the D losses come from the same forward."""
        return True

    def training_stage(self, cfg: Mapping[str, Any]) -> str:
        """model_params.stage: meta | finetune."""
        return str(get_path(cfg, "model_params.stage"))

    def learning_rates(self, cfg: Mapping[str, Any], stage: str = "meta") -> dict[str, float]:
        """lr_gen for the generator (+ the embedder in meta-learning), lr_dis for the discriminator."""
        if stage not in STAGES:
            raise AnimbenchError(f"latent_pose: stage {stage!r} is not one of {list(STAGES)}")
        default_gen, default_dis = (5e-4, 8e-4) if stage == "finetune" else (5e-5, 2e-4)
        lr_gen = float(get_path(cfg, "train_params.lr_gen", default_gen))
        rates = {"generator": lr_gen, "discriminator": float(get_path(cfg, "train_params.lr_dis", default_dis))}
        if stage == "meta":
            rates["embedder"] = lr_gen
        return rates

    def optimizer_groups(self, cfg: Mapping[str, Any], stage: str = "meta") -> dict[str, tuple[str, ...]]:
        """The official `optimizer_G` (generator then embedder parameters; the generator alone when fine-tuning)
        and `optimizer_D`."""
        return {"G": ("generator", "embedder") if stage == "meta" else ("generator",), "D": ("discriminator",)}

    def optimizer_options(self, cfg: Mapping[str, Any], stage: str = "meta") -> dict[str, Any]:
        """train_params.optimizer (Adam for meta-learning, RAdam for fine-tuning), betas (beta1 = 0, 0.999),
        eps 1e-5."""
        kind = get_path(cfg, "train_params.optimizer", "RAdam" if stage == "finetune" else "Adam")
        return {"kind": kind, "betas": (float(get_path(cfg, "train_params.beta1", 0.0)), 0.999), "eps": 1e-5}

    def training_dataset(self, store: Any, cfg: Mapping[str, Any], *, num_repeats: int, seed: int,
                         transform: Any) -> LatentPoseDataset | FinetuneDataset:
        """Meta: K identity frames + a pose/target frame per training video; finetune: every frame of the
        train split (one identity). Augmented as dataset_params says; `transform` is unused."""
        d = self.dataset_params
        augment = PoseAugmentation(bool(d.get("use_pixelwise_augs", True)), bool(d.get("use_affine_scale", True)),
                                   bool(d.get("use_affine_shift", True)))
        kwargs = {"split": "train", "image_size": self.image_size, "augment": augment,
                  "use_masks": bool(d.get("use_masks", True)), "num_repeats": num_repeats, "seed": seed}
        if self.stage == "finetune":
            return FinetuneDataset(store, **kwargs)
        dataset = LatentPoseDataset(store, num_frames_for_encoder=int(d.get("num_frames_for_encoder", 8)), **kwargs)
        rows = self.discriminator.embed.weight_orig.shape[0]
        if dataset.num_labels > rows:
            raise AnimbenchError(f"store {store.root}: {dataset.num_labels} training videos (one discriminator "
                                 f"label each), more than model_params.num_labels {rows}")
        return dataset

    def step_inputs(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, ...]:
        """(enc_rgbs (B, K, 3, S, S), pose_rgbs, target_rgbs, real_segm (B, 3, S, S), label (B,))."""
        return batch["enc_rgbs"], batch["pose_rgbs"], batch["target_rgbs"], batch["real_segm"], batch["label"]

    @property
    def criteria(self) -> tuple[str, ...]:
        """train_params.criterions (the official list of the stage by default)."""
        default = tuple(c for c in CRITERIA if c != "dis_embed" or self.stage == "meta")
        return tuple(self.train_params.get("criterions") or default)

    def _vgg_losses(self) -> dict[str, Any]:
        if self._losses is None:
            tp, fallback = self.train_params, self.train_params.get("perceptual_fallback")
            self._losses = {}
            if "perceptual" in self.criteria:
                self._losses["perceptual"] = CaffePerceptualLoss(tp.get("perc_weight", 3e-2), "vgg19",
                                                                 CAFFE_VGG19_FILE, fallback)
            if "idt_embed" in self.criteria:
                self._losses["idt_embed"] = CaffePerceptualLoss(tp.get("idt_embed_weight", 6e-3), "vgg16",
                                                                VGG_FACE_FILE, fallback)
            device = self.generator.constant.constant.device
            self._losses = {k: v.to(device) for k, v in self._losses.items()}
        return self._losses

    def training_backends(self) -> dict[str, Any]:
        """The two VGG losses' networks (loading them here fails early when a file is missing)."""
        return {k: {"backend": v.backend, "description": v.backend_description}
                for k, v in self._vgg_losses().items()}

    def generator_step(self, enc_rgbs: Tensor, pose_rgbs: Tensor, target_rgbs: Tensor, real_segm: Tensor,
                       label: Tensor) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """One official forward: embedder, generator, three discriminator passes (fake, fake detached, real, the
        label rows looked up once) and every criterion; the D loss rides in the outputs for discriminator_step."""
        tp, crit = self.train_params, self.criteria
        embeds = embeds_elemwise = None
        if self.stage == "meta":  # fine-tuned: the generator holds its identity, the identity encoder idles
            embeds, embeds_elemwise = self.embedder.identity_embedding(enc_rgbs)
        out = self.generator(self.embedder.pose_embedding(pose_rgbs), embeds)
        fake = out.fake_rgbs
        embed = self.discriminator.embed(label)  # (B, 512)
        fake_score_g, fake_features = self.discriminator.score(fake, embed)
        fake_score_d, _ = self.discriminator.score(fake.detach(), embed.detach())
        real_score, real_features = self.discriminator.score(target_rgbs, embed)
        adv_g, adv_d = hinge_losses(fake_score_g, fake_score_d, real_score)
        losses: dict[str, Tensor] = {}
        vgg = self._vgg_losses()
        if "idt_embed" in crit:
            losses["VGGFace"] = vgg["idt_embed"](central_crop(fake), central_crop(target_rgbs))
        if "perceptual" in crit:
            losses["VGG"] = vgg["perceptual"](fake, target_rgbs)
        if "adversarial" in crit:
            losses["adversarial_G"] = adv_g
        if "featmat" in crit:
            losses["feature_matching"] = feature_matching(fake_features, real_features, tp.get("fm_weight", 10.0))
        if "dis_embed" in crit and embeds_elemwise is not None:
            losses["embedding_matching"] = dis_embed_loss(embeds_elemwise, embed, tp.get("dis_embed_weight", 1e-2))
        if "dice" in crit:
            losses["segmentation_dice"] = dice_loss(out.fake_segm, real_segm, tp.get("dice_weight", 1.0))
        d_losses = {"adversarial_D": adv_d} if "adversarial" in crit else {}
        return losses, {"fake_rgbs": fake, "fake_segm": out.fake_segm, "losses_D": d_losses}

    def discriminator_step(self, enc_rgbs: Tensor, pose_rgbs: Tensor, target_rgbs: Tensor, real_segm: Tensor,
                           label: Tensor, outputs: dict[str, Any]) -> dict[str, Tensor]:
        """The hinge D loss computed in generator_step's forward (as officially, before G's step)."""
        return outputs["losses_D"]

    @property
    def ema_decay(self) -> float:
        """train_params.running_average_decay: 0.999 (meta), 0.972 (finetune)."""
        return float(self.train_params.get("running_average_decay", 0.972 if self.stage == "finetune" else 0.999))

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """The official update_running_average: each averaged parameter a <- decay a + (1 - decay) p; buffers
        (spectral-norm u and v, BatchNorm statistics) copied from the live network."""
        alpha = self.ema_decay
        for name, average in self.running_averages.items():
            live = getattr(self, name)
            for p_avg, p in zip(average.parameters(), live.parameters(), strict=True):
                p_avg.mul_(alpha).add_(p.detach(), alpha=1 - alpha)
            for b_avg, b in zip(average.buffers(), live.buffers(), strict=True):
                b_avg.copy_(b)

    @torch.no_grad()
    def prepare_training(self, dataset: Any) -> None:
        """Fine-tuning (train.py --finetune): the mean of the per-image identity embeddings over every fine-tuning
        image, by the averaged embedder (the live one without averages) in eval mode, becomes the generator's
        identity_embedding (and its average's) and the discriminator's one row."""
        if self.stage != "finetune":
            return
        embedder = self.running_averages.get("embedder", self.embedder)
        was_training = embedder.training
        embedder.eval()
        device = self.generator.constant.constant.device
        images = dataset.identity_images()
        elemwise = [embedder.identity_embedding(chunk.to(device))[1].reshape(-1, embedder.identity_embedding_size)
                    for chunk in images.split(8)]
        embedder.train(was_training)
        mean = torch.cat(elemwise).mean(0, keepdim=True)  # (1, 512)
        self.generator.enable_finetuning(mean)
        self.discriminator.enable_finetuning(mean)
        if "generator" in self.running_averages:
            self.running_averages["generator"].enable_finetuning(mean)

    def checkpoint_entries(self, step: int) -> dict[str, Any]:
        """The official `running_averages` {embedder, generator} and `args` (a plain dict of the official
        argument names, so our files load with weights_only=True and no allow-list)."""
        args: dict[str, Any] = {k: get_path(self.config, v, None) for k, v in _ARGS_KEYS.items()}
        args.update(iteration=int(step), finetune=self.stage == "finetune", criterions=", ".join(self.criteria),
                    weights_running_average=bool(self.running_averages))
        if self.stage == "finetune":
            args["num_labels"] = 1
        entries: dict[str, Any] = {"args": args}
        if self.running_averages:
            entries["running_averages"] = {n: m.state_dict() for n, m in self.running_averages.items()}
        return entries

    def load_entries(self, ckpt: Mapping[str, Any]) -> None:
        """`running_averages` into the averaged copies (each tensor whose key and shape match: a meta average
        lacks the fine-tuned identity_embedding); without them, the averages restart as copies of the loaded
        networks (the official initialize_running_averages)."""
        saved = ckpt.get("running_averages") or {}
        for name, average in self.running_averages.items():
            if name not in saved:
                average.load_state_dict(getattr(self, name).state_dict())
                continue
            own = average.state_dict()
            take = {k: v for k, v in saved[name].items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
            average.load_state_dict(take, strict=False)

    def read_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """An official-layout file (ours or the release) read with weights_only=True; the release's `args`
        (argparse.Namespace with pathlib paths) is allowed, nothing else."""
        return load_checkpoint(path, required=self.required_entries, weights_only=True, map_location="cpu",
                               safe_globals=ARGS_SAFE_GLOBALS)

    def load_pretrained(self, path: str | Path) -> dict[str, Any]:
        """--init-from: matching tensors; a fine-tuning run drops a meta discriminator's label rows (the
        official enable_finetuning builds a new one-row embedding, filled by prepare_training)."""
        ckpt = self.read_checkpoint(path)
        disc = ckpt.get("discriminator")
        if self.stage == "finetune" and isinstance(disc, Mapping) and "embed.weight_orig" in disc \
                and disc["embed.weight_orig"].shape[0] != 1:
            ckpt["discriminator"] = {k: v for k, v in disc.items() if not k.startswith("embed.")}
        return load_matching(self, ckpt)

    # --- inference (drive.py: the running averages in eval mode) ---
    @contextmanager
    def _driving(self) -> Iterator[tuple[nn.Module, nn.Module]]:
        embedder = self.running_averages.get("embedder", self.embedder)
        generator = self.running_averages.get("generator", self.generator)
        with inference_mode(embedder, generator):
            yield embedder, generator

    def _read(self, frames: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, S, S) read as the official driver loader reads crops (load_cropped).
        Non-square frames are refused: the official loader would read their left H + 1 columns as the crop, and
        the output, square, would then be stretched back to W x H (a raw video given with --no-crop)."""
        height, width = frames.shape[-2:]
        if height != width:
            raise ShapeError(f"latent_pose: frames of {width}x{height} are not a latent-pose crop (square): cut "
                             "them the latent-pose way (animate without --no-crop, prep --crop latentpose)")
        arrays = (frames.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        images = [torch.from_numpy(official_image(a, self.image_size)).permute(2, 0, 1) for a in arrays]
        return torch.stack(images).to(frames.device)

    def _render(self, generator: nn.Module, pose: Tensor, identity: Tensor | None, size: tuple[int, int]) -> Tensor:
        """clamp(rgb x mask, 0, 1) at the inputs' size (bilinear when the config's image_size differs)."""
        out = generator(pose, identity).fake_rgbs.clamp(0, 1)
        if tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        return out

    def reconstruct(self, source: Tensor, driving: Tensor) -> Tensor:
        """Each source frame (B, 3, H, W) the identity (K = 1; a fine-tuned generator uses its own), each driving
        frame the pose -> (B, 3, H, W) in [0, 1], background black."""
        check_reconstruct_shapes(source, driving)
        with self._driving() as (embedder, generator):
            identity = None if generator.finetuned else embedder.identity_embedding(self._read(source)[:, None])[0]
            return self._render(generator, embedder.pose_embedding(self._read(driving)), identity,
                                tuple(driving.shape[-2:]))

    def animation_mode(self, relative: bool | None = None, adapt_scale: bool | None = None) -> AnimationMode:
        """The pose code is absolute and no movement scale exists: --relative / --adapt-scale are refused (they
        would change nothing yet be recorded as used); --absolute is what it does anyway."""
        for flag, given in (("--relative", relative), ("--adapt-scale", adapt_scale)):
            if given:
                raise AnimbenchError(f"{flag}: latent_pose has no such setting (its pose code is absolute; drop "
                                     "the flag)")
        return AnimationMode(relative, adapt_scale)

    def animate(self, source: Tensor, driving_video: Tensor, mode: AnimationMode | None = None) -> Tensor:
        """drive.py: the source's identity once, every driving frame's pose -> (T, 3, H, W) in [0, 1]. No mode
        setting exists (the pose code is absolute)."""
        return self.animate_sources(check_animate_shapes(source, driving_video), driving_video, mode)

    # the driving inputs (methods/infer_set.py's set path and bench's reenactment protocol read these)
    source_images: ClassVar[str] = "set"  # the identity is the mean over any number of source images
    input_crop: ClassVar[str | None] = "latentpose"  # sources and drivers are cut the latent-pose way

    def holds_identity(self) -> bool:
        """A fine-tuned checkpoint carries its identity (the generator's identity_embedding): no sources needed."""
        return bool(self.running_averages.get("generator", self.generator).finetuned)

    def animate_sources(self, sources: Tensor | None, driving_video: Tensor,
                        mode: AnimationMode | None = None) -> Tensor:
        """Identity = the mean EMA identity embedding of the source images (N, 3, H, W) (unused by a fine-tuned
        checkpoint, whose generator holds its own), each driving frame's pose -> (T, 3, H, W) in [0, 1]."""
        outputs = []
        with self._driving() as (embedder, generator):
            identity = None
            if not generator.finetuned:
                if sources is None or sources.dim() != 4 or len(sources) == 0:
                    raise ShapeError("latent_pose: a meta checkpoint needs source images (N, 3, H, W), got "
                                     f"{None if sources is None else tuple(sources.shape)}")
                identity = embedder.identity_embedding(self._read(sources)[None])[0]  # (1, E): mean over N
            for chunk in driving_video.split(8):
                pose = embedder.pose_embedding(self._read(chunk))
                ident = None if identity is None else identity.expand(len(chunk), -1)
                outputs.append(self._render(generator, pose, ident, tuple(driving_video.shape[-2:])))
        return torch.cat(outputs)


# --- the config ------------------------------------------------------------------------------------------------

CONFIG_SCHEMA = {
    **SHARED_SECTIONS,
    "dataset_params": {k: LEAF for k in ("image_size", "num_frames_for_encoder", "use_masks", "use_pixelwise_augs",
                                         "use_affine_scale", "use_affine_shift", "frame_shape")},
    "model_params": {k: LEAF for k in ("stage", "num_channels", "max_num_channels", "embed_channels",
                                       "pose_embedding_size", "gen_constant_input_size", "gen_num_residual_blocks",
                                       "dis_num_blocks", "num_labels",
                                       # not official: the tiny configs' small trunks (CPU tests, the demo)
                                       "identity_encoder", "encoder_width_mult")},
    "train_params": {**TRAIN_COMMON, **{k: LEAF for k in (
        "optimizer", "lr_gen", "lr_dis", "beta1", "weights_running_average", "running_average_decay", "criterions",
        "perc_weight", "idt_embed_weight", "fm_weight", "dis_embed_weight", "dice_weight", "perceptual_fallback")}},
}
REQUIRED_KEYS = ("model_params.stage", "dataset_params.image_size")


def _check_config(cfg: dict, where: str) -> None:
    stage = get_path(cfg, "model_params.stage")
    if stage not in STAGES:
        raise AnimbenchError(f"{where}: model_params.stage must be one of {list(STAGES)}, got {stage!r}")
    if stage == "meta" and get_path(cfg, "model_params.num_labels", None) is None:
        raise AnimbenchError(f"{where}: model_params.num_labels missing (meta-learning: one discriminator row per "
                             "training video, 98000 for the release)")
    for key in ("dataset_params.image_size", "dataset_params.num_frames_for_encoder", "model_params.num_labels",
                "model_params.num_channels", "model_params.max_num_channels", "model_params.embed_channels",
                "model_params.pose_embedding_size", "model_params.gen_constant_input_size",
                "model_params.dis_num_blocks"):
        value = get_path(cfg, key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AnimbenchError(f"{where}: {key} must be a positive integer, got {value!r}")
    size = get_path(cfg, "dataset_params.image_size")
    if size < 16:
        raise AnimbenchError(f"{where}: dataset_params.image_size {size} is below 16 (the VGG losses pool 4 times)")
    choices = (("train_params.optimizer", tuple(OPTIMIZER_KINDS)), ("train_params.perceptual_fallback", FALLBACKS))
    for key, allowed in choices:
        value = get_path(cfg, key, None)
        if value is not None and value not in allowed:
            raise AnimbenchError(f"{where}: {key} must be one of {list(allowed)}, got {value!r}")
    crit = get_path(cfg, "train_params.criterions", None)
    if crit is not None and (not isinstance(crit, list) or not set(crit) <= set(CRITERIA)):
        raise AnimbenchError(f"{where}: train_params.criterions must be a list of {list(CRITERIA)}, got {crit!r}")
    encoder = get_path(cfg, "model_params.identity_encoder", IDENTITY_ENCODERS[0])
    if encoder not in IDENTITY_ENCODERS:
        raise AnimbenchError(f"{where}: model_params.identity_encoder must be one of {list(IDENTITY_ENCODERS)}, "
                             f"got {encoder!r}")
    width = get_path(cfg, "model_params.encoder_width_mult", 1.0)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 1:
        raise AnimbenchError(f"{where}: model_params.encoder_width_mult must be a number in (0, 1], got {width!r}")
    if width != 1 and encoder == "resnext50_32x4d":
        raise AnimbenchError(f"{where}: model_params.encoder_width_mult {width} needs identity_encoder: mobilenet_v2 "
                             "(ResNeXt-50 has no width multiplier)")
    shape = get_path(cfg, "dataset_params.frame_shape", None)
    if shape is not None and list(shape) != [size, size, 3]:
        raise AnimbenchError(f"{where}: dataset_params.frame_shape {shape!r} differs from image_size {size}")


OPTIMIZER_KINDS = ("Adam", "RAdam")
CONFIG_SPEC = ConfigSpec(CONFIG_SCHEMA, REQUIRED_KEYS,
                         official_repo="github.com/shrubb/latent-pose-reenactment (configs/*.yaml: argparse options)",
                         check=_check_config)


# --- the card --------------------------------------------------------------------------------------------------

_CONFIGS = {"meta": "configs/latent_pose-meta.yaml", "finetune": "configs/latent_pose-finetune.yaml",
            "tiny": "configs/latent_pose-tiny.yaml", "tiny-finetune": "configs/latent_pose-tiny-finetune.yaml"}
LatentPose.card = register_method(MethodCard(
    name="latent_pose", paper="Neural Head Reenactment with Latent Pose Descriptors (Burkov et al., CVPR 2020)",
    family="head-reenactment", build=LatentPose.build, config_spec=CONFIG_SPEC, configs=_CONFIGS,
    notes="ResNeXt-50 identity + MobileNetV2 pose encoders, AdaIN generator with a foreground mask, projection "
          "discriminator; meta-learning then fine-tuning (`--init-from` the meta checkpoint, e.g. the release, "
          "Google Drive id 14-FYaz6YhTX5M_P3-rm2ITcxGljmWl-F, loaded weights_only). The tiny configs are NOT the "
          "official architecture (model_params.identity_encoder: mobilenet_v2, encoder_width_mult: 0.25): for CPU "
          "tests and the demo"))
