"""Probability-flow ODE integrators: Euler and Heun in the diffusion's own time (any diffusion), and the EDM
Heun sampler of Karras et al. (2022) in ``(x̃ = x/α, σ̃ = σ/α)`` with optional churn."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import numpy as np

from ..diffusions.base import ScalarDiffusion
from .base import Context, Solver, tree_axpy, xp_of
from .schedules import on_grid


def _heun_plan(nfe: int, name: str, final_euler: bool) -> tuple[int, int]:
    """(steps M, trailing Euler steps E) spending exactly ``nfe`` evaluations: 2(M − E) + E = nfe.

    Without ``final_euler`` only an odd budget ends on one Euler step. With it the last step is always Euler
    (EDM's practice: a Heun correction evaluated at a tiny σ after a large step only moves half-way to the
    denoised point) and an even budget ends on two Euler steps.
    """
    if nfe < 1:
        raise ValueError(f"{name} needs nfe >= 1, got {nfe}")
    if final_euler:
        e = 1 if nfe % 2 == 1 else min(2, nfe)
    else:
        e = nfe % 2
    return (nfe - e) // 2 + e, e


def _euler_flags(num_steps: int, trailing: int) -> np.ndarray:
    """1.0 on the trailing steps that take an Euler step instead of Heun."""
    flags = np.zeros(num_steps)
    if trailing:
        flags[-trailing:] = 1.0
    return flags


class _HeunBudget:
    """NFE accounting shared by the Heun-type solvers (needs a ``final_euler`` field)."""

    evals_per_step: ClassVar[int] = 2

    def num_steps(self, nfe):
        return _heun_plan(nfe, self.name, self.final_euler)[0]

    def nfe(self, num_steps):
        return 2 * num_steps - (1 if self.final_euler else 0)

    def trailing_euler(self, num_steps, nfe):
        if nfe is None:
            return 1 if self.final_euler else 0
        m, e = _heun_plan(nfe, self.name, self.final_euler)
        assert m == num_steps
        return e


def _ode_grid(solver: Solver, sde) -> str:
    """Scalar diffusions: log-SNR spacing (uniform in log σ for VE); others: quadratic in t."""
    if solver.grid:
        return solver.grid
    if isinstance(sde, ScalarDiffusion):
        return getattr(sde, "preferred_grid", None) or "logsnr"
    return Solver.grid_kind(solver, sde)


@dataclasses.dataclass(frozen=True)
class ODEEuler(Solver):
    """Explicit Euler on the PF-ODE ``dy/dt = F y − ½ G Gᵀ ∇log p_t`` (Song et al., "Score-Based Generative
    Modeling through Stochastic Differential Equations", ICLR 2021) in the diffusion's time. Order 1. On scalar
    diffusions the drift is evaluated as the flow velocity ``α̇ x̂0 + σ̇ ε̂`` (``Model.pf_drift``), which is
    rectified flow's Euler sampler for a velocity model."""

    name: ClassVar[str] = "ode_euler"
    default_grid: ClassVar[str] = "quadratic"
    convergence_order: ClassVar[int] = 1
    traceable: ClassVar[bool] = True

    def grid_kind(self, sde=None):
        return _ode_grid(self, sde)

    def coefficients(self, sde, ts, nfe):
        return {"dt": xp_of(ts).diff(ts)}

    def step(self, ctx: Context, y, c):
        f = ctx.model.pf_drift(y, c["t"])
        return tree_axpy(c["dt"], f, y)


@dataclasses.dataclass(frozen=True)
class ODEHeun(_HeunBudget, Solver):
    """Heun (explicit trapezoid) on the PF-ODE in the diffusion's time: 2 NFE per step, order 2.
    ``final_euler`` (default) ends on an Euler step (two for an even budget), see ``_heun_plan``."""

    name: ClassVar[str] = "ode_heun"
    default_grid: ClassVar[str] = "quadratic"
    convergence_order: ClassVar[int] = 2
    traceable: ClassVar[bool] = True
    final_euler: bool = True

    def grid_kind(self, sde=None):
        return _ode_grid(self, sde)

    def coefficients(self, sde, ts, nfe):
        m = ts.shape[-1] - 1
        return {"dt": xp_of(ts).diff(ts), "euler": _euler_flags(m, self.trailing_euler(m, nfe))}

    def step(self, ctx: Context, y, c):
        f = ctx.model.pf_drift
        d1 = f(y, c["t"])
        y_e = tree_axpy(c["dt"], d1, y)

        def heun(_):
            d2 = f(y_e, c["t_next"])
            return jax.tree.map(lambda a, u, v: a + 0.5 * c["dt"] * (u + v), y, d1, d2)

        return jax.lax.cond(c["euler"] > 0, lambda _: y_e, heun, None)


@dataclasses.dataclass(frozen=True)
class EDMHeun(_HeunBudget, Solver):
    """EDM's Heun sampler (Alg. 2) on ``dx̃/dσ̃ = (x̃ − D(x̃; σ̃))/σ̃`` with ``x̃ = x/α``, ``σ̃ = σ/α`` and
     ``D = x̂0``; for VE/EDM (α = 1) it is EDM's sampler verbatim, for VP it is EDM's recommended treatment
    . Churn (``s_churn > 0``): ``γ_i = min(s_churn/M, √2−1)`` for
     ``σ̃_i ∈ [s_tmin, s_tmax]``, ``σ̂ = σ̃_i(1+γ_i)``, ``x̂ = x̃ + √(σ̂² − σ̃_i²)·s_noise·z``, then the Heun step
     from σ̂. 2 NFE per step; ``final_euler`` (default) ends on an Euler step (two for an even budget), as EDM
     does with its last step into σ = 0. Deterministic order 2 (Karras et al., "Elucidating the Design Space of
     Diffusion-Based Generative Models", NeurIPS 2022). Learnable (``dj.solvers.learn``): the weight ``w`` of
     the corrector slope in ``x̃' = x̃ + h((1 − w) d1 + w d2)`` (Heun: w = ½).
    """

    @property
    def name(self) -> str:
        """``edm_heun``, or ``edm_heun_sde`` with churn."""
        return "edm_heun_sde" if self.s_churn else "edm_heun"

    scalar_only: ClassVar[bool] = True
    default_grid: ClassVar[str] = "karras"
    learnable: ClassVar[tuple[str, ...]] = ("w",)
    traceable: ClassVar[bool] = True
    final_euler: bool = True
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    s_noise: float = 1.0

    def __post_init__(self):
        if not (self.s_churn >= 0 and self.s_noise >= 0 and self.s_tmin >= 0 and self.s_tmax >= self.s_tmin):
            raise ValueError(
                "need s_churn >= 0, s_noise >= 0 and 0 <= s_tmin <= s_tmax; got "
                f"{self.s_churn}, {self.s_noise}, {self.s_tmin}, {self.s_tmax}"
            )

    @property
    def stochastic(self) -> bool:
        return self.s_churn > 0

    @property
    def convergence_order(self):
        return None if self.stochastic else 2

    def coefficients(self, sde, ts, nfe):
        xp = xp_of(ts)
        m = ts.shape[-1] - 1
        rho = on_grid(sde.rho, ts)
        r, rn = rho[:-1], rho[1:]
        if self.s_churn > 0:
            in_range = (r >= self.s_tmin) & (r <= self.s_tmax)
            gamma = xp.where(in_range, min(self.s_churn / m, math.sqrt(2.0) - 1.0), 0.0)
            r_hat = r * (1.0 + gamma)
            t_hat = xp.where(gamma > 0, on_grid(sde.t_of_rho, r_hat), ts[:-1])
            churn_std = xp.sqrt(xp.maximum(r_hat**2 - r**2, 0.0)) * self.s_noise
        else:
            r_hat, t_hat, churn_std = r, ts[:-1], 0.0 * r
        alpha = on_grid(sde.alpha, ts)
        return {
            "rho": r,
            "rho_next": rn,
            "rho_hat": r_hat,
            "t_hat": t_hat,
            "alpha": alpha[:-1],
            "alpha_hat": on_grid(sde.alpha, t_hat) if self.s_churn > 0 else alpha[:-1],
            "alpha_next": alpha[1:],
            "churn_std": churn_std,
            "w": 0.5 + 0.0 * r,
            "euler": _euler_flags(m, self.trailing_euler(m, nfe)),
        }

    def init(self, ctx, y, coefs):
        return y / coefs["alpha"][0]

    def current(self, ctx, xs, c):
        return xs * c["alpha_next"]

    def output(self, ctx, xs, coefs):
        return xs * coefs["alpha_next"][-1]

    def step(self, ctx: Context, xs, c):
        model = ctx.model
        if self.s_churn > 0:
            xs = xs + c["churn_std"] * ctx.normal(c["i"], xs)
        denoise = lambda x_, a_, t_: model.x0(a_ * x_, t_)
        d1 = (xs - denoise(xs, c["alpha_hat"], c["t_hat"])) / c["rho_hat"]
        h = c["rho_next"] - c["rho_hat"]
        x_e = xs + h * d1

        def heun(_):
            d2 = (x_e - denoise(x_e, c["alpha_next"], c["t_next"])) / c["rho_next"]
            return xs + h * ((1.0 - c["w"]) * d1 + c["w"] * d2)

        return jax.lax.cond(c["euler"] > 0, lambda _: x_e, heun, None)
