"""User-defined linear diffusions from the drift and diffusion coefficients alone: ``du = F(t) u dt + G(t) dW``.

``custom(F, G, ...)`` derives everything else numerically, once, in float64:

* ``Φ(t) = Ψ(t, 0)`` from ``dΦ/dt = F Φ``, ``Φ(0) = I``, and ``Σ(t)`` from the Lyapunov ODE
  ``dΣ/dt = F Σ + Σ Fᵀ + G Gᵀ``, ``Σ(0) = Σ_0``, both by diffrax's Dopri8 (rtol 1e-13) saved on a grid of
  ``num_grid`` times, quadratic in t (dense near 0, where Σ is small and relative accuracy matters); for
  1×1 blocks the ODE is solved for ``log Φ = ∫F`` directly;
* between grid points, cubic Hermite interpolation with the exact derivatives from the ODEs (error O(h⁴));
  ``Ψ(t, s) = Φ(t) Φ(s)⁻¹``; the prior is ``N(0, Σ(T))``;
* scalar processes (``F``, ``G`` return scalars) become a :class:`ScalarDiffusion` with
  ``log α = ∫F`` and ``σ² = Σ``, so EVERY solver applies (DPM-Solver++, SciRE, EDM Heun, gDDIM, …);
  ``t(ρ)`` inverts ``ρ = σ/α`` by interpolation and two Newton steps;
* per-coordinate processes (``F``, ``G`` return arrays of one shape, the coefficient of every coordinate, like
  blurring's per-frequency rates), in the pixel basis or in the 2-D DCT basis of images (``basis="dct"``), become
  a diffusion with 1×1 blocks per coordinate: gDDIM (``R_t = √Σ_t``), EM, PC and the PF-ODE integrators apply;
* 2×2 processes (``F``, ``G`` return ``(2, 2)`` arrays acting on each pixel's ``(x, v)``, like CLD) become a
  phase-space diffusion: gDDIM (with its ``R_t`` from ``Σ_0``'s Cholesky factor), EM, PC and the PF-ODE
  integrators apply.

Solvers that need a scalar α and σ (DPM-Solver++, SciRE, EDM Heun, UniPC) raise a clear error on the last two.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .base import LinearDiffusion, ScalarDiffusion, check_positive
from .blocks import scalar_block
from .cld import PhaseSpace
from .dct import DCTBasis


@dataclasses.dataclass(frozen=True, eq=False)
class _Tables:
    """Float64 tables on an increasing grid ``ts`` (identity-hashed): ``phi`` is Φ(t) for 2×2 blocks and
    ``log Φ(t)`` (per coordinate) for 1×1 blocks, ``dphi`` its time derivative (``FΦ``, resp. ``F``), ``cov`` Σ(t)
    and ``dcov`` its derivative."""

    ts: np.ndarray
    phi: np.ndarray
    dphi: np.ndarray
    cov: np.ndarray
    dcov: np.ndarray

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


def _time_grid(T: float, num_grid: int) -> np.ndarray:
    return T * np.linspace(0.0, 1.0, num_grid) ** 2  # quadratic: dense near t = 0, where Σ is tiny and varies fast


def _coefficients(F: Callable, G: Callable, shape: tuple, T: float, what: str) -> Callable:
    """``t ↦ (F(t), G(t))`` as float64 jnp arrays of ``shape`` (call under ``enable_x64``)."""

    def coef(t):
        return (
            jnp.broadcast_to(jnp.asarray(F(t), jnp.float64), shape),
            jnp.broadcast_to(jnp.asarray(G(t), jnp.float64), shape),
        )

    with jax.enable_x64(True):
        try:
            jax.eval_shape(coef, jnp.float64(0.5 * T))
        except (TypeError, ValueError) as e:
            raise ValueError(f"F(t) and G(t) must return {what}: {e}") from e
    return coef


def _integrate(rhs: Callable, y0, ts: np.ndarray, coef: Callable):
    """Solve ``dy/dt = rhs(t, y)`` from 0 with diffrax's Dopri8 (rtol 1e-13) in float64, stepping through every point
    of ``ts`` (values there are step ends, not dense-output interpolants);
    returns the solution and ``coef`` on the grid, as numpy."""
    import diffrax

    with jax.enable_x64(True):
        on_grid = jax.tree.map(np.asarray, jax.jit(jax.vmap(coef))(jnp.asarray(ts)))
    for label, values in zip("FG", on_grid):
        bad = ~np.all(np.isfinite(values.reshape(len(ts), -1)), axis=1)
        if bad.any():
            raise ValueError(
                f"{label}(t) is not finite at t = {ts[bad.argmax()]:.6g} (first of {int(bad.sum())} grid "
                f"times in [0, T={ts[-1]:.6g}]): the coefficients must be finite on the whole time range"
            )
    with jax.enable_x64(True):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, args: rhs(t, y)),
            diffrax.Dopri8(),
            0.0,
            float(ts[-1]),
            None,
            jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), y0),
            saveat=diffrax.SaveAt(ts=jnp.asarray(ts)),
            stepsize_controller=diffrax.PIDController(rtol=1e-13, atol=1e-20, step_ts=jnp.asarray(ts)),
            max_steps=200_000,
            throw=False,
        )
        ys = jax.tree.map(np.asarray, sol.ys)
    if sol.result != diffrax.RESULTS.successful or not all(np.all(np.isfinite(a)) for a in jax.tree.leaves(ys)):
        mag = np.max(np.abs(on_grid[0].reshape(len(ts), -1)), axis=1)
        raise ValueError(
            f"integrating the kernel ODEs of the custom diffusion failed ({sol.result}); is F(t) singular "
            f"on [0, T]? max |F| on the grid is {mag.max():.3g}, at t = {ts[mag.argmax()]:.6g}"
        )
    return ys, on_grid


def _check_float32_range(ts: np.ndarray, phi: np.ndarray, cov: np.ndarray, limit: float = 1e30) -> None:
    """Samplers compute in float32: the kernel Φ(t, 0) and Σ(t) must stay within its range (an explosive F)."""
    for name, arr in (("Φ(t, 0) (the mean factor)", np.abs(phi)), ("Σ(t)", np.abs(cov))):
        per_t = arr.reshape(len(ts), -1).max(axis=1)
        if per_t.max() > limit:
            i = int(np.argmax(per_t > limit))
            raise ValueError(
                f"the custom diffusion's {name} reaches {per_t.max():.3g} (> {limit:.0e} from t = {ts[i]:.4g} "
                f"on): F(t) is explosive on [0, T={ts[-1]:.4g}] and float32 sampling would overflow; "
                "shorten T or damp F"
            )


NOISE_DOMINATION = 3.0  # the noise-to-signal ratio σ/α a process must reach at T (every coordinate)


def _check_noise_dominates(ts: np.ndarray, log_phi: np.ndarray, cov: np.ndarray) -> None:
    """Samplers start from the prior N(0, Σ_T), which stands in for the marginal at T only when the noise dominates
    the signal there: σ/α ≥ 3 at T in every coordinate (for data of unit scale the marginal's std is then within 5 %
    of the prior's). One rule for every failure: G ≡ 0 (σ/α never grows), a drift that outgrows the noise (F = 20,
    G = 1), or a T too short."""
    rho = np.sqrt(cov * np.exp(-2.0 * log_phi)).reshape(len(ts), -1)
    worst = float(rho[-1].min())
    if not worst >= NOISE_DOMINATION:
        grows = bool(np.any(rho[-1] > rho[1] * (1 + 1e-9)))
        why = (
            "it adds no noise (G(t) = 0: σ/α never grows; an initial covariance alone is not a diffusion)"
            if not grows
            else "the signal still dominates at T (raise G, lower F, or lengthen T)"
        )
        raise ValueError(
            f"the custom diffusion is never noise-dominated: its noise-to-signal ratio σ/α at T={ts[-1]:.4g} "
            f"is {worst:.4g} (< {NOISE_DOMINATION:g} needed for the prior N(0, Σ_T) to stand in for the "
            f"marginal): {why}"
        )


def _check_positive_cov(cov_diag_or_blocks: np.ndarray, blocks: bool) -> None:
    c = cov_diag_or_blocks[1:]
    ok = np.all(np.linalg.eigvalsh(0.5 * (c + np.swapaxes(c, -1, -2))) > 0) if blocks else np.all(c > 0)
    if not ok:
        raise ValueError("the custom diffusion's covariance Σ(t) is not positive definite for t > 0 (is G ≠ 0?)")


def _solve_blocks(F: Callable, G: Callable, T: float, cov0: np.ndarray, num_grid: int) -> _Tables:
    """Φ(t) and Σ(t) for 2×2 blocks shared by every pixel."""
    coef = _coefficients(F, G, (2, 2), T, "(2, 2) arrays")

    def rhs(t, y):
        (phi, cov), (f, g) = y, coef(t)
        return f @ phi, f @ cov + cov @ f.T + g @ g.T

    ts = _time_grid(T, num_grid)
    (phi, cov), (fs, gs) = _integrate(rhs, (np.eye(2), cov0), ts, coef)
    dcov = fs @ cov + cov @ np.swapaxes(fs, 1, 2) + gs @ np.swapaxes(gs, 1, 2)
    _check_positive_cov(cov, blocks=True)
    _check_float32_range(ts, phi, cov)
    return _Tables(ts, phi, fs @ phi, cov, dcov)


def _solve_diagonal(F: Callable, G: Callable, shape: tuple, T: float, var0, num_grid: int) -> _Tables:
    """``log Φ = ∫F`` and ``Σ' = 2FΣ + G²`` for independent coordinates with coefficients of ``shape``
    (``()``: one scalar process)."""
    what = "scalars" if shape == () else f"arrays of shape {shape} (one coefficient per coordinate)"
    coef = _coefficients(F, G, shape, T, what)

    def rhs(t, y):
        (_, cov), (f, g) = y, coef(t)
        return f, 2.0 * f * cov + g * g

    ts = _time_grid(T, num_grid)
    var0 = np.broadcast_to(np.asarray(var0, np.float64), shape)
    (log_phi, cov), (fs, gs) = _integrate(rhs, (np.zeros(shape), var0), ts, coef)
    _check_positive_cov(cov, blocks=False)
    _check_float32_range(ts, np.exp(log_phi), cov)
    _check_noise_dominates(ts, log_phi, cov)
    return _Tables(ts, log_phi, fs, cov, 2.0 * fs * cov + gs * gs)


def _per_time(fn: Callable, t, shape: tuple):
    """``fn`` (written for a scalar ``t``) at every entry of ``t``: shape ``t.shape + shape``."""
    t = jnp.asarray(t)
    out = jax.vmap(lambda s: jnp.broadcast_to(jnp.asarray(fn(s), t.dtype), shape))(t.reshape(-1))
    return out.reshape(t.shape + shape)


def _check_closed_forms(sde, shape: tuple, log_phi: bool) -> None:
    """Raise ValueError when a given closed-form ``transition`` Φ(t) or ``covariance`` Σ(t) departs from the ODE
    solution of F and G on the grid (relative 1e-6): a typo in a closed form must not pass silently."""
    tb = sde.tables
    ts = tb.ts[1:]
    phi_tab = np.exp(tb.phi[1:]) if log_phi else tb.phi[1:]
    given = (("transition Φ(t) = Ψ(t, 0)", sde.transition, phi_tab), ("covariance Σ(t)", sde.covariance, tb.cov[1:]))
    for label, fn, tab in given:
        if fn is None:
            continue
        with jax.enable_x64(True):
            got = np.asarray(_per_time(fn, jnp.asarray(ts, jnp.float64), shape))
        scale = np.max(np.abs(tab), axis=0, keepdims=True)
        dev = float(np.max(np.abs(got - tab) / np.maximum(np.abs(tab), 1e-3 * scale)))
        if not dev < 1e-6:
            raise ValueError(
                f"the given closed-form {label} does not solve the kernel ODEs of F and G (max relative "
                f"deviation {dev:.2e}); fix it or leave it out to use the numerical solution"
            )


def _check_times(T, t_min, t_eps):
    check_positive("T", T)
    check_positive("t_min", t_min)
    check_positive("t_eps", t_eps)
    if not t_min < T:
        raise ValueError(f"t_min must be < T={T}, got {t_min}")


class _IndependentCoordinates:
    """The kernels of independent 1×1-block coordinates with coefficients of shape ``coef_shape`` (``()``: one scalar
    process): ``log Φ(t) = ∫_0^t F`` and ``Σ(t)`` from the given closed forms, else from the interpolated tables."""

    def _build(self, var0) -> None:
        _check_times(self.T, self.t_min, self.t_eps)
        tabs = _solve_diagonal(self.F, self.G, self.coef_shape, float(self.T), var0, int(self.num_grid))
        object.__setattr__(self, "tables", tabs)
        _check_closed_forms(self, self.coef_shape, log_phi=True)

    @property
    def name(self) -> str:
        """The name given to :func:`custom`."""
        return self.label

    def log_phi(self, t):
        """``log Ψ(t, 0) = ∫_0^t F``, shape ``t.shape + coef_shape``."""
        if self.transition is not None:
            return jnp.log(_per_time(self.transition, t, self.coef_shape))
        tb = self.tables
        return tb.hermite(t, tb.phi, tb.dphi)

    def variance(self, t):
        """``Σ(t)``, shape ``t.shape + coef_shape``."""
        if self.covariance is not None:
            return _per_time(self.covariance, t, self.coef_shape)
        tb = self.tables
        return tb.hermite(t, tb.cov, tb.dcov)

    def prior_cov_block(self):
        return scalar_block(jnp.asarray(self.tables.cov[-1]))


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True, eq=False)
class CustomScalar(_IndependentCoordinates, ScalarDiffusion):
    """A user-defined scalar diffusion ``dx = f(t) x dt + g(t) dW`` (see the module docstring)."""

    F: Callable
    G: Callable
    T: float = 1.0
    t_min: float = 1e-3
    t_eps: float = 1e-5
    initial_var: float = 0.0
    num_grid: int = 4097
    label: str = "Custom"
    transition: Callable | None = None
    covariance: Callable | None = None
    tables: _Tables = dataclasses.field(default=None, repr=False)

    coef_shape: ClassVar[tuple] = ()

    def __post_init__(self):
        self._build(float(self.initial_var))

    def log_alpha(self, t):
        return self.log_phi(t)

    def sigma(self, t):
        return jnp.sqrt(self.variance(t))

    def t_of_rho(self, rho):
        tb = self.tables
        rho = jnp.asarray(rho)
        log_rho_tab = 0.5 * np.log(np.maximum(tb.cov[1:], 1e-300)) - tb.phi[1:]
        target = jnp.log(rho)
        t = jnp.interp(target, jnp.asarray(log_rho_tab, rho.dtype), jnp.asarray(tb.ts[1:], rho.dtype))
        grid = jnp.asarray(tb.ts, rho.dtype)  # (linear interpolation of the derivative suffices for Newton)
        for _ in range(2):  # Newton on log ρ(t) = log σ − log α, d log ρ/dt = Σ'/(2Σ) − F
            lr = jnp.log(self.sigma(t)) - self.log_alpha(t)
            d = 0.5 * jnp.interp(t, grid, jnp.asarray(tb.dcov, rho.dtype)) / self.sigma(t) ** 2 - jnp.interp(
                t, grid, jnp.asarray(tb.dphi, rho.dtype)
            )
            t = jnp.clip(t - (lr - target) / d, tb.ts[1], self.T)
        return t


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
    transition: Callable | None = None
    covariance: Callable | None = None
    tables: _Tables = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        _check_times(self.T, self.t_min, self.t_eps)
        cov0 = np.diag(np.asarray(self.initial_cov, np.float64))
        object.__setattr__(self, "tables", _solve_blocks(self.F, self.G, float(self.T), cov0, int(self.num_grid)))
        _check_closed_forms(self, (2, 2), log_phi=False)

    @property
    def name(self) -> str:
        return self.label

    def drift_block(self, t):
        return _per_time(self.F, t, (2, 2))

    def diffusion_block(self, t):
        return _per_time(self.G, t, (2, 2))

    def _phi(self, t):
        if self.transition is not None:
            return _per_time(self.transition, t, (2, 2))
        tb = self.tables
        return tb.hermite(t, tb.phi, tb.dphi)

    def transition_block(self, t, s):
        return self._phi(t) @ jnp.linalg.inv(self._phi(s))

    def cov_block(self, t):
        if self.covariance is not None:
            return _per_time(self.covariance, t, (2, 2))
        tb = self.tables
        return tb.hermite(t, tb.cov, tb.dcov)

    def prior_cov_block(self):
        return jnp.asarray(self.tables.cov[-1])

    def gddim_r0(self) -> np.ndarray:
        """``R_0 = diag(σ_x0, σ_v0)``: gDDIM's factor at t = 0 (``R_0R_0ᵀ = Σ_0``)."""
        return np.diag(np.sqrt(np.asarray(self.initial_cov, np.float64)))


@dataclasses.dataclass(frozen=True, eq=False)
class _PerCoordinate(_IndependentCoordinates, LinearDiffusion):
    """Independent coordinates, each ``du_i = f_i(t) u_i dt + g_i(t) dW_i`` (1×1 blocks with per-coordinate
    coefficients of shape ``coef_shape``, matching the trailing data axes, or broadcasting to them)."""

    F: Callable
    G: Callable
    coef_shape: tuple = ()
    T: float = 1.0
    t_min: float = 1e-3
    t_eps: float = 1e-5
    initial_var: object = 0.0
    num_grid: int = 4097
    label: str = "Custom"
    transition: Callable | None = None
    covariance: Callable | None = None
    tables: _Tables = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "coef_shape", tuple(int(d) for d in self.coef_shape))
        self._build(self.initial_var)

    @property
    def coef_ndim(self) -> int:
        return len(self.coef_shape)

    def drift_block(self, t):
        return scalar_block(_per_time(self.F, t, self.coef_shape))

    def diffusion_block(self, t):
        return scalar_block(_per_time(self.G, t, self.coef_shape))

    def transition_block(self, t, s):
        return scalar_block(jnp.exp(self.log_phi(t) - self.log_phi(s)))

    def cov_block(self, t):
        return scalar_block(self.variance(t))


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True, eq=False)
class CustomDiagonal(_PerCoordinate):
    """A user-defined diffusion with per-coordinate coefficients in the pixel basis (see the module docstring)."""

    def to_blocks(self, y):
        self.check_data_shape(jnp.shape(y))
        return y[..., None]

    def check_data_shape(self, shape: tuple) -> None:
        nd, shape = self.coef_ndim, tuple(shape)
        tail = shape[len(shape) - nd :]
        ok = len(shape) >= nd
        try:
            ok = ok and np.broadcast_shapes(self.coef_shape, tail) == tail
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"{self.name} has coefficients of shape {self.coef_shape}, which must match the trailing "
                f"data axes; got an array of shape {shape}"
            )


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True, eq=False)
class CustomDCT(DCTBasis, _PerCoordinate):
    """A user-defined diffusion with per-frequency coefficients ``(H, W, C)`` (``C = 1``: shared by the channels)
    in the orthonormal 2-D DCT basis of images, like blurring (see the module docstring)."""

    def __post_init__(self):
        if len(self.coef_shape) != 3:
            raise ValueError(f"basis='dct' needs F(t), G(t) of an image shape (H, W, C), got shape {self.coef_shape}")
        super().__post_init__()

    @property
    def image_shape(self) -> tuple:
        """The coefficients' image shape ``(H, W, C)``."""
        return self.coef_shape


BASES = ("pixel", "dct")


def custom(
    F: Callable,
    G: Callable,
    T: float = 1.0,
    t_min: float = 1e-3,
    t_eps: float = 1e-5,
    block_size: int = 1,
    initial_cov=None,
    num_grid: int = 4097,
    name: str | None = None,
    basis: str = "pixel",
    transition: Callable | None = None,
    covariance: Callable | None = None,
) -> LinearDiffusion:
    """A diffusion ``du = F(t) u dt + G(t) dW`` from its coefficients, pure jnp functions of a scalar ``t``:

    * ``block_size=1``: ``F(t)``, ``G(t)`` scalars (one process for every coordinate → a
      :class:`ScalarDiffusion`), or arrays of one shape ``coef_shape`` (one coefficient per coordinate, matching
      the trailing data axes; ``basis="dct"``: per frequency of images ``(H, W, C)`` in the 2-D DCT basis);
    * ``block_size=2``: ``(2, 2)`` blocks acting on each pixel's ``(x, v)``.

    ``initial_cov``: the covariance of the state at t = 0 given the clean data (a floor that keeps Σ invertible
    near 0, as CLD's ε_num or blurring's σ(0)²): a variance (scalar, or per coordinate) for 1×1 blocks, the
    diagonal ``(σ_x0², σ_v0²)`` for 2×2 blocks.

    ``transition`` Φ(t) = Ψ(t, 0) and ``covariance`` Σ(t), shaped like F, are optional closed forms: when given they
    replace the interpolated ODE solution in the kernels (and are checked against it at construction)."""
    if basis not in BASES:
        raise ValueError(f"unknown basis {basis!r}; accepted: {list(BASES)}")
    closed = dict(transition=transition, covariance=covariance)
    if block_size == 1:
        with jax.enable_x64(True):
            try:
                shape = tuple(jax.eval_shape(lambda t: jnp.asarray(F(t)), jnp.zeros((), jnp.float64)).shape)
            except (TypeError, ValueError) as e:
                raise ValueError(f"F(t) must be a jnp function of a scalar time: {e}") from e
        var0 = 0.0 if initial_cov is None else initial_cov
        if np.any(np.asarray(var0) < 0):
            raise ValueError(f"initial_cov must be >= 0, got {initial_cov}")
        if shape == ():
            return CustomScalar(F, G, T, t_min, t_eps, float(var0), num_grid, name or "Custom", **closed)
        cls = CustomDCT if basis == "dct" else CustomDiagonal
        return cls(F, G, shape, T, t_min, t_eps, var0, num_grid, name or cls.__name__, **closed)
    if block_size == 2:
        if basis != "pixel":
            raise ValueError("2×2 blocks act on each pixel's (x, v): basis must be 'pixel'")
        cov0 = tuple(float(c) for c in (initial_cov if initial_cov is not None else (0.0, 0.0)))
        if len(cov0) != 2 or min(cov0) < 0:
            raise ValueError(f"initial_cov for 2×2 blocks is (σ_x0², σ_v0²) >= 0, got {initial_cov}")
        return CustomPhaseSpace(F, G, T, t_min, t_eps, cov0, num_grid, name or "CustomPhaseSpace", **closed)
    raise ValueError(f"block_size must be 1 (scalar or per coordinate) or 2 (phase space), got {block_size}")
