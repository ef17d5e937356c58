"""Metrics against closed forms and obvious orderings."""
import numpy as np
import pytest

import diffjax as dj


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200000, 2)) * np.array([1.0, 2.0]) + np.array([0.5, 0.0])
    # exact FD between N(m1, diag(1,4)) and N(0, I): |m|² + Σ(s_i − 1)² = 0.25 + 1
    fd = dj.metrics.frechet_distance(x, np.zeros(2), np.eye(2))
    assert abs(fd - 1.25) < 0.03
    assert dj.metrics.frechet_distance(x, [0.5, 0.0], np.diag([1.0, 4.0])) < 0.01


def test_sliced_wasserstein_and_mmd_order_distributions():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2000, 3)), rng.normal(size=(1500, 3))
    c = rng.normal(size=(2000, 3)) + 0.5
    sw_same, sw_shift = dj.metrics.sliced_wasserstein(a, b), dj.metrics.sliced_wasserstein(a, c)
    # a shift v projects to θ·v with E(θ·v)² = |v|²/d = 0.25, so SW ≈ 0.5
    assert sw_same < 0.1 and abs(sw_shift - 0.5) < 0.1 and sw_shift > 4 * sw_same
    assert abs(dj.metrics.mmd_rbf(a, b)) < 0.005 and dj.metrics.mmd_rbf(a, c) > 0.05


def test_metric_input_errors():
    with pytest.raises(ValueError, match="non-finite"):
        dj.metrics.mmd_rbf(np.full((4, 2), np.nan), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="dimension"):
        dj.metrics.sliced_wasserstein(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="shapes"):
        dj.metrics.frechet_distance(np.zeros((4, 2)), np.zeros(3), np.eye(3))
