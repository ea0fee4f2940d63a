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

The `LatentPose` method (config, card, training and driving hooks) is added at the end of this file in a later
change; until then nothing registers a card, so `animbench methods` does not list a half-built family.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from methods.interface import ShapeError
from plumbing.errors import AnimbenchError

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


class Embedder(nn.Module):
    """Identity encoder (ResNeXt-50 32x4d -> 512) and pose encoder (MobileNetV2 -> 256), randomly initialised.

    Keys `identity_encoder.*` / `pose_encoder.*` are torchvision's, as in the release's `embedder` entry.
    """

    def __init__(self, identity_embedding_size: int = 512, pose_embedding_size: int = 256):
        super().__init__()
        self.identity_encoder = torchvision.models.resnext50_32x4d(weights=None, num_classes=identity_embedding_size)
        self.pose_encoder = torchvision.models.mobilenet_v2(weights=None, num_classes=pose_embedding_size)

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

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, list[Tensor]]:
        """images (B, 3, 256, 256), masked; labels (B,) int64 -> (scores (B,), 7 feature maps)."""
        feats = [self.down_block(images) + self.skip(images)]  # (B, 64, 128, 128)
        for block in self.blocks:
            feats.append(block(feats[-1]))  # ... -> (B, 512, 4, 4)
        h = F.relu(feats[-1]).sum(dim=(2, 3))  # (B, 512)
        scores = self.linear(h)[:, 0] + (h * self.embed(labels)).sum(1)
        # feature matching sees the maps after the next block's in-place ReLU rewrote them (all but the last)
        return scores, [F.relu(f) for f in feats[:-1]] + feats[-1:]


# --- the LatentPose method (config, card, training and driving hooks) follows here ------------------------------
