"""Blurring diffusion (Hoogeboom & Salimans 2022): per-frequency scalar SDEs in the DCT basis."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .base import LinearDiffusion, check_positive, diffusion_dataclass
from .blocks import scalar_block
from .dct import DCTBasis

SCHEDULES = ("bdm", "cos2")


@diffusion_dataclass
class Blur(DCTBasis, LinearDiffusion):
    """Blurring diffusion on images ``(H, W, C)``: in the orthonormal 2-D DCT basis ``y = Vᵀx`` (per channel),
    frequency k follows ``y_k,t = α_k(t) y_k,0 + σ(t) z`` with ``α_k = a(t) d_k(t)``,
    ``d_k = (1 − d_min) e^{−λ_k τ(t)} + d_min``, ``τ = σ_B²/2``, ``σ_B(t) = σ_Bmax sin²(πt/2)`` and
    ``λ_ij = (πi/H)² + (πj/W)²``. ``a² + σ² = 1`` follows ``schedule``:

    * ``"bdm"``  (BDM paper): ``logSNR = −2 ln tan(c₁t + c₀)`` between +10 and −10, i.e. ``a = cos(c₁t + c₀)``;
    * ``"cos2"`` (gDDIM code): ``a = cos φ``, ``φ = ((t + 0.004)/1.008)·π/2``.

    ``f_k = d ln α_k/dt`` and ``g_k² = dσ²/dt − 2 f_k σ²`` by forward-mode autodiff. ``sigma_blur_max = 0`` is VP
    with the chosen schedule; the DC frequency never blurs. Σ_t = σ²I in both bases, so gDDIM's ``R_t = σ_t``.
    """

    needs_data_shape = True  # the training scripts pass the images' shape as shape=

    shape: tuple = (8, 8, 1)
    sigma_blur_max: float = 20.0
    schedule: str = "bdm"
    d_min: float = 1e-3
    T: float = 1.0
    t_min: float = 1e-3
    t_eps: float = 1e-5

    def __post_init__(self):
        if not all(isinstance(s, (int, np.integer)) or (isinstance(s, float) and s.is_integer()) for s in self.shape):
            raise ValueError(f"Blur's image shape must be whole numbers, got {self.shape!r}")
        shp = tuple(int(s) for s in self.shape)
        if len(shp) != 3 or min(shp) < 1:
            raise ValueError(f"Blur needs an image shape (H, W, C) with positive sizes, got {self.shape!r}")
        object.__setattr__(self, "shape", shp)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown blur schedule {self.schedule!r}; accepted: {list(SCHEDULES)}")
        if not self.sigma_blur_max >= 0:
            raise ValueError(f"sigma_blur_max must be >= 0, got {self.sigma_blur_max}")
        if not 0 < self.d_min < 1:
            raise ValueError(f"d_min must lie in (0, 1), got {self.d_min}")
        check_positive("T", self.T)
        check_positive("t_min", self.t_min)
        if not self.t_min < self.T <= 1.0:
            raise ValueError(f"need t_min < T <= 1, got t_min={self.t_min}, T={self.T}")

    @property
    def image_shape(self) -> tuple:
        """The image shape ``(H, W, C)``."""
        return self.shape

    # ---- schedules ---------------------------------------------------------------------------
    def frequencies(self) -> np.ndarray:
        """``λ_ij = (πi/H)² + (πj/W)²``, shape ``(H, W, 1)``."""
        h, w, _ = self.shape
        i, j = np.arange(h)[:, None], np.arange(w)[None, :]
        return ((np.pi * i / h) ** 2 + (np.pi * j / w) ** 2)[..., None]

    def _angle(self, t):
        """The schedule as an angle φ(t) with ``a = cos φ``, ``σ = sin φ``: BDM's ``logSNR = −2 ln tan φ``,
        ``φ = c₁t + c₀`` between logSNR +10 and −10; gDDIM's ``φ = ((t + 0.004)/1.008)·π/2``."""
        t = jnp.asarray(t)
        if self.schedule == "bdm":
            c0 = math.atan(math.exp(-5.0))
            c1 = math.atan(math.exp(5.0)) - c0
            return c1 * t + c0
        return (t + 0.004) / 1.008 * (math.pi / 2)

    def log_a(self, t):
        """``log a(t) = log cos φ(t)``: the scale shared by every frequency."""
        return jnp.log(jnp.cos(self._angle(t)))

    def sigma(self, t):
        """``σ(t) = sin φ(t)``, shared by every frequency (``a² + σ² = 1``)."""
        return jnp.sin(self._angle(t))

    def log_alpha(self, t):
        """``ln α_k(t)``, shape ``t.shape + (H, W, 1)``."""
        t = jnp.asarray(t)
        tt = t[..., None, None, None]
        tau = 0.5 * (self.sigma_blur_max * jnp.sin(math.pi * tt / 2) ** 2) ** 2
        d = (1 - self.d_min) * jnp.exp(-jnp.asarray(self.frequencies(), t.dtype) * tau) + self.d_min
        return self.log_a(tt) + jnp.log(d)

    # ---- closed forms --------------------------------------------------------------------
    def _f(self, t):
        t = jnp.asarray(t)
        return jax.jvp(self.log_alpha, (t,), (jnp.ones_like(t),))[1]

    def drift_block(self, t):
        return scalar_block(self._f(t))

    def diffusion_block(self, t):
        t = jnp.asarray(t)
        v, dv = jax.jvp(lambda s: self.sigma(s) ** 2, (t,), (jnp.ones_like(t),))
        v, dv = v[..., None, None, None], dv[..., None, None, None]
        return scalar_block(jnp.sqrt(jnp.maximum(dv - 2.0 * self._f(t) * v, 0.0)))

    def transition_block(self, t, s):
        return scalar_block(jnp.exp(self.log_alpha(t) - self.log_alpha(s)))

    def cov_block(self, t):
        s2 = jnp.asarray(self.sigma(t)) ** 2
        return scalar_block(s2[..., None, None, None])

    def prior_cov_block(self):
        return jnp.ones((1, 1))
