"""FOMM training losses: image pyramid, VGG19 perceptual pyramid loss, equivariance transform (affine + TPS).

The perceptual loss needs torchvision's ImageNet VGG19 (`vgg19-dcbb9e9d.pth`, resolved through the weights
manifest). Without that file training stops, unless the config chooses a fallback in
`train_params.perceptual_fallback`; the backend actually used is in `loss.backend_description`:

- `random_vgg19`: the same VGG19 layers, randomly initialised with a fixed seed (0). Random conv features still
  give a structure-aware loss, but numbers trained this way are not comparable to the paper.
- `pixel_l1`: Σ_scales mean(perceptual weights) · mean|prediction − driving| over the same pyramid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from methods.layers import AntiAliasInterpolation2d, make_coordinate_grid, upcast, warp
from plumbing.errors import AnimbenchError
from plumbing.weights import get as get_weight_file
from plumbing.weights import locate

VGG19_FILE = "vgg19-dcbb9e9d.pth"
# torchvision vgg19().features slice ends of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
VGG19_SLICES = (2, 7, 12, 21, 30)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_VGG_SEED = 0


def scale_key(scale: float) -> str:
    """The official name of a pyramid level: str(scale), e.g. '1', '0.5'."""
    return str(scale)


class ImagePyramide(nn.Module):
    """Anti-aliased copies of an image at several scales: {str(scale): (B, C, H*s, W*s)}."""

    def __init__(self, scales: Sequence[float], num_channels: int):
        super().__init__()
        # ModuleDict keys cannot contain '.', hence the official '0-5' spelling
        self.downs = nn.ModuleDict(
            {scale_key(s).replace(".", "-"): AntiAliasInterpolation2d(num_channels, s) for s in scales}
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """(B, C, H, W) -> {str(scale): downsampled image}."""
        return {key.replace("-", "."): down(x) for key, down in self.downs.items()}


def _vgg19_features() -> nn.Sequential:
    """torchvision's VGG19 `features` up to relu5_1, so its state_dict keys are `features.<i>.*`."""
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["E"], batch_norm=False)[: VGG19_SLICES[-1]]


class Vgg19Pyramid(nn.Module):
    """Frozen VGG19 returning the relu1_1..relu5_1 activations of an ImageNet-normalised [0, 1] image."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        starts = (0,) + VGG19_SLICES[:-1]
        self.slices = nn.ModuleList(features[a:b] for a, b in zip(starts, VGG19_SLICES, strict=True))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) in [0, 1] -> [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1] activations."""
        out = (x - self.mean) / self.std
        activations = []
        for block in self.slices:
            out = block(out)
            activations.append(out)
        return activations


def load_vgg19(weight_name: str = VGG19_FILE, verify_hash: bool = True) -> Vgg19Pyramid:
    """ImageNet VGG19 from torchvision's file, found and hash-checked through the weights manifest."""
    path = locate(weight_name, verify_hash=verify_hash)
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = _vgg19_features()
    wanted = {f"features.{k}": v for k, v in features.state_dict().items()}
    missing = [k for k in wanted if k not in state]
    if missing:
        raise AnimbenchError(f"weight file {path}: not a torchvision VGG19 state_dict ({missing[0]} missing)")
    bad = [k for k in wanted if tuple(state[k].shape) != tuple(wanted[k].shape)]
    if bad:
        raise AnimbenchError(f"weight file {path}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, "
                             f"expected {tuple(wanted[bad[0]].shape)}")
    features.load_state_dict({k.removeprefix("features."): state[k] for k in wanted})
    return Vgg19Pyramid(features)


def random_vgg19(seed: int = RANDOM_VGG_SEED) -> Vgg19Pyramid:
    """VGG19 with torchvision's initialisation scheme, drawn from a fixed seed (the `random_vgg19` fallback)."""
    features = _vgg19_features()
    gen = torch.Generator().manual_seed(seed)
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            nn.init.zeros_(layer.bias)
    return Vgg19Pyramid(features)


# train_params.perceptual_fallback: what a VGG19 perceptual loss does when its weight file is absent
PERCEPTUAL_FALLBACKS = ("random_vgg19", "pixel_l1")


def check_perceptual_fallback(cfg: dict, where: str) -> None:
    """A config's train_params.perceptual_fallback is absent or one of PERCEPTUAL_FALLBACKS (every family)."""
    fallback = (cfg.get("train_params") or {}).get("perceptual_fallback")
    if fallback is not None and fallback not in PERCEPTUAL_FALLBACKS:
        raise AnimbenchError(f"{where}: train_params.perceptual_fallback must be one of {list(PERCEPTUAL_FALLBACKS)} "
                             f"or absent, got {fallback!r}")


class PerceptualPyramidLoss(nn.Module):
    """Σ_scales Σ_layers w_layer · mean|VGG(pred) − VGG(target)| over an anti-aliased pyramid (FOMM §2.1)."""

    def __init__(
        self,
        scales: Sequence[float],
        weights: Sequence[float],
        num_channels: int = 3,
        fallback: str | None = None,
        weight_name: str = VGG19_FILE,
    ):
        super().__init__()
        self.scales = list(scales)
        self.weights = list(weights)
        self.pyramid = ImagePyramide(self.scales, num_channels)
        self.vgg: Vgg19Pyramid | None = None
        w = get_weight_file(weight_name)
        if w.path().is_file() or fallback is None:
            # a present file is always used (and must pass its hash check, never silently replaced)
            self.vgg = load_vgg19(weight_name)
            self.backend = "vgg19_imagenet"
            self.backend_description = f"VGG19 ImageNet perceptual pyramid ({w.name}, hash checked)"
        elif fallback == "random_vgg19":
            self.vgg = random_vgg19()
            self.backend = fallback
            self.backend_description = (
                f"FALLBACK random_vgg19: {w.name} absent, VGG19 randomly initialised (seed {RANDOM_VGG_SEED}); "
                "not the paper's loss"
            )
        elif fallback == "pixel_l1":
            self.backend = fallback
            self.backend_description = (
                f"FALLBACK pixel_l1: {w.name} absent, L1 on the image pyramid instead of VGG19 features; "
                "not the paper's loss"
            )
        else:
            raise AnimbenchError(
                f"train_params.perceptual_fallback: expected random_vgg19, pixel_l1 or nothing, got {fallback!r}"
            )

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Weighted loss between a prediction and its target, both (B, 3, H, W) in [0, 1]."""
        pyramid_pred = self.pyramid(prediction)
        with torch.no_grad():
            pyramid_target = self.pyramid(target)
        total = torch.zeros((), device=prediction.device)
        for scale in self.scales:
            key = scale_key(scale)
            if self.vgg is None:
                l1 = torch.abs(upcast(pyramid_pred[key]) - upcast(pyramid_target[key])).mean()
                total = total + (sum(self.weights) / len(self.weights)) * l1
                continue
            features_pred = self.vgg(pyramid_pred[key])
            with torch.no_grad():
                features_target = self.vgg(pyramid_target[key])
            for weight, a, b in zip(self.weights, features_pred, features_target, strict=True):
                total = total + weight * torch.abs(upcast(a) - upcast(b)).mean()
        return total


class Transform:
    """Random equivariance transform: affine I + N(0, σ_affine²) plus a TPS on a points_tps² control grid.

    The TPS radial basis takes the L1 distance |dx| + |dy| (not Euclidean), as the official code does (§1.8.5).
    Noise is drawn on the CPU (from `generator`, or the global RNG) and moved to `device`.
    """

    def __init__(
        self,
        batch_size: int,
        sigma_affine: float,
        sigma_tps: float | None = None,
        points_tps: int | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ):
        noise = torch.normal(0.0, sigma_affine * torch.ones(batch_size, 2, 3), generator=generator)
        self.theta = (noise + torch.eye(2, 3).view(1, 2, 3)).to(device)
        self.batch_size = batch_size
        self.tps = sigma_tps is not None and points_tps is not None
        if self.tps:
            self.control_points = make_coordinate_grid((points_tps, points_tps)).view(1, 1, -1, 2).to(device)
            self.control_params = torch.normal(
                0.0, sigma_tps * torch.ones(batch_size, 1, points_tps**2), generator=generator
            ).to(device)

    def warp_coordinates(self, coordinates: Tensor) -> Tensor:
        """T(z) for z of shape (B or 1, N, 2) -> (B, N, 2)."""
        theta = self.theta.to(coordinates.dtype).unsqueeze(1)  # (B, 1, 2, 3)
        transformed = torch.matmul(theta[:, :, :, :2], coordinates.unsqueeze(-1)) + theta[:, :, :, 2:]
        transformed = transformed.squeeze(-1)
        if self.tps:
            distances = coordinates.view(coordinates.shape[0], -1, 1, 2) - self.control_points.to(coordinates.dtype)
            distances = torch.abs(distances).sum(-1)  # L1 radial distance
            result = distances**2
            result = result * torch.log(distances + 1e-6)
            result = result * self.control_params.to(coordinates.dtype)
            transformed = transformed + result.sum(dim=2).view(self.batch_size, coordinates.shape[1], 1)
        return transformed

    def transform_frame(self, frame: Tensor, align_corners: bool) -> Tensor:
        """The frame resampled through T (reflection padding), i.e. the transformed driving frame."""
        b, _, h, w = frame.shape
        grid = make_coordinate_grid((h, w), frame.dtype, frame.device).view(1, h * w, 2)
        grid = self.warp_coordinates(grid).view(self.batch_size, h, w, 2)
        return warp(frame, grid, align_corners, padding_mode="reflection")

    def jacobian(self, coordinates: Tensor) -> Tensor:
        """∇T at the given points, (B, N, 2) -> (B, N, 2, 2), differentiable (create_graph) for the loss."""
        if not coordinates.requires_grad:
            coordinates = coordinates.detach().requires_grad_(True)
        new_coordinates = self.warp_coordinates(coordinates)
        grad_x = torch.autograd.grad(new_coordinates[..., 0].sum(), coordinates, create_graph=True)[0]
        grad_y = torch.autograd.grad(new_coordinates[..., 1].sum(), coordinates, create_graph=True)[0]
        return torch.cat([grad_x.unsqueeze(-2), grad_y.unsqueeze(-2)], dim=-2)
