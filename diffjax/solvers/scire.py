"""SciRE-Solver (Li, Chen & Zeng, arXiv 2308.07896): Taylor steps of the score-integrand form
with derivatives from the "recursive difference" (a finite difference divided by φ).

Both versions integrate ``z_t = z_s + ∫ f dc`` in their own variables:

* ``version="v1"`` (noise form): ``z = x/α``, clock ``c = ρ = σ/α``, integrand ``f = ε̂``;
* ``version="v2"`` (data form): ``z = x/σ``, clock ``c = τ = α/σ``, integrand ``f = x̂0``.

Single-step orders (h = c_t − c_s, interior clocks at fractions r of h, each step spending ``q`` NFE):

    q = 1:  z_t = z_s + h f_s                                                   (= DDIM)
    q = 2:  z_1 = z_s + r₁h f_s;  z_t = z_s + h f_s + h/(2r₁φ) (f_1 − f_s)       (r₁ = ½)
    q = 3:  z_1 = z_s + r₁h f_s;  z_2 = z_s + r₂h f_s + κ h/(2r₁φ) (f_1 − f_s);
            z_t = z_s + h f_s + h/(2r₂φ) (f_2 − f_s)                             (r₁ = ⅓, r₂ = ⅔)

with κ = r₂ in the published code (``intermediate="code"``; second order at best) or the Taylor-consistent
κ = r₂² (``"taylor"``). φ: ``"const"`` = φ₁(m) = Σ_{j≤m} (−1)^{j−1}/j! (m = 3: 2/3, as published),
``"schedule_2024"`` (the 2024 code's step-dependent partial sums), ``"one"`` (φ = 1, plain finite
differences), or a number. Measured in float64 (tests): φ = 1 gives order 2 (q = 2) and 3 (q = 3, Taylor
intermediate); any fixed φ ≠ 1 gives order 1 — the recursive difference biases the derivative by 1/φ.

``method``: ``"singlestep_agile"`` (DPM-Solver's "fast" order allocation for the NFE budget),
``"singlestep_fixed"`` (K = NFE/order steps of one order) or ``"multistep"`` (2M/3M of the 2024 code, 1 NFE per
step, with its r^{1/4} and φ-scaled ratios, warm-up and lower orders on the final steps).
Default grid: NSR-k (k = 3.1).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .base import Context, Solver, evaluate, scalar_tables, xp_of
from .multistep import _LinearMultistep, _row, _step_orders
from .schedules import make_grid

PHIS = ("const", "schedule_2024", "one")


def phi_partial_sum(m: int) -> float:
    """φ₁(m) = Σ_{j=1}^{m} (−1)^{j−1}/j!  (φ₁(3) = 2/3, φ₁(∞) = 1 − 1/e)."""
    return sum((-1) ** (j - 1) / math.factorial(j) for j in range(1, m + 1))


def agile_orders(nfe: int, order: int) -> list[int]:
    """DPM-Solver's "fast" allocation of single-step orders spending exactly ``nfe`` evaluations."""
    if order == 1:
        return [1] * nfe
    if order == 2:
        return [2] * (nfe // 2) + ([1] if nfe % 2 else [])
    k = nfe // 3 + 1
    if nfe % 3 == 0:
        return [3] * (k - 2) + [2, 1] if nfe >= 3 else [1] * nfe
    if nfe % 3 == 1:
        return [3] * (k - 1) + [1]
    return [3] * (k - 1) + [2]


@dataclasses.dataclass(frozen=True)
class SciRE(Solver):
    """SciRE-Solver; see the module docstring. VP/VE/EDM/FDM (scalar diffusions)."""

    @property
    def name(self) -> str:  # type: ignore[override]
        """The registry name (``scire``, ``scire_3``, ``scire_2m``, ``scire_v2``, ``scire_phi1``); other settings
        add their own suffix (``_fixed``, ``_phi2024``, ``_phi0.5``, ``_taylor``, ``_m4``)."""
        if self.method == "multistep":
            name = f"scire_{self.order}m"
        else:
            name = "scire" if self.order == 2 else f"scire_{self.order}"
            name += "_fixed" if self.method == "singlestep_fixed" else ""
        name += "_v2" if self.version == "v2" else ""
        phi_one = self.phi == "one" or self.phi == 1
        if phi_one:
            name += "_phi1" + ("_code" if self.intermediate == "code" else "")
        else:
            name += {"const": "", "schedule_2024": "_phi2024"}.get(
                self.phi, f"_phi{self.phi:g}" if not isinstance(self.phi, str) else ""
            )
            name += "_taylor" if self.intermediate == "taylor" else ""
            name += f"_m{self.m}" if self.phi == "const" and self.m != 3 else ""
        return name

    scalar_only: ClassVar[bool] = True
    default_grid: ClassVar[str] = "nsr"
    traceable: ClassVar[bool] = True
    version: str = "v1"
    order: int = 2
    method: str = "singlestep_agile"
    phi: object = "const"
    m: int = 3
    intermediate: str = "code"

    def __post_init__(self):
        if self.version not in ("v1", "v2"):
            raise ValueError(f"SciRE version must be 'v1' or 'v2', got {self.version!r}")
        if self.order not in (1, 2, 3):
            raise ValueError(f"SciRE order must be 1, 2 or 3, got {self.order}")
        if self.method not in ("singlestep_agile", "singlestep_fixed", "multistep"):
            raise ValueError(f"unknown SciRE method {self.method!r}")
        if isinstance(self.phi, str):
            if self.phi not in PHIS:
                raise ValueError(f"phi must be one of {PHIS} or a number in (0, 1], got {self.phi!r}")
        elif not (isinstance(self.phi, (int, float)) and 0 < self.phi <= 1):
            raise ValueError(f"phi must be one of {PHIS} or a number in (0, 1], got {self.phi!r}")
        if not (isinstance(self.m, int) and self.m >= 1):
            raise ValueError(f"m must be an integer >= 1, got {self.m}")
        if self.intermediate not in ("code", "taylor"):
            raise ValueError(f"intermediate must be 'code' or 'taylor', got {self.intermediate!r}")
        if self.method == "multistep" and self.order == 1:
            object.__setattr__(self, "method", "singlestep_fixed")

    @property
    def learnable(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("pred",) if self.method == "multistep" else ()

    @property
    def convergence_order(self):
        # a fixed φ ≠ 1 leaves a local error (1/φ − 1)h²ε̂'/2: first order; φ = 1 restores the order, except the
        # published third-stage coefficient ("code" intermediate) and the multistep variant, which stop at 2
        if self.phi != "one" and self.phi != 1:
            return 1
        if self.method == "multistep" or (self.order == 3 and self.intermediate != "taylor"):
            return min(self.order, 2)
        return self.order

    # ---- budget --------------------------------------------------------------------------------
    def _orders(self, nfe: int | None, num_steps: int) -> list[int]:
        if self.method == "singlestep_agile" and nfe is not None:
            return agile_orders(nfe, self.order)
        if self.method == "multistep":
            return _step_orders(self.order, num_steps, True)
        return [self.order] * num_steps

    def num_steps(self, nfe):
        if nfe < 1:
            raise ValueError(f"SciRE needs nfe >= 1, got {nfe}")
        if self.method == "singlestep_agile":
            return len(agile_orders(nfe, self.order))
        if self.method == "singlestep_fixed" and nfe % self.order:
            raise ValueError(f"singlestep_fixed of order {self.order} needs nfe divisible by {self.order}, got {nfe}")
        return nfe // (1 if self.method == "multistep" else self.order)

    def nfe(self, num_steps):
        return num_steps if self.method == "multistep" else self.order * num_steps

    def build_grid(self, sde, nfe, kind, t_start=None):
        if self.method != "singlestep_agile":
            return super().build_grid(sde, nfe, kind, t_start)
        full = make_grid(
            sde, nfe, kind, t_start=t_start
        )  # outer points at the cumulative orders (DPM-Solver, non-logSNR grids)
        return full[np.cumsum([0] + agile_orders(nfe, self.order))]

    def _phis(self, num_steps: int, multistep: bool) -> np.ndarray:
        if self.phi == "one":
            return np.ones(num_steps)
        if self.phi == "const":
            return np.full(num_steps, phi_partial_sum(self.m))
        if not isinstance(self.phi, str):
            return np.full(num_steps, float(self.phi))
        out = []  # schedule_2024 [code; the multistep shift is an interpretation]
        for i in range(num_steps):
            half = num_steps / 2
            if i == half:
                out.append(1 - math.exp(-1))
            elif i < half:
                out.append(phi_partial_sum(2 * i + (2 if multistep else 3)))
            else:
                out.append(phi_partial_sum(2 * (num_steps - i) + (3 if multistep else 2)))
        return np.asarray(out)

    # ---- variables -----------------------------------------------------------------------------
    def _clock_scale(self, sde, ts):
        tab = scalar_tables(sde, ts)
        if self.version == "v1":
            return tab["sigma"] / tab["alpha"], tab["alpha"]
        return tab["alpha"] / tab["sigma"], tab["sigma"]

    def _t_of_clock(self, sde, c):
        rho = c if self.version == "v1" else 1.0 / c
        return evaluate(sde.t_of_rho, rho)

    # ---- single step ---------------------------------------------------------------------------
    def coefficients(self, sde, ts, nfe):
        m = ts.shape[-1] - 1
        orders = self._orders(nfe, m)
        if self.method == "multistep":
            return self._multistep_coefficients(sde, ts, orders)
        clock, scale = self._clock_scale(sde, ts)
        h = xp_of(ts).diff(clock)
        r1 = np.where(np.asarray(orders) == 3, 1 / 3, 0.5)
        r2 = np.full(m, 2 / 3)
        t1 = self._t_of_clock(sde, clock[:-1] + r1 * h)
        t2 = self._t_of_clock(sde, clock[:-1] + r2 * h)
        kappa = r2**2 if self.intermediate == "taylor" else r2
        return {
            "order": np.asarray(orders, np.float64),
            "h": h,
            "phi": self._phis(m, False),
            "r1": r1,
            "r2": r2,
            "kappa": kappa,
            "t1": t1,
            "t2": t2,
            "scale": scale[:-1],
            "scale1": self._clock_scale(sde, t1)[1],
            "scale2": self._clock_scale(sde, t2)[1],
            "scale_next": scale[1:],
        }

    def _f(self, ctx, x, t):
        return ctx.model.eps(x, t) if self.version == "v1" else ctx.model.x0(x, t)

    def init(self, ctx, y, coefs):
        if self.method == "multistep":
            return _SciREMultistep(prediction=self._prediction()).init(ctx, y, coefs)
        return y

    def _prediction(self):
        return "eps" if self.version == "v1" else "x0"

    def step(self, ctx: Context, x, c):
        if self.method == "multistep":
            return _SciREMultistep(prediction=self._prediction()).step(ctx, x, c)
        z = x / c["scale"]
        f_s = self._f(ctx, x, c["t"])
        h, phi = c["h"], c["phi"]

        def first(_):
            return z + h * f_s

        def second(_):
            z1 = z + c["r1"] * h * f_s
            f1 = self._f(ctx, c["scale1"] * z1, c["t1"])
            return z + h * f_s + h / (2 * c["r1"] * phi) * (f1 - f_s)

        def third(_):
            z1 = z + c["r1"] * h * f_s
            f1 = self._f(ctx, c["scale1"] * z1, c["t1"])
            z2 = z + c["r2"] * h * f_s + c["kappa"] * h / (2 * c["r1"] * phi) * (f1 - f_s)
            f2 = self._f(ctx, c["scale2"] * z2, c["t2"])
            return z + h * f_s + h / (2 * c["r2"] * phi) * (f2 - f_s)

        idx = jnp.clip(c["order"].astype(jnp.int32) - 1, 0, 2)
        z_next = jax.lax.switch(idx, [first, second, third], None)
        return c["scale_next"] * z_next

    def current(self, ctx, state, c):
        return state[1] if self.method == "multistep" else state

    def output(self, ctx, state, coefs):
        return state[1] if self.method == "multistep" else state

    # ---- multistep (2024 code) --------------------------------------------------------------
    def _multistep_coefficients(self, sde, ts, orders):
        xp = xp_of(ts)
        m = ts.shape[-1] - 1
        clock, scale = self._clock_scale(sde, ts)
        rho = evaluate(sde.rho, ts)
        phis = self._phis(m, True)
        rows = []
        for i, p in enumerate(orders):
            h, phi = clock[i + 1] - clock[i], phis[i]
            c = [h, 0.0 * h, 0.0 * h]
            if p == 2:
                r = (xp.log(rho[i - 1] / rho[i]) / xp.log(rho[i] / rho[i + 1])) ** 0.25
                w = h / (2 * phi * r)
                c = [c[0] + w, c[1] - w, c[2]]
            elif p == 3:
                r0 = phi * (rho[i] - rho[i - 1]) / (rho[i + 1] - rho[i])
                r1 = phi / (1 + phi) * (rho[i - 1] - rho[i - 2]) / (rho[i] - rho[i - 1])
                w1, w2 = h / (2 * r0 * phi), h / (6 * r0 * phi * r1 * phi)
                c = [c[0] + w1 + w2, c[1] - w1 - 2 * w2, c[2] + w2]
            rows.append(_row(xp, [scale[i + 1] * v for v in c[: self.order + 1]], self.order + 1, h))
        return {"a_pred": scale[1:] / scale[:-1], "pred": xp.stack(rows)}


@dataclasses.dataclass(frozen=True)
class _SciREMultistep(_LinearMultistep):
    """The multistep scan body with SciRE's history (ε̂ for v1, x̂0 for v2)."""

    name: ClassVar[str] = "scire_multistep"
    traceable: ClassVar[bool] = False
    prediction: str = "eps"
