"""Everybody Dance Now's training losses as `pix2pixHD_model_fullts.py` codes them (reference §1.10).

- GAN loss: LSGAN (MSE against 1 / 0) on the LAST output of each discriminator scale, summed over scales;
  `no_lsgan` switches to BCE on the logits (the official sigmoid + BCE; its getIntermFeat path crashes there).
- Feature matching: Σ_scales Σ_stages-but-last L1(D(fake), D(real).detach()) · (1/num_D) · (4/(n_layers+1)).
- VGG19 loss: Σ_i w_i · L1(VGG_i(x), VGG_i(y).detach()) at relu1_1..relu5_1 (torchvision slices [0:2], [2:7],
  [7:12], [12:21], [21:30]), w = 1/32, 1/16, 1/8, 1/4, 1, on the [-1, 1] tensors WITHOUT ImageNet normalisation.
  It needs torchvision's ImageNet VGG19 (`vgg19-dcbb9e9d.pth`) with FOMM's fallback rules (methods/losses.py):
  a present file is always used (hash checked); when absent, `train_params.perceptual_fallback` may choose
  `random_vgg19` (the same layers, seeded random init) or `pixel_l1` (mean(w) · L1 on the images); otherwise
  training stops.

Face crops: the face residual and the face GAN read (miny, maxy, minx, maxx) boxes PER SAMPLE (the official code
takes sample 0's box for the whole batch and crashes on batch > 1; issue #13). All boxes of a batch must have one
size (EDN's are all 128x128) so the crops stack into one face-network batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.losses import PERCEPTUAL_FALLBACKS, VGG19_FILE, Vgg19Pyramid, load_vgg19, random_vgg19
from plumbing.errors import AnimbenchError
from plumbing.weights import get as get_weight_file

VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def gan_loss(outputs: list[list[Tensor]] | Tensor, target_is_real: bool, lsgan: bool = True) -> Tensor:
    """GANLoss: a multiscale output (per scale, its stage outputs) or one patch map -> summed loss."""
    maps = [scale[-1] for scale in outputs] if isinstance(outputs, list) else [outputs]
    total = maps[0].new_zeros(())
    for pred in maps:
        pred = pred.float()
        target = torch.full_like(pred, 1.0 if target_is_real else 0.0)
        total = total + (F.mse_loss(pred, target) if lsgan else F.binary_cross_entropy_with_logits(pred, target))
    return total


def feature_matching_loss(fake: list[list[Tensor]], real: list[list[Tensor]], n_layers: int) -> Tensor:
    """pix2pixHD's G_GAN_Feat before lambda_feat: every stage but the last, weighted (1/num_D)(4/(n_layers+1))."""
    weight = (1.0 / len(fake)) * (4.0 / (n_layers + 1))
    total = fake[0][0].new_zeros((), dtype=torch.float32)
    for scale_fake, scale_real in zip(fake, real, strict=True):
        for f, r in zip(scale_fake[:-1], scale_real[:-1], strict=True):
            total = total + weight * F.l1_loss(f.float(), r.detach().float())
    return total


class VGGLoss:
    """pix2pixHD's VGGLoss on [-1, 1] images (B, 3, H, W), or the config's documented fallback.

    Not an nn.Module on purpose: the VGG19 never enters a checkpoint; it follows the inputs' device.
    """

    def __init__(self, fallback: str | None = None, weight_name: str = VGG19_FILE):
        w = get_weight_file(weight_name)
        self.vgg: Vgg19Pyramid | None = None
        if w.path().is_file() or fallback is None:
            # a present file is always used (and must pass its hash check, never silently replaced)
            self.vgg = load_vgg19(weight_name)
            self.backend = "vgg19_imagenet"
            self.backend_description = f"VGG19 ImageNet feature L1, EDN weights, no normalisation ({w.name})"
        elif fallback == "random_vgg19":
            self.vgg = random_vgg19()
            self.backend = fallback
            self.backend_description = (f"FALLBACK random_vgg19: {w.name} absent, VGG19 randomly initialised; "
                                        "not the paper's loss")
        elif fallback == "pixel_l1":
            self.backend = fallback
            self.backend_description = (f"FALLBACK pixel_l1: {w.name} absent, mean(VGG weights) x L1 on the images "
                                        "instead of VGG19 features; not the paper's loss")
        else:
            raise AnimbenchError(f"train_params.perceptual_fallback: expected one of {list(PERCEPTUAL_FALLBACKS)} "
                                 f"or nothing, got {fallback!r}")

    def _features(self, x: Tensor) -> list[Tensor]:
        assert self.vgg is not None
        out, activations = x, []
        for block in self.vgg.slices:  # the raw slices: EDN feeds [-1, 1] images, no ImageNet normalisation
            out = block(out)
            activations.append(out)
        return activations

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """Σ_i w_i · mean|VGG_i(x) − VGG_i(y)| for x, y (B, 3, H, W); gradients flow into x only."""
        if self.vgg is None:
            return (sum(VGG_WEIGHTS) / len(VGG_WEIGHTS)) * F.l1_loss(x.float(), y.detach().float())
        if next(self.vgg.parameters()).device != x.device:
            self.vgg.to(x.device)
        fx = self._features(x)
        with torch.no_grad():
            fy = self._features(y)
        total = x.new_zeros((), dtype=torch.float32)
        for w, a, b in zip(VGG_WEIGHTS, fx, fy, strict=True):
            total = total + w * F.l1_loss(a.float(), b.float())
        return total


def check_boxes(boxes: Tensor, height: int, width: int, where: str = "face box") -> None:
    """AnimbenchError unless every (miny, maxy, minx, maxx) row is a non-empty box inside (height, width)."""
    for row in boxes.tolist():
        miny, maxy, minx, maxx = (int(v) for v in row)
        if not (0 <= miny < maxy <= height and 0 <= minx < maxx <= width):
            raise AnimbenchError(f"{where} {row}: expected (miny, maxy, minx, maxx) with 0 <= miny < maxy <= "
                                 f"{height} and 0 <= minx < maxx <= {width}")


def crop_faces(images: Tensor, boxes: Tensor) -> Tensor:
    """(B, C, H, W) and per-sample boxes (B, 4) -> (B, C, h, w) crops; every box of the batch has one size."""
    rows = [tuple(int(v) for v in row) for row in boxes.tolist()]
    sizes = {(maxy - miny, maxx - minx) for miny, maxy, minx, maxx in rows}
    if len(sizes) != 1:
        raise AnimbenchError(f"face boxes of one batch must have one size, got {sorted(sizes)}")
    return torch.stack([images[i, :, miny:maxy, minx:maxx] for i, (miny, maxy, minx, maxx) in enumerate(rows)])


def paste_residual(images: Tensor, residual: Tensor, boxes: Tensor) -> Tensor:
    """images + the residual crops placed at their boxes (zeros elsewhere): EDN's I[box] = I[box] + faceGen(...).

    Outside the boxes the result equals `images` exactly (x + 0), inside it is the official sum.
    """
    h, w = images.shape[-2:]
    placed = [F.pad(residual[i], (minx, w - maxx, miny, h - maxy))
              for i, (miny, maxy, minx, maxx) in enumerate(tuple(int(v) for v in row) for row in boxes.tolist())]
    return images + torch.stack(placed)


def scale_box(box: Sequence[int], sy: float, sx: float) -> tuple[int, int, int, int]:
    """A (miny, maxy, minx, maxx) box in another resolution, keeping its size a function of the scale only."""
    miny, maxy, minx, maxx = (int(v) for v in box)
    y0, x0 = int(round(miny * sy)), int(round(minx * sx))
    return y0, y0 + int(round((maxy - miny) * sy)), x0, x0 + int(round((maxx - minx) * sx))
