"""PDS — preconditioned diffusion sampling (Ma, Zhang, Zhu & Feng, ECCV 2022).

A fixed symmetric positive-definite preconditioner ``A = M Mᵀ`` multiplies the score in the Langevin corrector
(and, in the official code, in the predictor) and ``M`` the noise. With the 2-D DFT F over (H, W) per channel,
a frequency gain ``R`` and a pixel gain ``D`` built from data statistics:

    C v = Re F⁻¹(R ⊙ F v),   M z = C(D ⊙ z),   A g = C(D² ⊙ C g)
    R = α / (P/max P + α − 1),  P = log(1 + mean |F x|²);   D = α / (Q/max Q + α − 1),  Q = mean x²

(gains in [1, α/(α−1)], boosting low-energy components). The corrector ``x ← x + ε A s + √(2ε) M z`` leaves
p_t invariant in continuous time. The predictor:

* ``mode="official"``: the reverse-diffusion step with A applied to its whole drift — it does NOT preserve the
  marginals: for one Fourier mode with data variance c and gain a, the final variance is c·a/(2a − 1);
* ``mode="marginal_preserving"``: A applied to the Langevin half only, ``f − ½g²(I + A)s`` — variance c.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ..diffusions.base import ScalarDiffusion
from .base import Context
from .sde import PredictorCorrector


@dataclasses.dataclass(frozen=True, eq=False)
class Preconditioner:
    """Frequency gain ``freq`` and pixel gain ``space``, both ``(H, W, C)`` (unshifted FFT layout for ``freq``)."""

    freq: np.ndarray
    space: np.ndarray

    def __post_init__(self):
        f, s = np.asarray(self.freq, np.float64), np.asarray(self.space, np.float64)
        if f.ndim != 3 or f.shape != s.shape:
            raise ValueError(f"freq and space gains must both have shape (H, W, C); got {f.shape} and {s.shape}")
        if not (np.all(np.isfinite(f)) and np.all(np.isfinite(s)) and f.min() > 0 and s.min() > 0):
            raise ValueError("preconditioner gains must be finite and > 0")
        # enforce R(k) = R(−k) so that C is real and symmetric
        fm = np.roll(np.flip(f, axis=(0, 1)), shift=(1, 1), axis=(0, 1))
        object.__setattr__(self, "freq", 0.5 * (f + fm))
        object.__setattr__(self, "space", s)

    @property
    def shape(self) -> tuple:
        """The image shape ``(H, W, C)`` of the filter."""
        return tuple(self.freq.shape)

    @staticmethod
    def identity(shape) -> "Preconditioner":
        """The identity preconditioner (PDS = plain PC)."""
        return Preconditioner(np.ones(shape), np.ones(shape))

    def _c(self, v):
        r = jnp.asarray(self.freq, v.dtype)
        return jnp.real(jnp.fft.ifft2(r * jnp.fft.fft2(v, axes=(-3, -2)), axes=(-3, -2))).astype(v.dtype)

    def apply_m(self, z):
        """``M z = C(D ⊙ z)``."""
        self._check(z)
        return self._c(jnp.asarray(self.space, z.dtype) * z)

    def apply_a(self, g):
        """``A g = C(D² ⊙ C g)``."""
        self._check(g)
        return self._c(jnp.asarray(self.space, g.dtype) ** 2 * self._c(g))

    def _check(self, x):
        if tuple(x.shape[-3:]) != self.shape:
            raise ValueError(f"the preconditioner is for images of shape {self.shape}, got {tuple(x.shape[1:])}")


def preconditioner_from_images(
    images, alpha: float = 5.0, frequency: bool = True, space: bool = True
) -> Preconditioner:
    """PDS's filters from a batch of images ``(N, H, W, C)`` (about 200 suffice), α > 1 (default 5)."""
    x = np.asarray(images, np.float64)
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"images must have shape (N, H, W, C), got {x.shape}")
    if not alpha > 1:
        raise ValueError(f"alpha must be > 1, got {alpha}")
    shape = x.shape[1:]
    r = np.ones(shape)
    d = np.ones(shape)
    if frequency:
        p = np.log1p(np.mean(np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2, axis=0))
        r = alpha / (p / p.max() + alpha - 1)
    if space:
        q = np.mean(x**2, axis=0)
        d = alpha / (q / q.max() + alpha - 1)
    return Preconditioner(r, d)


@dataclasses.dataclass(frozen=True, eq=False)
class PDS(PredictorCorrector):
    """Preconditioned predictor–corrector for scalar diffusions on images ``(B, H, W, C)``.

    ``n_corrector=0`` gives the preconditioned reverse-diffusion (Euler–Maruyama-type) sampler alone. The
    corrector step uses ``step_size`` as :class:`PredictorCorrector` (norms of ``A s`` and ``M z`` for the snr
    rules). NFE = M (1 + n_corrector), as the base sampler; the cost is 3 FFT pairs per preconditioned update.
    The prior is drawn as ``σ_T · M z``.
    """

    name: ClassVar[str] = "pds"
    precond: Any = None
    mode: str = "official"
    predictor: str = "reverse_diffusion"

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.precond, Preconditioner):
            raise ValueError("PDS needs precond=Preconditioner(...) (see preconditioner_from_images)")
        if self.mode not in ("official", "marginal_preserving"):
            raise ValueError(f"mode must be 'official' or 'marginal_preserving', got {self.mode!r}")
        if self.predictor != "reverse_diffusion":
            raise ValueError("PDS preconditions the reverse-diffusion predictor only")

    def check(self, sde):
        if not isinstance(sde, ScalarDiffusion):
            raise ValueError(f"PDS needs a scalar diffusion (VP/VE/EDM), got {sde.name}")

    def coefficients(self, sde, ts, nfe):
        c = super().coefficients(sde, ts, nfe)  # reverse-diffusion blocks: a = Ψ⁻¹, b = Ψ⁻¹Q
        return {"a": c["a"][..., 0, 0], "b": c["b"][..., 0, 0], "noise": c["noise_chol"][..., 0, 0], "var": c["var"]}

    def init(self, ctx, y, coefs):
        return (y, y)

    def step(self, ctx: Context, state, c):
        x, _ = state
        pc, t = self.precond, c["t"]
        base = c["i"] * (self.n_corrector + 1)
        for j in range(self.n_corrector):
            g = pc.apply_a(ctx.model.score(x, t))
            xi = pc.apply_m(ctx.normal(base + j, x))
            if self.step_size == "sigma":
                eps = jnp.full((x.shape[0],), 2.0 * self.snr**2) * c["var"]
            else:
                eps = 2.0 * (self.snr * self._norm(xi) / self._norm(g)) ** 2
            eps = eps.reshape((-1,) + (1,) * (x.ndim - 1))
            x = x + eps * g + jnp.sqrt(2 * eps) * xi
        s = ctx.model.score(x, t)
        lin = (c["a"] - 1.0) * x  # Ψ⁻¹x − x, the linear part of the reverse step
        if self.mode == "official":
            mean = x + pc.apply_a(lin + c["b"] * s)
        else:
            mean = x + lin + 0.5 * c["b"] * (s + pc.apply_a(s))
        x = mean + c["noise"] * pc.apply_m(ctx.normal(base + self.n_corrector, x))
        return (x, mean)

    def prior(self, key, sde, shape, dtype):
        """``σ_T · M z`` (the preconditioned prior)."""
        z = jax.random.normal(key, shape, dtype)
        return sde.prior_std * self.precond.apply_m(z)
