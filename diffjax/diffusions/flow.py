"""Flow matching with the linear (rectified-flow) interpolant of Liu et al. (2023) and Lipman et al. (2023)."""

from __future__ import annotations

import jax.numpy as jnp

from .base import ScalarDiffusion, check_positive, diffusion_dataclass


@diffusion_dataclass
class Flow(ScalarDiffusion):
    """The interpolant ``x_t = (1 − t) x_0 + t ε`` between data (t = 0) and ``N(0, I)`` (t = 1).

    As a linear diffusion: ``α = 1 − t``, ``σ = t``, so ``F = d log α/dt = −1/(1 − t)`` and
    ``G² = dσ²/dt − 2Fσ² = 2t/(1 − t)``. The noise-to-signal ratio is ``ρ = t/(1 − t)``, inverted by
    ``t = ρ/(1 + ρ)``. Its probability-flow ODE is ``dx/dt = u(x, t)`` with the *flow velocity*
    ``u = E[ε − x_0 | x_t = x]`` — what a flow-matching network predicts (``kind="velocity"``), trained by the
    loss ``E‖û(x_t, t) − (ε − x_0)‖²`` on ``t ~ U[t_eps, T]``.

    ``T`` stays just below 1 so that the log-SNR ``log((1 − t)/t)`` is finite for the solvers that step in it
    (DPM-Solver++, UniPC, DDIM on λ grids); the prior is ``N(0, I)``, off from the exact marginal at ``T``
    by ``(1 − T)`` times the data scale (the same kind of gap as VP's ``α(1) ≈ 7e-3``).
    """

    T: float = 1.0 - 1e-3
    t_min: float = 1e-3
    t_eps: float = 1e-3

    default_prediction = "velocity"  # what the network predicts when precondition() wraps it

    def __post_init__(self):
        for name in ("T", "t_min", "t_eps"):
            check_positive(name, getattr(self, name))
        if not self.T < 1.0:
            raise ValueError(f"T must be < 1 (log-SNR log((1 − T)/T) must be finite), got {self.T}")
        if not self.t_min < self.T:
            raise ValueError(f"t_min must be < T={self.T}, got {self.t_min}")
        if not self.t_eps < self.T:
            raise ValueError(f"t_eps must be < T={self.T}, got {self.t_eps}")

    def log_alpha(self, t):
        return jnp.log1p(-jnp.asarray(t))

    def sigma(self, t):
        return jnp.asarray(t)

    def rho(self, t):
        t = jnp.asarray(t)
        return t / (1.0 - t)

    def t_of_rho(self, rho):
        rho = jnp.asarray(rho)
        return rho / (1.0 + rho)
