"""Ready-made test-bed mixtures: a 2-D ring, a 64-d mixture fitted to scikit-learn's digits, and a 256-d
image-like mixture with a steep power spectrum."""

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


def spectral(
    size: int = 16,
    num_components: int = 6,
    decay: float = 2.0,
    cutoff: float = 2.0,
    seed: int = 0,
    coordinates: str = "frequency",
) -> GaussianMixture:
    """An image-like mixture of ``size×size×1`` images with a steep power spectrum (256-d by default).

    Component k has variance ``a_k (1 + |f|²/cutoff²)^(−decay)`` at DCT frequency ``f = (f_x, f_y)`` (diagonal in
    the orthonormal 2-D DCT basis, as natural images roughly are), amplitudes ``a_k`` spread over [0.5, 1.5]
    and a mean drawn from the same spectrum; the default covariance condition number is ≈ 1.3e4 — a stiff PF-ODE
    on which step placement matters.

    ``coordinates="image"``: pixels, covariances diagonal in the DCT basis (``basis="dct"``); ``"frequency"``
    (default): the same mixture in DCT coordinates, covariances diagonal. The two are related by an orthogonal
    change of variables, under which VP/VE/EDM and their samplers are equivariant (isotropic noise, scalar
    coefficients): pathwise errors are identical, and the exact scores in frequency coordinates cost O(K d)
    instead of O(K d²)."""
    from scipy.fft import idctn

    if coordinates not in ("frequency", "image"):
        raise ValueError(f"coordinates must be 'frequency' or 'image', got {coordinates!r}")
    if int(size) < 2 or int(num_components) < 1 or not decay > 0 or not cutoff > 0:
        raise ValueError(
            f"need size >= 2, num_components >= 1, decay > 0, cutoff > 0; "
            f"got {size}, {num_components}, {decay}, {cutoff}"
        )
    fy, fx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    spectrum = (1.0 + (fx**2 + fy**2) / cutoff**2) ** (-decay)
    rng = np.random.default_rng(seed)
    amps = np.linspace(0.5, 1.5, num_components)
    coefs = [rng.standard_normal((size, size)) * np.sqrt(spectrum) for _ in range(num_components)]
    variances = amps[:, None] * spectrum.reshape(1, -1)
    if coordinates == "frequency":
        return GaussianMixture(np.ones(num_components), np.stack(coefs)[..., None], variances)
    means = np.stack([idctn(c, norm="ortho") for c in coefs])
    return GaussianMixture(np.ones(num_components), means[..., None], variances, basis="dct")
