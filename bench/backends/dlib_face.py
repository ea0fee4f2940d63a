"""dlib face models shipped inside the face-recognition-models wheel: real weights, usable offline.

HOG frontal-face detector (built into dlib), the 68-point landmark predictor, the 5-point predictor and the
128-d ResNet face descriptor (dlib_face_recognition_resnet_model_v1: same person below Euclidean 0.6).
`import face_recognition_models` fails with setuptools >= 81 (it imports pkg_resources), so the files are
located through the installed distribution's file list instead.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np

from plumbing.errors import AnimbenchError

DISTRIBUTION = "face_recognition_models"
LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
SAME_PERSON_THRESHOLD = 0.6  # dlib's Euclidean threshold for its 128-d descriptor


def model_path(filename: str) -> Path:
    """Path of a model file inside the installed face-recognition-models distribution (never imports it)."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise AnimbenchError(f"dlib face models: the {DISTRIBUTION} distribution is not installed "
                             f"(pip install face-recognition-models)") from None
    for f in dist.files or ():
        if f.name == filename:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise AnimbenchError(f"dlib face models: {filename} not found in the installed {DISTRIBUTION} distribution")


@cache
def _load(constructor: str, filename: str):
    import dlib

    return getattr(dlib, constructor)(str(model_path(filename)))


class DlibFace:
    """HOG detection, 68 landmarks and 128-d descriptors of the best-scoring face in a uint8 RGB frame."""

    def __init__(self, upsample: int = 1):
        import dlib

        self.upsample = upsample  # HOG finds faces down to ~80 px; each upsampling halves that
        self.detector = dlib.get_frontal_face_detector()
        self._dlib = dlib  # for dlib.rectangle

    # the model files are large (the 68-point predictor is 100 MB): each loads on first use, once per process
    @property
    def predictor68(self):
        """dlib.shape_predictor for the 68 iBUG 300-W landmarks."""
        return _load("shape_predictor", LANDMARKS_68)

    @property
    def predictor5(self):
        """dlib.shape_predictor for the 5 points the face descriptor aligns with."""
        return _load("shape_predictor", LANDMARKS_5)

    @property
    def encoder(self):
        """dlib.face_recognition_model_v1 (ResNet, 128-d)."""
        return _load("face_recognition_model_v1", DESCRIPTOR)

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """(K,5) boxes [x1, y1, x2, y2, score], best score first; (0,5) when no face is found."""
        rects, scores, _ = self.detector.run(np.ascontiguousarray(frame), self.upsample, 0.0)
        boxes = [(r.left(), r.top(), r.right(), r.bottom(), s) for r, s in zip(rects, scores, strict=True)]
        boxes.sort(key=lambda b: -b[4])
        return np.asarray(boxes, np.float64).reshape(-1, 5)

    def _best_rect(self, frame: np.ndarray):
        boxes = self.detect(frame)
        if len(boxes) == 0:
            return None
        x1, y1, x2, y2 = (int(v) for v in boxes[0, :4])
        return self._dlib.rectangle(x1, y1, x2, y2)

    def landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        """(68,2) float64 (x,y) pixels of the best face (iBUG 300-W order, as FAN); None without a face."""
        frame = np.ascontiguousarray(frame)
        rect = self._best_rect(frame)
        if rect is None:
            return None
        shape = self.predictor68(frame, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)

    def embedding(self, frame: np.ndarray) -> np.ndarray | None:
        """128-d descriptor of the best face (5-point alignment, no jitter); None without a face."""
        frame = np.ascontiguousarray(frame)
        rect = self._best_rect(frame)
        if rect is None:
            return None
        return np.asarray(self.encoder.compute_face_descriptor(frame, self.predictor5(frame, rect), 0), np.float64)
