"""A training-free optimized time grid: dynamic programming over a fine candidate grid against one teacher
trajectory batch (the idea of GITS, Chen et al., "On the Trajectory Regularity of ODE-based Diffusion
Sampling", ICML 2024).

1. Solve the PF-ODE for a batch of prior draws accurately (UniPC on a log-SNR grid ``refine`` times finer than
   the ``candidates`` grid) and keep the states ``x_j`` at the candidate times ``τ_0 = T > … > τ_C = t_min``.
2. The cost of a coarse step ``τ_j → τ_k`` is the RMS error of one first-order exponential-integrator (DDIM)
   step started on the teacher trajectory, ``x̂_k = (σ_k/σ_j) x_j + (α_k − σ_k α_j/σ_j) x̂0(x_j, τ_j)``, against
   ``x_k``: the local error of a step of that size at that place of the trajectory.
3. Among all paths ``0 = j_0 < j_1 < … < j_M = C`` with exactly M steps (M from the solver and the NFE), the one of
   least total cost ``Σ cost^p``, by dynamic programming (``O(M C²)``), for a few exponents p.
4. The DDIM step is only a proxy for the base solver's local error (a multistep solver's step depends on its
   history, which a single teacher point does not fix; a Heun step is second order), so every candidate grid —
   the DP grids and the solver's default grid — is run with the actual solver on the teacher batch and the one
   with the smallest endpoint error is kept: the result is never worse than the default grid on that batch.

The result is a :class:`~diffjax.solvers.learned.Learned`
solver without corrections, usable directly or as the start of :func:`diffjax.solvers.learn`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..diffusions.base import ScalarDiffusion
from ..prediction import as_model
from .learned import Learned, base_solver, diffusion_spec
from .schedules import make_grid, on_grid


def step_costs(sde: ScalarDiffusion, model, taus: np.ndarray, xs: jax.Array) -> np.ndarray:
    """``cost[j, k]`` (k > j): RMS error of a DDIM step from the teacher state ``xs[j]`` at ``taus[j]`` to
    ``taus[k]`` against ``xs[k]``; ``inf`` for k ≤ j."""
    alpha, sigma = on_grid(sde.alpha, taus), on_grid(sde.sigma, taus)
    dtype = xs.dtype
    x0 = jax.lax.map(lambda a: model.x0(a[0], a[1]), (xs, jnp.asarray(taus, dtype)))

    def row(args):
        xj, x0j, aj, sj = args
        a_k, s_k = jnp.asarray(alpha, dtype), jnp.asarray(sigma, dtype)
        bc = lambda v: v.reshape((-1,) + (1,) * xj.ndim)
        pred = bc(s_k / sj) * xj[None] + bc(a_k - s_k * aj / sj) * x0j[None]
        return jnp.sqrt(jnp.mean((pred - xs) ** 2, axis=tuple(range(1, xs.ndim))))

    costs = np.asarray(
        jax.jit(lambda: jax.lax.map(row, (xs, x0, jnp.asarray(alpha, dtype), jnp.asarray(sigma, dtype))))(), np.float64
    )
    j, k = np.indices(costs.shape)
    return np.where(k > j, costs, np.inf)


def cheapest_path(costs: np.ndarray, num_steps: int) -> list[int]:
    """Indices ``0 = j_0 < … < j_M = C`` minimizing ``Σ costs[j_i, j_{i+1}]`` with exactly ``num_steps`` steps."""
    c = costs.shape[0] - 1
    if not 1 <= num_steps <= c:
        raise ValueError(f"need 1 <= steps <= {c} candidate intervals, got {num_steps}")
    best = np.full((num_steps + 1, c + 1), np.inf)
    prev = np.zeros((num_steps + 1, c + 1), dtype=int)
    best[0, 0] = 0.0
    for s in range(1, num_steps + 1):
        total = best[s - 1][:, None] + costs  # [j, k]: reach j in s−1 steps, then step j → k
        prev[s] = np.argmin(total, axis=0)
        best[s] = total[prev[s], np.arange(c + 1)]
    path = [c]
    for s in range(num_steps, 0, -1):
        path.append(int(prev[s, path[-1]]))
    return path[::-1]


def optimized_grid(
    key: jax.Array,
    sde: ScalarDiffusion,
    model: Any,
    solver: Any,
    nfe: int,
    data_shape: tuple[int, ...],
    *,
    kind: str = "score",
    num: int = 256,
    candidates: int = 120,
    refine: int = 4,
    exponents: tuple[float, ...] = (0.5, 1.0, 2.0),
    dtype=None,
) -> Learned:
    """The dynamic-programming grid (module docstring) for ``solver`` at ``nfe`` evaluations, from ``num`` prior
    draws of ``key`` and ``candidates`` log-SNR-uniform candidate intervals. Costs ``(candidates + 1)`` batched
    model evaluations plus the teacher's ``candidates·refine``."""
    from .driver import plan, sample

    base = base_solver(sde, solver, "an optimized grid")
    _, ts0, budget = plan(sde, base, nfe)
    m = len(ts0) - 1
    if not (isinstance(candidates, int) and candidates >= m and isinstance(refine, int) and refine >= 1 and num >= 1):
        raise ValueError(f"need candidates >= {m} steps, refine >= 1 and num >= 1; got {candidates}, {refine}, {num}")
    dtype = dtype or jnp.zeros(()).dtype
    data_shape = tuple(int(s) for s in data_shape)
    y = sde.prior_sample(key, (num,) + data_shape, dtype)
    fine = make_grid(sde, candidates * refine, "logsnr", t_start=float(ts0[0]), t_end=float(ts0[-1]))
    _, path = sample(jax.random.key(0), sde, model, solver="unipc", init=y, grid=fine, kind=kind, trajectory=True)
    taus = fine[::refine]
    xs = jnp.concatenate([y[None], path[refine - 1 :: refine]])
    costs = step_costs(sde, as_model(sde, model, kind), taus, xs)
    grids = {"default": ts0}
    for p in exponents:
        grids[f"dp_p{p:g}"] = taus[cheapest_path(costs**p, m)]
    errors = {}
    for name, ts in grids.items():
        x = sample(jax.random.key(0), sde, model, solver=base, nfe=nfe, init=y, grid=ts, kind=kind, check_finite=False)
        err = float(jnp.sqrt(jnp.mean((x - xs[-1]) ** 2)))
        errors[name] = err if np.isfinite(err) else float("inf")
    chosen = min(errors, key=errors.get)
    info = {
        "method": "dynamic programming over a fine grid (GITS-style)",
        "num": num,
        "candidates": candidates,
        "refine": refine,
        "teacher_batch_rmse": errors,
        "chosen": chosen,
    }
    return Learned(
        base=base,
        times=tuple(float(t) for t in grids[chosen]),
        diffusion=diffusion_spec(sde),
        nfe_budget=int(nfe),
        info=info,
    )
