"""The metric registry: registration, lookup, per-frame results that the runner aggregates."""

from __future__ import annotations

import numpy as np
import pytest

from bench.metrics import registry
from bench.metrics.registry import FrameScores, check_frames, get_metric, list_metrics, register_metric
from plumbing.errors import AnimbenchError


@pytest.fixture
def scratch_registry(monkeypatch):
    """Register test metrics into a copy of the registry so the real one is untouched."""
    monkeypatch.setattr(registry, "_METRICS", dict(registry._METRICS))
    return registry._METRICS


def test_function_metric_registers_lists_and_describes(scratch_registry):
    @register_metric("test_absdiff", kind="paired", higher_is_better=False, backend="numpy",
                     protocol_notes="test only", settings={"scale": 1})
    def absdiff(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Mean absolute difference per frame, in uint8 units."""
        return np.abs(pred.astype(float) - gt).mean(axis=(1, 2, 3))

    assert "test_absdiff" in list_metrics("test_*")
    assert list_metrics("test_*", kind="set") == []
    metric = get_metric("test_absdiff")
    pred = np.full((3, 4, 4, 3), 10, np.uint8)
    gt = np.full((3, 4, 4, 3), 7, np.uint8)
    scores = metric(pred, gt)
    assert isinstance(scores, FrameScores)
    np.testing.assert_allclose(scores.values, [3, 3, 3])
    d = metric.describe()
    assert d["name"] == "test_absdiff" and d["settings"] == {"scale": 1}
    assert d["backend"].startswith("numpy ") and d["backend"] != "numpy unknown"
    assert d["protocol_notes"] == "test only" and d["higher_is_better"] is False
    assert registry.metric_spec("test_absdiff").summary == "Mean absolute difference per frame, in uint8 units."


def test_class_metric_gets_spec_and_options(scratch_registry):
    @register_metric("test_scaled", kind="paired", higher_is_better=True, backend="numpy")
    class Scaled:
        def __init__(self, spec, factor: float = 1.0):
            self.spec, self.factor = spec, factor

        def __call__(self, pred, gt):
            return FrameScores(np.full(len(pred), self.factor))

        def describe(self):
            return {**registry.base_description(self.spec), "settings": {"factor": self.factor}}

    m = get_metric("test_scaled", factor=2.5)
    assert m(np.zeros((2, 1, 1, 3), np.uint8), None).mean() == 2.5
    assert m.describe()["settings"] == {"factor": 2.5}


def test_registry_rejects_bad_registrations(scratch_registry):
    with pytest.raises(ValueError, match="kind"):
        register_metric("test_bad", kind="video", higher_is_better=True, backend="numpy")
    with pytest.raises(ValueError, match="must be a class"):
        register_metric("test_set_fn", kind="set", higher_is_better=False, backend="numpy")(lambda a, b: 0)
    register_metric("test_once", kind="paired", higher_is_better=True, backend="numpy")(lambda a, b: 0)
    with pytest.raises(ValueError, match="twice"):
        register_metric("test_once", kind="paired", higher_is_better=True, backend="numpy")(lambda a, b: 1)


def test_unknown_metric_is_a_user_error():
    with pytest.raises(AnimbenchError, match="unknown metric 'nope'"):
        get_metric("nope")


def test_frame_scores_skipped_frames_and_means():
    s = FrameScores(np.array([1.0, 5.0, 3.0]), skipped=np.array([False, True, False]),
                    fields={"n_gt": np.array([68, 0, 68])})
    assert np.isnan(s.values[1]) and s.n_frames == 3 and s.n_valid == 2
    assert s.total() == 4.0 and s.mean() == 2.0
    both = FrameScores.concat([s, FrameScores(np.array([6.0]), fields={"n_gt": np.array([68])})])
    assert both.n_frames == 4 and both.n_valid == 3 and both.mean() == pytest.approx(10 / 3)
    np.testing.assert_array_equal(both.fields["n_gt"], [68, 0, 68, 68])
    assert np.isnan(FrameScores(np.array([1.0]), skipped=np.array([True])).mean())
    with pytest.raises(ValueError, match="field 'x'"):
        FrameScores(np.zeros(3), fields={"x": np.zeros(2)})


def test_frame_weighted_and_video_weighted_means_differ():
    # FOMM averages over all frames, Monkey-Net over per-video means: a long video weighs more in FOMM's
    videos = [FrameScores(np.array([1.0] * 9)), FrameScores(np.array([10.0]))]
    frame_weighted = sum(v.total() for v in videos) / sum(v.n_valid for v in videos)
    video_weighted = np.mean([v.mean() for v in videos])
    assert frame_weighted == pytest.approx(1.9) and video_weighted == pytest.approx(5.5)


def test_check_frames_asserts_the_canonical_input():
    ok = np.zeros((2, 8, 8, 3), np.uint8)
    check_frames(ok, ok)
    with pytest.raises(AnimbenchError, match=r"pred frames are float32 \(2, 8, 8, 3\), expected uint8"):
        check_frames(ok.astype(np.float32), ok)
    with pytest.raises(AnimbenchError, match="gt frames are uint8"):
        check_frames(ok, ok[..., :1])
    with pytest.raises(AnimbenchError, match="differ in shape"):
        check_frames(ok, ok[:1])
