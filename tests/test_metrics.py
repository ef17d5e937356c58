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


def _brute_precision_recall(real, fake, k):
    """Definition by hand: every pairwise distance, sorted."""
    dist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    radius = lambda x: np.sort(dist(x, x), axis=1)[:, k]  # column 0 is the point itself
    inside = lambda q, s: np.mean(np.any(dist(q, s) <= radius(s)[None, :], axis=1))
    return inside(fake, real), inside(real, fake)


def test_precision_recall_definition_and_mode_dropping():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 5)), rng.normal(0.5, 1.2, size=(45, 5))
    for k in (1, 3, 7):  # chunked = the definition, for chunks smaller and larger than the sets
        want = _brute_precision_recall(real, fake, k)
        for chunk in (7, 1000):
            assert dj.metrics.precision_recall(real, fake, k, chunk) == pytest.approx(want, abs=1e-12)
    assert dj.metrics.precision_recall(real, real) == (1.0, 1.0)
    assert dj.metrics.precision_recall(real, fake + 100.0) == (0.0, 0.0)
    # two equal, far-apart modes in the data; samples that drop one mode stay precise but recall half the data,
    # samples that put half their mass on a spurious mode recall one mode and are half precise
    mode = lambda n, c: rng.normal(size=(n, 2)) + np.array([c, 0.0])
    data = np.concatenate([mode(1000, -20.0), mode(1000, 20.0)])
    p, r = dj.metrics.precision_recall(data, mode(1000, -20.0))
    assert p > 0.9 and abs(r - 0.5) < 0.05, (p, r)
    p, r = dj.metrics.precision_recall(data, np.concatenate([mode(500, -20.0), mode(500, 60.0)]))
    assert abs(p - 0.5) < 0.05 and abs(r - 0.5) < 0.05, (p, r)
    with pytest.raises(ValueError, match="k must be an integer in \\[1, 5\\]"):
        dj.metrics.precision_recall(real[:6], fake, k=6)
    with pytest.raises(ValueError, match="dimension mismatch"):
        dj.metrics.precision_recall(real, fake[:, :3])
    with pytest.raises(ValueError, match="non-finite"):
        dj.metrics.precision_recall(real, np.full((4, 5), np.nan))
