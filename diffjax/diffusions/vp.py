"""Variance-preserving diffusion (score_sde VPSDE) and sub-VP."""

from __future__ import annotations

import jax.numpy as jnp

from .base import ScalarDiffusion, check_positive, diffusion_dataclass


@diffusion_dataclass
class VP(ScalarDiffusion):
    """VP SDE ``dx = −½β(t) x dt + √β(t) dW`` with ``β(t) = β_min + (β_max − β_min) t``.

    Kernel ``x_t = α x_0 + σ z`` with ``α = exp(−B/2)``, ``B(t) = β_min t + ½(β_max−β_min) t²`` and
    ``σ² = −expm1(−B)`` (stable for small t). ``sub_vp=True`` gives the sub-VP SDE (same mean, std ``1 − α²``,
    ``G² = β(1 − e^{−2B})``). Defaults are score_sde's CIFAR-10 values: sampling stops at ``t_min = 1e-3``,
    training draws ``t ~ U[t_eps, T]`` with ``t_eps = 1e-5``; prior ``N(0, I)``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0
    t_min: float = 1e-3
    t_eps: float = 1e-5
    sub_vp: bool = False

    def __post_init__(self):
        check_positive("beta_min", self.beta_min)
        check_positive("T", self.T)
        check_positive("t_min", self.t_min)
        check_positive("t_eps", self.t_eps)
        if not self.beta_max >= self.beta_min:
            raise ValueError(f"beta_max must be >= beta_min={self.beta_min}, got {self.beta_max}")
        check_positive("beta_max", self.beta_max)
        b_T = self.beta_min * self.T + 0.5 * (self.beta_max - self.beta_min) * self.T**2
        if b_T >= 700.0:  # e^{B} overflows float64: ρ(T) and log-SNR grids are no longer representable
            raise ValueError(
                f"∫_0^T β = {b_T:.4g} ≥ 700 (beta_max={self.beta_max}, T={self.T}): α(T) = e^(−B/2) underflows; "
                "lower beta_max or T"
            )
        if not self.t_min < self.T:
            raise ValueError(f"t_min must be < T={self.T}, got {self.t_min}")

    def integrated_beta(self, t):
        """``∫_0^t β = β_min t + ½(β_max − β_min)t²``."""
        t = jnp.asarray(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def beta(self, t):
        """``β(t) = β_min + (β_max − β_min)t``."""
        return self.beta_min + (self.beta_max - self.beta_min) * jnp.asarray(t)

    def log_alpha(self, t):
        return -0.5 * self.integrated_beta(t)

    def sigma(self, t):
        one_minus_a2 = -jnp.expm1(-self.integrated_beta(t))
        return one_minus_a2 if self.sub_vp else jnp.sqrt(one_minus_a2)

    def t_of_rho(self, rho):
        rho = jnp.asarray(rho)
        if self.sub_vp:  # ρ = (1 − α²)/α  ->  α = 2/(ρ + √(ρ²+4))
            b = 2.0 * jnp.log(0.5 * (rho + jnp.sqrt(rho**2 + 4.0)))
        else:  # ρ² = e^B − 1
            b = jnp.log1p(rho**2)
        d = self.beta_max - self.beta_min
        # rationalised root of β_min t + ½ d t² = B (no cancellation at small t)
        return 2.0 * b / (self.beta_min + jnp.sqrt(self.beta_min**2 + 2.0 * d * b))
