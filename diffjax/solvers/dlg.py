"""Denoising Langevin Gibbs (DLG), the DMCMC sampler of Kim & Ye (ICML 2023, arXiv 2209.14593).

Persistent chains live on the product space (data x, noise-level index j) with target
``π(x, j) = (1/K) p_{t_j}(x)``: the conditionals are ``π(x | j) = p_{t_j}(x)`` (score ``s(x, t_j)``) and
``π(j | x) ∝ p_{t_j}(x)`` (a noise-level classifier, or the exact test-bed posterior). One Gibbs sweep is

1. a Langevin move in x:  ``x ← x + (η/2) s(x, t_j) + √η z``  (ULA, 1 NFE; ``move="mala"`` adds the
   Metropolis test, 2 NFE, and needs ``log p_t``);
2. a noise-level update:  ``j ← argmax_k c(x)_k``  (``"argmax"``, the published code) or
   ``j ~ Categorical(softmax c(x))`` (``"sample"``, the exact Gibbs step).

Per output batch the chains run ``n_skip`` sweeps; each slot keeps the visited state with the lowest noise level,
which is handed — with its own start time ``t_j`` — to ANY integrator of the library through the driver's
per-sample grids (``dj.sample(..., grid=table, grid_index=j)``), and a final Tweedie step
``x̂0(x, t_min)`` (+1 NFE) ends the sample. NFE per sample = ``n_skip·(1 or 2) + integrator NFE + 1``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..diffusions.base import ScalarDiffusion
from ..prediction import as_model
from . import registry
from .base import Context
from .driver import sample as solve
from .ode import EDMHeun
from .schedules import on_grid


def level_times(sde: ScalarDiffusion, num_levels: int, t_low: float = 1e-3) -> np.ndarray:
    """The classifier's noise grid in diffusion time: ``t_j = T − j (T − t_low·T)/(K − 1)``, j = 0…K−1.

    For VE this is DMCMC's grid ``σ_j = σ_min (σ_max/σ_min)^{t_j}`` (log-uniform in σ, ``σ_0 = σ_max``).
    """
    if not isinstance(num_levels, (int, np.integer)) or num_levels < 2:
        raise ValueError(f"num_levels must be an integer >= 2, got {num_levels!r}")
    return sde.T - np.arange(num_levels, dtype=np.float64) * (sde.T - t_low * sde.T) / (num_levels - 1)


def dmcmc_kar2() -> EDMHeun:
    """KAR2, DMCMC's stochastic Heun integrator (S_churn 80, S_tmin 0.05, S_tmax 1, S_noise 1.007)."""
    return EDMHeun(s_churn=80.0, s_tmin=0.05, s_tmax=1.0, s_noise=1.007)


class Chains(NamedTuple):
    """Persistent DLG chains: one state per batch slot."""

    x: jax.Array  # (B, *data_shape)
    level: jax.Array  # (B,) int32 index into the noise grid (0 = noisiest)


@functools.lru_cache(maxsize=32)
def _grid_table(sde, integrator, nfe: int, kind: str, times: tuple) -> np.ndarray:
    """One integrator grid per noise level, from ``t_j`` down to ``t_min`` (float64, ``(K, M+1)``)."""
    return np.stack([integrator.build_grid(sde, nfe, kind, t_start=t) for t in times])


@dataclasses.dataclass(frozen=True)
class DLG:
    """DLG chains + a denoising integrator (defaults: the repo's CelebA-HQ setting N = 20, η = 0.8, n_skip = 10,
    KAR2 integrator; NFE 10 + 37 + 1 = 48).

    Args:
      integrator: any solver (name or instance) started at each chain's own noise level.
      integrator_nfe: its evaluation budget (Tweedie excluded).
      grid: the integrator's grid kind (None: its default, 'karras' for Heun).
      levels: K (noise levels from :func:`level_times`) or an explicit decreasing array of times.
      eta: Langevin step size η (constant, not scaled with σ).
      eta_clamp: optional c; the step used at level j is ``min(η, c σ_j²)`` (guards small σ).
      n_skip: sweeps per output batch.
      sigma_update: 'argmax' (code) or 'sample' (exact Gibbs).
      move: 'ula' (code) or 'mala' (exactly invariant; needs ``log_density``; 2 NFE per sweep).
      tweedie: end with ``x̂0(x, t_min)`` (+1 NFE).
      burn_in: ``((sweeps, η or None), …)`` run by :meth:`init` (None: ``eta``); CIFAR-10's (10 @ 0.5, 10 @ η).
      init_solver, init_nfe, init_sigma: burn-in start: one sample of ``init_solver`` from the prior, re-noised to
        noise-to-signal ratio ``init_sigma`` (DMCMC: KAR2 with N = 20, then ``x + 0.5 z``).
      clip: optional ``(lo, hi)`` applied to the output.
    """

    integrator: Any = dataclasses.field(default_factory=dmcmc_kar2)
    integrator_nfe: int = 37
    grid: str | None = None
    levels: Any = 1000
    eta: float = 0.8
    eta_clamp: float | None = None
    n_skip: int = 10
    sigma_update: str = "argmax"
    move: str = "ula"
    tweedie: bool = True
    burn_in: tuple = ((10, 0.5), (10, None))
    init_solver: Any = dataclasses.field(default_factory=dmcmc_kar2)
    init_nfe: int = 37
    init_sigma: float = 0.5
    clip: tuple | None = None

    def __post_init__(self):
        if not (isinstance(self.eta, (int, float)) and self.eta > 0 and math.isfinite(self.eta)):
            raise ValueError(f"DLG needs a finite step size eta > 0, got {self.eta!r}")
        if self.eta_clamp is not None and not self.eta_clamp > 0:
            raise ValueError(f"eta_clamp must be > 0 (or None), got {self.eta_clamp}")
        if not isinstance(self.n_skip, (int, np.integer)) or self.n_skip < 0:
            raise ValueError(f"n_skip must be an integer >= 0, got {self.n_skip!r}")
        if self.sigma_update not in ("argmax", "sample"):
            raise ValueError(f"sigma_update must be 'argmax' or 'sample', got {self.sigma_update!r}")
        if self.move not in ("ula", "mala"):
            raise ValueError(f"move must be 'ula' or 'mala', got {self.move!r}")
        for n, e in self.burn_in:
            if n < 0 or (e is not None and not e > 0):
                raise ValueError(f"burn_in entries are (sweeps >= 0, eta > 0 or None), got {(n, e)}")
        registry.get(self.integrator).num_steps(self.integrator_nfe)  # raises on an impossible budget

    # ---- bookkeeping ---------------------------------------------------------------------------
    @property
    def nfe_per_sweep(self) -> int:
        """Network evaluations per Langevin sweep: 1 (ULA), 2 (MALA's score and log-density)."""
        return 2 if self.move == "mala" else 1

    @property
    def nfe(self) -> int:
        """Network evaluations per emitted sample: ``n_skip·(1|2) + integrator + Tweedie`` (§1.9)."""
        return self.n_skip * self.nfe_per_sweep + self.integrator_nfe + (1 if self.tweedie else 0)

    def times(self, sde: ScalarDiffusion) -> np.ndarray:
        """The noise grid in diffusion time (decreasing), validated against the diffusion's range."""
        if not isinstance(sde, ScalarDiffusion):
            raise ValueError(f"DLG needs a scalar diffusion (VE/VP/EDM), got {sde.name}")
        ts = level_times(sde, self.levels) if np.ndim(self.levels) == 0 else np.asarray(self.levels, np.float64)
        if ts.ndim != 1 or len(ts) < 2 or not np.all(np.isfinite(ts)) or not np.all(np.diff(ts) < 0):
            raise ValueError("levels must be an integer K >= 2 or a strictly decreasing 1-D array of times")
        if ts[-1] <= sde.t_min or ts[0] > sde.T * (1 + 1e-12):
            raise ValueError(
                f"the noise grid [{ts[-1]:.3g}, {ts[0]:.3g}] must lie in (t_min, T] = ({sde.t_min}, {sde.T}] of "
                f"{sde.name}: the classifier's levels and the score model's range must match"
            )
        return ts

    def sigmas(self, sde: ScalarDiffusion) -> np.ndarray:
        """Noise-to-signal ratio σ_j/α_j of every level (σ_j for VE/EDM)."""
        return on_grid(sde.rho, self.times(sde))

    # ---- chain ---------------------------------------------------------------------------------
    def _levels_from(self, logits: jax.Array, keys: jax.Array, sample: bool) -> jax.Array:
        if sample:
            return jax.vmap(lambda k, l: jax.random.categorical(k, l))(keys, logits).astype(jnp.int32)
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)

    def sweeps(
        self,
        key: jax.Array,
        sde: ScalarDiffusion,
        model: Any,
        classifier: Callable,
        chains: Chains,
        num: int,
        eta: float | None = None,
        log_density: Callable | None = None,
        kind: str = "score",
    ) -> tuple[Chains, Chains, jax.Array]:
        """Run ``num`` Gibbs sweeps (one ``lax.scan``). Returns ``(last, lowest, levels)``: the chains after the
        sweeps, the per-slot visited state with the lowest noise level (the start state included; replaced only
        on a strictly lower level) and the level trajectory ``(num, B)``."""
        ts = jnp.asarray(self.times(sde), chains.x.dtype)
        k_levels = ts.shape[0]
        model = as_model(sde, model, kind)
        eta = self.eta if eta is None else eta
        if self.move == "mala" and log_density is None:
            raise ValueError("move='mala' needs log_density(x, t) -> (B,) log p_t(x) for the Metropolis test")
        out = jax.eval_shape(classifier, chains.x)
        if out.shape != (chains.x.shape[0], k_levels):
            raise ValueError(
                f"the classifier returns logits of shape {out.shape}; expected (B, K) = "
                f"({chains.x.shape[0]}, {k_levels}) for this noise grid"
            )
        batch = chains.x.shape[0]
        keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(batch))
        ctx = Context(sde, model, keys)
        sig2 = jnp.asarray(self.sigmas(sde), chains.x.dtype) ** 2
        bc = lambda v: v.reshape((-1,) + (1,) * (chains.x.ndim - 1))

        def body(carry, i):
            x, j, best_x, best_j = carry
            t = ts[j]
            h = jnp.full(j.shape, eta, x.dtype)
            if self.eta_clamp is not None:
                h = jnp.minimum(h, self.eta_clamp * sig2[j])
            s = model.score(x, t)
            prop = x + bc(h / 2) * s + bc(jnp.sqrt(h)) * ctx.normal(3 * i, x)
            if self.move == "mala":
                s_p = model.score(prop, t)
                flat = lambda v: v.reshape(v.shape[0], -1)
                log_q = lambda a, b, sb: -jnp.sum(flat(a - b - bc(h / 2) * sb) ** 2, -1) / (2 * h)
                log_ratio = log_density(prop, t) - log_density(x, t) + log_q(x, prop, s_p) - log_q(prop, x, s)
                u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 3 * i + 1)))(keys)
                x = jnp.where(bc(jnp.log(u) < log_ratio), prop, x)
            else:
                x = prop
            level_keys = jax.vmap(lambda k: jax.random.fold_in(k, 3 * i + 2))(keys)
            j = self._levels_from(classifier(x), level_keys, self.sigma_update == "sample")
            better = j > best_j
            best_x = jnp.where(bc(better), x, best_x)
            best_j = jnp.where(better, j, best_j)
            return (x, j, best_x, best_j), j

        init = (chains.x, chains.level, chains.x, chains.level)
        (x, j, bx, bj), trace = jax.lax.scan(body, init, jnp.arange(num))
        return Chains(x, j), Chains(bx, bj), trace

    def init(
        self,
        key: jax.Array,
        sde: ScalarDiffusion,
        model: Any,
        classifier: Callable,
        shape: tuple[int, ...],
        log_density: Callable | None = None,
        kind: str = "score",
        dtype=None,
    ) -> Chains:
        """Burn-in (not counted in NFE): a sample of ``init_solver`` from the prior, re-noised to
        ``init_sigma``, classified (argmax), then the ``burn_in`` sweeps."""
        self.times(sde)
        k_start, k_noise, k_burn = jax.random.split(key, 3)
        x = solve(k_start, sde, model, self.init_solver, nfe=self.init_nfe, shape=shape, kind=kind, dtype=dtype)
        t0 = float(on_grid(sde.t_of_rho, self.init_sigma))
        if not sde.t_min < t0 < sde.T:
            raise ValueError(f"init_sigma={self.init_sigma} is outside the noise range of {sde.name}")
        x, _ = sde.perturb(k_noise, x, jnp.asarray(t0, x.dtype))
        chains = Chains(x, jnp.argmax(classifier(x), axis=-1).astype(jnp.int32))
        for n, (num, eta) in enumerate(self.burn_in):
            if num:
                chains, _, _ = self.sweeps(
                    jax.random.fold_in(k_burn, n), sde, model, classifier, chains, num, eta, log_density, kind
                )
        return chains

    def sample(
        self,
        key: jax.Array,
        sde: ScalarDiffusion,
        model: Any,
        classifier: Callable,
        chains: Chains,
        log_density: Callable | None = None,
        kind: str = "score",
        return_info: bool = False,
    ) -> Any:
        """One output batch: ``n_skip`` sweeps, the lowest-level state of each slot denoised by the integrator
        from its own level (per-sample grids), then Tweedie. Returns ``(x, chains)`` — the chains continue from
        their last state — or ``(x, chains, info)`` with the level trajectory and the kept levels."""
        ts = self.times(sde)
        k_sweep, k_int = jax.random.split(key)
        last, best, trace = self.sweeps(k_sweep, sde, model, classifier, chains, self.n_skip, None, log_density, kind)
        integrator = registry.get(self.integrator)
        table = _grid_table(
            sde, integrator, self.integrator_nfe, self.grid or integrator.grid_kind(sde), tuple(float(t) for t in ts)
        )
        x = solve(
            k_int,
            sde,
            model,
            integrator,
            nfe=self.integrator_nfe + (1 if self.tweedie else 0),
            init=best.x,
            grid=table,
            grid_index=best.level,
            denoise=self.tweedie,
            kind=kind,
            dtype=best.x.dtype,
            check_finite=False,
        )
        if self.clip is not None:
            x = jnp.clip(x, *self.clip)
        if not isinstance(x, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(x))):
            raise FloatingPointError(
                "DLG produced non-finite samples: the Langevin step eta is too large for the lowest noise levels "
                f"(eta={self.eta}); lower it or set eta_clamp"
            )
        if return_info:
            return x, last, {"levels": trace, "kept_level": best.level, "kept_time": jnp.asarray(ts)[best.level]}
        return x, last
