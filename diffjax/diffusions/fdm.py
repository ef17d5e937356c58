"""Fast Diffusion Model (Wu et al. 2023): the base process with the momentum mean factor s_F."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .base import ScalarDiffusion, check_positive, diffusion_dataclass
from .vp import VP

# σ ranges of the official code (EDM-style noise levels of each base); VP's is σ_VP(1e-5) … σ_VP(1)
_BASES = {"vp": None, "ve": (0.02, 100.0), "edm": (0.002, 80.0)}
_VP = VP()  # the score_sde VP (β_min = 0.1, β_max = 20): its ρ = σ/α is VP-FDM's noise level


@diffusion_dataclass
class FDM(ScalarDiffusion):
    """FDM over a base process: ``x_t | x_0 ~ N(s_F x_0, s_F² σ² I)`` where σ(t) is the base model's EDM-style
    noise level (VP: ``√(e^{B(t)} − 1)``; VE: ``√t``; EDM: ``t``) and

        s_F(τ) = e^{−γB(τ)} (1 + γB(τ)),  B(τ) = 0.1 τ + ½ 19.9 τ²,  τ = (σ − σ_min)/(σ_max − σ_min)

    (the x-mean of a critically damped oscillator run on the clock γB: "momentum"). The state is x only; the
    linear SDE has ``f = d ln s_F/dt`` and ``g = s_F √(2σσ̇)``.

    Caveat: with an exact score FDM and its base produce the same samples — in unscaled
    coordinates ``x/s_F`` the PF-ODE is the base's. The gain reported for FDM is in training (its network input
    is ``c_in = s_F`` times the unscaled sample), not in sampling.
    """

    base: str = "edm"
    gamma: float | None = None  # None: the official value, 2 for VP/EDM (fdm_multiplier) and 1 for VE (hard-wired)
    t_min: float | None = None
    sigma_data: float = 0.5  # the EDM preconditioning's data scale (EDM base)

    def __post_init__(self):
        if self.base not in _BASES:
            raise ValueError(f"unknown FDM base {self.base!r}; accepted: {sorted(_BASES)}")
        if self.gamma is None:
            object.__setattr__(self, "gamma", 1.0 if self.base == "ve" else 2.0)
        check_positive("gamma", self.gamma)
        check_positive("sigma_data", self.sigma_data)
        if self.t_min is None:
            object.__setattr__(self, "t_min", {"vp": 1e-3, "ve": 0.02**2, "edm": 0.002}[self.base])
        if not 0 < self.t_min < self.T:
            raise ValueError(f"t_min must lie in (0, T={self.T}), got {self.t_min}")

    @property
    def loss_warmup_fraction(self) -> float:
        """Where the loss-weight clamp ends, as a fraction of the learning-rate ramp's images: the official
        CIFAR-10 recipe clamps for W = 200 (EDM) / 400 (VP, VE) iterations of batch 512 within a 10 Mimg ramp."""
        return (200 if self.base == "edm" else 400) * 512 / 10e6

    def training_recipe(
        self, prediction=None, sigma_data=None, p_mean=-1.2, p_std=1.2, fdm_warmup_images=0.0, **options
    ):
        """The base's recipe on ``x̃ = y/s_F`` with ``c_in = s_F`` and the warm-up clamp over
        ``fdm_warmup_images`` training images (:class:`.recipes.FDMRecipe`)."""
        from .recipes import FDMRecipe, check_options

        check_options(options, "FDM.training_recipe")
        if prediction not in (None, "", "x0"):
            raise ValueError(f"FDM trains a x0 model (its preconditioning); prediction={prediction!r} is not offered")
        if fdm_warmup_images < 0:
            raise ValueError(
                "fdm_warmup_images < 0 means 'derive from the learning-rate ramp', which the Trainer "
                "does; give W in training images (0: no clamp)"
            )
        return FDMRecipe(
            sigma_data=self.sigma_data if sigma_data is None else float(sigma_data),
            p_mean=p_mean,
            p_std=p_std,
            warmup_images=float(fdm_warmup_images),
        )

    # ---- the base's time and noise level --------------------------------------------------
    @property
    def T(self) -> float:
        """The base's final time (VP 1, VE σ_max² = 100², EDM σ_max = 80)."""
        return {"vp": 1.0, "ve": 100.0**2, "edm": 80.0}[self.base]

    @property
    def t_eps(self) -> float:
        """The base's smallest training time."""
        return {"vp": 1e-5, "ve": 0.02**2, "edm": 0.002}[self.base]

    @property
    def preferred_grid(self):
        """Karras (EDM ρ = 7 on σ) for every base: VE-FDM's time is σ², where uniform grids are unusable."""
        return "karras"

    def base_sigma(self, t):
        """The base model's EDM-style noise level σ(t) (also this process's noise-to-signal ratio)."""
        t = jnp.asarray(t)
        if self.base == "vp":
            return _VP.rho(t)
        if self.base == "ve":
            return jnp.sqrt(t)
        return t

    def sigma_range(self) -> tuple[float, float]:
        """``(σ_min, σ_max)`` of the base process."""
        if self.base == "vp":
            with jax.ensure_compile_time_eval(), jax.enable_x64(True):
                return float(_VP.rho(jnp.float64(1e-5))), float(_VP.rho(jnp.float64(1.0)))
        return _BASES[self.base]

    def clock(self, t):
        """τ(σ(t)) = (σ − σ_min)/(σ_max − σ_min) (not clamped, as in the official code)."""
        lo, hi = self.sigma_range()
        return (self.base_sigma(t) - lo) / (hi - lo)

    def _gamma_b(self, t):
        """γB(τ) with B(τ) = 0.1τ + ½·19.9τ² (VP's integrated β on the clock τ)."""
        return self.gamma * _VP.integrated_beta(self.clock(t))

    def mean_factor(self, t):
        """``s_F = e^{−γB(τ)}(1 + γB(τ))``."""
        return jnp.exp(self.log_alpha(t))

    # ---- ScalarDiffusion interface --------------------------------------------------------
    def log_alpha(self, t):
        gb = self._gamma_b(t)
        return -gb + jnp.log1p(gb)

    def sigma(self, t):
        return self.mean_factor(t) * self.base_sigma(t)

    def rho(self, t):
        return self.base_sigma(t)

    def t_of_rho(self, rho):
        rho = jnp.asarray(rho)
        if self.base == "vp":
            return _VP.t_of_rho(rho)
        if self.base == "ve":
            return rho**2
        return rho

    @property
    def prior_std(self) -> float:
        with jax.ensure_compile_time_eval():  # a constant, also while a sampler is being traced
            return float(self.sigma(self.T))
