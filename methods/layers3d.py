"""Monkey-Net's 3-D building blocks: per-frame 2-D convolutions stored as Conv3d on (B, C, D=time, H, W).

Every kernel is (1, k, k), so frames never mix; the blocks exist in 3-D only so that the official checkpoints
load unchanged (weights are (out, in, 1, k, k)). Pooling is AvgPool3d(1, 2, 2), upsampling nearest (1, 2, 2).
BatchNorm3d has the same state_dict layout as the official SynchronizedBatchNorm3d.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KERNEL = (1, 3, 3)
PADDING = (0, 1, 1)


class DownBlock3d(nn.Module):
    """conv (1,3,3) -> BN -> ReLU -> AvgPool (1,2,2): halves H and W."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=KERNEL, padding=PADDING)
        self.norm = nn.BatchNorm3d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, D, H, W) -> (B, out, D, H/2, W/2)."""
        return F.avg_pool3d(F.relu(self.norm(self.conv(x))), kernel_size=(1, 2, 2))


class UpBlock3d(nn.Module):
    """Nearest upsample (1,2,2) -> conv (1,3,3) -> BN -> ReLU: doubles H and W."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=KERNEL, padding=PADDING)
        self.norm = nn.BatchNorm3d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, D, H, W) -> (B, out, D, 2H, 2W)."""
        out = F.interpolate(x, scale_factor=(1, 2, 2))
        return F.relu(self.norm(self.conv(out)))


class SameBlock3d(nn.Module):
    """conv -> BN -> ReLU at constant resolution; `groups` lets each keypoint slot be convolved on its own."""

    def __init__(
        self, in_features: int, out_features: int, groups: int = 1, kernel_size=KERNEL, padding=PADDING
    ):
        super().__init__()
        self.conv = nn.Conv3d(
            in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups
        )
        self.norm = nn.BatchNorm3d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, D, H, W) -> (B, out, D, H, W)."""
        return F.relu(self.norm(self.conv(x)))


class ResBlock3d(nn.Module):
    """Pre-activation residual block: BN -> ReLU -> conv -> BN -> ReLU -> conv, plus the input."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv3d(features, features, kernel_size=KERNEL, padding=PADDING)
        self.conv2 = nn.Conv3d(features, features, kernel_size=KERNEL, padding=PADDING)
        self.norm1 = nn.BatchNorm3d(features, affine=True)
        self.norm2 = nn.BatchNorm3d(features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> same shape."""
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


def _width(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * 2**level)


class Encoder3d(nn.Module):
    """num_blocks DownBlocks: in -> min(max_features, be * 2^(i+1)); returns the skips [x, d1, ..., d_nb]."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock3d(
                in_features if i == 0 else _width(block_expansion, max_features, i),
                _width(block_expansion, max_features, i + 1),
            )
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, in, D, H, W) -> [x, (B, c1, D, H/2, W/2), ..., (B, c_nb, D, H/2^nb, W/2^nb)]."""
        skips = [x]
        for block in self.down_blocks:
            skips.append(block(skips[-1]))
        return skips


class Decoder3d(nn.Module):
    """UpBlocks walking the skips back up; after each, concatenate [up_out, skip] on channels.

    `additional_features_for_block` counts channels the caller already concatenated to every skip (the
    generator's keypoint embedding). The output has be + in_features + additional channels, then, when
    `use_last_conv`, a plain (1,3,3) conv (no BN, no activation) maps it to `out_features`.
    """

    def __init__(
        self,
        block_expansion: int,
        in_features: int,
        out_features: int,
        num_blocks: int,
        max_features: int,
        additional_features_for_block: int = 0,
        use_last_conv: bool = True,
    ):
        super().__init__()
        up_blocks = []
        for i in reversed(range(num_blocks)):
            skip_width = _width(block_expansion, max_features, i + 1)
            in_width = (1 if i == num_blocks - 1 else 2) * skip_width + additional_features_for_block
            up_blocks.append(UpBlock3d(in_width, _width(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(up_blocks)
        self.out_channels = block_expansion + in_features + additional_features_for_block
        self.conv = (
            nn.Conv3d(self.out_channels, out_features, kernel_size=KERNEL, padding=PADDING)
            if use_last_conv
            else None
        )
        if use_last_conv:
            self.out_channels = out_features

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        """Skips from Encoder3d (deepest last) -> (B, out_channels, D, H, W) at the first skip's size."""
        out = skips[-1]
        for block, skip in zip(self.up_blocks, reversed(skips[:-1]), strict=True):
            out = torch.cat([block(out), skip], dim=1)
        return self.conv(out) if self.conv is not None else out


class Hourglass3d(nn.Module):
    """Encoder3d then Decoder3d with its final conv: (B, in, D, H, W) -> (B, out_features, D, H, W)."""

    def __init__(
        self, block_expansion: int, in_features: int, out_features: int, num_blocks: int, max_features: int
    ):
        super().__init__()
        self.encoder = Encoder3d(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder3d(block_expansion, in_features, out_features, num_blocks, max_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, D, H, W) -> (B, out_features, D, H, W); H and W divisible by 2^num_blocks."""
        return self.decoder(self.encoder(x))


class DiscriminatorBlock3d(nn.Module):
    """Pix2Pix-style block: conv (1,4,4) without padding -> [InstanceNorm] -> LeakyReLU 0.2 -> AvgPool (1,2,2)."""

    def __init__(self, in_features: int, out_features: int, norm: bool):
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=(1, 4, 4))
        self.norm = nn.InstanceNorm3d(out_features, affine=True) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, D, H, W) -> (B, out, D, (H-3)//2, (W-3)//2)."""
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        return F.avg_pool3d(F.leaky_relu(out, 0.2), kernel_size=(1, 2, 2))
