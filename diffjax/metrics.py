"""Distribution metrics for samples: sliced Wasserstein-2, Fréchet distance to given moments, RBF-MMD, k-NN
precision and recall."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _flat(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"samples must have shape (N >= 2, ...), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples contain non-finite values")
    return x.reshape(x.shape[0], -1)


def sliced_wasserstein(x, y, key: jax.Array | None = None, num_projections: int = 256) -> float:
    """Sliced Wasserstein-2 distance: ``(E_θ W2²(θᵀX, θᵀY))^{1/2}`` over random unit directions θ.

    Sample sizes may differ (1-D W2 is computed between matched quantiles).
    """
    x, y = _flat(x), _flat(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimension mismatch: {x.shape[1]} vs {y.shape[1]}")
    key = jax.random.key(0) if key is None else key
    theta = np.array(jax.random.normal(key, (x.shape[1], num_projections)), np.float64)
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    px, py = np.sort(x @ theta, axis=0), np.sort(y @ theta, axis=0)
    if px.shape[0] != py.shape[0]:
        q = (np.arange(max(len(px), len(py))) + 0.5) / max(len(px), len(py))
        px = np.quantile(px, q, axis=0)
        py = np.quantile(py, q, axis=0)
    return float(np.sqrt(np.mean((px - py) ** 2)))


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(x, mean, cov) -> float:
    """Fréchet (2-Wasserstein between Gaussians) distance between the samples' moments and ``(mean, cov)``:
    ``‖μ_x − μ‖² + tr(Σ_x + Σ − 2 (Σ^{½} Σ_x Σ^{½})^{½})``."""
    x = _flat(x)
    mean = np.asarray(mean, np.float64).reshape(-1)
    cov = np.asarray(cov, np.float64)
    d = x.shape[1]
    if mean.shape != (d,) or cov.shape != (d, d):
        raise ValueError(f"moments must have shapes ({d},) and ({d}, {d}); got {mean.shape}, {cov.shape}")
    return frechet_distance_moments(x.mean(0), np.atleast_2d(np.cov(x, rowvar=False)), mean, cov)


def frechet_distance_moments(mean_a, cov_a, mean_b, cov_b) -> float:
    """``‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_b^{½} Σ_a Σ_b^{½})^{½})`` (the 2-Wasserstein distance between the two
    Gaussians, squared; FID when the moments are Inception features'). Symmetric PSD square roots by eigh."""
    mean_a, mean_b = np.asarray(mean_a, np.float64).reshape(-1), np.asarray(mean_b, np.float64).reshape(-1)
    cov_a, cov_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    d = mean_a.shape[0]
    if mean_b.shape != (d,) or cov_a.shape != (d, d) or cov_b.shape != (d, d):
        raise ValueError(
            f"moments must have shapes ({d},) and ({d}, {d}); got {mean_b.shape}, {cov_a.shape}, {cov_b.shape}"
        )
    s = _sqrtm_psd(cov_b)
    cross = _sqrtm_psd(s @ cov_a @ s)
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(cross))


def mmd_rbf(x, y, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD with a Gaussian kernel ``exp(−‖a−b‖²/(2h²))`` (median heuristic for h)."""
    x, y = _flat(x), _flat(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimension mismatch: {x.shape[1]} vs {y.shape[1]}")
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    d2 = lambda a, b: jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None] - 2 * a @ b.T
    dxx, dyy, dxy = d2(xj, xj), d2(yj, yj), d2(xj, yj)
    if bandwidth is None:
        bandwidth = float(np.sqrt(0.5 * np.median(np.asarray(dxy))))
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    k = lambda d: jnp.exp(-jnp.maximum(d, 0) / (2 * bandwidth**2))
    n, m = x.shape[0], y.shape[0]
    kxx = (jnp.sum(k(dxx)) - n) / (n * (n - 1))
    kyy = (jnp.sum(k(dyy)) - m) / (m * (m - 1))
    return float(kxx + kyy - 2 * jnp.mean(k(dxy)))


def _sq_distances(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(len(a), len(b))`` (float64, clipped at 0 against cancellation)."""
    return np.maximum(np.sum(a * a, 1)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T), 0.0)


def knn_radii(x, k: int = 3, chunk: int = 1024) -> np.ndarray:
    """Squared distance from each row of ``x`` to its ``k``-th nearest other row (rows of ``chunk`` at a time)."""
    x = _flat(x)
    if not (isinstance(k, int) and 1 <= k < len(x)):
        raise ValueError(f"k must be an integer in [1, {len(x) - 1}] for {len(x)} points, got {k!r}")
    x_sq = np.sum(x * x, 1)
    out = np.empty(len(x))
    for i in range(0, len(x), chunk):
        d = _sq_distances(x[i : i + chunk], x, x_sq)
        d[np.arange(len(d)), np.arange(i, i + len(d))] = -1.0  # the point itself sorts first
        out[i : i + chunk] = np.partition(d, k, axis=1)[:, k]
    return out


def _covered(query: np.ndarray, support: np.ndarray, radii: np.ndarray, chunk: int) -> float:
    """Fraction of ``query`` rows inside at least one ball ``‖q − s‖² ≤ radii[s]`` around the ``support`` rows."""
    s_sq = np.sum(support * support, 1)
    inside = [
        np.any(_sq_distances(query[i : i + chunk], support, s_sq) <= radii[None, :], axis=1)
        for i in range(0, len(query), chunk)
    ]
    return float(np.mean(np.concatenate(inside)))


def precision_recall(real, fake, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019) of ``fake`` against ``real`` feature vectors.

    Each set's manifold is the union of balls around its points with radius the distance to the point's ``k``-th
    nearest neighbour in the same set. Precision = fraction of fake points inside the real manifold (how many
    samples are realistic); recall = fraction of real points inside the fake manifold (how much of the data the
    samples cover: dropped modes lower recall, not precision). Exact (all pairwise distances, float64, ``chunk``
    rows at a time: memory ``chunk × max(N)``). The paper uses k = 3 on Inception-like features of 50 000 images.
    """
    real, fake = _flat(real), _flat(fake)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"dimension mismatch: real {real.shape[1]} vs fake {fake.shape[1]}")
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    r_real, r_fake = knn_radii(real, k, chunk), knn_radii(fake, k, chunk)
    return _covered(fake, real, r_real, chunk), _covered(real, fake, r_fake, chunk)
