"""``sample``: the one ``lax.scan`` driver behind every solver, with an exact NFE budget."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..diffusions.base import LinearDiffusion, ScalarDiffusion
from ..models.parameterization import as_model
from . import registry
from .base import Context, Solver
from .schedules import validate_grid


def plan(
    sde: LinearDiffusion,
    solver: Any,
    nfe: int | None = None,
    grid: Any = None,
    denoise: bool = False,
) -> tuple[Solver, np.ndarray, int]:
    """Resolve the solver and its float64 grid; returns ``(solver, ts, evaluations)``. Raises on bad input."""
    if not isinstance(sde, LinearDiffusion):
        raise TypeError(f"sde must be a diffjax diffusion (e.g. dj.VP()), got {type(sde).__name__}")
    solver = registry.get(solver)
    solver.check(sde)
    if nfe is not None and (not isinstance(nfe, (int, np.integer)) or isinstance(nfe, bool)):
        raise ValueError(f"nfe must be an integer, got {nfe!r}")
    extra = 1 if denoise else 0
    if grid is None or isinstance(grid, str):
        if nfe is None:
            raise ValueError("give nfe (the network-evaluation budget) or an explicit time grid")
        avail = int(nfe) - extra
        if avail < 1:
            raise ValueError(f"nfe={nfe} leaves no evaluation for {solver.name!r} (denoise={denoise} uses 1)")
        ts = solver.build_grid(sde, avail, grid or solver.grid_kind(sde))
        return solver, ts, avail
    ts = validate_grid(sde, grid)
    evals = solver.nfe(len(ts) - 1)
    if nfe is not None and evals + extra != nfe:
        raise ValueError(
            f"the grid has {len(ts) - 1} steps, which costs {evals + extra} NFE with {solver.name!r} "
            f"(denoise={denoise}), but nfe={nfe} was asked"
        )
    return solver, ts, None


def nfe_of(solver: Any, num_steps: int, denoise: bool = False) -> int:
    """NFE that ``solver`` spends on a grid of ``num_steps`` intervals."""
    return registry.get(solver).nfe(num_steps) + (1 if denoise else 0)


def _check_state(sde: LinearDiffusion, y: Any) -> None:
    sde.check_state(y)
    for leaf in jax.tree.leaves(y):
        if not hasattr(leaf, "ndim") or leaf.ndim < 1:
            raise ValueError("init must be a batch of states with the batch axis first")
        if not isinstance(leaf, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(leaf))):
            raise ValueError("init contains non-finite values")


def sample(
    key: jax.Array,
    sde: LinearDiffusion,
    score: Any,
    solver: Any = "dpmpp_2m",
    nfe: int | None = None,
    shape: tuple[int, ...] | None = None,
    init: Any = None,
    grid: Any = None,
    denoise: bool = False,
    kind: str = "score",
    return_state: bool = False,
    trajectory: bool = False,
    dtype=None,
) -> Any:
    """Draw samples by solving the reverse dynamics of ``sde`` from its prior (or ``init``) down to ``t_min``.

    Args:
      key: PRNG key; sample b uses ``fold_in(key, b)``, so samples do not depend on the batch size.
      sde: the diffusion.
      score: the model, a callable ``(y, t) -> prediction`` (``kind`` says which: 'score', 'eps', 'x0',
        'edm'), or a :class:`diffjax.models.Model`.
      solver: a name from :func:`diffjax.solvers.available` or a solver instance.
      nfe: network-evaluation budget, spent exactly (including the denoising step when ``denoise``).
      shape: ``(B, *data_shape)`` of the samples (ignored when ``init`` is given).
      init: start from this prior sample (a state at the grid's first time) instead of drawing one.
      grid: a grid kind ('uniform', 'quadratic', 'logsnr', 'karras') or an explicit decreasing array of times.
      denoise: end with ``x̂0(y, t_end)`` (one extra NFE) instead of returning ``x`` at ``t_end``.
      return_state: return the full state (e.g. CLD's ``(x, v)``) instead of its data part.
      trajectory: also return the data part after every step, shape ``(M, B, *data_shape)`` (at the grid
        times ``t_1 … t_M``), as ``(x, xs)``.

    Returns the data part ``x`` of the final state, shape ``(B, *data_shape)``.
    """
    solver, ts, budget = plan(sde, solver, nfe, grid, denoise)
    model = as_model(sde, score, kind)
    dtype = dtype or jnp.zeros(()).dtype
    if init is None:
        if shape is None:
            raise ValueError("give shape=(B, *data_shape) or init=")
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f"shape must be (B, *data_shape) with positive sizes, got {shape}")
        if hasattr(sde, "shape") and tuple(shape[1:]) != tuple(sde.shape):
            raise ValueError(f"{sde.name} was built for data of shape {tuple(sde.shape)}, got shape={shape}")
        batch = shape[0]
    else:
        _check_state(sde, init)
        batch = jax.tree.leaves(init)[0].shape[0]
    keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(batch))
    if init is None:
        prior_key = lambda k: jax.random.fold_in(k, 0x7FFFFFFF)
        y = jax.vmap(lambda k: solver.prior(prior_key(k), sde, (1,) + shape[1:], dtype))(keys)
        y = jax.tree.map(lambda l: l[:, 0], y)
    else:
        y = init
    ctx = Context(sde, model, keys)
    coefs = solver.coefficients(sde, ts, budget)
    coefs = {k: jnp.asarray(v, dtype) for k, v in coefs.items()}
    m = len(ts) - 1
    coefs.update(
        t=jnp.asarray(ts[:-1], dtype), t_next=jnp.asarray(ts[1:], dtype), i=jnp.arange(m, dtype=jnp.int32)
    )
    state = solver.init(ctx, y, coefs)
    def body(s, c):
        s = solver.step(ctx, s, c)
        return s, (sde.data_part(solver.current(ctx, s, c)) if trajectory else None)

    state, path = jax.lax.scan(body, state, coefs)
    y = solver.output(ctx, state, coefs)
    if denoise:
        t_end = jnp.asarray(ts[-1], dtype)
        if isinstance(sde, ScalarDiffusion):
            y = sde.state_from_data(model.x0(y, t_end))
        else:
            y = sde.clean_from_score(y, t_end, model.score(y, t_end))
    out = y if return_state else sde.data_part(y)
    return (out, path) if trajectory else out
