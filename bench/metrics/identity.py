"""Identity metrics: AED face / body (pose-evaluation, FOMM & Monkey-Net), a dlib AED proxy, LPD identity error
(ArcFace; its dlib proxy and the pose error are in bench/metrics/reenactment.py).

The arithmetic is plain numpy over embeddings (`aed_from_embeddings`, `identity_error_from_embeddings`); the
registered metric objects embed uint8 RGB frames with a backend (bench.backends) and call it. Protocols:
- legacy: the published code's quirks kept exactly (each metric's describe() lists them); AED is the squared
  L2 distance between embeddings (the code's cmp.py, although the papers say "Euclidean distance").
- clean: the quirks fixed and AED the Euclidean distance. Results carry the variant (describe()["variant"]).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.metrics.registry import (
    FrameScores,
    base_description,
    check_frames,
    file_provenance,
    register_metric,
)
from bench.protocols import check_variant
from plumbing.errors import AnimbenchError

Embeddings = Sequence[np.ndarray | None] | np.ndarray  # per frame (D,) or None (no face found)


def stack_embeddings(emb: Embeddings) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (D,) vectors or None -> ((N,D) float64 with NaN rows for None, (N,) bool missing)."""
    if isinstance(emb, np.ndarray) and emb.dtype != object:
        arr = np.asarray(emb, np.float64)
        return arr, np.isnan(arr).all(axis=1)
    dims = {np.shape(e) for e in emb if e is not None}
    if len(dims) > 1:
        raise AnimbenchError(f"embeddings: frames carry different shapes {sorted(dims)}")
    dim = dims.pop() if dims else (0,)
    arr = np.stack([np.full(dim, np.nan) if e is None else np.asarray(e, np.float64) for e in emb]) \
        if len(emb) else np.zeros((0,) + dim)
    return arr, np.array([e is None for e in emb], bool)


def aed_from_embeddings(e_gt: Embeddings, e_gen: Embeddings,
                        variant: str = "legacy") -> tuple[np.ndarray, np.ndarray]:
    """AED per frame: sum (e_gt - e_gen)^2 (legacy) or its square root (clean) -> (values, skipped: a None)."""
    check_variant(variant, "aed: variant")
    gt, gt_missing = stack_embeddings(e_gt)
    gen, gen_missing = stack_embeddings(e_gen)
    if gt.shape != gen.shape:
        raise AnimbenchError(f"aed: GT embeddings {gt.shape} and generated {gen.shape} differ in shape "
                             f"(pose-evaluation asserts equal frame counts)")
    squared = ((gt - gen) ** 2).sum(1)
    skipped = gt_missing | gen_missing
    return np.where(skipped, np.nan, squared if variant == "legacy" else np.sqrt(squared)), skipped


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-12)


def identity_error_from_embeddings(e_identity: np.ndarray, e_gen: np.ndarray,
                                   variant: str = "legacy") -> np.ndarray:
    """LPD identity error per generated frame: 1 - <reference, unit(e_gen)>, reference = mean of unit(e_identity).

    legacy keeps LPD's reference as it is (the mean of unit vectors, norm <= 1, so the value is 1 - |ref| cos);
    clean re-normalises the reference, giving 1 - cosine similarity.
    """
    check_variant(variant, "identity_error: variant")
    ident, gen = np.asarray(e_identity, np.float64), np.asarray(e_gen, np.float64)
    if ident.ndim != 2 or len(ident) == 0 or gen.ndim != 2 or ident.shape[1] != gen.shape[1]:
        raise AnimbenchError(f"identity_error: identity embeddings {ident.shape} and generated {gen.shape}, "
                             f"expected (M>=1, D) and (N, D)")
    reference = _unit(ident).mean(0)
    if variant == "clean":
        reference = _unit(reference)
    return 1.0 - _unit(gen) @ reference


class _EmbeddingAED:
    """A paired AED metric over one embedder: subclasses set `embed(frames)` and describe their settings."""

    spec: Any
    variant: str

    def embed(self, frames: np.ndarray) -> Embeddings:
        """Per-frame embeddings (rows) or None entries."""
        raise NotImplementedError

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> FrameScores:
        """Per-frame AED of uint8 (N,H,W,3) frames."""
        check_frames(pred, gt, metric=self.spec.name)
        return FrameScores(*aed_from_embeddings(self.embed(gt), self.embed(pred), self.variant))


@register_metric("aed_face", kind="paired", higher_is_better=False, backend="torch", needs=("openface.pth",),
                 protocol_notes="pose-evaluation face_id + cmp.py: OpenFace nn4.small2.v1 (PyTorch port) on the "
                                "whole frame resized to 96x96; per frame the squared L2 distance of the 128-d "
                                "unit embeddings (legacy, range [0,4]) or the Euclidean distance (clean).")
class AEDFace(_EmbeddingAED):
    """Average euclidean distance between OpenFace identity embeddings of generated and GT frames (VoxCeleb)."""

    def __init__(self, spec: Any, *, variant: str = "legacy", device: str = "cpu", verify_hash: bool = True):
        from bench.backends.openface import OpenFaceEmbedder

        self.spec, self.variant = spec, check_variant(variant, f"{spec.name}: variant")
        self.backend = OpenFaceEmbedder(variant=variant, device=device, verify_hash=verify_hash)

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """(N,128) OpenFace embeddings."""
        return self.backend.embed(frames)

    def describe(self) -> dict[str, Any]:
        """Provenance: variant and every difference between legacy and clean."""
        return {**base_description(self.spec), "variant": self.variant,
                "variant_differences": {
                    "legacy": "BGR input (the net expects RGB); skimage bilinear resize to 96x96 without "
                              "anti-aliasing (scikit-image 0.14 defaults); the port's off-by-one cross-map LRN; "
                              "distance = squared L2",
                    "clean": "RGB input; anti-aliased resize to 96x96; the correct LRN of the Lua original; "
                             "distance = Euclidean (L2)"}}


@register_metric("aed_body", kind="paired", higher_is_better=False, backend="torch", needs=("reid_model.pth",),
                 protocol_notes="pose-evaluation body_id + cmp.py: layumi ft_net re-id (ResNet-50, Market-1501) "
                                "on the whole frame resized to 288x144; per frame the squared L2 distance of the "
                                "2048-d features (legacy) or the Euclidean distance of unit features (clean).")
class AEDBody(_EmbeddingAED):
    """Average euclidean distance between re-id embeddings of generated and GT frames (Tai-Chi-HD)."""

    def __init__(self, spec: Any, *, variant: str = "legacy", device: str = "cpu", verify_hash: bool = True):
        from bench.backends.reid import ReidEmbedder

        self.spec, self.variant = spec, check_variant(variant, f"{spec.name}: variant")
        self.backend = ReidEmbedder(variant=variant, device=device, verify_hash=verify_hash)

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """(N,2048) re-id features."""
        return self.backend.embed(frames)

    def describe(self) -> dict[str, Any]:
        """Provenance: variant and every difference between legacy and clean."""
        return {**base_description(self.spec), "variant": self.variant,
                "variant_differences": {
                    "legacy": "network left in train mode (BatchNorm uses the statistics of each single image); "
                              "pixels divided by 255 twice before ImageNet normalisation; raw 2048-d feature "
                              "(no flip, no L2 normalisation); distance = squared L2",
                    "clean": "eval mode (running statistics); one /255; feature of image + mirrored image, "
                             "L2-normalised (the re-id repo's own test protocol); distance = Euclidean (L2)"}}


@register_metric("aed_face_dlib", kind="paired", higher_is_better=False, backend="dlib-bin",
                 protocol_notes="AED with dlib's 128-d ResNet face descriptor on the best HOG-detected face "
                                "(5-point alignment): squared L2 (legacy) or Euclidean (clean; dlib's same-person "
                                "threshold is 0.6). Frames where either side has no detected face are skipped. "
                                "An offline proxy for OpenFace AED: not comparable with the papers.")
class AEDFaceDlib(_EmbeddingAED):
    """AED between dlib face descriptors (real weights shipped in the face-recognition-models wheel, offline)."""

    def __init__(self, spec: Any, *, variant: str = "legacy", upsample: int = 1):
        from bench.backends.dlib_face import DlibFace

        self.spec, self.variant = spec, check_variant(variant, f"{spec.name}: variant")
        self.faces = DlibFace(upsample=upsample)

    def embed(self, frames: np.ndarray) -> list[np.ndarray | None]:
        """(128,) descriptor or None per frame."""
        return [self.faces.embedding(f) for f in frames]

    def describe(self) -> dict[str, Any]:
        """Provenance: variant and the dlib model files."""
        from bench.backends.dlib_face import DESCRIPTOR, LANDMARKS_5, model_path

        return {**base_description(self.spec), "variant": self.variant,
                "weights": [{"name": n, **file_provenance(model_path(n))} for n in (DESCRIPTOR, LANDMARKS_5)],
                "settings": {"detector": "dlib HOG (best score)", "upsample": self.faces.upsample,
                             "num_jitters": 0},
                "variant_differences": {"legacy": "distance = squared L2", "clean": "distance = Euclidean (L2)"}}


@register_metric("identity_error", kind="paired", higher_is_better=False, backend="insightface",
                 needs=("w600k_r50.onnx",),
                 protocol_notes="latent-pose reenactment I: per generated frame 1 - <reference, ArcFace(frame)>, "
                                "reference = mean unit ArcFace descriptor of the identity's frames (gt: any number "
                                "of frames). Descriptor: insightface buffalo_l w600k_r50 on dlib-aligned 112x112 "
                                "crops (LPD: r100 + MTCNN, unavailable offline): not the paper's numbers.")
class IdentityError:
    """LPD identity error: 1 - similarity of ArcFace descriptors to the identity's mean descriptor."""

    def __init__(self, spec: Any, *, variant: str = "legacy", device: str = "cpu", verify_hash: bool = True):
        from bench.backends.arcface import ArcFaceEmbedder

        self.spec, self.variant = spec, check_variant(variant, f"{spec.name}: variant")
        self.backend = ArcFaceEmbedder(device=device, verify_hash=verify_hash)

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> FrameScores:
        """Per-frame identity error of pred frames against the identity frames gt (counts may differ)."""
        check_frames(pred, metric=self.spec.name)
        check_frames(gt, metric=self.spec.name)
        e_identity, _ = self.backend.embed(gt)
        e_gen, detected = self.backend.embed(pred)
        values = identity_error_from_embeddings(e_identity, e_gen, self.variant)
        return FrameScores(values, fields={"fallback_crop": ~detected})

    def describe(self) -> dict[str, Any]:
        """Provenance: variant, alignment, descriptor file."""
        from bench.backends.dlib_face import LANDMARKS_68, model_path

        base = base_description(self.spec)
        base["weights"].append({"name": LANDMARKS_68, **file_provenance(model_path(LANDMARKS_68))})
        return {**base, "variant": self.variant,
                "settings": {"alignment": "dlib 68 landmarks -> 5 points -> insightface norm_crop 112; no face: "
                                          "LPD's central crop (margins 42,53,64,53 at 256 px)",
                             "descriptor": "ArcFace ONNX via insightface.model_zoo.get_model, L2-normalised"},
                "variant_differences": {
                    "legacy": "reference = mean of unit descriptors, not re-normalised (LPD): 1 - |ref| cos",
                    "clean": "reference re-normalised: 1 - cosine similarity"}}
