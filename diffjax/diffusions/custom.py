"""User-defined linear diffusions from the drift and diffusion coefficients alone: ``du = F(t) u dt + G(t) dW``.

``custom(F, G, ...)`` derives everything else numerically, once, in float64:

* ``Φ(t) = Ψ(t, 0)`` from ``dΦ/dt = F Φ``, ``Φ(0) = I``, and ``Σ(t)`` from the Lyapunov ODE
  ``dΣ/dt = F Σ + Σ Fᵀ + G Gᵀ``, ``Σ(0) = Σ_0``, both by scipy's DOP853 (rtol 1e-12) on a grid of
  ``num_grid`` times, quadratic in t (dense near 0, where Σ is small and relative accuracy matters);
* between grid points, cubic Hermite interpolation with the exact derivatives from the ODEs (error O(h⁴));
  ``Ψ(t, s) = Φ(t) Φ(s)⁻¹``; the prior is ``N(0, Σ(T))`` unless given;
* scalar processes (``F``, ``G`` return scalars) become a :class:`ScalarDiffusion` with
  ``log α = ∫F`` (interpolated with derivative F) and ``σ² = Σ``, so EVERY solver applies (DPM-Solver++, SciRE,
  EDM Heun, gDDIM, …); ``t(ρ)`` inverts ``ρ = σ/α`` by interpolation and two Newton steps;
* 2×2 processes (``F``, ``G`` return ``(2, 2)`` arrays acting on each pixel's ``(x, v)``, like CLD) become a
  phase-space diffusion: gDDIM (with its ``R_t`` from ``Σ_0``'s Cholesky factor), EM, PC and the PF-ODE
  integrators apply; solvers that need α and σ (DPM-Solver++, SciRE, EDM Heun) raise a clear error.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .base import LinearDiffusion, ScalarDiffusion, check_positive
from .cld import PhaseSpace


@dataclasses.dataclass(frozen=True, eq=False)
class _Tables:
    """Float64 tables of Φ, Σ and their derivatives on an increasing grid (identity-hashed)."""

    ts: np.ndarray
    phi: np.ndarray
    dphi: np.ndarray
    cov: np.ndarray
    dcov: np.ndarray
    f: np.ndarray  # F on the grid (for d log α/dt in the scalar case)

    def hermite(self, t, values, derivs):
        """Cubic Hermite interpolation of ``values`` (grid-leading) at times ``t`` (any shape)."""
        t = jnp.asarray(t)
        dtype = t.dtype if jnp.issubdtype(t.dtype, jnp.floating) else jnp.zeros(()).dtype
        ts = jnp.asarray(self.ts, dtype)
        i = jnp.clip(jnp.searchsorted(ts, t, side="right") - 1, 0, len(self.ts) - 2)
        h = ts[i + 1] - ts[i]
        u = (t - ts[i]) / h
        pad = lambda a: a.reshape(a.shape + (1,) * (values.ndim - 1))
        u, h = pad(u), pad(h)
        v0, v1 = jnp.asarray(values, dtype)[i], jnp.asarray(values, dtype)[i + 1]
        d0, d1 = jnp.asarray(derivs, dtype)[i] * h, jnp.asarray(derivs, dtype)[i + 1] * h
        h00, h10, h01, h11 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u, -2 * u**3 + 3 * u**2, u**3 - u**2
        return h00 * v0 + h10 * d0 + h01 * v1 + h11 * d1


def _solve_tables(F: Callable, G: Callable, k: int, T: float, cov0: np.ndarray, num_grid: int) -> _Tables:
    from scipy.integrate import solve_ivp

    with jax.enable_x64(True):
        fj = jax.jit(lambda t: jnp.asarray(F(t), jnp.float64).reshape(k, k))
        gj = jax.jit(lambda t: jnp.asarray(G(t), jnp.float64).reshape(k, k))
        try:
            fj(0.5 * T), gj(0.5 * T)  # shape check
        except (TypeError, ValueError) as e:
            raise ValueError(f"F(t) and G(t) must return {'scalars' if k == 1 else '(2, 2) arrays'}: {e}") from e

    def coef(t):  # evaluated in float64 whatever the caller's precision
        with jax.enable_x64(True):
            return np.asarray(fj(np.float64(t))), np.asarray(gj(np.float64(t)))

    def rhs(t, y):
        f, g = coef(t)
        phi, cov = y[: k * k].reshape(k, k), y[k * k:].reshape(k, k)
        return np.concatenate([(f @ phi).ravel(), (f @ cov + cov @ f.T + g @ g.T).ravel()])

    ts = T * np.linspace(0.0, 1.0, num_grid) ** 2  # quadratic: dense near t = 0, where Σ is tiny and varies fast
    y0 = np.concatenate([np.eye(k).ravel(), cov0.ravel()])
    out = solve_ivp(rhs, (0.0, T), y0, method="DOP853", t_eval=ts, rtol=1e-12, atol=1e-20)
    if not out.success or not np.all(np.isfinite(out.y)):
        raise ValueError(f"integrating the kernel ODEs of the custom diffusion failed: {out.message}")
    ys = out.y.T
    phi, cov = ys[:, : k * k].reshape(-1, k, k), ys[:, k * k:].reshape(-1, k, k)
    fs = np.stack([coef(t)[0] for t in ts])
    gs = np.stack([coef(t)[1] for t in ts])
    dphi = fs @ phi
    dcov = fs @ cov + cov @ np.swapaxes(fs, 1, 2) + gs @ np.swapaxes(gs, 1, 2)
    if not np.all(np.linalg.eigvalsh(0.5 * (cov[1:] + np.swapaxes(cov[1:], 1, 2))) > 0):
        raise ValueError("the custom diffusion's covariance Σ(t) is not positive definite for t > 0 (is G ≠ 0?)")
    return _Tables(ts, phi, dphi, cov, dcov, fs)


def _check_times(T, t_min, t_eps):
    check_positive("T", T)
    check_positive("t_min", t_min)
    check_positive("t_eps", t_eps)
    if not t_min < T:
        raise ValueError(f"t_min must be < T={T}, got {t_min}")


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True, eq=False)
class CustomScalar(ScalarDiffusion):
    """A user-defined scalar diffusion ``dx = f(t) x dt + g(t) dW`` (see the module docstring)."""

    F: Callable
    G: Callable
    T: float = 1.0
    t_min: float = 1e-3
    t_eps: float = 1e-5
    initial_var: float = 0.0
    num_grid: int = 4097
    label: str = "Custom"
    tables: _Tables = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        _check_times(self.T, self.t_min, self.t_eps)
        tabs = _solve_tables(self.F, self.G, 1, float(self.T), np.array([[float(self.initial_var)]]), int(self.num_grid))
        object.__setattr__(self, "tables", tabs)

    @property
    def name(self) -> str:
        return self.label

    def log_alpha(self, t):
        tb = self.tables
        return tb.hermite(t, np.log(tb.phi[:, 0, 0]), tb.f[:, 0, 0])

    def sigma(self, t):
        tb = self.tables
        return jnp.sqrt(tb.hermite(t, tb.cov[:, 0, 0], tb.dcov[:, 0, 0]))

    def t_of_rho(self, rho):
        tb = self.tables
        rho = jnp.asarray(rho)
        log_rho_tab = 0.5 * np.log(np.maximum(tb.cov[1:, 0, 0], 1e-300)) - np.log(tb.phi[1:, 0, 0])
        target = jnp.log(rho)
        t = jnp.interp(target, jnp.asarray(log_rho_tab, rho.dtype), jnp.asarray(tb.ts[1:], rho.dtype))
        grid = jnp.asarray(tb.ts, rho.dtype)  # (linear interpolation of the derivative suffices for Newton)
        for _ in range(2):  # Newton on log ρ(t) = log σ − log α, d log ρ/dt = Σ'/(2Σ) − F
            lr = jnp.log(self.sigma(t)) - self.log_alpha(t)
            d = 0.5 * jnp.interp(t, grid, jnp.asarray(tb.dcov[:, 0, 0], rho.dtype)) / self.sigma(t) ** 2 \
                - jnp.interp(t, grid, jnp.asarray(tb.f[:, 0, 0], rho.dtype))
            t = jnp.clip(t - (lr - target) / d, tb.ts[1], self.T)
        return t

    def prior_cov_block(self):
        return jnp.asarray(self.tables.cov[-1])


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True, eq=False)
class CustomPhaseSpace(PhaseSpace):
    """A user-defined diffusion with 2×2 blocks on ``(x, v)`` per pixel (see the module docstring)."""

    F: Callable
    G: Callable
    T: float = 1.0
    t_min: float = 1e-3
    t_eps: float = 1e-5
    initial_cov: tuple = (0.0, 0.0)
    num_grid: int = 4097
    label: str = "CustomPhaseSpace"
    tables: _Tables = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        _check_times(self.T, self.t_min, self.t_eps)
        cov0 = np.diag(np.asarray(self.initial_cov, np.float64))
        object.__setattr__(self, "tables", _solve_tables(self.F, self.G, 2, float(self.T), cov0, int(self.num_grid)))

    @property
    def name(self) -> str:
        return self.label

    def drift_block(self, t):
        return jnp.vectorize(lambda s: jnp.asarray(self.F(s)).reshape(2, 2), signature="()->(i,j)")(jnp.asarray(t))

    def diffusion_block(self, t):
        return jnp.vectorize(lambda s: jnp.asarray(self.G(s)).reshape(2, 2), signature="()->(i,j)")(jnp.asarray(t))

    def _phi(self, t):
        tb = self.tables
        return tb.hermite(t, tb.phi, tb.dphi)

    def transition_block(self, t, s):
        return self._phi(t) @ jnp.linalg.inv(self._phi(s))

    def cov_block(self, t):
        tb = self.tables
        return tb.hermite(t, tb.cov, tb.dcov)

    def prior_cov_block(self):
        return jnp.asarray(self.tables.cov[-1])

    def gddim_r0(self) -> np.ndarray:
        return np.diag(np.sqrt(np.asarray(self.initial_cov, np.float64)))


def custom(F: Callable, G: Callable, T: float = 1.0, t_min: float = 1e-3, t_eps: float = 1e-5, block_size: int = 1,
           initial_cov=None, num_grid: int = 4097, name: str | None = None) -> LinearDiffusion:
    """A diffusion from its coefficients: ``F(t)``, ``G(t)`` scalars (``block_size=1``) or ``(2, 2)`` blocks
    acting on each pixel's ``(x, v)`` (``block_size=2``), pure jnp functions of a scalar or array ``t``.
    ``initial_cov``: the variance (1×1) or the diagonal ``(σ_x0², σ_v0²)`` (2×2) of the state at t = 0 (a floor
    that keeps Σ invertible near 0, as CLD's ε_num)."""
    if block_size == 1:
        return CustomScalar(F, G, T, t_min, t_eps, float(initial_cov or 0.0), num_grid, name or "Custom")
    if block_size == 2:
        cov0 = tuple(float(c) for c in (initial_cov if initial_cov is not None else (0.0, 0.0)))
        if len(cov0) != 2 or min(cov0) < 0:
            raise ValueError(f"initial_cov for 2×2 blocks is (σ_x0², σ_v0²) >= 0, got {initial_cov}")
        return CustomPhaseSpace(F, G, T, t_min, t_eps, cov0, num_grid, name or "CustomPhaseSpace")
    raise ValueError(f"block_size must be 1 (scalar) or 2 (phase space), got {block_size}")
