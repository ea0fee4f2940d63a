"""The settings that decide the frames a prep run produces: one PrepConfig, recorded in the store's manifest and
checked by `--resume`; the worker (prep/worker.py) and its stages (prep/stages.py) read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from plumbing.errors import AnimbenchError
from prep.cropscale import SCALERS
from prep.decode import BACKENDS
from prep.detect import CropRules
from prep.imagecodec import EncodeOptions
from prep.store import DEFAULT_ROW_GROUP


@dataclass
class PrepConfig:
    """Everything that decides the frames a unit produces (recorded in the manifest; resume checks it)."""

    recipe: str
    size: int = 256  # output side in pixels; 0 keeps the source size
    pad: bool = False  # pad to a square before resizing (fashion), else the crop is resized as it is
    pad_value: int = 0
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    row_group_size: int = DEFAULT_ROW_GROUP
    decoder: str = "auto"
    min_frames: int = 2  # an output video needs a source and a driving frame
    detector: str = "dlib"
    detector_weights: str | None = None
    rules: CropRules = field(default_factory=CropRules)
    download: bool = False
    download_format: str = "bv*[ext=mp4]/b[ext=mp4]/bv*/b"  # video only: the crops need no audio
    download_timeout: float = 60.0
    poses: str | None = None  # --poses: a folder of OpenPose outputs, 'synthetic', 'rtpose' or 'dwpose'
    pose_device: str = "cpu"  # where a pose detector runs
    crop: str | None = None  # --crop latentpose: per-frame face crop (detector: `detector`) instead of the box
    masks: str | None = None  # --masks: 'synthetic', 'graphonomy' or a folder of mask files
    mask_device: str = "cpu"  # where a segmentation model runs
    scaler: str = "ffmpeg"  # --scaler: crop + area-scale PyAV frames in YUV (ffmpeg), or RGB + cv2.INTER_AREA

    def __post_init__(self) -> None:
        if self.crop not in (None, "latentpose"):
            raise AnimbenchError(f"--crop {self.crop!r}: expected latentpose (or no --crop: the recipe's boxes)")
        if self.crop is not None and self.poses is not None:
            raise AnimbenchError("--poses with --crop latentpose: the per-frame face crop does not carry keypoints; "
                                 "prep the poses into a store without --crop latentpose")
        if self.size < 0:
            raise AnimbenchError(f"--size {self.size}: expected 0 (keep the source size) or a positive side")
        if self.scaler not in SCALERS:
            raise AnimbenchError(f"--scaler {self.scaler!r}: expected one of {', '.join(SCALERS)}")
        if self.decoder not in BACKENDS:
            raise AnimbenchError(f"--decoder {self.decoder!r}: expected one of {', '.join(BACKENDS)}")
        if not 0 <= self.pad_value <= 255 or self.min_frames < 1 or self.row_group_size < 1:
            raise AnimbenchError(f"prep config: pad_value {self.pad_value} (0..255), min_frames {self.min_frames} "
                                 f"(>= 1), row_group_size {self.row_group_size} (>= 1)")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able record of the configuration."""
        d = asdict(self)
        d["encode"] = self.encode.as_dict()
        return d
