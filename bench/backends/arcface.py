"""ArcFace identity descriptors through insightface (buffalo_l `w600k_r50.onnx`): the identity-error backend.

Latent-pose reenactment measured identity with insightface's mxnet `model-r100-ii` on MTCNN-aligned 112x112
crops. Neither is available offline, so this backend uses the ONNX recogniser of insightface's buffalo_l pack
and aligns with dlib's 68 landmarks (eye centres, nose tip, mouth corners -> the ArcFace 5-point template).
When no face is found it falls back to LPD's fixed central crop. Numbers are therefore a faithful protocol on a
different descriptor, not the paper's values.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

from bench.backends.dlib_face import DlibFace
from plumbing import weights
from plumbing.errors import AnimbenchError

WEIGHT_FILE = "w600k_r50.onnx"
FACE_SIZE = 112
# LPD's fallback crop for its 256-px latentpose crops, margins (top, left, bottom, right) in pixels
FALLBACK_MARGINS_256 = (42, 53, 64, 53)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """(68,2) iBUG landmarks -> (5,2) ArcFace points: image-left eye, image-right eye, nose tip, mouth corners."""
    lm = np.asarray(landmarks68, np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]).astype(np.float32)


def central_crop(frame: np.ndarray) -> np.ndarray:
    """LPD's no-detection fallback: fixed margins (scaled from 256 px) then resize to 112x112."""
    h, w = frame.shape[:2]
    top, left, bottom, right = FALLBACK_MARGINS_256
    crop = frame[round(top * h / 256):h - round(bottom * h / 256), round(left * w / 256):w - round(right * w / 256)]
    return cv2.resize(np.ascontiguousarray(crop), (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_CUBIC)  # as compute_pose_identity_error.py


class ArcFaceEmbedder:
    """512-d L2-normalised ArcFace descriptors of the (aligned) face in each uint8 RGB frame."""

    def __init__(self, device: str = "cpu", verify_hash: bool = True):
        self.weight_path = weights.locate(WEIGHT_FILE, verify_hash=verify_hash)
        from insightface.model_zoo import get_model

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") \
            else ["CPUExecutionProvider"]
        try:
            model = get_model(str(self.weight_path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for unreadable graphs
            raise AnimbenchError(f"weight file {self.weight_path}: not a loadable ONNX model "
                                 f"({str(exc).splitlines()[0]})") from None
        if getattr(model, "taskname", None) != "recognition":
            raise AnimbenchError(f"weight file {self.weight_path}: insightface reads it as "
                                 f"{type(model).__name__}, expected a 1x3x112x112 -> 1x512 recogniser")
        self.model = model
        self._faces: DlibFace | None = None

    def align(self, frame: np.ndarray) -> tuple[np.ndarray, bool]:
        """uint8 RGB frame -> (112,112,3) aligned face and whether a face was detected (else central crop)."""
        from insightface.utils.face_align import norm_crop

        if self._faces is None:
            self._faces = DlibFace()
        lm = self._faces.landmarks(frame)
        if lm is None:
            return central_crop(frame), False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # insightface uses skimage's deprecated estimate()
            return norm_crop(np.ascontiguousarray(frame), five_points(lm), FACE_SIZE), True

    def embed_faces(self, faces: np.ndarray) -> np.ndarray:
        """(N,112,112,3) uint8 RGB aligned faces -> (N,512) float32, L2-normalised."""
        if len(faces) == 0:
            return np.zeros((0, 512), np.float32)
        # get_feat takes OpenCV BGR images and swaps them to the RGB the network was trained on
        feats = self.model.get_feat([np.ascontiguousarray(f[..., ::-1]) for f in faces]).astype(np.float32)
        return feats / np.linalg.norm(feats, axis=1, keepdims=True).clip(min=1e-12)

    def embed(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB (N,H,W,3) -> ((N,512) descriptors, (N,) bool: face detected, else central-crop fallback)."""
        aligned = [self.align(f) for f in frames]
        faces = np.stack([a[0] for a in aligned]) if aligned else np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)
        return self.embed_faces(faces), np.array([a[1] for a in aligned], bool)
