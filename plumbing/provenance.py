"""Package versions and environment facts recorded with every store and every result."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

TRACKED = (
    "animbench", "torch", "torchvision", "numpy", "pyarrow", "pandas", "ray", "decord", "av", "opencv-python-headless",
    "scikit-image", "face-alignment", "lpips", "pytorch-fid", "insightface", "onnxruntime", "dlib-bin",
)


def package_versions(names: tuple[str, ...] = TRACKED) -> dict[str, str]:
    """Installed versions of the packages that can change a number (missing ones are left out)."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
