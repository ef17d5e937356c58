"""Ready-made test-bed mixtures: a 2-D ring and a 64-d mixture fitted to scikit-learn's digits."""
from __future__ import annotations

import numpy as np

from .gmm import GaussianMixture


def ring(num_modes: int = 8, radius: float = 1.0, std: float = 0.05) -> GaussianMixture:
    """``num_modes`` equal-weight isotropic Gaussians evenly spaced on a circle in 2-D."""
    if int(num_modes) < 1:
        raise ValueError(f"num_modes must be >= 1, got {num_modes}")
    if not std >= 0:
        raise ValueError(f"std must be >= 0, got {std}")
    ang = 2 * np.pi * np.arange(num_modes) / num_modes
    means = radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    return GaussianMixture(np.ones(num_modes), means, np.full(num_modes, std**2))


def digits_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 8×8 digits scaled to [−1, 1], shape ``(N, 8, 8, 1)``, and their labels."""
    from sklearn.datasets import load_digits  # shipped inside the wheel: works offline

    d = load_digits()
    x = d.images.astype(np.float64) / 8.0 - 1.0
    return x[..., None], d.target


def digits(shrinkage: float = 0.01, image_shape: bool = False) -> GaussianMixture:
    """A 10-component mixture fitted to the digits (one full-covariance Gaussian per class).

    Each class covariance gets ``shrinkage · I`` added so every component is non-degenerate. The data are
    64-d vectors, or ``(8, 8, 1)`` images when ``image_shape`` is set.
    """
    x, y = digits_data()
    x = x.reshape(len(x), -1)
    means, covs, weights = [], [], []
    for c in range(10):
        xc = x[y == c]
        means.append(xc.mean(0))
        covs.append(np.cov(xc, rowvar=False) + shrinkage * np.eye(64))
        weights.append(len(xc))
    means = np.stack(means)
    if image_shape:
        means = means.reshape(10, 8, 8, 1)
    return GaussianMixture(np.asarray(weights, float), means, np.stack(covs))


def digits_dct(shrinkage: float = 0.01) -> GaussianMixture:
    """A 10-component mixture of 8×8×1 digit images whose covariances are diagonal in the orthonormal 2-D DCT
    basis (per class: the variance of each DCT coefficient, plus ``shrinkage``) — the form a blurring
    diffusion needs for its fast exact scores. Means are images in pixel space; variances are in DCT order."""
    from scipy.fft import dctn

    x, y = digits_data()
    coefs = dctn(x, axes=(1, 2), norm="ortho").reshape(len(x), -1)
    means, variances, weights = [], [], []
    for c in range(10):
        means.append(x[y == c].mean(0))
        variances.append(coefs[y == c].var(0) + shrinkage)
        weights.append(int((y == c).sum()))
    return GaussianMixture(np.asarray(weights, float), np.stack(means), np.stack(variances), basis="dct")
