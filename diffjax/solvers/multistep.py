"""Multistep exponential integrators in data prediction: DPM-Solver++ 2M/3M and UniPC.

Both are *linear* in the stored data predictions: step i evaluates ``m_i = x̂0(x_i, t_i)`` once and then

    x_{i+1} = a_i x_i + Σ_j P_ij m_{i−j}                  (predictor)
    x_i    ← a_{i−1} x_{i−1} + Σ_j C_ij m_{i−j}            (UniPC's corrector, using the fresh m_i)

The weights ``a, P, C`` depend only on the grid. For a concrete grid they are computed once in float64 (outside
the scan); for a traced grid (``dj.solvers.learn``) the same formulas run in jnp so gradients reach the grid
times. The scan carries the last ``order + 1`` predictions. 1 NFE per step. The predictor weights ``pred`` are
the table ``dj.solvers.learn`` may correct (S4S-style per-step corrections of a multistep solver's weights).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from .base import Context, Solver, scalar_tables, xp_of


def _step_orders(order: int, m: int, lower_order_final: bool) -> list[int]:
    """Warm-up from order 1, and lower orders on the last steps when asked."""
    out = []
    for i in range(m):
        p = min(order, i + 1)
        if lower_order_final:
            p = min(p, m - i)
        out.append(p)
    return out


def _row(xp, values, width, like):
    """One table row of ``width`` entries: ``values`` then zeros (of ``like``'s dtype)."""
    zero = 0.0 * like
    return xp.stack(list(values) + [zero] * (width - len(values)))


class _LinearMultistep(Solver):
    """Shared scan body for multistep solvers expressed by weight tables (see module docstring)."""

    scalar_only: ClassVar[bool] = True
    default_grid: ClassVar[str] = "logsnr"

    @property
    def prediction(self) -> str:
        """What the history stores: data ("x0") or noise ("eps") predictions."""
        return "x0"

    @property
    def corrector(self) -> bool:
        """Whether the ``corr`` weights are applied with the fresh evaluation (UniPC)."""
        return False

    learnable: ClassVar[tuple[str, ...]] = ("pred",)
    history_tables: ClassVar[tuple[str, ...]] = ("pred", "corr")  # the carried history is as wide as these
    traceable: ClassVar[bool] = True

    def init(self, ctx, y, coefs):
        hist = jnp.zeros((coefs["pred"].shape[1],) + y.shape, y.dtype)
        return (y, y, hist)  # (corrected x_{i-1}, predicted x_i, history m_i, m_{i-1}, ...)

    def step(self, ctx: Context, state, c):
        x_prev, x, hist = state
        m = ctx.model.x0(x, c["t"]) if self.prediction == "x0" else ctx.model.eps(x, c["t"])
        hist = jnp.concatenate([m[None], hist[:-1]], axis=0)
        w = lambda v: v.reshape(v.shape + (1,) * x.ndim)
        if self.corrector:
            x_corr = c["a_corr"] * x_prev + jnp.sum(w(c["corr"]) * hist, axis=0)
            x = jnp.where(c["use_corr"] > 0, x_corr, x)
        x_next = c["a_pred"] * x + jnp.sum(w(c["pred"]) * hist, axis=0)
        return (x, x_next, hist)

    def current(self, ctx, state, c):
        return state[1]

    def output(self, ctx, state, coefs):
        return state[1]


@dataclasses.dataclass(frozen=True)
class DPMSolverPP(_LinearMultistep):
    """DPM-Solver++(2M / 3M) of Lu et al. (2022b), data prediction in the half log-SNR λ:

    "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models" (2022). Convergence
    order = ``order`` (the ``"reference"`` 3M: 2, see below).

    2M: ``x' = (σ'/σ) x − α'(e^{−h}−1)[m0 + (m0 − m1)/(2 r0)]``, ``r0 = h_prev/h``;
    3M: ``x' = (σ'/σ) x − α'φ1 m0 + α'φ2 D1 − α'φ3 D2`` with φ1 = e^{−h}−1, φ2 = φ1/h + 1, φ3 = φ2/h − ½.
    The first steps warm up from order 1; ``lower_order_final`` lowers the last steps' order when M < 10
    (as the reference implementation does).

    ``variant`` (3M only): the reference code weights ``D2 = (D1_0 − D1_1)/(r0 + r1) ≈ h² m''/2`` by
    ``−α'φ3 ≈ α'h/6``, i.e. ``h³m''/12`` where the exact Taylor term is ``h³m''/6``; that makes it second order
    (measured slope 1.99 in float64). ``"taylor"`` (default) uses ``2·D2`` and is third order (measured 2.99);
    ``"reference"`` reproduces the published code.
    """

    @property
    def name(self) -> str:
        """The registry name: ``dpmpp_2m``, ``dpmpp_3m`` (``_ref``: the reference code's weights)."""
        return f"dpmpp_{self.order}m" + ("_ref" if self.variant == "reference" else "")

    order: int = 2
    lower_order_final: bool = True
    variant: str = "taylor"

    def __post_init__(self):
        if self.order not in (1, 2, 3):
            raise ValueError(f"DPM-Solver++ order must be 1, 2 or 3, got {self.order}")
        if self.variant not in ("taylor", "reference"):
            raise ValueError(f"DPM-Solver++ variant must be 'taylor' or 'reference', got {self.variant!r}")

    @property
    def convergence_order(self):
        # the reference variant's 3M weights its second difference by half the Taylor term: second order
        return 2 if (self.order == 3 and self.variant == "reference") else self.order

    def coefficients(self, sde, ts, nfe):
        xp = xp_of(ts)
        tab = scalar_tables(sde, ts)
        lam, al, sg = tab["lam"], tab["alpha"], tab["sigma"]
        m = ts.shape[-1] - 1
        orders = _step_orders(self.order, m, self.lower_order_final and m < 10)
        width = self.order + 1
        rows = []
        for i, p in enumerate(orders):
            h = lam[i + 1] - lam[i]
            an = al[i + 1]
            phi1 = xp.expm1(-h)
            if p == 1:
                c = [-an * phi1]
            elif p == 2:
                r0 = (lam[i] - lam[i - 1]) / h
                c = [-an * phi1 * (1 + 0.5 / r0), an * phi1 * 0.5 / r0]
            else:
                r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
                # first and second divided differences of (m_i, m_{i-1}, m_{i-2}) as weight vectors
                d10 = [1.0 / r0, -1.0 / r0, 0.0 * r0]
                d11 = [0.0 * r1, 1.0 / r1, -1.0 / r1]
                d1 = [a + r0 / (r0 + r1) * (a - b) for a, b in zip(d10, d11)]
                d2 = [(2.0 if self.variant == "taylor" else 1.0) * (a - b) / (r0 + r1) for a, b in zip(d10, d11)]
                phi2 = phi1 / h + 1.0
                phi3 = phi2 / h - 0.5
                c = [an * phi2 * d1[k] - an * phi3 * d2[k] for k in range(3)]
                c[0] = c[0] - an * phi1
            rows.append(_row(xp, c, width, h))
        return {"a_pred": sg[1:] / sg[:-1], "pred": xp.stack(rows)}


def _unipc_b(xp, hh, p: int, variant: str):
    """``b_j = hh·φ_{j+1}(hh)·j!/B(h)`` for j = 1..p and ``B(h)`` (bh1: hh, bh2: e^{hh} − 1)."""
    big_b = hh if variant == "bh1" else xp.expm1(hh)
    h_phi_k = xp.expm1(hh) / hh - 1.0
    fact = 1
    b = []
    for j in range(1, p + 1):
        b.append(h_phi_k * fact / big_b)
        fact *= j + 1
        h_phi_k = h_phi_k / hh - 1.0 / fact
    return xp.stack(b), big_b


def _solve_small(xp, mat, rhs):
    """``mat⁻¹ rhs`` for the tiny Vandermonde-like systems of UniPC (sizes 1–3)."""
    if mat.shape[0] == 1:
        return rhs / mat[0, 0]
    return xp.linalg.solve(mat, rhs)


@dataclasses.dataclass(frozen=True)
class UniPC(_LinearMultistep):
    """UniPC (Zhao et al., "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
    Models", NeurIPS 2023), data prediction, ``bh1``/``bh2``: predictor UniP-p plus corrector UniC reusing
    the fresh evaluation, so 1 NFE per step; ``predictor_order`` p, convergence order p + 1 (2 with
    ``lower_order_final``).
    With ``r_k = (λ_{i−k} − λ_i)/h``, ``D_k = (m_{i−k} − m_i)/r_k``:

        x̃  = (σ'/σ) x − α'(e^{−h} − 1) m_i
        x'  = x̃ − α' B(h) Σ_k ρ^P_k D_k                  (R_{p−1} ρ^P = b_{p−1}; ρ^P = ½ for p = 2)
        x'c = x̃ − α' B(h) [Σ_k ρ^C_k D_k + ρ^C_p (m' − m_i)]  (R_p ρ^C = b_p; ρ^C = ½ for p = 1)

    Warm-up from order 1, no corrector after the last step, and (``lower_order_final``, the reference
    behaviour) lower orders on the final steps — which ends on a first-order step without corrector and caps
    the asymptotic order at 2; ``lower_order_final=False`` keeps the full order to the end.
    """

    @property
    def name(self) -> str:
        """The registry name ``unipc_<predictor order>``."""
        return f"unipc_{self.predictor_order}"

    corrector: ClassVar[bool] = True
    predictor_order: int = 3
    variant: str = "bh2"
    lower_order_final: bool = True

    def __post_init__(self):
        if self.predictor_order not in (1, 2, 3):
            raise ValueError(f"UniPC predictor_order must be 1, 2 or 3, got {self.predictor_order}")
        if self.variant not in ("bh1", "bh2"):
            raise ValueError(f"UniPC variant must be 'bh1' or 'bh2', got {self.variant!r}")

    @property
    def convergence_order(self):
        # the corrector raises UniP-p to order p + 1; ending on a first-order step without corrector caps it at 2
        return min(self.predictor_order + 1, 2) if self.lower_order_final else self.predictor_order + 1

    def coefficients(self, sde, ts, nfe):
        xp = xp_of(ts)
        tab = scalar_tables(sde, ts)
        lam, al, sg = tab["lam"], tab["alpha"], tab["sigma"]
        m = ts.shape[-1] - 1
        width = self.predictor_order + 1
        orders = _step_orders(self.predictor_order, m, self.lower_order_final)
        a = sg[1:] / sg[:-1]
        pred, corr_of_step = [], []
        for i, p in enumerate(orders):
            h = lam[i + 1] - lam[i]
            hh = -h
            an = al[i + 1]
            base = -an * xp.expm1(hh)
            rks = xp.stack([(lam[i - k] - lam[i]) / h for k in range(1, p)] + [1.0 + 0.0 * h])
            b, big_b = _unipc_b(xp, hh, p, self.variant)
            rmat = xp.stack([rks**j for j in range(p)])  # R[j, k] = r_k^j
            # predictor, weights over history (m_i, m_{i-1}, ...): base·m_i − α'B Σ_k ρ^P_k (m_{i−k} − m_i)/r_k
            c = [base] + [0.0 * h] * (p - 1)
            if p >= 2:
                rho_p = 0.5 + 0.0 * b[:1] if p == 2 else _solve_small(xp, rmat[:-1, :-1], b[:-1])
                for k in range(1, p):
                    w = -an * big_b * rho_p[k - 1] / rks[k - 1]
                    c[k] = c[k] + w
                    c[0] = c[0] - w
            pred.append(_row(xp, c, width, h))
            # corrector of this step, weights over the next history (m_{i+1}, m_i, m_{i-1}, ...)
            rho_c = 0.5 + 0.0 * b[:1] if p == 1 else _solve_small(xp, rmat, b)
            cc = [0.0 * h, base] + [0.0 * h] * (p - 1)
            for k in range(1, p):
                w = -an * big_b * rho_c[k - 1] / rks[k - 1]
                cc[1 + k] = cc[1 + k] + w
                cc[1] = cc[1] - w
            w = -an * big_b * rho_c[-1]
            cc[0] = cc[0] + w
            cc[1] = cc[1] - w
            corr_of_step.append(_row(xp, cc, width, h))
        pred = xp.stack(pred)
        # the corrector of step i−1 runs at the start of step i (after m_i is evaluated); none at i = 0
        corr = xp.concatenate([0.0 * pred[:1], xp.stack(corr_of_step[:-1])]) if m > 1 else 0.0 * pred
        zero = 0.0 * a[:1]
        a_corr = xp.concatenate([zero, a[:-1]])
        use = xp.concatenate([zero, 1.0 + 0.0 * a[1:]])
        return {"a_pred": a, "pred": pred, "a_corr": a_corr, "corr": corr, "use_corr": use}
