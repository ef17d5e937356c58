"""The solver protocol: an immutable dataclass of hyperparameters with pure ``init`` / ``step`` / ``output``.

The driver (``driver.py``) runs every solver the same way::

    coefs = solver.coefficients(sde, ts, nfe)        # per-step tables, leading axis M, float64 -> dtype
    state = solver.init(ctx, y_T, coefs)
    state = lax.scan(solver.step, state, coefs)       # one step per grid interval
    y     = solver.output(ctx, state, coefs)

``coefs`` always holds ``t`` (start of the step), ``t_next`` and ``i`` (step index); solvers add what they
precompute from the grid (multistep weights, churn levels, …) so no coefficient is computed inside the scan.
``ctx`` bundles the diffusion, the bound model and per-sample PRNG keys: noise for sample b at step i is
``normal(fold_in(key_b, i))``, so a sample never depends on the batch size.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..diffusions.base import LinearDiffusion, ScalarDiffusion
from ..prediction import Model
from .schedules import on_grid


class Context(NamedTuple):
    """What a solver step may use besides its own state: the diffusion, the model, per-sample keys."""

    sde: LinearDiffusion
    model: Model
    keys: jax.Array  # (B,) typed PRNG keys, one per sample

    def normal(self, i: Any, like: Any) -> Any:
        """Standard normal noise shaped like the state ``like``, drawn from the per-sample keys at step ``i``."""
        leaves, treedef = jax.tree.flatten(like)
        out = []
        for j, leaf in enumerate(leaves):

            def draw(k, leaf=leaf, j=j):
                k = jax.random.fold_in(jax.random.fold_in(k, i), j)
                return jax.random.normal(k, leaf.shape[1:], leaf.dtype)

            out.append(jax.vmap(draw)(self.keys))
        return jax.tree.unflatten(treedef, out)


def tree_axpy(a, x, y):
    """``a·x + y`` over PyTrees (a scalar or broadcastable array)."""
    return jax.tree.map(lambda u, v: a * u + v, x, y)


@dataclasses.dataclass(frozen=True)
class Solver:
    """Base class: a frozen dataclass of hyperparameters plus ``coefficients``/``init``/``step``/``output``.

    Metadata are read-only properties declared here, with their defaults. A subclass overrides one with a class
    attribute when it is fixed for the class (``name: ClassVar[str] = "ode_euler"``) and with a property when it
    depends on the configuration (``DDIM.stochastic`` is ``eta > 0``); both are sound overrides of a property.
    """

    grid: str | None = None  # None: the solver's default grid kind

    # ---- metadata --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The registry name of this configuration (``dj.solvers.get(solver.name)`` builds an equal solver for
        every registered configuration)."""
        return type(self).__name__.lower()

    @property
    def stochastic(self) -> bool:
        """Whether a step draws noise (the sample depends on the key)."""
        return False

    @property
    def scalar_only(self) -> bool:
        """Whether the solver needs α(t), σ(t) of a scalar diffusion (VP/VE/EDM/Flow/FDM)."""
        return False

    @property
    def evals_per_step(self) -> int:
        """Network evaluations per grid interval (uneven budgets override :meth:`num_steps`/:meth:`nfe`)."""
        return 1

    @property
    def default_grid(self) -> str:
        """The grid kind used when none is given (see :meth:`grid_kind`)."""
        return "uniform"

    @property
    def traceable(self) -> bool:
        """Whether :meth:`coefficients` is written against ``xp_of(ts)``, so that a traced grid gives traced tables
        (``dj.solvers.learn`` differentiates through them)."""
        return False

    @property
    def learnable(self) -> tuple[str, ...]:
        """Tables that ``dj.solvers.learn`` may correct additively per step (e.g. multistep weights)."""
        return ()

    @property
    def history_tables(self) -> tuple[str, ...]:
        """Tables whose second axis weights earlier evaluations (column j: the evaluation j steps back); a learned
        correction may widen them to the whole history (zero weights on the added columns: the same solver)."""
        return ()

    @property
    def convergence_order(self) -> float | None:
        """The global convergence order of this configuration on smooth problems (endpoint error ∝ h^order),
        checked against measurements for every registered solver by the test suite; None where there is no
        single deterministic order (stochastic samplers, which converge weakly)."""
        return None

    # ---- NFE accounting ----------------------------------------------------------------------
    def num_steps(self, nfe: int) -> int:
        """Grid intervals M that spend exactly ``nfe`` network evaluations (denoising step excluded)."""
        e = self.evals_per_step
        if nfe < e or nfe % e:
            raise ValueError(
                f"{self.name} spends {e} evaluation(s) per step; nfe must be a positive multiple of {e}, got {nfe}"
            )
        return nfe // e

    def nfe(self, num_steps: int) -> int:
        """Network evaluations for a grid of ``num_steps`` intervals (denoising step excluded)."""
        return self.evals_per_step * num_steps

    def build_grid(self, sde: LinearDiffusion, nfe: int, kind: str, t_start: float | None = None) -> np.ndarray:
        """The float64 grid from ``t_start`` (default T) to ``t_min`` that spends ``nfe`` evaluations (solvers
        with uneven steps override this)."""
        from .schedules import make_grid

        return make_grid(sde, self.num_steps(nfe), kind, t_start=t_start)

    def grid_kind(self, sde: LinearDiffusion | None = None) -> str:
        """The grid used when none is given: the solver's ``grid`` field, else its default — except that grids
        defined in the diffusion's own time variable ('uniform', 'quadratic') give way to the diffusion's
        preferred grid when it has one (EDM and FDM: 'karras', their time being σ or σ²). The intrinsic grids
        ('logsnr', 'karras') do not depend on how a diffusion parameterizes time and are kept."""
        if self.grid:
            return self.grid
        preferred = getattr(sde, "preferred_grid", None)
        if preferred and self.default_grid in ("uniform", "quadratic"):
            return preferred
        return self.default_grid

    # ---- compiled parts ----------------------------------------------------------------------
    def coefficients(self, sde: LinearDiffusion, ts: np.ndarray, nfe: int | None) -> dict[str, np.ndarray]:
        """Per-step float64 tables (leading axis M). ``nfe`` is the evaluation budget (None: full steps)."""
        return {}

    def prior(self, key: jax.Array, sde: LinearDiffusion, shape: tuple, dtype) -> Any:
        """A draw from the prior the solver starts from (PDS preconditions it)."""
        return sde.prior_sample(key, shape, dtype)

    def init(self, ctx: Context, y: Any, coefs: dict) -> Any:
        """The scan carry at the first grid time from the prior draw ``y`` (histories, previous outputs)."""
        return y

    def step(self, ctx: Context, state: Any, c: dict) -> Any:
        """One pure step from ``c['t']`` to ``c['t_next']`` (``c``: this step's row of the tables)."""
        raise NotImplementedError

    def current(self, ctx: Context, state: Any, c: dict) -> Any:
        """The state at ``c['t_next']`` after a step (for trajectories)."""
        return state

    def output(self, ctx: Context, state: Any, coefs: dict) -> Any:
        """The sample from the final carry."""
        return state

    # ---- checks --------------------------------------------------------------------------------
    def check(self, sde: LinearDiffusion) -> None:
        """Raise ValueError when the solver cannot run on ``sde`` (before tracing)."""
        if self.scalar_only and not isinstance(sde, ScalarDiffusion):
            raise ValueError(f"solver {self.name!r} needs a scalar diffusion (VP/VE/EDM), got {sde.name}")


@dataclasses.dataclass(frozen=True)
class Wrapper(Solver):
    """A solver that runs ``base`` with some part changed (its grid, its tables, its prior, …): every metadata item
    and every method a subclass does not override is the base solver's, so a wrapper states only its change."""

    base: Solver | None = None

    def __post_init__(self):
        if not isinstance(self.base, Solver):
            raise ValueError(f"{type(self).__name__} needs a diffjax solver as its base, got {self.base!r}")

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def stochastic(self) -> bool:
        return self.base.stochastic

    @property
    def scalar_only(self) -> bool:
        return self.base.scalar_only

    @property
    def evals_per_step(self) -> int:
        return self.base.evals_per_step

    @property
    def default_grid(self) -> str:
        return self.base.default_grid

    @property
    def traceable(self) -> bool:
        return self.base.traceable

    @property
    def learnable(self) -> tuple[str, ...]:
        return self.base.learnable

    @property
    def history_tables(self) -> tuple[str, ...]:
        return self.base.history_tables

    @property
    def convergence_order(self) -> float | None:
        return self.base.convergence_order

    def num_steps(self, nfe: int) -> int:
        return self.base.num_steps(nfe)

    def nfe(self, num_steps: int) -> int:
        return self.base.nfe(num_steps)

    def build_grid(self, sde, nfe, kind, t_start=None):
        return self.base.build_grid(sde, nfe, kind, t_start)

    def grid_kind(self, sde=None):
        return self.grid or self.base.grid_kind(sde)

    def coefficients(self, sde, ts, nfe):
        return self.base.coefficients(sde, ts, nfe)

    def prior(self, key, sde, shape, dtype):
        return self.base.prior(key, sde, shape, dtype)

    def init(self, ctx, y, coefs):
        return self.base.init(ctx, y, coefs)

    def step(self, ctx, state, c):
        return self.base.step(ctx, state, c)

    def current(self, ctx, state, c):
        return self.base.current(ctx, state, c)

    def output(self, ctx, state, coefs):
        return self.base.output(ctx, state, coefs)

    def check(self, sde):
        self.base.check(sde)


def xp_of(*arrays: Any):
    """The array namespace of grids or tables: ``jax.numpy`` when any is a traced (or jax) array, else ``numpy``.

    Solvers write their coefficient formulas once against this namespace: a concrete grid gives float64 numpy
    tables computed once outside the scan; a traced grid (``dj.solvers.learn`` differentiating through the
    sampler) gives the same formulas as jnp, so gradients reach the grid times."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def scalar_tables(sde: ScalarDiffusion, ts: Any) -> dict[str, Any]:
    """α, σ, λ at every grid point (float64 for a concrete grid; traced for a traced one)."""
    return {
        "alpha": on_grid(sde.alpha, ts),
        "sigma": on_grid(sde.sigma, ts),
        "lam": on_grid(sde.log_snr, ts),
    }
