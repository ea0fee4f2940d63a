"""Keypoint metrics: AKD face / body and MKR (pose-evaluation, FOMM & Monkey-Net), and the arithmetic of LPD's pose
error P (`pose_error_from_landmarks`; its registered metrics are in bench/metrics/reenactment.py).

The arithmetic is plain numpy over keypoints (`*_from_keypoints`); the registered metric objects extract the
keypoints from uint8 RGB frames with a backend (bench.backends) and call it. Protocols:
- legacy: pose-evaluation's code as run for the papers: AKD is the mean absolute difference per coordinate (L1,
  not Euclidean) in pixels of the input frames (256 px in the papers).
- clean: AKD is the mean Euclidean distance per keypoint (the papers' wording), everything else equal.
Frames whose generated detection is missing are skipped and counted (FrameScores.skipped); the original
cmp_kp crashes when a GT frame has no face, here such frames are skipped and counted too (field gt_missing).
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
    weights_provenance,
)
from bench.protocols import check_variant
from plumbing.errors import AnimbenchError

Keypoints = Sequence[np.ndarray | None] | np.ndarray  # per frame (K,2) (x,y) or None (no detection)


def stack_keypoints(kps: Keypoints, n_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (K,2) arrays or None -> ((N,K,2) float64 with NaN rows for None, (N,) bool missing)."""
    if isinstance(kps, np.ndarray) and kps.dtype != object:
        arr = np.asarray(kps, np.float64)
        return arr, np.isnan(arr).all(axis=(1, 2))
    shapes = {np.shape(k) for k in kps if k is not None}
    if len(shapes) > 1:
        raise AnimbenchError(f"keypoints: frames carry different shapes {sorted(shapes)}")
    shape = shapes.pop() if shapes else (0, 2)
    arr = np.stack([np.full(shape, np.nan) if k is None else np.asarray(k, np.float64) for k in kps]) \
        if len(kps) else np.zeros((0,) + shape)
    return arr, np.array([k is None for k in kps], bool)


def _point_distance(delta: np.ndarray, variant: str) -> np.ndarray:
    """(..., 2) differences -> (..., 2) |dx|,|dy| (legacy) or (...,) Euclidean (clean), to be averaged."""
    return np.abs(delta) if variant == "legacy" else np.linalg.norm(delta, axis=-1)


def akd_from_keypoints(kp_gt: Keypoints, kp_gen: Keypoints,
                       variant: str = "legacy") -> tuple[np.ndarray, np.ndarray]:
    """Face AKD per frame (all K points) -> (values (N,), skipped (N,)): skipped where either side is None."""
    check_variant(variant, "akd: variant")
    gt, gt_missing = stack_keypoints(kp_gt)
    gen, gen_missing = stack_keypoints(kp_gen)
    if len(gt) != len(gen):
        raise AnimbenchError(f"akd: {len(gt)} GT frames but {len(gen)} generated frames")
    skipped = gt_missing | gen_missing
    values = np.full(len(gt), np.nan)
    for i in np.flatnonzero(~skipped):
        values[i] = _point_distance(gen[i] - gt[i], variant).mean()
    return values, skipped


def present(kp: np.ndarray) -> np.ndarray:
    """(N,J,2) body joints with (-1,-1) for missing -> (N,J) bool detected."""
    return ~(kp == -1).all(-1)


def akd_body_from_keypoints(kp_gt: np.ndarray, kp_gen: np.ndarray,
                            variant: str = "legacy") -> tuple[np.ndarray, np.ndarray]:
    """Body AKD per frame over joints detected in both (cmp_with_missing) -> (values, skipped: no common joint)."""
    check_variant(variant, "akd_body: variant")
    gt, gen = np.asarray(kp_gt, np.float64), np.asarray(kp_gen, np.float64)
    if gt.shape != gen.shape:
        raise AnimbenchError(f"akd_body: GT keypoints {gt.shape} and generated {gen.shape} differ in shape")
    both = present(gt) & present(gen)
    values = np.full(len(gt), np.nan)
    for i in np.flatnonzero(both.any(1)):
        values[i] = _point_distance(gen[i][both[i]] - gt[i][both[i]], variant).mean()
    return values, ~both.any(1)


def mkr_from_keypoints(kp_gt: np.ndarray, kp_gen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Missing keypoint rate per frame: #(in GT, not in generated) / #(in GT) -> (values, skipped: no GT joint)."""
    gt_present, gen_present = present(np.asarray(kp_gt)), present(np.asarray(kp_gen))
    if gt_present.shape != gen_present.shape:
        raise AnimbenchError(f"mkr: GT keypoints {gt_present.shape} and generated {gen_present.shape} differ")
    n_gt = gt_present.sum(1)
    values = np.full(len(n_gt), np.nan)
    ok = n_gt > 0
    values[ok] = (gt_present & ~gen_present).sum(1)[ok] / n_gt[ok]
    return values, ~ok


def scale_shift(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray]:
    """The least-squares (s, t) minimising sum |s*src + t - dst|^2 over (K,2) points: the official lstsq over
    [x 1 0; y 0 1] rows (compute_pose_identity_error.py) in closed form; s = 1 when src is one point repeated."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
    denom = float((src_c**2).sum())
    s = float((src_c * dst_c).sum()) / denom if denom > 0 else 1.0
    return s, dst.mean(0) - s * src.mean(0)


def fit_scale_shift(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """src (K,2) mapped by the least-squares scale s and shift t minimising sum |s*src + t - dst|^2."""
    s, t = scale_shift(src, dst)
    return s * np.asarray(src, np.float64) + t


def pose_error_from_landmarks(lm_gt: Keypoints, lm_gen: Keypoints,
                              fit: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """LPD pose error P per frame: mean |lm_gen - lm_gt| / inter-ocular |gt36 - gt45| (>= 1e-2); 68 landmarks.

    fit=True first maps the generated landmarks by the least-squares scale + shift onto the GT (LPD's second
    variant). Frames where either side has no detection are skipped.
    """
    gt, gt_missing = stack_keypoints(lm_gt)
    gen, gen_missing = stack_keypoints(lm_gen)
    if len(gt) != len(gen):
        raise AnimbenchError(f"pose_error: {len(gt)} GT frames but {len(gen)} generated frames")
    skipped = gt_missing | gen_missing
    values = np.full(len(gt), np.nan)
    for i in np.flatnonzero(~skipped):
        if gt.shape[1] != 68:
            raise AnimbenchError(f"pose_error: landmarks have {gt.shape[1]} points, expected 68 (iBUG order)")
        pred = fit_scale_shift(gen[i], gt[i]) if fit else gen[i]
        inter_ocular = max(float(np.linalg.norm(gt[i, 36] - gt[i, 45])), 1e-2)
        values[i] = np.linalg.norm(pred - gt[i], axis=-1).mean() / inter_ocular
    return values, skipped


def _face_scores(values: np.ndarray, skipped: np.ndarray, gt: list, gen: list) -> FrameScores:
    return FrameScores(values, skipped, {"gt_missing": np.array([k is None for k in gt], bool),
                                         "gen_missing": np.array([k is None for k in gen], bool)})


AKD_NOTES = ("pose-evaluation cmp_kp: per frame the mean over 68 landmarks x 2 coordinates of |gt - gen| in "
             "pixels of the input frames (legacy; L1 per coordinate, not Euclidean), or the mean Euclidean "
             "distance per landmark (clean). Frames without a generated face are skipped and counted.")


@register_metric("akd_face", kind="paired", higher_is_better=False, backend="face-alignment",
                 needs=("2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth"), protocol_notes=AKD_NOTES)
class AKDFace:
    """Average keypoint distance between FAN 68-landmark sets of generated and GT frames (FOMM, Monkey-Net)."""

    def __init__(self, spec: Any, *, variant: str = "legacy", detector: str = "sfd", device: str = "cpu",
                 verify_hash: bool = True):
        from bench.backends.fan import FanLandmarks

        self.spec, self.variant = spec, check_variant(variant, f"{spec.name}: variant")
        self.backend = FanLandmarks(detector=detector, device=device, verify_hash=verify_hash)

    def landmarks(self, frames: np.ndarray) -> list[np.ndarray | None]:
        """(68,2) landmarks or None per frame."""
        return self.backend.keypoints(frames)

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> FrameScores:
        """Per-frame AKD of uint8 (N,H,W,3) frames; skipped where a side has no detected face."""
        check_frames(pred, gt, metric=self.spec.name)
        kp_gt, kp_gen = self.landmarks(gt), self.landmarks(pred)
        return _face_scores(*akd_from_keypoints(kp_gt, kp_gen, self.variant), kp_gt, kp_gen)

    def describe(self) -> dict[str, Any]:
        """Provenance: variant, what it changes, detector and weights."""
        from bench.backends.fan import weight_files

        return {**base_description(self.spec), "variant": self.variant,
                "weights": weights_provenance(weight_files(self.backend.detector)),
                "settings": {"landmarks": "face_alignment TWO_D, 2DFAN-4, flip_input=False, compile=False, "
                                          "first detected face", "detector": self.backend.detector},
                "variant_differences": {"legacy": "mean |dx|,|dy| over 68x2 coordinates (pose-evaluation code)",
                                         "clean": "mean Euclidean distance over 68 landmarks"}}


@register_metric("akd_face_dlib", kind="paired", higher_is_better=False, backend="dlib-bin",
                 protocol_notes=AKD_NOTES + " Landmarks from dlib's 68-point predictor (offline proxy for FAN; "
                                            "numbers are not comparable with the papers).")
class AKDFaceDlib(AKDFace):
    """AKD with dlib HOG detection + the 68-point shape predictor (real weights shipped in a wheel, offline)."""

    def __init__(self, spec: Any, *, variant: str = "legacy", upsample: int = 1):
        from bench.backends.dlib_face import DlibFace

        self.spec, self.variant = spec, check_variant(variant, f"{spec.name}: variant")
        self.faces = DlibFace(upsample=upsample)

    def landmarks(self, frames: np.ndarray) -> list[np.ndarray | None]:
        """(68,2) landmarks or None per frame."""
        return [self.faces.landmarks(f) for f in frames]

    def describe(self) -> dict[str, Any]:
        """Provenance: variant and the dlib model files."""
        from bench.backends.dlib_face import LANDMARKS_68, model_path

        return {**base_description(self.spec), "variant": self.variant,
                "weights": [{"name": LANDMARKS_68, **file_provenance(model_path(LANDMARKS_68))}],
                "settings": {"landmarks": "dlib HOG detector (best score) + shape_predictor_68_face_landmarks",
                             "upsample": self.faces.upsample},
                "variant_differences": {"legacy": "mean |dx|,|dy| over 68x2 coordinates",
                                         "clean": "mean Euclidean distance over 68 landmarks"}}


class _BodyKeypointMetric:
    """Shared by akd_body and mkr: rtpose joints of both frame sets (pose-evaluation extract_body_pose)."""

    def __init__(self, spec: Any, *, variant: str = "legacy", device: str = "cpu", verify_hash: bool = True,
                 boxsize: int = 368):
        from bench.backends.rtpose import RtPoseKeypoints

        self.spec, self.variant = spec, check_variant(variant, f"{spec.name}: variant")
        # boxsize (network input height) is OpenPose's own setting; the papers' numbers use 368
        self.backend = RtPoseKeypoints(device=device, verify_hash=verify_hash, boxsize=boxsize)

    def joints(self, pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,18,2) GT and generated joints, (-1,-1) where missing."""
        check_frames(pred, gt, metric=self.spec.name)
        return self.backend.keypoints(gt), self.backend.keypoints(pred)

    def describe(self) -> dict[str, Any]:
        """Provenance: variant and the body-pose decode settings."""
        return {**base_description(self.spec), "variant": self.variant,
                "settings": {"keypoints": "rtpose VGG19 6-stage, BGR /256-0.5, height 368, pad x8, bicubic "
                                          "upsampling, flip-averaged, peaks > 0.1 (4-neighbourhood), 5x5 "
                                          "refinement, last peak per joint wins, 18 joints, missing (-1,-1)",
                             "boxsize": self.backend.boxsize},
                "variant_differences": {"legacy": "AKD: mean |dx|,|dy| over coordinates of joints in both frames",
                                         "clean": "AKD: mean Euclidean distance over joints in both frames; "
                                                  "MKR identical"}}


@register_metric("akd_body", kind="paired", higher_is_better=False, backend="torch", needs=("pose_model.pth",),
                 protocol_notes="pose-evaluation cmp_with_missing: per frame the mean |dx|,|dy| (legacy) or "
                                "Euclidean distance (clean) over joints detected in both frames; frames with no "
                                "common joint are skipped. The per-frame MKR rides along as field 'mkr'.")
class AKDBody(_BodyKeypointMetric):
    """Average keypoint distance between rtpose body joints of generated and GT frames (Tai-Chi-HD)."""

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> FrameScores:
        """Per-frame body AKD (pixels); field 'mkr' holds the same frames' missing keypoint rate."""
        kp_gt, kp_gen = self.joints(pred, gt)
        values, skipped = akd_body_from_keypoints(kp_gt, kp_gen, self.variant)
        mkr, _ = mkr_from_keypoints(kp_gt, kp_gen)
        return FrameScores(values, skipped, {"mkr": mkr})


@register_metric("mkr", kind="paired", higher_is_better=False, backend="torch", needs=("pose_model.pth",),
                 protocol_notes="pose-evaluation cmp_with_missing: per frame (#joints detected in GT but not in "
                                "the generated frame) / (#joints detected in GT), a fraction; frames with no GT "
                                "joint are skipped. Same in both protocols.")
class MKR(_BodyKeypointMetric):
    """Missing keypoint rate: share of rtpose joints detected in GT but missing in the generated frame."""

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> FrameScores:
        """Per-frame MKR (fraction in [0,1])."""
        return FrameScores(*mkr_from_keypoints(*self.joints(pred, gt)))
