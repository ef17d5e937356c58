"""DDIM (Song, Meng & Ermon 2021) for continuous-time scalar diffusions (SAMPLERS.md §4.1)."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from .base import Context, Solver, scalar_tables


@dataclasses.dataclass(frozen=True)
class DDIM(Solver):
    """``x' = α' x̂0 + √(σ'² − c²) ε̂ + c z`` with ``c = η σ' √(1 − e^{−2h})``, ``h = λ' − λ``.

    η = 0 is the deterministic first-order exponential integrator (= DPM-Solver(++)-1); η = 1 is ancestral
    (DDPM posterior) sampling. 1 NFE per step.
    """

    name: ClassVar[str] = "ddim"
    scalar_only: ClassVar[bool] = True
    default_grid: ClassVar[str] = "logsnr"
    eta: float = 0.0

    def __post_init__(self):
        if not self.eta >= 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.eta > 0

    def coefficients(self, sde, ts, nfe):
        tab = scalar_tables(sde, ts)
        h = np.diff(tab["lam"])
        sn = tab["sigma"][1:]
        c = self.eta * sn * np.sqrt(-np.expm1(-2.0 * h))
        return {"alpha_next": tab["alpha"][1:], "c_eps": np.sqrt(np.maximum(sn**2 - c**2, 0.0)), "c_noise": c}

    def step(self, ctx: Context, x, c):
        x0, eps = ctx.model.x0_eps(x, c["t"])
        x = c["alpha_next"] * x0 + c["c_eps"] * eps
        if self.eta > 0:
            x = x + c["c_noise"] * ctx.normal(c["i"], x)
        return x
