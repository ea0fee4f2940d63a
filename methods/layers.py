"""Shared 2-D layers of FOMM (and its successors): blocks, hourglass, anti-alias downsampling, warping.

Numerics follow the official modules/util.py (see reference §1.1, §1.8): BatchNorm2d with the official keys,
hourglass skips concatenated as [upsampled, skip], the coordinate grid in the align_corners=True convention with
its last dimension ordered (x, y).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def make_coordinate_grid(
    spatial_size: tuple[int, int] | torch.Size, dtype: torch.dtype = torch.float32, device=None
) -> Tensor:
    """(h, w, 2) grid of (x, y) in [-1, 1]; pixel centres at the extremes (align_corners=True convention)."""
    h, w = int(spatial_size[0]), int(spatial_size[1])
    x = torch.arange(w, dtype=dtype, device=device)
    y = torch.arange(h, dtype=dtype, device=device)
    # same operation order as the official code, so grids are bit-identical
    x = 2 * (x / (w - 1)) - 1
    y = 2 * (y / (h - 1)) - 1
    xx = x.view(1, -1).expand(h, w)
    yy = y.view(-1, 1).expand(h, w)
    return torch.stack([xx, yy], dim=2)


def kp2gaussian(kp_value: Tensor, spatial_size: tuple[int, int] | torch.Size, kp_variance: float) -> Tensor:
    """Unnormalised Gaussians exp(-|z - kp|^2 / (2 var)) at each keypoint: (..., K, 2) -> (..., K, h, w)."""
    grid = make_coordinate_grid(spatial_size, kp_value.dtype, kp_value.device)  # (h, w, 2)
    mean = kp_value[..., None, None, :]  # (..., K, 1, 1, 2)
    squared_distance = ((grid - mean) ** 2).sum(-1)
    return torch.exp(-0.5 * squared_distance / kp_variance)


def full_precision(x: Tensor) -> torch.autocast:
    """Context that turns autocast off on x's device: keypoint and motion math stays float32 under bf16 AMP."""
    return torch.autocast(x.device.type, enabled=False)


def upcast(x: Tensor) -> Tensor:
    """x in float32 if it is a half-precision autocast output, else unchanged (float32/float64 kept)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def warp(x: Tensor, grid: Tensor, align_corners: bool, padding_mode: str = "zeros") -> Tensor:
    """Bilinear backward warp of x (B, C, H, W) by grid (B, h, w, 2) of (x, y) in [-1, 1].

    FOMM's checkpoints were trained with torch 1.0, whose grid_sample behaved as align_corners=True (§1.8.1);
    every sampling site passes the model's flag through here so the convention is chosen in one place.
    """
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=align_corners)


def resize_deformation(deformation: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """A (B, h, w, 2) deformation bilinearly resized to size (H, W) (align_corners=False, as the official
    generators' interpolate), unchanged when it already has that size."""
    if tuple(deformation.shape[1:3]) == tuple(size):
        return deformation
    return F.interpolate(deformation.permute(0, 3, 1, 2), size=size, mode="bilinear",
                         align_corners=False).permute(0, 2, 3, 1)


def add_generator_trunk(module: nn.Module, num_channels: int, block_expansion: int, max_features: int,
                        num_down_blocks: int, num_bottleneck_blocks: int) -> None:
    """The encoder / bottleneck / decoder of FOMM's generator (and MRAA's) as attributes of `module`, under the
    official keys: first, down_blocks, up_blocks, bottleneck (r0, r1, ...), final; created in the official
    order, so a seeded initialisation is the official one."""
    module.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)
    feats = [min(max_features, block_expansion * (2**i)) for i in range(num_down_blocks + 1)]
    module.down_blocks = nn.ModuleList(DownBlock2d(feats[i], feats[i + 1]) for i in range(num_down_blocks))
    module.up_blocks = nn.ModuleList(UpBlock2d(feats[i + 1], feats[i]) for i in reversed(range(num_down_blocks)))
    module.bottleneck = nn.Sequential()
    for i in range(num_bottleneck_blocks):
        module.bottleneck.add_module(f"r{i}", ResBlock2d(feats[-1]))
    module.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))


class DownBlock2d(nn.Module):
    """conv -> BN -> ReLU -> 2x2 average pool (halves the resolution)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H/2, W/2)."""
        return self.pool(F.relu(self.norm(self.conv(x))))


class UpBlock2d(nn.Module):
    """nearest x2 upsample -> conv -> BN -> ReLU (doubles the resolution)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, 2H, 2W)."""
        x = F.interpolate(x, scale_factor=2)
        return F.relu(self.norm(self.conv(x)))


class SameBlock2d(nn.Module):
    """conv -> BN -> ReLU at the same resolution."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        return F.relu(self.norm(self.conv(x)))


class ResBlock2d(nn.Module):
    """Pre-activation residual block: x + conv2(relu(bn2(conv1(relu(bn1(x))))))."""

    def __init__(self, features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(features, features, kernel_size=kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(features, affine=True)
        self.norm2 = nn.BatchNorm2d(features, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


def _features(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * (2**level))


class Encoder(nn.Module):
    """Hourglass encoder: num_blocks DownBlocks; returns [x, d1, ..., d_n] for the decoder's skips."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                in_features if i == 0 else _features(block_expansion, max_features, i),
                _features(block_expansion, max_features, i + 1),
            )
            for i in range(num_blocks)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, C, H, W) -> [x, (B, c1, H/2, W/2), ..., (B, c_n, H/2^n, W/2^n)]."""
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: UpBlocks from the deepest level, concatenating [upsampled, skip] after each."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256):
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            # the deepest block sees only the bottleneck; the others also see the concatenated skip
            multiplier = 1 if i == num_blocks - 1 else 2
            blocks.append(
                UpBlock2d(
                    multiplier * _features(block_expansion, max_features, i + 1),
                    _features(block_expansion, max_features, i),
                )
            )
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, skips: list[Tensor]) -> Tensor:
        """Encoder outputs -> (B, block_expansion + in_features, H, W)."""
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net style hourglass; output has block_expansion + in_features channels at the input resolution."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, block_expansion + C, H, W)."""
        return self.decoder(self.encoder(x))


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then stride int(1/scale): the official anti-aliased downsampling (identity at scale 1).

    The kernel is a persistent buffer `weight` (C, 1, k, k) because the official checkpoints store it.
    """

    def __init__(self, channels: int, scale: float):
        super().__init__()
        sigma = (1 / scale - 1) / 2
        kernel_size = 2 * round(sigma * 4) + 1
        self.ka = kernel_size // 2
        self.kb = self.ka - 1 if kernel_size % 2 == 0 else self.ka
        if scale == 1.0:
            kernel = torch.ones(1, 1)  # never applied; avoids the 0/0 of a zero-width Gaussian
        else:
            coords = torch.arange(kernel_size, dtype=torch.float32)
            mean = (kernel_size - 1) / 2
            profile = torch.exp(-((coords - mean) ** 2) / (2 * sigma**2))
            kernel = profile[:, None] * profile[None, :]
            kernel = kernel / torch.sum(kernel)
        self.register_buffer("weight", kernel.view(1, 1, kernel_size, kernel_size).repeat(channels, 1, 1, 1))
        self.groups = channels
        self.scale = scale
        self.int_inv_scale = int(1 / scale)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H·scale, W·scale)."""
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        out = F.conv2d(out, weight=self.weight, groups=self.groups)
        return out[:, :, :: self.int_inv_scale, :: self.int_inv_scale]


def _mlp(sizes: list[int], inplace: bool) -> nn.Sequential:
    """Linear -> BatchNorm1d -> ReLU between consecutive sizes, a plain Linear last (keys 0, 1, 3, 4, ...)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(sizes[i + 1]), nn.ReLU(inplace=inplace)]
    return nn.Sequential(*layers)


class DisentanglingAutoencoder(nn.Module):
    """MRAA's animation-via-disentanglement trunk, which TPSMM reuses: an identity and a pose MLP encoder
    (size -> 256 -> 512 -> 1024 -> bottleneck) and a decoder of both codes back to `size` values, under the
    official keys id_encoder / pose_encoder / decoder, created in the official order."""

    def __init__(self, size: int, id_bottle_size: int = 64, pose_bottle_size: int = 64):
        super().__init__()
        self.id_encoder = _mlp([size, 256, 512, 1024, id_bottle_size], True)
        self.pose_encoder = _mlp([size, 256, 512, 1024, pose_bottle_size], True)
        self.decoder = _mlp([pose_bottle_size + id_bottle_size, 1024, 512, 256, size], False)

    def transfer(self, identity: Tensor, pose: Tensor) -> Tensor:
        """(B, size) identity and pose vectors -> (B, size): the pose re-expressed on the identity."""
        return self.decoder(torch.cat([self.pose_encoder(pose), self.id_encoder(identity)], dim=1))
