"""DDIM (Song, Meng & Ermon 2021) for continuous-time scalar diffusions."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .base import Context, Solver, scalar_tables, xp_of


@dataclasses.dataclass(frozen=True)
class DDIM(Solver):
    """DDIM (Song, Meng & Ermon, "Denoising Diffusion Implicit Models", ICLR 2021):
    ``x' = α' x̂0 + √(σ'² − c²) ε̂ + c z`` with ``c = η σ' √(1 − e^{−2h})``, ``h = λ' − λ``.

    η = 0 is the deterministic first-order exponential integrator (= DPM-Solver(++)-1), convergence order 1;
    η = 1 is ancestral (DDPM posterior) sampling. 1 NFE per step. Learnable (``dj.solvers.learn``): the two
    weights ``alpha_next`` (on x̂0) and ``c_eps`` (on ε̂) of every step.
    """

    @property
    def name(self) -> str:
        """``ddim`` (η = 0), ``ddpm`` (η = 1), ``ddim_eta<η>`` otherwise."""
        return {0.0: "ddim", 1.0: "ddpm"}.get(float(self.eta), f"ddim_eta{self.eta:g}")

    scalar_only: ClassVar[bool] = True
    default_grid: ClassVar[str] = "logsnr"
    learnable: ClassVar[tuple[str, ...]] = ("alpha_next", "c_eps")
    traceable: ClassVar[bool] = True
    eta: float = 0.0

    def __post_init__(self):
        if not self.eta >= 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")

    @property
    def stochastic(self) -> bool:
        return self.eta > 0

    @property
    def convergence_order(self):
        return None if self.stochastic else 1

    def coefficients(self, sde, ts, nfe):
        xp = xp_of(ts)
        tab = scalar_tables(sde, ts)
        sn = tab["sigma"][1:]
        if self.eta > 0:
            h = xp.diff(tab["lam"])
            c = self.eta * sn * xp.sqrt(-xp.expm1(-2.0 * h))
            c_eps = xp.sqrt(xp.maximum(sn**2 - c**2, 0.0))
        else:  # no sqrt(σ'² − 0): its derivative at a σ' of 0 would be infinite
            c, c_eps = 0.0 * sn, sn
        return {"alpha_next": tab["alpha"][1:], "c_eps": c_eps, "c_noise": c}

    def step(self, ctx: Context, x, c):
        x0, eps = ctx.model.x0_eps(x, c["t"])
        x = c["alpha_next"] * x0 + c["c_eps"] * eps
        if self.eta > 0:
            x = x + c["c_noise"] * ctx.normal(c["i"], x)
        return x
