"""Latent-pose reenactment's metrics (compute_pose_identity_error.py, reference §2.12) and their offline proxies.

- identity error I (over cross-driving items): 1 - <reference, unit(e_frame)> per generated frame, the reference
  being the mean of the unit descriptors of the identity's own images, NOT re-normalised (legacy; clean
  re-normalises it). The arithmetic is bench.metrics.identity.identity_error_from_embeddings; `identity_error`
  (ArcFace, identity.py) and `identity_error_dlib` (here: dlib's 128-d face descriptor, the offline proxy) feed it.
  A frame without a detected face is described from LPD's fixed central crop of the latent-pose crop, margins
  (top, left, bottom, right) = (42, 53, 64, 53) at 256 px, scaled to the frame.
- pose reconstruction error P (over self-driving items): per frame the mean over 68 landmarks of
  ||lm_gen - lm_gt|| / max(||gt36 - gt45||, 1e-2), the landmarks of the driver frame being the ground truth;
  the `_fit` variants first map the generated landmarks by the least-squares scale + (x, y) shift onto the ground
  truth. The arithmetic is bench.metrics.pose.pose_error_from_landmarks. Failed detection: legacy substitutes
  LPD's MEAN_FACE template (as the official get_landmarks does, on either side), clean skips and counts the frame.
  `pose_error` / `pose_error_fit` use FAN (face-alignment), `pose_error_dlib` / `pose_error_fit_dlib` dlib's
  68-point predictor (the offline proxy; not comparable with the paper's numbers).

MEAN_FACE is the 68-point template of compute_pose_identity_error.py (shrubb/latent-pose-reenactment, Apache-2.0,
Copyright 2020 Samsung Electronics), in pixels of a 256 x 256 latent-pose crop; here it is scaled to the frame by
pixel centres: x' = (x + 0.5) W / 256 - 0.5, y' likewise with H.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from bench.metrics.identity import identity_error_from_embeddings
from bench.metrics.pose import AKDFace, AKDFaceDlib, Keypoints, pose_error_from_landmarks
from bench.metrics.registry import (
    FrameScores,
    base_description,
    check_frames,
    file_provenance,
    register_metric,
)
from bench.protocols import check_variant
from plumbing.errors import AnimbenchError

TEMPLATE_SIZE = 256  # MEAN_FACE and the fallback margins refer to 256 x 256 latent-pose crops
LATENTPOSE_MARGINS = (42, 53, 64, 53)  # get_default_bbox('latentpose'): (top, left, bottom, right) at 256 px
DLIB_CHIP = 150  # dlib's face descriptor reads 150 x 150 chips (the fallback crop is 150 x 150 at 256 px)
MEAN_FACE = np.array([
    (74.0375, 115.65938), (74.81563, 130.58022), (77.29063, 143.63853), (80.54063, 156.11041), (85.68125, 170.04791),
    (93.36354, 181.28542), (101.208336, 188.87187), (110.51458, 195.1948), (126.532295, 199.76875),
    (142.90312, 194.9875), (154.76772, 187.65), (163.98647, 179.66667), (172.2625, 167.57812), (177.14375, 152.9302),
    (179.59479, 139.87396), (181.76146, 125.94688), (182.35938, 110.66458), (84.17292, 101.70625),
    (89.225, 97.94375), (96.4125, 96.10104), (103.302086, 96.92917), (109.55417, 98.989586), (135.68959, 98.475),
    (142.275, 96.15), (149.71979, 94.640625), (158.04897, 95.68021), (164.90729, 99.325), (122.910416, 114.76146),
    (122.504166, 125.123955), (122.07604, 134.3125), (122.16354, 142.02916), (115.19271, 146.925),
    (118.640625, 148.04271), (123.62187, 149.28125), (128.79897, 147.84895), (132.83333, 146.44792),
    (94.09167, 113.77292), (98.35833, 111.75), (104.530205, 111.42917), (110.55937, 114.436455),
    (105.203125, 116.39167), (98.70208, 116.405205), (137.22084, 113.530205), (143.17708, 110.645836),
    (149.63646, 110.561455), (154.8375, 112.0625), (149.82187, 115.094795), (142.86147, 115.31042),
    (107.09062, 165.00417), (112.30104, 161.16354), (119.99167, 158.30313), (124.18229, 159.04688),
    (128.3802, 158.02708), (137.22084, 160.69063), (144.14688, 164.3625), (137.17708, 170.67604),
    (131.06354, 174.26146), (124.751045, 175.12813), (118.46146, 174.76042), (113.23646, 171.275),
    (108.416664, 164.77083), (119.25729, 163.55624), (124.469795, 163.3625), (129.99583, 163.53854),
    (142.75417, 164.22604), (130.05208, 167.13959), (124.57083, 167.78645), (119.166664, 167.3073),
], np.float32)  # (68, 2) x, y in a 256 x 256 crop (iBUG 300-W order)


def mean_face(height: int, width: int) -> np.ndarray:
    """MEAN_FACE (68, 2) float64 in pixels of an (height, width) frame (pixel-centre scaling from 256 x 256)."""
    scale = np.array([width, height], np.float64) / TEMPLATE_SIZE
    return (MEAN_FACE.astype(np.float64) + 0.5) * scale - 0.5


def pose_reconstruction_error(lm_gt: Keypoints, lm_gen: Keypoints, frame_hw: tuple[int, int], *, fit: bool = False,
                              variant: str = "legacy") -> tuple[np.ndarray, np.ndarray]:
    """LPD's P per frame from driver (gt) and generated landmarks, (68, 2) or None (no face) per frame ->
    (values, skipped). legacy: a missing side becomes mean_face(frame_hw), as the official script; clean: the
    frame is skipped. fit: least-squares scale + shift of the generated landmarks first."""
    check_variant(variant, "pose_error: variant")
    if variant == "legacy":
        template = mean_face(*frame_hw)
        lm_gt, lm_gen = ([template if lm is None else lm for lm in side] for side in (lm_gt, lm_gen))
    return pose_error_from_landmarks(lm_gt, lm_gen, fit=fit)


def fallback_crop(frame: np.ndarray, size: int, margins: Sequence[int] = LATENTPOSE_MARGINS) -> np.ndarray:
    """LPD's no-detection crop: (top, left, bottom, right) margins at 256 px scaled to the frame, resized to
    size x size with bicubic interpolation (cv2.INTER_CUBIC, as the official script)."""
    h, w = frame.shape[:2]
    top, left, bottom, right = margins
    crop = frame[round(top * h / TEMPLATE_SIZE):h - round(bottom * h / TEMPLATE_SIZE),
                 round(left * w / TEMPLATE_SIZE):w - round(right * w / TEMPLATE_SIZE)]
    if crop.shape[:2] == (size, size):
        return np.ascontiguousarray(crop)
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_CUBIC)


# --- identity error with dlib's descriptor (the ArcFace metric, `identity_error`, is in identity.py) ----------------
@register_metric("identity_error_dlib", kind="paired", higher_is_better=False, backend="dlib-bin",
                 protocol_notes="latent-pose reenactment I with dlib's 128-d ResNet face descriptor (HOG detection, "
                                "5-point alignment) instead of ArcFace: per generated frame 1 - <reference, "
                                "unit(descriptor)>, reference = mean unit descriptor of the identity images "
                                "(legacy: not re-normalised, as LPD; clean: re-normalised). No face: LPD's central "
                                "crop (42,53,64,53 at 256 px) resized to dlib's 150x150 chip. An offline proxy: not "
                                "comparable with the paper's numbers.")
class IdentityErrorDlib:
    """LPD identity error with dlib face descriptors (real weights shipped in a wheel, offline)."""

    def __init__(self, spec: Any, *, variant: str = "legacy", upsample: int = 1):
        from bench.backends.dlib_face import DlibFace

        self.spec, self.variant = spec, check_variant(variant, f"{spec.name}: variant")
        self.faces = DlibFace(upsample=upsample)
        self._references: dict[tuple, tuple[np.ndarray, int]] = {}  # identity images -> descriptors, fallbacks

    def embed(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB (N, H, W, 3) -> ((N, 128) descriptors, (N,) bool: no face detected, central crop used)."""
        out, fallback = [], []
        for frame in frames:
            e = self.faces.embedding(frame)
            fallback.append(e is None)
            if e is None:
                e = np.asarray(self.faces.encoder.compute_face_descriptor(fallback_crop(frame, DLIB_CHIP), 0),
                               np.float64)
            out.append(e)
        return (np.stack(out) if out else np.zeros((0, 128))), np.array(fallback, bool)

    def identity(self, images: np.ndarray) -> tuple[np.ndarray, int]:
        """Descriptors of an identity's images and how many fell back to the central crop (cached: every
        cross-driving item of one avatar shares them)."""
        key = (images.shape, hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest())
        if key not in self._references:
            if len(self._references) >= 64:
                self._references.clear()
            e, fallback = self.embed(images)
            self._references[key] = (e, int(fallback.sum()))
        return self._references[key]

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> FrameScores:
        """Per-frame identity error of pred frames against an identity's images gt (counts may differ)."""
        check_frames(pred, metric=self.spec.name)
        check_frames(gt, metric=self.spec.name)
        if not len(gt):
            raise AnimbenchError(f"{self.spec.name}: no identity images to describe the identity")
        e_identity, identity_fallbacks = self.identity(gt)
        e_gen, fallback = self.embed(pred)
        values = identity_error_from_embeddings(e_identity, e_gen, self.variant)
        return FrameScores(values, fields={"fallback_crop": fallback,
                                           "identity_fallbacks": np.full(len(pred), identity_fallbacks)})

    def describe(self) -> dict[str, Any]:
        """Provenance: variant, the dlib model files, detection and fallback settings."""
        from bench.backends.dlib_face import DESCRIPTOR, LANDMARKS_5, model_path

        return {**base_description(self.spec), "variant": self.variant,
                "weights": [{"name": n, **file_provenance(model_path(n))} for n in (DESCRIPTOR, LANDMARKS_5)],
                "settings": {"detector": "dlib HOG (best score)", "upsample": self.faces.upsample,
                             "num_jitters": 0, "no_face": f"central crop, margins {LATENTPOSE_MARGINS} at 256 px, "
                                                          f"bicubic to {DLIB_CHIP}x{DLIB_CHIP}"},
                "variant_differences": {
                    "legacy": "reference = mean of unit descriptors, not re-normalised (LPD): 1 - |ref| cos",
                    "clean": "reference re-normalised: 1 - cosine similarity"}}


# --- pose reconstruction error ------------------------------------------------------------------------------------
POSE_NOTES = ("latent-pose reenactment P (self-driving items): per frame the mean over 68 landmarks of the "
              "Euclidean distance between output and driver-frame landmarks, divided by the driver's inter-ocular "
              "distance |lm36 - lm45| (>= 1e-2). No face found: legacy substitutes LPD's MEAN_FACE template (scaled "
              "from 256 px to the frame), clean skips and counts the frame.")
FIT_NOTES = " The generated landmarks are first mapped by the least-squares scale + (x, y) shift onto the driver's."
DLIB_NOTES = (" Landmarks from dlib's HOG detector + 68-point predictor: an offline proxy for FAN, not comparable with "
              "the paper's numbers.")


class _LatentPoseError:
    """P over the landmarks of a 68-point backend (the class it is mixed into provides `landmarks`)."""

    fit = False
    spec: Any
    variant: str
    landmarks: Any  # frames -> (68, 2) landmarks or None per frame, from the landmark metric mixed in

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> FrameScores:
        """Per-frame P of uint8 (N, H, W, 3) frames (gt = driver frames, pred = self-driven outputs)."""
        check_frames(pred, gt, metric=self.spec.name)
        lm_gt, lm_gen = self.landmarks(gt), self.landmarks(pred)
        values, skipped = pose_reconstruction_error(lm_gt, lm_gen, gt.shape[1:3], fit=self.fit, variant=self.variant)
        return FrameScores(values, skipped, {"gt_missing": np.array([k is None for k in lm_gt], bool),
                                             "gen_missing": np.array([k is None for k in lm_gen], bool)})

    def describe(self) -> dict[str, Any]:
        """Provenance of the landmark backend, the scale-shift fit and the failed-detection rule."""
        out = super().describe()  # type: ignore[misc]  # the landmark metric's provenance
        out["settings"]["fit_scale_shift"] = self.fit
        out["variant_differences"] = {
            "legacy": "no face on either side: LPD's MEAN_FACE template (compute_pose_identity_error.py) in its place",
            "clean": "no face on either side: the frame is skipped and counted"}
        return out


@register_metric("pose_error", kind="paired", higher_is_better=False, backend="face-alignment",
                 needs=("2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth"), protocol_notes=POSE_NOTES + (
                     " Landmarks: face_alignment 2D FAN (LPD's detector)."))
class PoseError(_LatentPoseError, AKDFace):
    """LPD pose reconstruction error: landmark distance normalised by the driver's inter-ocular distance (FAN)."""


@register_metric("pose_error_fit", kind="paired", higher_is_better=False, backend="face-alignment",
                 needs=("2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth"), protocol_notes=POSE_NOTES + FIT_NOTES + (
                     " Landmarks: face_alignment 2D FAN (LPD's detector)."))
class PoseErrorFit(PoseError):
    """LPD pose reconstruction error after the least-squares scale + shift (FAN)."""

    fit = True


@register_metric("pose_error_dlib", kind="paired", higher_is_better=False, backend="dlib-bin",
                 protocol_notes=POSE_NOTES + DLIB_NOTES)
class PoseErrorDlib(_LatentPoseError, AKDFaceDlib):
    """LPD pose reconstruction error with dlib's 68 landmarks (offline proxy for FAN)."""


@register_metric("pose_error_fit_dlib", kind="paired", higher_is_better=False, backend="dlib-bin",
                 protocol_notes=POSE_NOTES + FIT_NOTES + DLIB_NOTES)
class PoseErrorFitDlib(PoseErrorDlib):
    """LPD pose reconstruction error after the least-squares scale + shift, dlib's 68 landmarks (offline proxy)."""

    fit = True
