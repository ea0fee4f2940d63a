"""The one method interface: what every family implements, and the guide for adding one.

Adding a family is one new file in methods/ (plus a `<family>_keypoints.py` when its maths is long):

1. Its networks, plain `nn.Module`s with the tensor shapes stated where they change.
2. A subclass of `Method` holding them under the checkpoint entry names (`kp_detector`, `generator`,
   `discriminator`, or the family's own: list them in `networks`), with `from_config(cfg, align_corners)`.
3. Its inference: `reconstruct(source, driving)` and `animate(source, driving_video, mode)`, the same
   signatures in every family; `animation_mode(relative, adapt_scale)` gives the family's defaults (from its
   config) as an `AnimationMode`; bad input shapes raise `ShapeError` (`check_reconstruct_shapes`,
   `check_animate_shapes`).
4. Its training hooks, which the one loop in methods/train.py calls and never special-cases:
   `training_dataset(...)` (the samples it trains on: frame pairs by default; a pose family returns poses with
   frames, a latent-pose family K identity frames + a pose frame + a mask, a fine-tuning run a few images of
   one identity), `step_inputs(batch)` (a batch -> the step's arguments), `generator_step(*inputs)` and
   `discriminator_step(*inputs, outputs)` (one step's losses), `learning_rates(cfg, stage)` (one Adam optimiser
   per network named there), `checkpoint_entries(step)` (what the official checkpoint layout holds beyond
   networks, optimisers and epoch), and `stages` (EDN's global -> local -> face, MRAA's / TPSMM's "avd" stage
   after the main one). Today's families have one stage and the loop trains `stages[0]`; running later stages
   in order is the loop's next step, not a family's.
5. Its card, registered at the bottom of the file: `register_method(MethodCard(name=..., build=...))`.
   methods/registry.py finds the file by itself (any module of methods/ that registers a card), so no shared
   list changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from torch import Tensor, nn

from methods.checkpoints import NETWORK_ENTRIES
from plumbing.errors import AnimbenchError

# The reconstruction protocol every family is scored under (source = frame 0, absolute keypoints), named after the
# paper that defined it; recorded in reconstruction.json.
RECONSTRUCTION_PROTOCOL = "fomm-reconstruction"


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

    def as_dict(self) -> dict[str, Any]:
        """The mode as plain data, recorded with every animation."""
        return {"relative": self.relative, "adapt_scale": self.adapt_scale, **dict(self.options)}


class Method(nn.Module):
    """A family: networks, inference and the training hooks (see the module docstring for how to add one)."""

    # the checkpoint entries holding this family's networks, each trained by its own optimiser
    networks: ClassVar[tuple[str, ...]] = tuple(NETWORK_ENTRIES)
    # training stages, in order; the loop trains them one after another
    stages: ClassVar[tuple[str, ...]] = ("main",)
    align_corners: bool | None = None

    # --- building ---
    @classmethod
    def from_config(cls, cfg: dict, align_corners: bool = True) -> Method:
        """Build from a validated config (methods.config.load_config)."""
        raise NotImplementedError

    @classmethod
    def build(cls, cfg: dict | None, align_corners: bool) -> Method:
        """The card's builder."""
        return cls.from_config(cfg, align_corners=align_corners)

    # --- inference ---
    def animation_mode(self, relative: bool | None = None, adapt_scale: bool | None = None) -> AnimationMode:
        """The family's default mode (from its config), with the flags given (None keeps the default)."""
        return AnimationMode(relative, adapt_scale)

    def reconstruct(self, source: Tensor, driving: Tensor) -> Tensor:
        """Reconstruction protocol: source frames (B, 3, H, W) driven by driving frames (B, 3, H, W)."""
        raise NotImplementedError

    def animate(self, source: Tensor, driving_video: Tensor, mode: AnimationMode | None = None) -> Tensor:
        """Animate one source (3, H, W) or (1, 3, H, W) by a driving video (T, 3, H, W) -> (T, 3, H, W);
        mode None: `animation_mode()`."""
        raise NotImplementedError

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
        """Network entry -> learning rate of one stage, from the config."""
        raise AnimbenchError(f"{type(self).__name__}: not trainable")

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

    def checkpoint_entries(self, step: int) -> dict[str, Any]:
        """Entries of the official checkpoint layout beyond networks, optimisers and epoch."""
        return {}
