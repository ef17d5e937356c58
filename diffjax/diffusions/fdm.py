"""Fast Diffusion Model (Wu et al. 2023): a base diffusion with the momentum mean factor s_F."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .base import ScalarDiffusion, check_positive, diffusion_dataclass
from .edm import EDM
from .ve import VE
from .vp import VP

_VP = VP()  # its integrated β, B(τ) = 0.1 τ + ½ 19.9 τ², is the momentum clock of every FDM


def official_base(name: str) -> ScalarDiffusion:
    """The base process of the official FDM code for ``"edm"``, ``"vp"`` or ``"ve"`` (its σ ranges: EDM
    0.002…80, VP σ_VP(1e-5)…σ_VP(1) with score_sde's β, VE 0.02…100: a VE whose training and sampling start at
    t = 1e-12, σ = 0.02 to 1e-11, as the official VE noise levels are log-uniform on [0.02, 100])."""
    bases = {"edm": EDM, "vp": VP, "ve": lambda: VE(sigma_min=0.02, sigma_max=100.0, t_min=1e-12, t_eps=1e-12)}
    if name not in bases:
        raise ValueError(f"unknown FDM base {name!r}; accepted: a scalar diffusion or one of {sorted(bases)}")
    return bases[name]()


@diffusion_dataclass
class FDM(ScalarDiffusion):
    """FDM over a base scalar diffusion: ``x_t | x_0 ~ N(s_F x_0, s_F² ρ² I)`` where ρ(t) = σ_b(t)/α_b(t) is the
    base's noise-to-signal ratio (its EDM-style noise level) and

        s_F(τ) = e^{−γB(τ)} (1 + γB(τ)),  B(τ) = 0.1 τ + ½ 19.9 τ²,  τ = (ρ − ρ_min)/(ρ_max − ρ_min)

    over the base's training range [ρ(t_eps), ρ(T)] (the x-mean of a critically damped oscillator run on the clock
    γB: "momentum"). Time, grids and ranges are the base's; the state is x only; the linear SDE has
    ``f = d ln s_F/dt`` and ``g = s_F √(2ρρ̇)``. ``base``: a diffusion (``FDM(dj.EDM(sigma_data=0.3))``) or the
    name of the official one (``"edm"``, ``"vp"``, ``"ve"``: :func:`official_base`). ``gamma``: None is the
    official value, 1 for a VE base and 2 otherwise.

    Training uses the base's recipe in unscaled coordinates ``x̃ = x/s_F`` — its preconditioning, noise levels and
    loss weight — with the network input ``c_in x̃ = s_F x̃`` and the warm-up clamp of the weight
    (:class:`.recipes.FDMRecipe`). With an exact score FDM and its base give the same samples: in ``x/s_F`` the
    PF-ODE is the base's. The gain reported for FDM is in training, not in sampling.

    Over VP, the network input ``s_F x̃`` has a standard deviation ≈ ``s_F σ`` (≈ 25 near σ = 40, 6e-6 at σ_max)
    while VP's ε-form needs the noise back to a precision ≈ σ_data/σ: in small runs VP-FDM trains far worse than
    VP, with the official code as well (docs/RESULTS.md, "Training and FDM"); EDM-FDM does not have this problem.
    """

    base: Any = "edm"
    gamma: float | None = None

    def __post_init__(self):
        if isinstance(self.base, str):
            object.__setattr__(self, "base", official_base(self.base))
        if not isinstance(self.base, ScalarDiffusion) or isinstance(self.base, FDM):
            raise ValueError(f"FDM base must be a scalar diffusion (EDM, VP, VE, …) or a name, got {self.base!r}")
        if self.gamma is None:
            object.__setattr__(self, "gamma", 1.0 if isinstance(self.base, VE) else 2.0)
        check_positive("gamma", self.gamma)

    @property
    def loss_warmup_fraction(self) -> float:
        """Where the loss-weight clamp ends, as a fraction of the learning-rate ramp's images: the official
        CIFAR-10 recipe clamps for W = 200 (EDM) / 400 (VP, VE) iterations of batch 512 within a 10 Mimg ramp."""
        return (200 if isinstance(self.base, EDM) else 400) * 512 / 10e6

    def training_recipe(self, prediction=None, fdm_warmup_images=0.0, **options):
        """The base's recipe on ``x̃ = y/s_F`` with ``c_in = s_F`` and the warm-up clamp over
        ``fdm_warmup_images`` training images (:class:`.recipes.FDMRecipe`); the other options go to the base's
        recipe (``sigma_data``, ``p_mean``, ``p_std`` for an EDM base)."""
        from .recipes import FDMRecipe, check_options

        check_options(options, "FDM.training_recipe")
        if prediction not in (None, "", "x0"):
            raise ValueError(f"FDM trains a x0 model (its preconditioning); prediction={prediction!r} is not offered")
        if fdm_warmup_images < 0:
            raise ValueError(
                "fdm_warmup_images < 0 means 'derive from the learning-rate ramp', which the Trainer "
                "does; give W in training images (0: no clamp)"
            )
        base_recipe = self.base.training_recipe(**options)
        try:  # FDM needs the base's model as a denoiser; say so now, not while a train step is traced
            base_recipe.x0_form(self.base, jnp.asarray([self.T]))
        except ValueError as e:
            raise ValueError(f"FDM over {self.base.name} cannot train: {e}") from None
        return FDMRecipe(base=base_recipe, warmup_images=float(fdm_warmup_images))

    # ---- the base's time, grids and noise level ----------------------------------------------------------
    @property
    def T(self) -> float:
        """The base's final time."""
        return self.base.T

    @property
    def t_min(self) -> float:
        """The base's sampling end time."""
        return self.base.t_min

    @property
    def t_eps(self) -> float:
        """The base's smallest training time."""
        return self.base.t_eps

    @property
    def preferred_grid(self):
        """Karras (EDM ρ = 7 on the noise level) for every base."""
        return "karras"

    def sigma_range(self) -> tuple[float, float]:
        """``(ρ_min, ρ_max) = (ρ_b(t_eps), ρ_b(T))``: the base's training range of noise levels, the span of τ."""
        with jax.ensure_compile_time_eval(), jax.enable_x64(True):
            return float(self.base.rho(jnp.float64(self.t_eps))), float(self.base.rho(jnp.float64(self.T)))

    def clock(self, t):
        """τ(ρ(t)) = (ρ − ρ_min)/(ρ_max − ρ_min) (not clamped, as in the official code)."""
        lo, hi = self.sigma_range()
        return (self.base.rho(t) - lo) / (hi - lo)

    def mean_factor(self, t):
        """``s_F = e^{−γB(τ)}(1 + γB(τ))``."""
        return jnp.exp(self.log_alpha(t))

    # ---- ScalarDiffusion interface --------------------------------------------------------
    def log_alpha(self, t):
        gb = self.gamma * _VP.integrated_beta(self.clock(t))
        return -gb + jnp.log1p(gb)

    def sigma(self, t):
        return self.mean_factor(t) * self.base.rho(t)

    def rho(self, t):
        return self.base.rho(t)

    def t_of_rho(self, rho):
        return self.base.t_of_rho(rho)

    @property
    def prior_std(self) -> float:
        with jax.ensure_compile_time_eval():  # a constant, also while a sampler is being traced
            return float(self.sigma(self.T))
