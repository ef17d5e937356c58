"""Variance-exploding diffusion (score_sde VESDE)."""

from __future__ import annotations

import math

import jax.numpy as jnp

from .base import ScalarDiffusion, check_positive, diffusion_dataclass


@diffusion_dataclass
class VE(ScalarDiffusion):
    """VE SDE ``dx = g(t) dW`` with ``σ(t) = σ_min (σ_max/σ_min)^t`` and ``g = σ √(2 ln(σ_max/σ_min))``.

    Convention: the data are modelled as carrying a known ``N(0, σ_min²)`` initial part, so the
    kernel ``x_t | x_0 ~ N(x_0, σ(t)² I)`` is exact (score_sde's formula). Prior ``N(0, σ_max² I)``.
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    T: float = 1.0
    t_min: float = 1e-5
    t_eps: float = 1e-5

    def __post_init__(self):
        check_positive("sigma_min", self.sigma_min)
        check_positive("T", self.T)
        check_positive("t_min", self.t_min)
        check_positive("t_eps", self.t_eps)
        check_positive("sigma_max", self.sigma_max)
        if not self.sigma_max > self.sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min={self.sigma_min}, got {self.sigma_max}")
        if not self.t_min < self.T:
            raise ValueError(f"t_min must be < T={self.T}, got {self.t_min}")

    @property
    def prior_std(self) -> float:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** self.T

    def training_recipe(self, prediction=None, **options):
        """EDM's VE preconditioning ``D = y + σ F(y, ln(σ/2))``, weight ``1/σ²`` (:class:`.recipes.VERecipe`)."""
        from .recipes import VERecipe, check_options

        check_options(options, "VE.training_recipe")
        if prediction not in (None, "", "x0"):
            raise ValueError(f"VE trains a x0 model (its preconditioning); prediction={prediction!r} is not offered")
        return VERecipe()

    def log_alpha(self, t):
        return jnp.zeros_like(jnp.asarray(t, dtype=jnp.zeros(()).dtype))

    def sigma(self, t):
        return self.sigma_min * jnp.exp(jnp.asarray(t) * math.log(self.sigma_max / self.sigma_min))

    def t_of_rho(self, rho):
        return jnp.log(jnp.asarray(rho) / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)
