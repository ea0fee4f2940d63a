"""68 face landmarks from the face_alignment package (2D-FAN-4, S3FD or dlib HOG detection): the AKD-face backend.

Settings for parity with pose-evaluation's face-alignment 1.0 (2018): LandmarksType.TWO_D (the old `_2D`),
flip_input=False (1.5 defaults to True), compile=False (Inductor kernels can flip near-tie heatmap arg-maxes,
and compiling costs ~90 s). The first detected face is kept: S3FD lists faces by descending score.
face_alignment reads both files from $TORCH_HOME/hub/checkpoints under their hash-named 1.5 file names.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from plumbing import weights
from plumbing.errors import AnimbenchError

FAN_FILE = "2DFAN4-11f355bf06.pth.tar"
S3FD_FILE = "s3fd-619a316812.pth"
DETECTORS = ("sfd", "dlib")


def weight_files(detector: str) -> tuple[str, ...]:
    """The manifest files a detector choice needs (dlib's HOG detector ships with dlib)."""
    return (FAN_FILE, S3FD_FILE) if detector == "sfd" else (FAN_FILE,)


class FanLandmarks:
    """face_alignment.FaceAlignment(TWO_D, LARGE) with pose-evaluation's settings; weights from the manifest."""

    def __init__(self, detector: str = "sfd", device: str = "cpu", verify_hash: bool = True):
        if detector not in DETECTORS:
            raise AnimbenchError(f"face landmarks: detector {detector!r}, expected one of {DETECTORS}")
        paths = {name: weights.locate(name, verify_hash=verify_hash) for name in weight_files(detector)}
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        if hub.resolve() != paths[FAN_FILE].parent.resolve():
            # face_alignment finds 2DFAN4 only through torch.hub's folder; a mismatch would make it download
            raise AnimbenchError(f"face landmarks: torch.hub looks in {hub}, but {FAN_FILE} is in "
                                 f"{paths[FAN_FILE].parent} (torch.hub.set_dir was changed; unset it or set TORCH_HOME)")
        import face_alignment

        kwargs = {"path_to_detector": str(paths[S3FD_FILE])} if detector == "sfd" else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the dlib detector's deprecation notice
            self.fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D, device=device, flip_input=False, face_detector=detector,
                face_detector_kwargs=kwargs, compile=False)
        self.detector, self.weight_paths = detector, paths

    def landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        """uint8 RGB (H,W,3) -> (68,2) float64 (x,y) pixels of the first detected face; None without a face."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No faces were detected." is a value here, not a warning
            found = self.fa.get_landmarks_from_image(np.ascontiguousarray(frame))
        if not found:
            return None
        return np.asarray(found[0], np.float64)[:, :2]

    def keypoints(self, frames: np.ndarray) -> list[np.ndarray | None]:
        """uint8 RGB (N,H,W,3) -> one (68,2) array or None per frame."""
        return [self.landmarks(f) for f in frames]
