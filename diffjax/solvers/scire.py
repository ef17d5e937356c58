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

:class:`SciRE` is the single-step method, with ``allocation="agile"`` (DPM-Solver's "fast" order allocation for
the NFE budget) or ``"fixed"`` (NFE/stages steps of one order); :class:`SciREMultistep` is the 2M/3M method of the
2024 code (1 NFE per step, with its r^{1/4} and φ-scaled ratios, warm-up and lower orders on the final steps).
Default grid: NSR-k (k = 3.1).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .base import Context, Solver, scalar_tables, xp_of
from .multistep import _LinearMultistep, _row, _step_orders
from .schedules import make_grid, on_grid

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


def _check_phi(phi, m) -> None:
    if isinstance(phi, str):
        if phi not in PHIS:
            raise ValueError(f"phi must be one of {PHIS} or a number in (0, 1], got {phi!r}")
    elif not (isinstance(phi, (int, float)) and 0 < phi <= 1):
        raise ValueError(f"phi must be one of {PHIS} or a number in (0, 1], got {phi!r}")
    if not (isinstance(m, int) and m >= 1):
        raise ValueError(f"m must be an integer >= 1, got {m}")


def _check_version(version) -> None:
    if version not in ("v1", "v2"):
        raise ValueError(f"SciRE version must be 'v1' or 'v2', got {version!r}")


def _phi_is_one(phi) -> bool:
    return phi == "one" or phi == 1


def _phi_suffix(phi, m: int) -> str:
    """The name suffix of a φ setting (none for the published constant φ₁(3))."""
    if _phi_is_one(phi):
        return "_phi1"
    if isinstance(phi, str):
        return {"const": "", "schedule_2024": "_phi2024"}[phi] + (f"_m{m}" if phi == "const" and m != 3 else "")
    return f"_phi{phi:g}"


def phis(phi, m: int, num_steps: int, multistep: bool) -> np.ndarray:
    """The φ of each step: constant φ₁(m), 1, a given number, or the 2024 code's schedule (partial sums that grow
    towards both ends of the grid; its multistep shift is our reading of that code)."""
    if phi == "one":
        return np.ones(num_steps)
    if phi == "const":
        return np.full(num_steps, phi_partial_sum(m))
    if not isinstance(phi, str):
        return np.full(num_steps, float(phi))
    out = []
    for i in range(num_steps):
        half = num_steps / 2
        if i == half:
            out.append(1 - math.exp(-1))
        elif i < half:
            out.append(phi_partial_sum(2 * i + (2 if multistep else 3)))
        else:
            out.append(phi_partial_sum(2 * (num_steps - i) + (3 if multistep else 2)))
    return np.asarray(out)


def clock_and_scale(version: str, sde, ts):
    """SciRE's clock c and scale s with ``x = s·z`` at the times ``ts``: (ρ, α) for v1, (1/ρ, σ) for v2."""
    tab = scalar_tables(sde, ts)
    if version == "v1":
        return tab["sigma"] / tab["alpha"], tab["alpha"]
    return tab["alpha"] / tab["sigma"], tab["sigma"]


@dataclasses.dataclass(frozen=True)
class SciRE(Solver):
    """Single-step SciRE-Solver (see the module docstring): ``stages`` = network evaluations per step (1–3, the
    Taylor order of the step, which a fixed φ ≠ 1 lowers to a first-order method), ``allocation`` "agile"
    (DPM-Solver's order allocation over the NFE budget) or "fixed" (NFE/stages steps). Scalar diffusions."""

    scalar_only: ClassVar[bool] = True
    default_grid: ClassVar[str] = "nsr"
    traceable: ClassVar[bool] = True
    version: str = "v1"
    stages: int = 2
    allocation: str = "agile"
    phi: object = "const"
    m: int = 3
    intermediate: str = "code"

    def __post_init__(self):
        _check_version(self.version)
        if self.stages not in (1, 2, 3):
            raise ValueError(f"SciRE stages must be 1, 2 or 3, got {self.stages}")
        if self.allocation not in ("agile", "fixed"):
            raise ValueError(f"SciRE allocation must be 'agile' or 'fixed', got {self.allocation!r}")
        _check_phi(self.phi, self.m)
        if self.intermediate not in ("code", "taylor"):
            raise ValueError(f"intermediate must be 'code' or 'taylor', got {self.intermediate!r}")

    @property
    def name(self) -> str:
        """The registry name (``scire``, ``scire_3``, ``scire_v2``, ``scire_phi1``); other settings add their own
        suffix (``_fixed``, ``_phi2024``, ``_phi0.5``, ``_taylor``, ``_code``, ``_m4``)."""
        name = "scire" if self.stages == 2 else f"scire_{self.stages}"
        name += "_fixed" if self.allocation == "fixed" else ""
        name += "_v2" if self.version == "v2" else ""
        name += _phi_suffix(self.phi, self.m)
        if _phi_is_one(self.phi):
            name += "_code" if self.intermediate == "code" else ""
        else:
            name += "_taylor" if self.intermediate == "taylor" else ""
        return name

    @property
    def convergence_order(self):
        # a fixed φ ≠ 1 leaves a local error (1/φ − 1)h²ε̂'/2: first order; φ = 1 restores the order, except the
        # published third-stage coefficient ("code" intermediate), which stops at 2
        if not _phi_is_one(self.phi):
            return 1
        if self.stages == 3 and self.intermediate != "taylor":
            return 2
        return self.stages

    # ---- budget --------------------------------------------------------------------------------
    def _orders(self, nfe: int | None, num_steps: int) -> list[int]:
        if self.allocation == "agile" and nfe is not None:
            return agile_orders(nfe, self.stages)
        return [self.stages] * num_steps

    def num_steps(self, nfe):
        if nfe < 1:
            raise ValueError(f"SciRE needs nfe >= 1, got {nfe}")
        if self.allocation == "agile":
            return len(agile_orders(nfe, self.stages))
        if nfe % self.stages:
            raise ValueError(
                f"SciRE with {self.stages} stages per step needs nfe divisible by {self.stages}, got {nfe}"
            )
        return nfe // self.stages

    def nfe(self, num_steps):
        return self.stages * num_steps

    def build_grid(self, sde, nfe, kind, t_start=None):
        if self.allocation != "agile":
            return super().build_grid(sde, nfe, kind, t_start)
        # outer points at the cumulative orders (DPM-Solver, non-logSNR grids)
        full = make_grid(sde, nfe, kind, t_start=t_start)
        return full[np.cumsum([0] + agile_orders(nfe, self.stages))]

    def _t_of_clock(self, sde, c):
        rho = c if self.version == "v1" else 1.0 / c
        return on_grid(sde.t_of_rho, rho)

    # ---- the step ------------------------------------------------------------------------------
    def coefficients(self, sde, ts, nfe):
        m = ts.shape[-1] - 1
        orders = self._orders(nfe, m)
        clock, scale = clock_and_scale(self.version, sde, ts)
        h = xp_of(ts).diff(clock)
        r1 = np.where(np.asarray(orders) == 3, 1 / 3, 0.5)
        r2 = np.full(m, 2 / 3)
        t1 = self._t_of_clock(sde, clock[:-1] + r1 * h)
        t2 = self._t_of_clock(sde, clock[:-1] + r2 * h)
        kappa = r2**2 if self.intermediate == "taylor" else r2
        return {
            "order": np.asarray(orders, np.float64),
            "h": h,
            "phi": phis(self.phi, self.m, m, False),
            "r1": r1,
            "r2": r2,
            "kappa": kappa,
            "t1": t1,
            "t2": t2,
            "scale": scale[:-1],
            "scale1": clock_and_scale(self.version, sde, t1)[1],
            "scale2": clock_and_scale(self.version, sde, t2)[1],
            "scale_next": scale[1:],
        }

    def _f(self, ctx, x, t):
        return ctx.model.eps(x, t) if self.version == "v1" else ctx.model.x0(x, t)

    def step(self, ctx: Context, x, c):
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


@dataclasses.dataclass(frozen=True)
class SciREMultistep(_LinearMultistep):
    """Multistep SciRE-Solver (the 2024 code's 2M/3M): 1 NFE per step, a history of ``history`` predictions (ε̂
    for v1, x̂0 for v2) combined with the code's r^{1/4} (2M) and φ-scaled (3M) step ratios, warm-up and lower
    orders on the final steps. Learnable weight table ``pred``, like the other multistep solvers."""

    version: str = "v1"
    history: int = 2
    phi: object = "const"
    m: int = 3

    def __post_init__(self):
        _check_version(self.version)
        if self.history not in (1, 2, 3):
            raise ValueError(f"SciRE multistep history must be 1, 2 or 3, got {self.history}")
        _check_phi(self.phi, self.m)

    @property
    def name(self) -> str:
        """``scire_<history>m`` with the version and φ suffixes (``scire_2m``, ``scire_3m_v2``, …)."""
        return f"scire_{self.history}m" + ("_v2" if self.version == "v2" else "") + _phi_suffix(self.phi, self.m)

    default_grid: ClassVar[str] = "nsr"

    @property
    def prediction(self) -> str:
        return "eps" if self.version == "v1" else "x0"

    @property
    def convergence_order(self):
        # φ ≠ 1 biases the difference quotient (first order); with φ = 1 the r^{1/4} ratio stops it at 2
        return min(self.history, 2) if _phi_is_one(self.phi) else 1

    def coefficients(self, sde, ts, nfe):
        xp = xp_of(ts)
        m = ts.shape[-1] - 1
        clock, scale = clock_and_scale(self.version, sde, ts)
        rho = on_grid(sde.rho, ts)
        phi_of_step = phis(self.phi, self.m, m, True)
        rows = []
        for i, p in enumerate(_step_orders(self.history, m, True)):
            h, phi = clock[i + 1] - clock[i], phi_of_step[i]
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
            rows.append(_row(xp, [scale[i + 1] * v for v in c[: self.history + 1]], self.history + 1, h))
        return {"a_pred": scale[1:] / scale[:-1], "pred": xp.stack(rows)}
