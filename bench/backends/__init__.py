"""Metric backends: the detectors and embedders behind AKD / MKR / AED / identity and pose error.

One module per network family; each resolves its weight files through the manifest (plumbing.weights) and turns
uint8 RGB frames (N, H, W, 3) into keypoints or embeddings. The metric arithmetic lives in bench.metrics.
The backends load their .pth files with plumbing.state_dicts (shared with prep's rtpose detector), re-exported here.
"""

from __future__ import annotations

from plumbing.state_dicts import load_exact, read_state_dict

__all__ = ["load_exact", "read_state_dict"]
