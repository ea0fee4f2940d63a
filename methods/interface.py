"""The one method interface: what every family implements, and the guide for adding one.

Adding a family is one new file in methods/ (plus a `<family>_keypoints.py` when its maths is long):

1. Its networks, plain `nn.Module`s with the tensor shapes stated where they change.
2. A subclass of `Method` holding them under the checkpoint entry names (`kp_detector`, `generator`,
   `discriminator`, or the family's own) and listing them in `networks` (a class or an instance attribute: a
   family whose stages hold different networks sets it per config), with `from_config(cfg, align_corners)`.
   `required_entries` names what a checkpoint must hold for inference; `discriminators` the networks stepped on
   the discriminator side of a training step.
3. Its inference, chosen by `driven_by`:
   - "video" (FOMM, Monkey-Net, ...): `reconstruct(source, driving)` and `animate(source, driving_video, mode)`,
     the same signatures in every family; `animation_mode(relative, adapt_scale)` gives the family's defaults
     (from its config) as an `AnimationMode`; bad input shapes raise `ShapeError` (`check_reconstruct_shapes`,
     `check_animate_shapes`).
     `animbench animate` reads its inputs as `input_crop` says (None: centre-crop and resize to the config's
     frame shape, as FOMM's demo; "latentpose": each image cut by prep.latentpose_crop, or taken as it is with
     --no-crop) and calls `animate_sources(sources, driving_video, mode)`: one source image by default
     (`source_images = "one"`); a family that pools an identity over a set of images sets "set" and overrides
     it, and `holds_identity()` says when its loaded weights need no source at all (a fine-tuned avatar).
   - "poses" (pose2img): `pose_condition(pose, frame_size)` (a pose -> its label map and face box),
     `pose_target(frame)` (a frame -> the ground truth at the generator's resolution), `label_tensor(label)` (a
     label map as the official loader reads it) and `generate(labels, face_boxes, previous)` (frames made
     autoregressively, the previous raw output carried between calls). The defaults below render with
     prep.poses.render at `label_size` / `canvas_size` and resize to `generator_size` as pix2pixHD's loader does;
     a family overrides what it does differently. methods/infer_pose.py streams `generate` (`generate_poses`,
     `store_pose_frames`); `animbench animate` takes `--poses` for these families, `--source/--driving` for the
     others.
4. Its training hooks, which the one loop in methods/train.py calls and never special-cases:
   `training_dataset(...)` (the samples it trains on: frame pairs by default; a pose family returns poses with
   frames, a latent-pose family K identity frames + a pose frame + a mask, a fine-tuning run a few images of
   one identity), `step_inputs(batch)` (a batch -> the step's arguments), `generator_step(*inputs)` and
   `discriminator_step(*inputs, outputs)` (one step's losses), `learning_rates(cfg, stage)` (one Adam optimiser
   per network named there; a network without one is frozen), `frozen_networks(cfg, epoch)` (networks whose
   optimiser waits this epoch, e.g. EDN's main discriminator for `niter_fix_main` epochs),
   `checkpoint_entries(step)` (what the official checkpoint layout holds beyond networks, optimisers and epoch),
   `official_files()` (files the official code writes beside its checkpoints, e.g. `latest_net_G.pth`), and
   `stages` with `training_stage(cfg)` (EDN's global -> local -> face: one config per stage, each run started
   `--init-from` the previous one, whose matching weights `load_pretrained` copies). A family whose stages share
   one config (MRAA's main -> avd, chosen by `animbench train --stage NAME`) hears the stage through
   `set_training_stage(stage)` before its optimisers are made, and `stage_config(cfg, stage)` gives the config
   whose train_params schedule that stage (MRAA's train_avd_params); `epoch_entries(epoch)` names the epoch as
   its official layout does (MRAA's epoch_reconstruction / epoch_avd).
   `read_checkpoint(path)` reads what `animbench ... --checkpoint` names (a file by default; a family may read a
   folder of official files). Optimisers: `optimizer_options(cfg, stage)` (Adam or RAdam, betas, eps) and
   `optimizer_groups(cfg, stage)` (one optimiser per network by default; a family whose official code steps
   several networks with one optimiser, e.g. latent-pose's `optimizer_G` over embedder + generator, names the
   groups, saved as `optimizer_<group>`). `after_backward(outputs)` runs between the generator side's backward
   and its optimisers' step (e.g. gradient clipping), `after_step(step)` after every step (e.g. weight running
   averages),
   `prepare_training(dataset)` once when a run starts (not on resume; e.g. a fine-tuning run's identity
   embedding), and `load_entries(ckpt)` reads back, after the networks, what `checkpoint_entries` wrote.
   Animation by disentanglement (`animbench animate --avd`): a family that has it sets `supports_avd = True` and
   reads `mode.option("avd")`; `check_mode(mode)` refuses it, before any work, for weights without a trained
   `avd_network`. A family whose official weights need one grid_sample convention sets
   `grid_convention` (MRAA: False); None leaves it to the caller (default True, FOMM's).
5. Its card, registered at the bottom of the file: `register_method(MethodCard(name=..., build=...))`.
   methods/registry.py finds the file by itself (any module of methods/ that registers a card), so no shared
   list changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from methods.checkpoints import NETWORK_ENTRIES, REQUIRED_ENTRIES, load_checkpoint, load_matching
from plumbing.errors import AnimbenchError

if TYPE_CHECKING:
    from prep.poses.format import PoseFrame

# The reconstruction protocol every family is scored under (source = frame 0, absolute keypoints), named after the
# paper that defined it; recorded in reconstruction.json.
RECONSTRUCTION_PROTOCOL = "fomm-reconstruction"
ADAM_BETAS = (0.5, 0.999)  # FOMM's; the default of optimizer_options


@contextmanager
def inference_mode(*modules: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm running statistics, spectral norm without a power iteration) and no_grad for the
    modules, their previous train/eval modes restored afterwards: every family's inference runs inside this."""
    modes = [(m, m.training) for m in modules]
    try:
        for m, _ in modes:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.train(training)


class ShapeError(AnimbenchError, ValueError):
    """Input tensors of the wrong shape, raised identically by every family."""


def check_animate_shapes(source: Tensor, driving_video: Tensor) -> Tensor:
    """The source as (1, C, H, W) (a (C, H, W) image is unsqueezed); ShapeError unless driving is (T, C, H, W)."""
    if source.dim() == 3:
        source = source.unsqueeze(0)
    if source.dim() != 4 or source.shape[0] != 1 or driving_video.dim() != 4:
        raise ShapeError(f"animate: expected source (1, C, H, W) and driving (T, C, H, W), got "
                         f"{tuple(source.shape)} and {tuple(driving_video.shape)}")
    return source


def check_reconstruct_shapes(source: Tensor, driving: Tensor) -> None:
    """ShapeError unless source and driving are frames of the same shape (B, C, H, W)."""
    if source.dim() != 4 or source.shape != driving.shape:
        raise ShapeError(f"reconstruct: expected source and driving frames of one shape (B, C, H, W), got "
                         f"{tuple(source.shape)} and {tuple(driving.shape)}")


@dataclass(frozen=True)
class AnimationMode:
    """How driving motion is applied to the source: relative or absolute motion, movement scale adaptation,
    and the family's own settings (`options`: FOMM's relative_jacobian, Monkey-Net's normalisation flags).
    None (the baselines) means the family has no such setting."""

    relative: bool | None = False
    adapt_scale: bool | None = False
    options: tuple[tuple[str, Any], ...] = field(default=())

    @classmethod
    def of(cls, relative: bool | None, adapt_scale: bool | None, options: Mapping[str, Any] | None = None
           ) -> AnimationMode:
        """A mode from values and a mapping of the family's own settings."""
        return cls(relative, adapt_scale, tuple((options or {}).items()))

    def option(self, name: str, default: Any = None) -> Any:
        """One of the family's own settings."""
        return dict(self.options).get(name, default)

    def with_flags(self, relative: bool | None = None, adapt_scale: bool | None = None) -> AnimationMode:
        """This mode with the flags given (None keeps the current value)."""
        return replace(self, relative=self.relative if relative is None else relative,
                       adapt_scale=self.adapt_scale if adapt_scale is None else adapt_scale)

    def with_option(self, name: str, value: Any) -> AnimationMode:
        """This mode with one of the family's own settings set (added or replaced)."""
        return replace(self, options=tuple({**dict(self.options), name: value}.items()))

    def as_dict(self) -> dict[str, Any]:
        """The mode as plain data, recorded with every animation."""
        return {"relative": self.relative, "adapt_scale": self.adapt_scale, **dict(self.options)}


class Method(nn.Module):
    """A family: networks, inference and the training hooks (see the module docstring for how to add one)."""

    # the checkpoint entries holding this family's networks, each trained by its own optimiser (a family may set
    # it per instance: the networks of its config's stage)
    networks: tuple[str, ...] = tuple(NETWORK_ENTRIES)
    # networks stepped on the discriminator side of train_batch (after the generator side)
    discriminators: ClassVar[tuple[str, ...]] = ("discriminator",)
    # "video": reconstruct / animate(source, driving); "poses": generate(labels) from rendered poses
    driven_by: ClassVar[str] = "video"
    # entries a checkpoint must hold (load_checkpoint's check)
    required_entries: ClassVar[tuple[str, ...]] = tuple(REQUIRED_ENTRIES)
    # training stages, in order; a config trains one of them (training_stage)
    stages: ClassVar[tuple[str, ...]] = ("main",)
    # the grid_sample convention the official weights need when it is fixed (MRAA: False); None: the caller's
    grid_convention: ClassVar[bool | None] = None
    # True when animate reads mode.option("avd") (animation via disentanglement, `animbench animate --avd`)
    supports_avd: ClassVar[bool] = False
    # pose-driven families: label maps rendered at label_size (W, H) from poses letterboxed into canvas_size, the
    # generator run at generator_size (W, H); face boxes of face_box_size pixels (see pose_condition)
    label_size: tuple[int, int] = (1024, 512)
    canvas_size: tuple[int, int] = (1920, 1080)
    generator_size: tuple[int, int] = (1024, 512)
    num_face_keypoints: int = 8
    face_box_size: int = 128

    # --- the grid_sample convention ---
    @property
    def align_corners(self) -> bool | None:
        """The grid_sample convention used at every sampling site (record it with any output); None for a family
        that does not warp (the baselines, pose2img, latent_pose)."""
        return self.__dict__.get("_align_corners")

    @align_corners.setter
    def align_corners(self, value: bool | None) -> None:
        """Switch the convention at every sampling site at once: every submodule holding an `align_corners`
        attribute of its own (generators, dense motion / flow networks) gets the value."""
        self.__dict__["_align_corners"] = None if value is None else bool(value)
        for module in self.modules():
            if module is not self and "align_corners" in vars(module):
                module.align_corners = self.__dict__["_align_corners"]

    # --- building ---
    @classmethod
    def from_config(cls, cfg: dict, align_corners: bool = True) -> Method:
        """Build from a validated config (methods.registry.load_config)."""
        raise NotImplementedError

    @classmethod
    def build(cls, cfg: dict | None, align_corners: bool) -> Method:
        """The card's builder."""
        return cls.from_config(cfg, align_corners=align_corners)

    # --- inference ---
    def animation_mode(self, relative: bool | None = None, adapt_scale: bool | None = None) -> AnimationMode:
        """The family's default mode (from its config), with the flags given (None keeps the default)."""
        return AnimationMode(relative, adapt_scale)

    def check_mode(self, mode: AnimationMode) -> None:
        """A one-line AnimbenchError when these weights cannot animate in `mode`: --avd with a checkpoint that
        holds no trained AVD network (a family's first stage). `animbench animate` asks before any work; the
        families' animate asks too."""
        if mode.option("avd", False) and self.supports_avd and "avd_network" not in self.networks:
            name = self.card.name if getattr(self, "card", None) is not None else type(self).__name__.lower()
            raise AnimbenchError(f"animate --avd: this checkpoint has no avd_network; train it with `animbench "
                                 f"train {name} --stage avd --init-from CHECKPOINT`, or use --relative or --absolute")

    def reconstruct(self, source: Tensor, driving: Tensor) -> Tensor:
        """Reconstruction protocol: source frames (B, 3, H, W) driven by driving frames (B, 3, H, W)."""
        raise NotImplementedError

    def animate(self, source: Tensor, driving_video: Tensor, mode: AnimationMode | None = None) -> Tensor:
        """Animate one source (3, H, W) or (1, 3, H, W) by a driving video (T, 3, H, W) -> (T, 3, H, W);
        mode None: `animation_mode()`."""
        raise NotImplementedError

    # --- inference of pose-driven families (driven_by == "poses") ---
    def pose_condition(self, pose: PoseFrame, frame_size: tuple[int, int]
                       ) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
        """One pose whose pixels refer to a frame of frame_size (W, H) -> (label map uint8 (H, W, 3) RGB at
        `label_size`, face box (miny, maxy, minx, maxx) in generator pixels or None when the pose has no head)."""
        from prep.poses.render import face_box, render_label

        label = render_label(pose, tuple(frame_size), tuple(self.label_size),
                             num_face_keypoints=self.num_face_keypoints, canvas_size=tuple(self.canvas_size))
        box = face_box(pose, tuple(frame_size), tuple(self.label_size), canvas_size=tuple(self.canvas_size),
                       box=self.face_box_size)  # facetexts128: in label pixels
        return label, scale_box(box, (label.shape[1], label.shape[0]), tuple(self.generator_size))

    def pose_target(self, frame: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) frame -> uint8 (h, w, 3) target at `generator_size`: letterboxed into the canvas and
        resized to `label_size` (fit_frame, graph_train.py's train_img), then resized as pix2pixHD's loader
        reads images (PIL bicubic) when the generator runs at another size."""
        from prep.poses.render import fit_frame

        return _pil_resize(fit_frame(frame, tuple(self.label_size), canvas_size=tuple(self.canvas_size)),
                           tuple(self.generator_size), "bicubic")

    def label_tensor(self, label: np.ndarray) -> Tensor:
        """uint8 (H, W, 3) RGB label map -> (3, h, w) float in [0, 1] at `generator_size`, as the official loader
        reads labels: PIL nearest resize (scale_width) when the sizes differ, then ToTensor (not normalised)."""
        import torch

        label = np.asarray(label)
        if label.dtype != np.uint8 or label.ndim != 3 or label.shape[2] != 3:
            raise ShapeError(f"label_tensor: expected a uint8 (H, W, 3) RGB label map, got {label.dtype} "
                             f"{label.shape}")
        label = _pil_resize(label, tuple(self.generator_size), "nearest")
        return torch.from_numpy(np.array(label, copy=True)).permute(2, 0, 1).float().div_(255.0)

    def generate(self, labels: Tensor, face_boxes: Tensor | None = None, previous: Tensor | None = None
                 ) -> tuple[Tensor, Tensor]:
        """Frames from labels (T, 3, h, w) in [0, 1], made one after another, each conditioned on the raw output
        before it (`previous` (1, 3, h, w) in [-1, 1] for the first; None: zeros); face_boxes (T, 4) int
        (miny, maxy, minx, maxx) in generator pixels, a row of -1s for a frame without a head, or None. ->
        (outputs (T, 3, h, w) raw, unclamped; the last raw output, the next call's `previous`)."""
        raise AnimbenchError(f"{type(self).__name__}: driven by {self.driven_by}, it does not generate from poses")

    # --- how `animbench animate` feeds a video-driven family (methods/infer_set.py) ---
    # "one": animate takes exactly one source image; "set": any number of source images of one person, pooled by
    # the family's animate_sources into one identity
    source_images: ClassVar[str] = "one"
    # None: inputs centre-cropped to the config's aspect ratio and resized to its frame shape (FOMM's demo);
    # "latentpose": every image and frame cut by prep.latentpose_crop (or, with --no-crop, taken as a crop as it
    # is) and given to the family at the crop's own size
    input_crop: ClassVar[str | None] = None

    def holds_identity(self) -> bool:
        """True when the loaded weights hold the identity themselves (a fine-tuned avatar): no source needed."""
        return False

    def animate_sources(self, sources: Tensor | None, driving_video: Tensor, mode: AnimationMode | None = None
                        ) -> Tensor:
        """Animate by source images (N, 3, H, W) (None: none given) and a driving video (T, 3, h, w) ->
        (T, 3, h, w). Default: exactly one source -> `animate`; a "set" family overrides it."""
        if sources is None or sources.dim() != 4 or sources.shape[0] != 1:
            got = "none" if sources is None else f"{tuple(sources.shape)}"
            raise ShapeError(f"{type(self).__name__}: animates exactly one source image (1, C, H, W), got {got}")
        return self.animate(sources, driving_video, mode)

    @property
    def needs_face_boxes(self) -> bool:
        """True when generate() uses face boxes (the family trains a face residual network)."""
        return "face_generator" in self.networks

    # --- training hooks ---
    @property
    def uses_gan(self) -> bool:
        """True when a discriminator is trained (its optimiser steps, its schedule moves)."""
        return False

    @property
    def retains_generator_graph(self) -> bool:
        """True when discriminator_step re-uses the generator step's graph (backward keeps it)."""
        return False

    def learning_rates(self, cfg: Mapping[str, Any], stage: str = "main") -> dict[str, float]:
        """Network entry -> learning rate of one stage, from the config; networks not named are not trained."""
        raise AnimbenchError(f"{type(self).__name__}: not trainable")

    def training_stage(self, cfg: Mapping[str, Any]) -> str:
        """The stage a config trains (one of `stages`)."""
        return self.stages[0]

    def set_training_stage(self, stage: str) -> None:
        """Called by the loop with the stage it trains (one of `stages`), before the optimisers are made."""

    def stage_config(self, cfg: Mapping[str, Any], stage: str) -> dict[str, Any]:
        """The config whose train_params schedule `stage` (epochs, repeats, batch, milestones): cfg itself by
        default."""
        return dict(cfg)

    def epoch_entries(self, epoch: int) -> dict[str, Any]:
        """Entries naming the epoch in the official layout beyond `epoch` (e.g. MRAA's epoch_reconstruction)."""
        return {}

    def frozen_networks(self, cfg: Mapping[str, Any], epoch: int) -> set[str]:
        """Networks whose optimiser does not step in this (0-based) epoch."""
        return set()

    def training_dataset(self, store: Any, cfg: Mapping[str, Any], *, num_repeats: int, seed: int,
                         transform: Any) -> Any:
        """The samples this family trains on: FOMM-style frame pairs ({"source", "driving"}) by default."""
        from methods.config import get_path
        from prep.pairs import FramePairDataset

        return FramePairDataset(store, "train", id_sampling=bool(get_path(cfg, "dataset_params.id_sampling", False)),
                                num_repeats=num_repeats, seed=seed, transform=transform)

    def step_inputs(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, ...]:
        """The generator_step / discriminator_step arguments from one batch of training_dataset."""
        return batch["source"], batch["driving"]

    def training_backends(self) -> dict[str, Any] | None:
        """What the losses load (e.g. a perceptual network), for run.json; loading it here fails early."""
        return None

    def generator_step(self, source: Tensor, driving: Tensor) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """One batch's weighted generator (+ keypoint) losses, and the outputs discriminator_step reads."""
        raise NotImplementedError

    def discriminator_step(self, source: Tensor, driving: Tensor, outputs: dict[str, Any]) -> dict[str, Tensor]:
        """One batch's discriminator losses; {} when no discriminator is trained."""
        return {}

    def optimizer_options(self, cfg: Mapping[str, Any], stage: str = "main") -> dict[str, Any]:
        """The optimiser of every group: {"kind": "Adam" | "RAdam", "betas": (b1, b2), "eps": e}; by default Adam
        with `train_params.adam_betas` (FOMM's (0.5, 0.999)) and torch's eps."""
        from methods.config import get_path

        return {"kind": "Adam", "betas": tuple(get_path(cfg, "train_params.adam_betas", ADAM_BETAS)), "eps": 1e-8}

    def optimizer_groups(self, cfg: Mapping[str, Any], stage: str = "main") -> dict[str, tuple[str, ...]]:
        """Optimiser name -> the networks it steps (each with its learning rate); one per trained network by
        default. A group steps on the discriminator side when all its networks are in `discriminators`."""
        return {name: (name,) for name in self.learning_rates(cfg, stage)}

    def after_backward(self, outputs: Mapping[str, Any]) -> None:
        """Called by the loop after the generator side's backward, before its optimisers step (e.g. TPSMM's
        gradient clipping); `outputs` are generator_step's."""

    def after_step(self, step: int) -> None:
        """Called by the loop after every training step (both sides stepped; `step` counts from 1)."""

    def prepare_training(self, dataset: Any) -> None:
        """Called once when a run starts (after --init-from, before the first step; not on resume)."""

    def load_entries(self, ckpt: Mapping[str, Any]) -> None:
        """Read back the checkpoint's entries beyond the networks (those `checkpoint_entries` writes); called by
        checkpoints.load_into / load_matching after the networks are loaded."""

    def checkpoint_entries(self, step: int) -> dict[str, Any]:
        """Entries of the official checkpoint layout beyond networks, optimisers and epoch."""
        return {}

    def official_files(self) -> dict[str, Mapping[str, Tensor]]:
        """File name -> state_dict the official code writes beside its checkpoints (e.g. latest_net_G.pth);
        the loop writes them into the run folder at every save."""
        return {}

    # --- checkpoints ---
    def read_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """The checkpoint `path` names as entries (network -> state_dict, ...): by default one official-layout
        file holding `required_entries`; a family may also read a folder of official files."""
        return load_checkpoint(path, required=self.required_entries, weights_only=True, map_location="cpu")

    def load_pretrained(self, path: str | Path) -> dict[str, Any]:
        """Start from another run's weights (pix2pixHD's --load_pretrain): read_checkpoint, then copy every tensor
        whose key AND shape match into each network present; returns what was loaded and skipped."""
        return load_matching(self, self.read_checkpoint(path))


def scale_box(box: tuple[int, int, int, int] | None, from_size: tuple[int, int], to_size: tuple[int, int]
              ) -> tuple[int, int, int, int] | None:
    """A (miny, maxy, minx, maxx) box of an image of from_size (W, H) in an image of to_size (W, H): the corner
    and the extent scaled and rounded (so every box of one size keeps one size); None stays None."""
    if box is None or tuple(from_size) == tuple(to_size):
        return None if box is None else tuple(int(v) for v in box)
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    miny, maxy, minx, maxx = (int(v) for v in box)
    y0, x0 = round(miny * sy), round(minx * sx)
    return y0, y0 + round((maxy - miny) * sy), x0, x0 + round((maxx - minx) * sx)


def _pil_resize(image: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 at size (W, H) with PIL (`nearest` or `bicubic`); unchanged when already there."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    from PIL import Image

    resample = {"nearest": Image.NEAREST, "bicubic": Image.BICUBIC}[method]
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(tuple(size), resample))
