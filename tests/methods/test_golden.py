"""Behaviour is pinned: FOMM and Monkey-Net give bit-identical keypoints, reconstructions, animations and training
losses to the saved golden arrays (tests/methods/golden_outputs.py says how they were made)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.methods.golden_outputs import CONFIGS, GOLDEN, outputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_outputs_equal_the_golden_arrays_bit_for_bit(method):
    saved = np.load(GOLDEN / f"{method}.npz")
    now = outputs(method)
    assert sorted(now) == sorted(saved.files)
    for name in saved.files:
        assert now[name].shape == saved[name].shape, name
        assert np.array_equal(now[name], saved[name]), (
            f"{method} {name}: max abs diff {np.abs(now[name].astype(np.float64) - saved[name]).max():.3g}")


def test_bench_scores_equal_the_golden_table_bit_for_bit(tmp_path):
    from tests.methods.golden_outputs import bench_table

    saved = np.load(GOLDEN / "bench.npz")
    now = bench_table(tmp_path)
    assert sorted(now) == sorted(saved.files)
    for name in saved.files:
        assert np.array_equal(now[name], saved[name]), f"{name}: {now[name]} != {saved[name]}"
