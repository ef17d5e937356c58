"""The EDM diffusion of Karras et al. (2022) with ``s ≡ 1, σ(t) = t``."""

from __future__ import annotations

import jax.numpy as jnp

from .base import ScalarDiffusion, check_positive, diffusion_dataclass


@diffusion_dataclass
class EDM(ScalarDiffusion):
    """``dx = √(2t) dW`` on ``t = σ ∈ [σ_min, σ_max]``: kernel ``N(x_0, t² I)``, prior ``N(0, σ_max² I)``.

    ``sigma_data`` is the data standard deviation used by the EDM preconditioning (``c_skip, c_out, c_in``).
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5

    def __post_init__(self):
        check_positive("sigma_min", self.sigma_min)
        check_positive("sigma_data", self.sigma_data)
        check_positive("sigma_max", self.sigma_max)
        if not self.sigma_max > self.sigma_min:
            raise ValueError(f"sigma_max must be > sigma_min={self.sigma_min}, got {self.sigma_max}")

    preferred_grid = "karras"  # solvers default to EDM's ρ=7 grid on this process

    @property
    def T(self) -> float:
        """Time is σ: ``T = σ_max``."""
        return float(self.sigma_max)

    @property
    def t_min(self) -> float:
        """``σ_min``."""
        return float(self.sigma_min)

    @property
    def t_eps(self) -> float:
        """``σ_min``."""
        return float(self.sigma_min)

    @property
    def prior_std(self) -> float:
        return float(self.sigma_max)

    def training_recipe(self, prediction=None, sigma_data=None, p_mean=-1.2, p_std=1.2, **options):
        """Karras et al.'s preconditioning, log-normal σ and weight (:class:`.recipes.EDMRecipe`); ``sigma_data``
        None is this diffusion's own ``sigma_data``."""
        from .recipes import EDMRecipe, check_options

        check_options(options, "EDM.training_recipe")
        if prediction not in (None, "", "x0"):
            raise ValueError(f"EDM trains a x0 model (its preconditioning); prediction={prediction!r} is not offered")
        return EDMRecipe(
            sigma_data=self.sigma_data if sigma_data is None else float(sigma_data), p_mean=p_mean, p_std=p_std
        )

    def log_alpha(self, t):
        return jnp.zeros_like(jnp.asarray(t, dtype=jnp.zeros(()).dtype))

    def sigma(self, t):
        return jnp.asarray(t)

    def t_of_rho(self, rho):
        return jnp.asarray(rho)
