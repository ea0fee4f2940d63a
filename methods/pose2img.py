"""Everybody Dance Now (Chan et al., ICCV 2019): pose -> image with pix2pixHD, temporal smoothing and a face GAN.

Read top to bottom: the networks in the official state_dict layout (EDN's models/networks.py, a pix2pixHD copy),
the rendering view (a pose -> the label map, face box and target the generator sees), the training pairs, the
method (training hooks, official checkpoint files, autoregressive generation), the config and the card. The
losses live in methods/pose2img_losses.py. Facts: ../shared/reference/edn-latentpose.md §1.6-1.11.

Networks: state-dict keys and shapes equal the official `latest_net_{G,D,Gface,Dface}.pth` of each README stage
(../shared/reference/state-dicts/edn_*.txt; G/D/Gface/Dface there = our entries generator / discriminator /
face_generator / face_discriminator): every network is a stack of `nn.Sequential`s whose indices count the
parameter-free layers (padding, norm, ReLU) as the official lists do. Instance norm is affine=False; the face
discriminator alone uses BatchNorm. Initialisation is pix2pixHD's `weights_init`: conv and transposed-conv weights
N(0, 0.02) (biases keep torch's default), BatchNorm weights N(1, 0.02), biases 0.

Temporal smoothing as coded: I_0 = G(cat(x_t, zeros)), I_1 = G(cat(x_{t+1}, I_0)), I_0 NOT detached; at inference
each frame is conditioned on the previous RAW output (face residual included, not clamped, not re-read from disk),
the first one on zeros (mid-grey in [-1, 1]).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.checkpoints import load_checkpoint
from methods.config import LEAF, SHARED_SECTIONS, TRAIN_COMMON, ConfigSpec, get_path
from methods.interface import Method, inference_mode
from methods.losses import PERCEPTUAL_FALLBACKS
from methods.pose2img_losses import (
    VGGLoss,
    check_boxes,
    crop_faces,
    feature_matching_loss,
    gan_loss,
    paste_residual,
    scale_box,
)
from methods.registry import MethodCard, load_config, register_method
from plumbing.errors import AnimbenchError

NormLayer = Callable[[int], nn.Module]
INSTANCE_NORM: NormLayer = functools.partial(nn.InstanceNorm2d, affine=False)


def weights_init(module: nn.Module) -> None:
    """pix2pixHD's init, applied with `net.apply(weights_init)`."""
    name = type(module).__name__
    if "Conv" in name:
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif "BatchNorm2d" in name:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class ResnetBlock(nn.Module):
    """x + [ReflPad1, Conv3, IN, ReLU, ReflPad1, Conv3, IN](x): keys conv_block.1 and conv_block.5."""

    def __init__(self, dim: int, norm_layer: NormLayer = INSTANCE_NORM):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3), norm_layer(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3), norm_layer(dim))

    def forward(self, x: Tensor) -> Tensor:
        """(B, dim, H, W) -> (B, dim, H, W)."""
        return x + self.conv_block(x)


def global_generator_layers(input_nc: int, output_nc: int, ngf: int, n_downsampling: int, n_blocks: int,
                            norm_layer: NormLayer = INSTANCE_NORM) -> list[nn.Module]:
    """GlobalGenerator's layer list: c7s1-ngf, n_down x (conv3 s2, doubling), n_blocks resblocks, n_down x
    (convT3 s2, halving), c7s1-output_nc, tanh."""
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7), norm_layer(ngf),
                               nn.ReLU(True)]
    for i in range(n_downsampling):
        c = ngf * 2**i
        layers += [nn.Conv2d(c, 2 * c, kernel_size=3, stride=2, padding=1), norm_layer(2 * c), nn.ReLU(True)]
    c = ngf * 2**n_downsampling
    layers += [ResnetBlock(c, norm_layer) for _ in range(n_blocks)]
    for i in range(n_downsampling):
        c = ngf * 2 ** (n_downsampling - i)
        layers += [nn.ConvTranspose2d(c, c // 2, kernel_size=3, stride=2, padding=1, output_padding=1),
                   norm_layer(c // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7), nn.Tanh()]
    return layers


class GlobalGenerator(nn.Module):
    """pix2pixHD's global generator: (B, input_nc, H, W) -> (B, output_nc, H, W) in [-1, 1] (tanh).

    H and W must be multiples of 2**n_downsampling. Keys `model.<i>.*` (EDN global: last `model.38.*`).
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, n_downsampling: int = 3, n_blocks: int = 9,
                 norm_layer: NormLayer = INSTANCE_NORM):
        super().__init__()
        self.model = nn.Sequential(*global_generator_layers(input_nc, output_nc, ngf, n_downsampling, n_blocks,
                                                            norm_layer))
        self.downsampling = 2**n_downsampling

    def forward(self, x: Tensor) -> Tensor:
        """(B, input_nc, H, W) -> (B, output_nc, H, W)."""
        return self.model(x)


class LocalEnhancer(nn.Module):
    """pix2pixHD's local enhancer: a global generator (ngf * 2**n_local, without its last 3 layers) on the input
    average-pooled n_local times, refined by `model{n}_1` (down) + `model{n}_2` (resblocks, up) per level.

    `model.*` keys are the global generator's own indices, so a global-stage G loads into it (reference §1.6).
    (B, input_nc, H, W) -> (B, output_nc, H, W); H, W multiples of 2**(n_downsample_global + n_local_enhancers).
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 32, n_downsample_global: int = 3,
                 n_blocks_global: int = 9, n_local_enhancers: int = 1, n_blocks_local: int = 3,
                 norm_layer: NormLayer = INSTANCE_NORM):
        super().__init__()
        self.n_local_enhancers = n_local_enhancers
        ngf_global = ngf * 2**n_local_enhancers
        self.model = nn.Sequential(*global_generator_layers(input_nc, output_nc, ngf_global, n_downsample_global,
                                                            n_blocks_global, norm_layer)[:-3])
        for n in range(1, n_local_enhancers + 1):
            c = ngf * 2 ** (n_local_enhancers - n)
            down = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, c, kernel_size=7), norm_layer(c), nn.ReLU(True),
                    nn.Conv2d(c, 2 * c, kernel_size=3, stride=2, padding=1), norm_layer(2 * c), nn.ReLU(True)]
            up: list[nn.Module] = [ResnetBlock(2 * c, norm_layer) for _ in range(n_blocks_local)]
            up += [nn.ConvTranspose2d(2 * c, c, kernel_size=3, stride=2, padding=1, output_padding=1), norm_layer(c),
                   nn.ReLU(True)]
            if n == n_local_enhancers:
                up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7), nn.Tanh()]
            setattr(self, f"model{n}_1", nn.Sequential(*down))
            setattr(self, f"model{n}_2", nn.Sequential(*up))
        self.downsampling = 2 ** (n_downsample_global + n_local_enhancers)

    def forward(self, x: Tensor) -> Tensor:
        """(B, input_nc, H, W) -> (B, output_nc, H, W); the global part runs at H / 2**n_local."""
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            # AvgPool2d(3, 2, 1, count_include_pad=False), as official
            pyramid.append(F.avg_pool2d(pyramid[-1], 3, stride=2, padding=1, count_include_pad=False))
        out = self.model(pyramid[-1])  # (B, 2 * ngf, H / 2**n_local, W / 2**n_local)
        for n in range(1, self.n_local_enhancers + 1):
            down, up = getattr(self, f"model{n}_1"), getattr(self, f"model{n}_2")
            out = up(down(pyramid[self.n_local_enhancers - n]) + out)
        return out


def discriminator_stages(input_nc: int, ndf: int, n_layers: int, norm_layer: NormLayer) -> list[list[nn.Module]]:
    """NLayerDiscriminator's stages: conv4 s2 + LReLU; (n_layers - 1) x conv4 s2 + norm + LReLU (channels doubling,
    capped at 512); conv4 s1 + norm + LReLU; conv4 s1 -> 1 channel. Padding 2 everywhere, no sigmoid."""
    stages = [[nn.Conv2d(input_nc, ndf, kernel_size=4, stride=2, padding=2), nn.LeakyReLU(0.2, True)]]
    nf = ndf
    for _ in range(1, n_layers):
        prev, nf = nf, min(nf * 2, 512)
        stages.append([nn.Conv2d(prev, nf, kernel_size=4, stride=2, padding=2), norm_layer(nf),
                       nn.LeakyReLU(0.2, True)])
    prev, nf = nf, min(nf * 2, 512)
    stages.append([nn.Conv2d(prev, nf, kernel_size=4, stride=1, padding=2), norm_layer(nf), nn.LeakyReLU(0.2, True)])
    stages.append([nn.Conv2d(nf, 1, kernel_size=4, stride=1, padding=2)])
    return stages


class MultiscaleDiscriminator(nn.Module):
    """num_D patch discriminators on the input average-pooled 0..num_D-1 times (pix2pixHD).

    Keys `scale{s}_layer{l}.*` with intermediate features (EDN), `layer{s}.*` without. As official, the
    full-resolution input goes to the LAST scale (scale num_D-1) and scale 0 sees the coarsest copy; the output
    list follows the input order (full resolution first).
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, num_D: int = 3,
                 get_interm_feat: bool = True, norm_layer: NormLayer = INSTANCE_NORM):
        super().__init__()
        self.num_D, self.n_layers, self.get_interm_feat = num_D, n_layers, get_interm_feat
        for s in range(num_D):
            stages = discriminator_stages(input_nc, ndf, n_layers, norm_layer)
            if get_interm_feat:
                for j, stage in enumerate(stages):
                    setattr(self, f"scale{s}_layer{j}", nn.Sequential(*stage))
            else:
                setattr(self, f"layer{s}", nn.Sequential(*[m for stage in stages for m in stage]))

    def _single(self, s: int, x: Tensor) -> list[Tensor]:
        if not self.get_interm_feat:
            return [getattr(self, f"layer{s}")(x)]
        features = []
        for j in range(self.n_layers + 2):
            x = getattr(self, f"scale{s}_layer{j}")(x)
            features.append(x)
        return features

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        """(B, C, H, W) -> per scale (full resolution first) its stage outputs, the last being the patch map
        (EDN at 1024x512: 67x131, 35x67, 19x35)."""
        results = []
        for i in range(self.num_D):
            results.append(self._single(self.num_D - 1 - i, x))
            if i != self.num_D - 1:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        return results


class FaceDiscriminator(nn.Module):
    """EDN's face discriminator: one NLayerDiscriminator with BatchNorm, flattened under `facemodel.<i>.*`.

    (B, 6, 128, 128) (face label crop + face image crop) -> (B, 1, 19, 19) patch map.
    """

    def __init__(self, input_nc: int = 6, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        stages = discriminator_stages(input_nc, ndf, n_layers, nn.BatchNorm2d)
        self.facemodel = nn.Sequential(*[m for stage in stages for m in stage])

    def forward(self, x: Tensor) -> Tensor:
        """(B, input_nc, h, w) -> (B, 1, h', w')."""
        return self.facemodel(x)


# --- the rendering view: what the generator sees of a pose and a frame ----------------------------------------


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _pil_resize(image: np.ndarray, size: tuple[int, int], resample: str) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (h, w, 3) at size (w, h) by PIL (nearest for labels, bicubic for images)."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    from PIL import Image

    mode = {"nearest": Image.NEAREST, "bicubic": Image.BICUBIC}[resample]
    return np.asarray(Image.fromarray(image).resize(tuple(size), mode))


@dataclass(frozen=True)
class PoseView:
    """A config's sizes: poses rendered as graph_train.py does, then read as pix2pixHD's loader reads them.

    canvas_size (W, H): the render canvas (official 1920x1080); label_size (W, H): the label maps and targets
    graph_train.py writes (1024x512); the loader then scales them to the generator's size: `scale_width` to
    `load_size` wide (height int(load_size * H / W)), or `none` rounding each side to a multiple of `base`.
    """

    canvas_size: tuple[int, int] = (1920, 1080)
    label_size: tuple[int, int] = (1024, 512)
    resize_or_crop: str = "none"
    load_size: int = 1024
    base: int = 32
    num_face_keypoints: int = 8
    face_box_size: int = 128

    def loader_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(W, H) the official loader turns an image of size (W, H) into."""
        w, h = size
        if self.resize_or_crop == "scale_width":
            return (w, h) if w == self.load_size else (self.load_size, int(self.load_size * h / w))
        return _round_half_up(w / self.base) * self.base, _round_half_up(h / self.base) * self.base

    @property
    def generator_size(self) -> tuple[int, int]:
        """(W, H) the generator runs at."""
        return self.loader_size(self.label_size)

    def label(self, pose: Any, frame_size: tuple[int, int]) -> np.ndarray:
        """uint8 (H, W, 3) RGB label map at label_size of a pose in the pixels of a frame_size (W, H) frame."""
        from prep.poses.render import render_label

        return render_label(pose, tuple(frame_size), self.label_size, num_face_keypoints=self.num_face_keypoints,
                            canvas_size=self.canvas_size)

    def box(self, pose: Any, frame_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
        """The pose's face box (facetexts128, in label pixels) in generator pixels; None without a head."""
        from prep.poses.render import face_box

        box = face_box(pose, tuple(frame_size), self.label_size, canvas_size=self.canvas_size,
                       box=self.face_box_size)
        if box is None:
            return None
        (gw, gh), (lw, lh) = self.generator_size, self.label_size
        return scale_box(box, gh / lh, gw / lw)

    def target(self, frame: np.ndarray) -> np.ndarray:
        """uint8 frame -> uint8 (h, w, 3) at the generator's size: fit_frame (graph_train.py's train_img), then
        the loader's bicubic resize."""
        from prep.poses.render import fit_frame

        fitted = fit_frame(np.asarray(frame), self.label_size, canvas_size=self.canvas_size)
        return _pil_resize(fitted, self.loader_size((fitted.shape[1], fitted.shape[0])), "bicubic")

    def label_tensor(self, label: np.ndarray) -> Tensor:
        """uint8 (H, W, 3) RGB label map -> (3, h, w) float in [0, 1]: the loader's nearest resize + ToTensor."""
        label = np.asarray(label)
        if label.dtype != np.uint8 or label.ndim != 3 or label.shape[2] != 3:
            raise AnimbenchError(f"label map: expected uint8 (H, W, 3) RGB, got {label.dtype} {label.shape}")
        label = _pil_resize(label, self.loader_size((label.shape[1], label.shape[0])), "nearest")
        return torch.from_numpy(np.array(label, copy=True)).permute(2, 0, 1).float().div_(255.0)

    @staticmethod
    def image_tensor(image: np.ndarray) -> Tensor:
        """uint8 (h, w, 3) -> (3, h, w) float in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
        return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float().div_(255.0).mul_(2).sub_(1)


class PosePairDataset(torch.utils.data.Dataset):
    """EDN's training samples: consecutive posed frames (t, t+1) of each video of a split.

    As the official loader over a sorted label folder: "consecutive" means consecutive among the frames that have
    a pose (a frame without one is simply absent), and the last frame has no successor. No flip, no crop. With
    `need_face` (face stage) only pairs whose frame t has a face box are kept; the box of t serves both frames.
    Items: {"labels": (2, 3, h, w) in [0, 1], "images": (2, 3, h, w) in [-1, 1], "face_box": int64 (4,)
    (miny, maxy, minx, maxx) in generator pixels, -1s when frame t has no head}.
    """

    def __init__(self, store: Any, view: PoseView, *, split: str = "train", num_repeats: int = 1,
                 need_face: bool = False) -> None:
        if store.pose_info is None:
            raise AnimbenchError(f"store {store.root}: has no poses; pose2img trains on a store prepped with "
                                 "--poses DIR|BACKEND")
        self.store, self.view, self.num_repeats = store, view, int(num_repeats)
        self.videos = store.videos(split)
        self.poses: dict[str, dict[int, Any]] = {}
        self.items: list[tuple[str, int, int, tuple[int, int, int, int]]] = []
        self.without_face = 0
        for video_id in self.videos:
            poses = store.poses(video_id)
            self.poses[video_id] = poses
            indices = sorted(poses)
            if len(indices) < 2:
                continue
            first = store.read(video_id, [indices[0]])[0]
            frame_size = (first.shape[1], first.shape[0])
            for t, t1 in zip(indices, indices[1:], strict=False):
                box = view.box(poses[t], frame_size)
                if box is None and need_face:
                    self.without_face += 1
                    continue
                self.items.append((video_id, t, t1, box or (-1, -1, -1, -1)))
        if not self.items:
            raise AnimbenchError(f"store {store.root}: split {split!r} has no pair of consecutive posed frames"
                                 + (" with a face box" if need_face else ""))

    def set_epoch(self, epoch: int) -> None:
        """Nothing is random in EDN's sampling (every pair once per epoch, no flip)."""

    def __len__(self) -> int:
        return len(self.items) * self.num_repeats

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        video_id, t, t1, box = self.items[index % len(self.items)]
        frames = self.store.read(video_id, [t, t1])  # (2, H, W, 3) uint8
        frame_size = (frames.shape[2], frames.shape[1])
        poses = self.poses[video_id]
        labels = torch.stack([self.view.label_tensor(self.view.label(poses[i], frame_size)) for i in (t, t1)])
        images = torch.stack([self.view.image_tensor(self.view.target(f)) for f in frames])
        return {"labels": labels, "images": images, "face_box": torch.tensor(box, dtype=torch.int64)}


# --- the method ------------------------------------------------------------------------------------------------

STAGES = ("global", "local", "face")
NETWORKS = ("generator", "discriminator", "face_generator", "face_discriminator")
OFFICIAL_NAMES = {"generator": "G", "discriminator": "D", "face_generator": "Gface", "face_discriminator": "Dface"}
NO_FACE = -1  # a face_boxes row of -1s: that frame has no head, so no face residual


class Pose2Img(Method):
    """EDN: generator (+ face residual generator) driven by rendered poses, trained with temporal pairs.

    One config trains one stage (`model_params.stage`): global (G 512x256 + 2-scale D), local (local enhancer
    1024x512 + 3-scale D, started `--init-from` the global run), face (the local G frozen, face G + face D
    trained, the main D frozen for `niter_fix_main` epochs). Loss values returned by the steps are their weighted
    contributions: Σ generator_step = the official loss_G, Σ discriminator_step = loss_D.
    """

    driven_by: ClassVar[str] = "poses"
    stages: ClassVar[tuple[str, ...]] = STAGES
    discriminators: ClassVar[tuple[str, ...]] = ("discriminator", "face_discriminator")
    required_entries: ClassVar[tuple[str, ...]] = ("generator",)

    def __init__(self, generator: nn.Module, view: PoseView, *, stage: str = "global", net_g: str = "global",
                 discriminator: MultiscaleDiscriminator | None = None, face_generator: GlobalGenerator | None = None,
                 face_discriminator: FaceDiscriminator | None = None, train_params: Mapping[str, Any] | None = None):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.face_generator = face_generator
        self.face_discriminator = face_discriminator
        self.networks = tuple(n for n in NETWORKS if getattr(self, n) is not None)
        self.view, self.stage, self.net_g = view, stage, net_g
        self.label_size, self.canvas_size = view.label_size, view.canvas_size
        self.generator_size, self.face_box_size = view.generator_size, view.face_box_size
        self.num_face_keypoints = view.num_face_keypoints
        self.train_params = dict(train_params or {})
        self._vgg: VGGLoss | None = None  # built on first use: inference needs no VGG19

    @classmethod
    def from_config(cls, cfg: dict | str, align_corners: bool = True) -> Pose2Img:
        """Build the networks of the config's stage, initialised as pix2pixHD's weights_init."""
        if not isinstance(cfg, dict) or "_meta" not in cfg:
            cfg = load_config(cfg, method="pose2img")
        g, d = get_path(cfg, "model_params.generator_params"), get_path(cfg, "model_params.discriminator_params")
        stage, tp = cfg["model_params"]["stage"], cfg.get("train_params") or {}
        label_nc, output_nc = int(g.get("label_nc", 6)), int(g.get("output_nc", 3))
        if g["netG"] == "local":
            generator: nn.Module = LocalEnhancer(label_nc, output_nc, g["ngf"], g["n_downsample_global"],
                                                 g["n_blocks_global"], g.get("n_local_enhancers", 1),
                                                 g.get("n_blocks_local", 3))
        else:
            generator = GlobalGenerator(label_nc, output_nc, g["ngf"], g["n_downsample_global"], g["n_blocks_global"])
        n_layers = int(d.get("n_layers_D", 3))
        discriminator = MultiscaleDiscriminator(4 * output_nc, d.get("ndf", 64), n_layers, d["num_D"],
                                                get_interm_feat=not tp.get("no_ganFeat_loss", False))
        face_generator = face_discriminator = None
        if stage == "face":
            f = get_path(cfg, "model_params.face_params", {}) or {}
            if f.get("face_generator", True):
                face_generator = GlobalGenerator(2 * output_nc, output_nc, f.get("ngf", 64), f.get("n_downsample", 3),
                                                 f.get("n_blocks", 5))
            if f.get("face_discrim", True):
                face_discriminator = FaceDiscriminator(2 * output_nc, d.get("ndf", 64), n_layers)
        for net in (generator, discriminator, face_generator, face_discriminator):
            if net is not None:
                net.apply(weights_init)
        model = cls(generator, view_of(cfg), stage=stage, net_g=g["netG"], discriminator=discriminator,
                    face_generator=face_generator, face_discriminator=face_discriminator, train_params=tp)
        model.config = cfg
        return model

    # --- training hooks ---
    @property
    def uses_gan(self) -> bool:
        """EDN always trains its discriminators."""
        return self.discriminator is not None

    def training_stage(self, cfg: Mapping[str, Any]) -> str:
        """model_params.stage: global | local | face."""
        return str(get_path(cfg, "model_params.stage"))

    def learning_rates(self, cfg: Mapping[str, Any], stage: str = "global") -> dict[str, float]:
        """train_params.lr (2e-4) for each trained network: the face stage trains the face generator alone on
        the generator side (the main G keeps its weights), the discriminators as they are present."""
        if stage not in STAGES:
            raise AnimbenchError(f"pose2img: stage {stage!r} is not one of {list(STAGES)}")
        lr = float(get_path(cfg, "train_params.lr", 2e-4))
        g_side = "face_generator" if stage == "face" and self.face_generator is not None else "generator"
        return {name: lr for name in (g_side, *self.discriminators) if getattr(self, name, None) is not None}

    def frozen_networks(self, cfg: Mapping[str, Any], epoch: int) -> set[str]:
        """Face stage: the main discriminator waits the first `niter_fix_main` epochs (only the face D trains)."""
        fix = int(get_path(cfg, "train_params.niter_fix_main", 0) or 0)
        if self.training_stage(cfg) == "face" and epoch < fix:
            return {"discriminator"}
        return set()

    def training_dataset(self, store: Any, cfg: Mapping[str, Any], *, num_repeats: int, seed: int,
                         transform: Any) -> PosePairDataset:
        """Consecutive posed frame pairs of the train split (EDN has no augmentation: `transform` is unused)."""
        return PosePairDataset(store, self.view, split="train", num_repeats=num_repeats,
                               need_face=self.face_generator is not None or self.face_discriminator is not None)

    def step_inputs(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, ...]:
        """(labels (B, 2, 3, h, w), images (B, 2, 3, h, w), face_box (B, 4))."""
        return batch["labels"], batch["images"], batch["face_box"]

    @property
    def vgg_loss(self) -> VGGLoss:
        """pix2pixHD's VGG loss (or the config's fallback); raises when VGG19 is missing without a fallback."""
        if self._vgg is None:
            self._vgg = VGGLoss(self.train_params.get("perceptual_fallback"))
        return self._vgg

    def training_backends(self) -> dict[str, Any]:
        """The VGG loss's network; loading it here fails early when its weights are missing."""
        if self.train_params.get("no_vgg_loss", False):
            return {"backend": "none", "description": "no_vgg_loss: the VGG term is off"}
        return {"backend": self.vgg_loss.backend, "description": self.vgg_loss.backend_description}

    def _with_face(self, label: Tensor, raw: Tensor, boxes: Tensor) -> Tensor:
        """raw (B, 3, h, w) + faceGen(cat(label crop, raw crop)) pasted at each sample's box (unclamped)."""
        if self.face_generator is None:
            return raw
        residual = self.face_generator(torch.cat([crop_faces(label, boxes), crop_faces(raw, boxes)], dim=1))
        return paste_residual(raw, residual, boxes)

    def _face_pairs(self, labels: Tensor, fakes: tuple[Tensor, Tensor], boxes: Tensor, detach: bool
                    ) -> list[tuple[Tensor, Tensor]]:
        return [(crop_faces(labels[:, i], boxes), crop_faces(f.detach() if detach else f, boxes))
                for i, f in enumerate(fakes)]

    def generator_step(self, labels: Tensor, images: Tensor, face_box: Tensor
                       ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """One batch's generator losses (G_GAN, G_GAN_Feat, G_VGG, [G_L1], [G_GANface]) and the fakes."""
        tp, lsgan = self.train_params, not self.train_params.get("no_lsgan", False)
        lambda_feat = float(tp.get("lambda_feat", 10.0))
        x0, x1, y0, y1 = labels[:, 0], labels[:, 1], images[:, 0], images[:, 1]
        face = self.face_generator is not None or self.face_discriminator is not None
        if face:
            check_boxes(face_box, labels.shape[-2], labels.shape[-1], "training face box")
        fake_0 = self._with_face(x0, self.generator(torch.cat([x0, torch.zeros_like(x0)], dim=1)), face_box)
        fake_1 = self._with_face(x1, self.generator(torch.cat([x1, fake_0], dim=1)), face_box)  # I_0 not detached
        pred_fake = self.discriminator(torch.cat([x0, x1, fake_0, fake_1], dim=1))
        losses = {"G_GAN": gan_loss(pred_fake, True, lsgan)}
        if not tp.get("no_ganFeat_loss", False):
            with torch.no_grad():
                pred_real = self.discriminator(torch.cat([x0, x1, y0, y1], dim=1))
            losses["G_GAN_Feat"] = lambda_feat * feature_matching_loss(pred_fake, pred_real,
                                                                       self.discriminator.n_layers)
        if self.face_discriminator is not None:
            pairs = self._face_pairs(labels, (fake_0, fake_1), face_box, detach=False)
            losses["G_GANface"] = sum(0.5 * gan_loss(self.face_discriminator(torch.cat(p, dim=1)), True, lsgan)
                                      for p in pairs)
        if not tp.get("no_vgg_loss", False):
            vgg = (self.vgg_loss(fake_0, y0) + self.vgg_loss(fake_1, y1)) * lambda_feat
            if self.net_g == "global":  # the official halving: the local stage has twice the VGG weight
                vgg = vgg * 0.5
            if self.face_discriminator is not None:
                for fake, real in ((fake_0, y0), (fake_1, y1)):
                    vgg = vgg + 0.5 * lambda_feat * self.vgg_loss(crop_faces(fake, face_box),
                                                                  crop_faces(real, face_box))
            losses["G_VGG"] = vgg
        if tp.get("use_l1", False):
            losses["G_L1"] = float(tp.get("lambda_A", 10.0)) * F.l1_loss(fake_1, y1)
        return losses, {"fake_0": fake_0, "fake_1": fake_1}

    def discriminator_step(self, labels: Tensor, images: Tensor, face_box: Tensor,
                           outputs: dict[str, Any]) -> dict[str, Tensor]:
        """loss_D = 0.5 (D_fake + D_real) + 0.5 (D_fakeface + D_realface), each face term 0.5 per frame; fakes
        detached."""
        lsgan = not self.train_params.get("no_lsgan", False)
        x0, x1, y0, y1 = labels[:, 0], labels[:, 1], images[:, 0], images[:, 1]
        fakes = (outputs["fake_0"].detach(), outputs["fake_1"].detach())
        pred_fake = self.discriminator(torch.cat([x0, x1, *fakes], dim=1))
        pred_real = self.discriminator(torch.cat([x0, x1, y0, y1], dim=1))
        losses = {"D_fake": 0.5 * gan_loss(pred_fake, False, lsgan), "D_real": 0.5 * gan_loss(pred_real, True, lsgan)}
        if self.face_discriminator is not None:
            fake_pairs = self._face_pairs(labels, fakes, face_box, detach=True)
            real_pairs = self._face_pairs(labels, (y0, y1), face_box, detach=True)
            losses["D_fakeface"] = 0.5 * sum(0.5 * gan_loss(self.face_discriminator(torch.cat(p, dim=1)), False,
                                                            lsgan) for p in fake_pairs)
            losses["D_realface"] = 0.5 * sum(0.5 * gan_loss(self.face_discriminator(torch.cat(p, dim=1)), True,
                                                            lsgan) for p in real_pairs)
        return losses

    # --- official files and checkpoints ---
    def official_files(self) -> dict[str, Mapping[str, Tensor]]:
        """latest_net_{G,D,Gface,Dface}.pth (the official save_network files) of the networks present."""
        return {f"latest_net_{OFFICIAL_NAMES[n]}.pth": getattr(self, n).state_dict() for n in self.networks}

    def read_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """Our checkpoint file, or an official folder of `latest_net_*.pth` (or one `<epoch>_net_G.pth`, read
        with its siblings): G required, D / Gface / Dface when present and this config has them."""
        from methods.checkpoints import read_torch_file

        path = Path(path)
        folder, prefix = (path, "latest") if path.is_dir() else (path.parent, None)
        if prefix is None and path.name.endswith("_net_G.pth"):
            prefix = path.name.removesuffix("_net_G.pth")
        if prefix is None:
            return load_checkpoint(path, required=self.required_entries)
        ckpt: dict[str, Any] = {}
        for name, short in OFFICIAL_NAMES.items():
            file = folder / f"{prefix}_net_{short}.pth"
            if not file.is_file():
                if name == "generator":
                    raise AnimbenchError(f"checkpoint {folder}: {file.name} missing (an official EDN folder holds "
                                         "latest_net_G.pth, and latest_net_D/Gface/Dface.pth when trained)")
                continue
            state = read_torch_file(file, weights_only=True)
            if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
                raise AnimbenchError(f"checkpoint {file}: expected a state_dict (names -> tensors)")
            if name in self.networks:
                ckpt[name] = dict(state)
        if prefix.isdigit():
            ckpt["epoch"] = int(prefix)
        return ckpt

    # --- inference ---
    def pose_condition(self, pose: Any, frame_size: tuple[int, int]
                       ) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
        """A pose in the pixels of a frame_size (W, H) frame -> (label map uint8 (H, W, 3) at label_size, face box
        (miny, maxy, minx, maxx) in generator pixels, the facetexts128 box scaled, or None without a head)."""
        return self.view.label(pose, frame_size), self.view.box(pose, frame_size)

    def pose_target(self, frame: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) frame -> uint8 (h, w, 3) ground truth at the generator's size."""
        return self.view.target(frame)

    def label_tensor(self, label: np.ndarray) -> Tensor:
        """uint8 (H, W, 3) RGB label map -> (3, h, w) float in [0, 1] as the official loader reads it (global
        stage: PIL nearest to width 512; local / face: sides rounded to the generator's multiple)."""
        return self.view.label_tensor(label)

    def _inference(self):
        return inference_mode(*[getattr(self, n) for n in ("generator", "face_generator")
                                if getattr(self, n) is not None])

    def generate(self, labels: Tensor, face_boxes: Tensor | None = None, previous: Tensor | None = None
                 ) -> tuple[Tensor, Tensor]:
        """test_fullts.py: frames one after another, each conditioned on the raw output before it.

        labels (T, 3, h, w) in [0, 1]; face_boxes (T, 4) (miny, maxy, minx, maxx) in generator pixels, a row of
        -1s for a frame without a head (required when the model has a face generator); previous (1, 3, h, w)
        (None: zeros). -> (outputs (T, 3, h, w), tanh + face residual, unclamped; the last one, for the next call).
        """
        if labels.dim() != 4 or labels.shape[1] != 3:
            raise AnimbenchError(f"pose2img generate: expected labels (T, 3, h, w), got {tuple(labels.shape)}")
        t, _, h, w = labels.shape
        boxes = None
        if self.face_generator is not None:
            if face_boxes is None:
                raise AnimbenchError("pose2img generate: this face-stage model needs a face box per frame "
                                     "(face_boxes (T, 4)), got none")
            boxes = torch.as_tensor(face_boxes, dtype=torch.int64).reshape(-1, 4)
            if boxes.shape[0] != t:
                raise AnimbenchError(f"pose2img generate: {boxes.shape[0]} face boxes for {t} label maps")
            present = (boxes != NO_FACE).any(dim=1)
            check_boxes(boxes[present], h, w, "face box")
        prev = labels.new_zeros(1, 3, h, w) if previous is None else previous.to(labels)
        if prev.shape != (1, 3, h, w):
            raise AnimbenchError(f"pose2img generate: previous must be (1, 3, {h}, {w}), got {tuple(prev.shape)}")
        outputs = []
        with self._inference():
            for i in range(t):
                x = labels[i:i + 1]
                raw = self.generator(torch.cat([x, prev], dim=1))
                if boxes is not None and bool(present[i]):
                    raw = self._with_face(x, raw, boxes[i:i + 1])
                outputs.append(raw)
                prev = raw
        return torch.cat(outputs), prev

    def reconstruct(self, source: Tensor, driving: Tensor) -> Tensor:
        """Not a video-driven method."""
        raise AnimbenchError("pose2img is driven by poses, not by a driving video: use `animbench animate pose2img "
                             "--poses P` (or the bench's pose protocol)")

    def animate(self, source: Tensor, driving_video: Tensor, mode: Any = None) -> Tensor:
        """Not a video-driven method."""
        self.reconstruct(source, driving_video)
        raise AssertionError  # unreachable: reconstruct raises


# --- the config ----------------------------------------------------------------------------------------------

CONFIG_SCHEMA = {
    **SHARED_SECTIONS,
    "dataset_params": {k: LEAF for k in ("canvas_size", "label_size", "resize_or_crop", "load_size",
                                         "num_face_keypoints", "face_box_size", "frame_shape")},
    "model_params": {
        "stage": LEAF,
        "generator_params": {k: LEAF for k in ("netG", "label_nc", "output_nc", "ngf", "n_downsample_global",
                                               "n_blocks_global", "n_local_enhancers", "n_blocks_local")},
        "discriminator_params": {k: LEAF for k in ("ndf", "n_layers_D", "num_D")},
        "face_params": {k: LEAF for k in ("face_generator", "face_discrim", "faceGtype", "ngf", "n_downsample",
                                          "n_blocks")},
    },
    "train_params": {
        **TRAIN_COMMON,
        **{k: LEAF for k in ("lr", "niter", "niter_decay", "niter_fix_main", "lambda_feat", "lambda_A",
                             "no_ganFeat_loss", "no_vgg_loss", "no_lsgan", "use_l1", "perceptual_fallback")},
    },
}
REQUIRED_KEYS = (
    "dataset_params.label_size",
    "dataset_params.resize_or_crop",
    "model_params.stage",
    "model_params.generator_params.netG",
    "model_params.generator_params.ngf",
    "model_params.generator_params.n_downsample_global",
    "model_params.generator_params.n_blocks_global",
    "model_params.discriminator_params.num_D",
)


def _size_pair(cfg: Mapping[str, Any], key: str, where: str, default: Any = KeyError) -> tuple[int, int]:
    value = get_path(cfg, key, default)
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise AnimbenchError(f"{where}: {key} must be [W, H] in positive integer pixels, got {value!r}")
    return int(value[0]), int(value[1])


def view_of(cfg: Mapping[str, Any]) -> PoseView:
    """The rendering view of a validated config."""
    data, g = cfg.get("dataset_params") or {}, get_path(cfg, "model_params.generator_params")
    base = 2 ** int(g["n_downsample_global"])
    if g["netG"] == "local":
        base *= 2 ** int(g.get("n_local_enhancers", 1))
    label_size = tuple(data["label_size"])
    return PoseView(canvas_size=tuple(data.get("canvas_size") or (1920, 1080)), label_size=label_size,
                    resize_or_crop=data["resize_or_crop"], load_size=int(data.get("load_size") or label_size[0]),
                    base=base, num_face_keypoints=int(data.get("num_face_keypoints", 8)),
                    face_box_size=int(data.get("face_box_size", 128)))


def _check_config(cfg: dict, where: str) -> None:
    stage, g = get_path(cfg, "model_params.stage"), get_path(cfg, "model_params.generator_params")
    choices = (("model_params.stage", STAGES), ("model_params.generator_params.netG", ("global", "local")),
               ("dataset_params.resize_or_crop", ("scale_width", "none")),
               ("model_params.face_params.faceGtype", ("global",)),
               ("train_params.perceptual_fallback", PERCEPTUAL_FALLBACKS))
    for key, allowed in choices:
        value = get_path(cfg, key, None)
        if value is not None and value not in allowed:
            raise AnimbenchError(f"{where}: {key} must be one of {list(allowed)}, got {value!r}")
    _size_pair(cfg, "dataset_params.label_size", where)
    _size_pair(cfg, "dataset_params.canvas_size", where, [1920, 1080])
    for key in ("generator_params.ngf", "generator_params.n_blocks_global", "discriminator_params.num_D",
                "discriminator_params.ndf", "discriminator_params.n_layers_D", "generator_params.n_blocks_local",
                "generator_params.n_local_enhancers", "face_params.ngf", "face_params.n_downsample",
                "face_params.n_blocks"):
        value = get_path(cfg, f"model_params.{key}", 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AnimbenchError(f"{where}: model_params.{key} must be a positive integer, got {value!r}")
    if g.get("label_nc", 6) != 3 + g.get("output_nc", 3):
        raise AnimbenchError(f"{where}: model_params.generator_params.label_nc must be 3 (label) + output_nc "
                             f"(previous frame) = {3 + g.get('output_nc', 3)}, got {g.get('label_nc')!r}")
    view = view_of(cfg)
    gw, gh = view.generator_size
    if gw % view.base or gh % view.base:
        raise AnimbenchError(f"{where}: the generator runs at {gw}x{gh}, not a multiple of {view.base} "
                             "(2**n_downsample_global, x2 per local enhancer): change label_size or load_size")
    shape = get_path(cfg, "dataset_params.frame_shape", None)
    if shape is not None and list(shape) != [gh, gw, 3]:
        raise AnimbenchError(f"{where}: dataset_params.frame_shape {shape!r} differs from the generator's size "
                             f"[{gh}, {gw}, 3] (label_size read by the loader)")
    if stage == "face" and view.face_box_size > min(gw, gh):
        raise AnimbenchError(f"{where}: dataset_params.face_box_size {view.face_box_size} exceeds the generator's "
                             f"{gw}x{gh} frame")


CONFIG_SPEC = ConfigSpec(CONFIG_SCHEMA, REQUIRED_KEYS, markers=("netG",),
                         official_repo="github.com/carolineec/EverybodyDanceNow (README commands)",
                         check=_check_config)


# --- the card ------------------------------------------------------------------------------------------------

_CONFIGS = {"edn-global": "configs/pose2img-edn-global.yaml", "edn-local": "configs/pose2img-edn-local.yaml",
            "edn-face": "configs/pose2img-edn-face.yaml", "tiny": "configs/pose2img-tiny.yaml"}
# the official code writes these per run (no weights were released): G of the local stage is what the README's
# test command loads; the face stage adds Gface / Dface
_CHECKPOINTS = {"latest_net_G.pth": "edn-local", "latest_net_D.pth": "edn-local", "latest_net_Gface.pth": "edn-face",
                "latest_net_Dface.pth": "edn-face"}
Pose2Img.card = register_method(MethodCard(
    name="pose2img", paper="Everybody Dance Now (Chan et al., ICCV 2019)", family="pose-to-image",
    build=Pose2Img.build, config_spec=CONFIG_SPEC, configs=_CONFIGS, checkpoints=_CHECKPOINTS,
    notes="pix2pixHD generator on rendered OpenPose skeletons, temporal smoothing, face residual GAN"))
