"""Fréchet Inception Distance: feature moments accumulated in float64, the distance, cached reference statistics.

``FID = ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a^{½} Σ_b Σ_a^{½})^{½})`` between the Gaussian moments of the 2048-d
Inception pool features (:mod:`diffjax.inception`) of two image sets (Heusel et al., 2017). Images are given in
diffjax's data range ``[−1, 1]`` and mapped to ``[0, 1]`` (clipped) before the network, as the published
evaluations quantise samples to 8-bit images first (``quantize=True`` does the same rounding).

The moments are sums of ``f`` and ``f fᵀ`` over batches (float64 on the host), so they do not depend on the batch
size, and streams of chunks (``sample_chunked``'s files) are read one chunk at a time.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterable

import numpy as np

from .files import file_digest as _file_digest
from .files import save_npz_atomic
from .metrics import frechet_distance_moments


class Moments:
    """Running mean and covariance of feature vectors (float64 sums; batch-size independent)."""

    def __init__(self, dim: int):
        self.n, self.s, self.ss = 0, np.zeros(dim), np.zeros((dim, dim))

    def add(self, feats) -> "Moments":
        """Accumulate a batch of feature vectors ``(B, dim)``."""
        f = np.asarray(feats, np.float64)
        if f.ndim != 2 or f.shape[1] != self.s.shape[0]:
            raise ValueError(f"features must have shape (B, {self.s.shape[0]}), got {f.shape}")
        if not np.all(np.isfinite(f)):
            raise ValueError("non-finite features (non-finite images?)")
        self.n += f.shape[0]
        self.s += f.sum(0)
        self.ss += f.T @ f
        return self

    @classmethod
    def from_stats(cls, mu, sigma, n: int = 50000) -> "Moments":
        """Moments with the given mean and (unbiased) covariance, as published reference statistics are stored
        (``mu``, ``sigma`` of an .npz: pytorch-fid's and EDM's format); ``n`` only fixes the bookkeeping."""
        mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
        if (
            mu.ndim != 1
            or sigma.shape != (mu.size, mu.size)
            or not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma)))
        ):
            raise ValueError(
                f"reference statistics need a finite mean (d,) and covariance (d, d); got {mu.shape}, {sigma.shape}"
            )
        mom = cls(mu.size)
        mom.n, mom.s, mom.ss = int(n), n * mu, (n - 1) * sigma + n * np.outer(mu, mu)
        return mom

    @property
    def mean(self) -> np.ndarray:
        """The mean feature vector."""
        return self.s / self.n

    @property
    def cov(self) -> np.ndarray:
        """Unbiased sample covariance (as numpy's ``np.cov`` and pytorch-fid)."""
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.n}")
        m = self.mean
        return (self.ss - self.n * np.outer(m, m)) / (self.n - 1)


def to_unit_range(images, quantize: bool = True) -> np.ndarray:
    """``[−1, 1]`` data -> ``[0, 1]`` images (clipped; rounded to 8 bits when ``quantize``)."""
    x = np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0)
    return np.round(x * 255.0) / 255.0 if quantize else x


def feature_batches(
    features: Callable, batches: Iterable, batch_size: int = 100, quantize: bool = True, progress: bool = False
):
    """Yield ``features(images)`` for an iterable of image arrays in ``[−1, 1]``, fed in batches of exactly
    ``batch_size`` (a short last batch is padded and the padding's features dropped), so the feature network is
    compiled once."""
    items = batches
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(batches, desc="features", leave=False)
    for arr in items:
        arr = np.asarray(arr)
        for i in range(0, len(arr), batch_size):
            part = to_unit_range(arr[i : i + batch_size], quantize)
            n = len(part)
            if n < batch_size:
                part = np.concatenate([part, np.zeros((batch_size - n,) + part.shape[1:], part.dtype)])
            yield np.asarray(features(part))[:n]


def moments_of(
    features: Callable,
    batches: Iterable,
    dim: int = 2048,
    batch_size: int = 100,
    quantize: bool = True,
    progress: bool = False,
) -> Moments:
    """Moments of ``features(images)`` over an iterable of image arrays (see :func:`feature_batches`)."""
    mom = Moments(dim)
    for f in feature_batches(features, batches, batch_size, quantize, progress):
        mom.add(f)
    return mom


def fid(a: Moments, b: Moments) -> float:
    """The Fréchet distance between two sets of feature moments."""
    return frechet_distance_moments(a.mean, a.cov, b.mean, b.cov)


file_digest = _file_digest  # SHA-256 of a file (identifies the Inception weights in cached statistics)


def _cached_npz(path: str, provenance: dict, compute: Callable[[], dict]) -> dict:
    """The arrays stored at ``path`` (.npz) with this ``provenance``, or ``compute()``'s, written atomically."""
    want = json.dumps(provenance, sort_keys=True)
    if os.path.exists(path):
        try:
            with np.load(path) as f:
                if str(f["provenance"]) == want:
                    return {k: f[k] for k in f.files if k != "provenance"}
        except (OSError, KeyError, ValueError):
            pass  # unreadable: recompute
    arrays = compute()
    save_npz_atomic(path, provenance=want, **arrays)
    return arrays


def cached_reference(path: str, provenance: dict, compute: Callable[[], Moments]) -> Moments:
    """Reference moments stored at ``path`` (.npz) with their ``provenance`` (data set, count, feature extractor
    and its weights digest, …); recomputed and rewritten (atomically) when the file is missing or was made from
    something else."""

    def arrays():
        mom = compute()
        return {"n": np.asarray(mom.n), "s": mom.s, "ss": mom.ss}

    f = _cached_npz(path, provenance, arrays)
    mom = Moments(f["s"].shape[0])
    mom.n, mom.s, mom.ss = int(f["n"]), f["s"], f["ss"]
    return mom


def cached_features(path: str, provenance: dict, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Reference feature vectors (for precision/recall) cached like :func:`cached_reference`."""
    return _cached_npz(path, provenance, lambda: {"features": np.asarray(compute(), np.float32)})["features"]
