"""The training losses of latent-pose reenactment (Burkov et al., CVPR 2020; official `criterions/*`,
../shared/reference/edn-latentpose.md §2.9), as the official code computes them.

| key (official name) | definition | weight (configs/default.yaml) |
|---|---|---|
| adversarial_G / adversarial_D | hinge: G -mean(D(fake)); D mean relu(1 - D(real)) + mean relu(1 + D(fake.detach())) | 1 |
| feature_matching | mean over D's 7 maps of L1(fake map, real map detached) | fm_weight 10 |
| VGG | caffe VGG19, MaxPool -> AvgPool2d(2), the first 30 modules: sum over its 13 ReLUs of L1 | perc_weight 3e-2 |
| VGGFace | the same rule over caffe VGG-Face (VGG16) on the central 1/1.8 crop resampled to full size | idt_embed_weight 6e-3 |
| embedding_matching | L1(embeds_elemwise[:, 0], D's row of the label, detached) (meta-learning only) | dis_embed_weight 1e-2 |
| segmentation_dice | -log(2 sum(m_hat m) / (sum m_hat^2 + sum m^2)) over the whole batch | dice_weight 1 |

Quirks kept for parity: both VGG losses map their inputs by (x + 1) / 2 although the images are in [0, 1], then
subtract the caffe BGR mean / 255 from the RGB channels (no flip) and divide by 1 / 255; the real mask is 3
channels (expanded) and the predicted one 1, so dice's sums count the real mask 3 times (numerator 3x too).

Weights: `vgg19-d01eb7cb.pth` (jcjohnson's caffe conversion: `features.*` keys as torchvision's vgg19) and
`vgg_face_weights.pth` (VGG-Face as torchvision `vgg16().features` keys `0.weight` ...), both placed by the user
in ~/.cache/animbench/weights (`animbench weights install --from DIR`). Their hashes are not published, so no
hash is checked. Without a file training stops, unless `train_params.perceptual_fallback` chooses (as FOMM's
VGG19, methods/losses.py): `random_vgg` (the same layers randomly initialised from seed 0) or `pixel_l1`
(weight x mean |x - y| of the same normalised inputs); the backend used is in `backend_description`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plumbing.errors import AnimbenchError
from plumbing.weights import get, locate

CAFFE_MEAN_BGR = (103.939, 116.779, 123.680)
NUM_LAYERS = 30  # the official PerceptualLoss keeps the first 30 modules (through relu5_1 / relu5_3)
IDT_CROP = 1 / 1.8  # VGGFace sees the central crop of this side fraction
FALLBACKS = ("random_vgg", "pixel_l1")
RANDOM_VGG_SEED = 0

def _vgg_features(kind: str) -> nn.Sequential:
    """torchvision's vgg19 / vgg16 `features` layout (same keys), built without the classifier, whose 120M-parameter
    initialisation took seconds; the callers load or re-initialise every conv."""
    from torchvision.models import vgg

    return vgg.make_layers(vgg.cfgs["E" if kind == "vgg19" else "D"])


def _avg_pool_trunk(features: nn.Sequential) -> nn.Sequential:
    """The first NUM_LAYERS modules with every MaxPool2d replaced by AvgPool2d(2, 2), frozen."""
    layers = [nn.AvgPool2d(2, 2) if isinstance(m, nn.MaxPool2d) else
              nn.ReLU() if isinstance(m, nn.ReLU) else m for m in list(features)[:NUM_LAYERS]]
    trunk = nn.Sequential(*layers)
    trunk.requires_grad_(False)
    return trunk.eval()


def _load_features(kind: str, name: str) -> nn.Sequential:
    """The `features` of a placed caffe file: VGG19 keys `features.<i>.*`, VGG-Face keys `<i>.*`."""
    path = locate(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = _vgg_features(kind)
    prefix = "features." if kind == "vgg19" else ""
    wanted = {k: f"{prefix}{k}" for k in features.state_dict()}
    missing = [v for v in wanted.values() if v not in state]
    if missing:
        raise AnimbenchError(f"weight file {path}: not a {kind} state_dict ({missing[0]} missing)")
    features.load_state_dict({k: state[v] for k, v in wanted.items()})
    return features


def _random_features(kind: str) -> nn.Sequential:
    features = _vgg_features(kind)
    gen = torch.Generator().manual_seed(RANDOM_VGG_SEED)
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            nn.init.zeros_(layer.bias)
    return features


class CaffePerceptualLoss(nn.Module):
    """weight x sum over the trunk's 13 ReLU outputs of L1(VGG(pred), VGG(target)); inputs (B, 3, H, W) (H, W >= 16)
    as the official PerceptualLoss normalises them (module docstring)."""

    def __init__(self, weight: float, kind: str, file_name: str, fallback: str | None = None):
        super().__init__()
        self.weight = float(weight)
        self.trunk: nn.Sequential | None = None
        w = get(file_name)
        if w.path().is_file() or fallback is None:
            self.trunk = _avg_pool_trunk(_load_features(kind, file_name))  # a present file is always used
            self.backend = f"caffe_{kind}"
            self.backend_description = f"caffe {kind} ({file_name}; no published hash to check)"
        elif fallback == "random_vgg":
            self.trunk = _avg_pool_trunk(_random_features(kind))
            self.backend = "random_vgg"
            self.backend_description = (f"FALLBACK random_vgg: {file_name} absent, {kind} randomly initialised "
                                        f"(seed {RANDOM_VGG_SEED}); not the paper's loss")
        elif fallback == "pixel_l1":
            self.backend = "pixel_l1"
            self.backend_description = (f"FALLBACK pixel_l1: {file_name} absent, L1 on the normalised images "
                                        "instead of VGG features; not the paper's loss")
        else:
            raise AnimbenchError(f"train_params.perceptual_fallback: expected one of {list(FALLBACKS)} or nothing, "
                                 f"got {fallback!r}")
        mean = torch.tensor(CAFFE_MEAN_BGR) / 255.0
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), 1 / 255.0), persistent=False)

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """prediction, target (B, 3, H, W) -> scalar; the target is detached."""
        x = ((prediction + 1) / 2 - self.mean) / self.std
        y = ((target.detach() + 1) / 2 - self.mean) / self.std
        if self.trunk is None:
            return self.weight * F.l1_loss(x, y)
        loss = prediction.new_zeros(())
        for layer in self.trunk:
            x, y = layer(x), layer(y)
            if isinstance(layer, nn.ReLU):
                loss = loss + F.l1_loss(x, y)
        return loss * self.weight


def central_crop(images: Tensor, crop: float = IDT_CROP) -> Tensor:
    """(B, C, H, W) -> (B, C, H, W): the central `crop` x side window resampled to full size (affine grid,
    bilinear, reflection padding, align_corners False), as the official idt_embed's crop_and_resize."""
    b, _, h, w = images.shape
    theta = torch.zeros(b, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0], theta[:, 1, 1] = crop, crop  # (r - l) / w with l = w (1 - crop) / 2; centre offset 0
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def hinge_losses(fake_score_g: Tensor, fake_score_d: Tensor, real_score: Tensor) -> tuple[Tensor, Tensor]:
    """(G's -mean(fake), D's mean relu(1 - real) + mean relu(1 + fake_detached)) of scores (B,)."""
    loss_d = torch.relu(1.0 - real_score).mean() + torch.relu(1.0 + fake_score_d).mean()
    return -fake_score_g.mean(), loss_d


def feature_matching(fake_features: list[Tensor], real_features: list[Tensor], weight: float) -> Tensor:
    """weight x mean over maps of L1(fake map, real map detached)."""
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_features, real_features, strict=True)
               ) / len(fake_features) * weight


def dis_embed_loss(embeds_elemwise: Tensor, real_embedding: Tensor, weight: float) -> Tensor:
    """weight x L1(the first identity frame's embedding (B, 512), D's label row (B, 512) detached)."""
    return F.l1_loss(embeds_elemwise[:, 0], real_embedding.detach()) * weight


def dice_loss(fake_segm: Tensor, real_segm: Tensor, weight: float) -> Tensor:
    """weight x -log(2 sum(fake real) / (sum fake^2 + sum real^2)) over the batch; fake (B, 1, H, W), real
    (B, 3, H, W) broadcast as officially (module docstring)."""
    numer = (2 * fake_segm * real_segm).sum()
    denom = (fake_segm ** 2).sum() + (real_segm ** 2).sum()
    return -torch.log(numer / denom) * weight
