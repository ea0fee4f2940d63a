"""Reference baselines with the method interface: they bound every metric from below (copy-source: the
prediction is the source frame) and from above (oracle: the prediction is the driving frame)."""

from __future__ import annotations

from torch import Tensor

from methods.interface import AnimationMode, Method, check_animate_shapes, check_reconstruct_shapes
from methods.registry import MethodCard, register_method


class CopySource(Method):
    """Baseline: the prediction is the source frame (no motion at all)."""

    networks = ()

    def reconstruct(self, source: Tensor, driving: Tensor) -> Tensor:
        """(B, 3, H, W) copies of the source frames."""
        check_reconstruct_shapes(source, driving)
        return source.expand_as(driving).clone()

    def animate(self, source: Tensor, driving_video: Tensor, mode: AnimationMode | None = None) -> Tensor:
        """(T, 3, H, W) copies of the source image."""
        source = check_animate_shapes(source, driving_video)
        return source.expand_as(driving_video).clone()


class Oracle(Method):
    """Baseline: the prediction is the driving frame (a perfect reconstruction)."""

    networks = ()

    def reconstruct(self, source: Tensor, driving: Tensor) -> Tensor:
        """The driving frames themselves."""
        check_reconstruct_shapes(source, driving)
        return driving.clone()

    def animate(self, source: Tensor, driving_video: Tensor, mode: AnimationMode | None = None) -> Tensor:
        """The driving video itself (in reconstruction it is the ground truth)."""
        check_animate_shapes(source, driving_video)
        return driving_video.clone()


CopySource.card = register_method(MethodCard(
    name="copy-source", paper="reference baseline: prediction = source frame", family="baseline",
    build=lambda cfg, align: CopySource(), trainable=False, needs_config=False,
    notes="lower bound of reconstruction quality"))
Oracle.card = register_method(MethodCard(
    name="oracle", paper="reference baseline: prediction = driving frame", family="baseline",
    build=lambda cfg, align: Oracle(), trainable=False, needs_config=False,
    notes="upper bound (reconstruction error 0)"))
