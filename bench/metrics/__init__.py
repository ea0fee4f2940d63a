"""Metrics: one registry (bench.metrics.registry); importing this package registers the built-in metrics."""

from __future__ import annotations

import importlib

from bench.metrics.registry import (
    FrameScores,
    MetricSpec,
    check_frames,
    get_metric,
    list_metrics,
    metric_spec,
    register_metric,
)

# Each module registers its metrics on import. Heavy libraries (lpips, pytorch-fid, face-alignment) are
# imported only when a metric object is built, so listing metrics stays cheap.
_MODULES = ("pixel", "lpips_metric", "fid", "pose", "identity", "reenactment", "crops", "pose_distance")
for _mod in _MODULES:
    try:
        importlib.import_module(f"bench.metrics.{_mod}")
    except ModuleNotFoundError as exc:
        # pose / identity land in parallel work; a module that is absent (not one that fails inside) is skipped
        if exc.name != f"bench.metrics.{_mod}":
            raise

__all__ = ["FrameScores", "MetricSpec", "check_frames", "get_metric", "list_metrics", "metric_spec",
           "register_metric"]
