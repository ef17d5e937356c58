"""``sample``: the one ``lax.scan`` driver behind every solver, with an exact NFE budget."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..diffusions.base import LinearDiffusion, ScalarDiffusion
from ..prediction import as_model
from . import registry
from .base import Context, Solver
from .schedules import validate_grid


def plan(
    sde: LinearDiffusion,
    solver: Any,
    nfe: int | None = None,
    grid: Any = None,
    denoise: bool = False,
) -> tuple[Solver, np.ndarray, int | None]:
    """Resolve the solver and its float64 grid; returns ``(solver, ts, budget)``. Raises on bad input.

    ``grid`` may be a kind, a 1-D array of times, or a 2-D table ``(K, M+1)`` of per-sample grids (every row a
    valid grid with the same number of steps). ``budget`` is the evaluation count the solver must spend on
    each grid (``nfe`` minus the denoising step), or None when only the grid fixes it.
    """
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
    rows_given = isinstance(grid, (list, tuple)) and len(grid) > 0 and np.ndim(grid[0]) == 1
    if rows_given or np.ndim(grid) == 2:
        if len(grid) == 0:
            raise ValueError("a table of per-sample grids needs at least one row")
        rows = [validate_grid(sde, row) for row in grid]
        if len({len(r) for r in rows}) != 1:
            raise ValueError("all per-sample grids must have the same number of steps")
        ts = np.stack(rows)
    else:
        ts = validate_grid(sde, grid)
    m = ts.shape[-1] - 1
    if nfe is None:
        return solver, ts, None
    avail = int(nfe) - extra
    try:
        fits = avail >= 1 and solver.num_steps(avail) == m
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"the grid has {m} steps, which costs {solver.nfe(m) + extra} NFE with {solver.name!r} "
            f"(denoise={denoise}), but nfe={nfe} was asked"
        )
    return solver, ts, avail


def nfe_of(solver: Any, num_steps: int, denoise: bool = False) -> int:
    """NFE that ``solver`` spends on a grid of ``num_steps`` intervals."""
    return registry.get(solver).nfe(num_steps) + (1 if denoise else 0)


def _check_state(sde: LinearDiffusion, y: Any) -> None:
    sde.check_state(y)
    for leaf in jax.tree.leaves(y):
        if not hasattr(leaf, "ndim") or leaf.ndim < 1:
            raise ValueError("init must be a batch of states with the batch axis first")
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise ValueError(f"init must be floating point, got {leaf.dtype}")
        if not isinstance(leaf, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(leaf))):
            raise ValueError("init contains non-finite values")


def _tables(sde: LinearDiffusion, solver: Solver, ts: np.ndarray, budget: int | None) -> dict[str, np.ndarray]:
    """The solver's per-step coefficients on one grid, plus ``t``, ``t_next`` and the step index ``i`` (numpy)."""
    coefs = {k: np.asarray(v) for k, v in solver.coefficients(sde, ts, budget).items()}
    coefs.update(t=ts[:-1], t_next=ts[1:], i=np.arange(len(ts) - 1, dtype=np.int32))
    return coefs


def _to_device(coefs: dict[str, np.ndarray], dtype) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v, jnp.int32 if k == "i" else dtype) for k, v in coefs.items()}


def run_tables(solver: Solver, ctx: Context, y: Any, coefs: dict, denoise: bool = False, trajectory: bool = False):
    """Run ``solver`` over its per-step tables ``coefs`` (one ``lax.scan``) from the state ``y``; returns
    ``(y_end, path)`` with ``path`` the data part after every step when ``trajectory`` (else None). Pure: the
    tables may be traced (``dj.solvers.learn`` differentiates the endpoint with respect to them)."""
    sde, model = ctx.sde, ctx.model
    state = solver.init(ctx, y, coefs)

    # the carry keeps its dtype: coefficients or a model computing in a wider type (EDM's float32 log α under
    # bfloat16 states) would otherwise change it and break the scan
    keep = lambda new, old: jax.tree.map(lambda n, o: n.astype(o.dtype) if hasattr(o, "dtype") else n, new, old)

    def body(s, c):
        s = keep(solver.step(ctx, s, c), s)
        return s, (sde.data_part(solver.current(ctx, s, c)) if trajectory else None)

    state, path = jax.lax.scan(body, state, coefs)
    y_out = solver.output(ctx, state, coefs)
    if denoise:
        t_end = coefs["t_next"][-1]
        if isinstance(sde, ScalarDiffusion):
            y_out = sde.state_from_data(model.x0(y_out, t_end))
        else:
            y_out = sde.clean_from_score(y_out, t_end, model.score(y_out, t_end))
    return keep(y_out, y), path


def sample(
    key: jax.Array,
    sde: LinearDiffusion,
    model: Any = None,
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
    grid_index: Any = None,
    mesh: Any = None,
    sample_offset: Any = 0,
    check_finite: bool = True,
) -> Any:
    """Draw samples by solving the reverse dynamics of ``sde`` from its prior (or ``init``) down to ``t_min``.

    Args:
      key: PRNG key; sample b uses ``fold_in(key, b)``, so samples do not depend on the batch size.
      sde: the diffusion.
      model: a callable ``(y, t) -> prediction`` (``kind`` says which: 'score', 'eps', 'x0', 'v', 'velocity',
        'edm'), or a :class:`diffjax.prediction.Model`.
      solver: a name from :func:`diffjax.solvers.available` or a solver instance.
      nfe: network-evaluation budget, spent exactly (including the denoising step when ``denoise``).
      shape: ``(B, *data_shape)`` of the samples (ignored when ``init`` is given).
      init: start from this state (at the grid's first time) instead of drawing from the prior. Without it the
        grid must start at ``T`` (the prior is the marginal at T): a grid that starts lower raises ValueError.
      grid: a grid kind ('uniform', 'quadratic', 'logsnr', 'karras', 'nsr'), an explicit decreasing array of
        times, or **per-sample grids**: a 2-D table ``(K, M+1)`` whose rows are grids with the same number of
        steps; sample b then runs on row ``grid_index[b]`` (default: row b, i.e. one grid per sample). The
        table is concrete (coefficients are precomputed per row in float64), the index may be traced — this
        is how DLG hands each chain's own noise level to any integrator. Per-sample grids need ``init``.
      denoise: end with ``x̂0(y, t_end)`` (one extra NFE) instead of returning ``x`` at ``t_end``.
      return_state: return the full state (e.g. CLD's ``(x, v)``) instead of its data part.
      trajectory: also return the data part after every step, shape ``(M, B, *data_shape)`` (at the grid
        times ``t_1 … t_M``), as ``(x, xs)``.
      grid_index: ``(B,)`` integer row of the grid table for each sample (only with a 2-D ``grid``).
      mesh: a ``jax.sharding.Mesh``; the batch axis is split over its first axis (data-parallel sampling on all
        devices; samples are identical to unsharded ones since every sample has its own key).
      sample_offset: index of the first sample (keys ``fold_in(key, sample_offset + b)``): chunks of a large
        run reproduce the one-shot samples.
      check_finite: after an eager call, raise ``FloatingPointError`` naming the solver and the first step at
        which the state became non-finite (a re-run finds it). Not checked inside the user's ``jit``.

    Returns the data part ``x`` of the final state, shape ``(B, *data_shape)``.

    **Compiled once per configuration.** A plain call compiles the sampler the first time a configuration is
    seen and reuses the executable afterwards (an LRU cache of :data:`CACHE.maxsize` entries;
    :func:`cache_info`, :func:`clear_cache`). The configuration is everything static: the diffusion, the solver,
    the grid (its times), NFE, ``shape`` (when no ``init``), dtype, ``kind``, the flags, the mesh, and the model's
    *structure* — the PyTree structure of ``model`` with its non-array leaves (plain functions are compared by
    identity). The PRNG key, ``init``, ``sample_offset``, ``grid_index`` and every array leaf of the model (the
    weights of an NNX network, class labels) are arguments of the compiled function: sampling new keys or a new
    checkpoint of the same network does not recompile; a new closure (e.g. ``data.score_fn(sde)`` called again,
    or a lambda written in a loop) does. Inside a user's ``jax.jit``/``vmap`` the call is traced as before.
    """
    solver, ts, budget = plan(sde, solver, nfe, grid, denoise)
    if model is None:
        raise TypeError("dj.sample needs the model: a callable (y, t) -> prediction or a diffjax Model")
    user_model = model
    model = as_model(sde, model, kind)
    dtype = jnp.dtype(dtype or jnp.zeros(()).dtype)
    per_sample = ts.ndim == 2
    if grid_index is not None and not per_sample:
        raise ValueError("grid_index selects rows of a 2-D table of per-sample grids; grid is not one")
    if init is None:
        if per_sample:
            raise ValueError("per-sample grids start from per-sample states: give init=")
        if shape is None:
            raise ValueError("give shape=(B, *data_shape) or init=")
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape):
            raise ValueError(f"shape must be whole numbers (B, *data_shape), got {tuple(shape)}")
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f"shape must be (B, *data_shape) with positive sizes, got {shape}")
        sde.check_data_shape(shape[1:])
        batch = shape[0]
        if ts[0] < sde.T * (1 - 1e-6):  # the prior is the marginal at T, not at the grid's first time
            raise ValueError(
                f"the grid starts at t={ts[0]:.6g}, below {sde.name}'s T={sde.T:g}, where the prior sample is drawn: "
                f"pass init= a sample of the marginal at t={ts[0]:.6g} (for EDM/VE, roughly σ(t)·N(0, I), as "
                "k-diffusion starts at sigmas[0]), or a grid that starts at T"
            )
    else:
        _check_state(sde, init)
        batch = jax.tree.leaves(init)[0].shape[0]
        shape = None
    if per_sample:
        if grid_index is None:
            if ts.shape[0] != batch:
                raise ValueError(f"{ts.shape[0]} per-sample grids for a batch of {batch}; give grid_index=")
            grid_index = jnp.arange(batch)
        grid_index = jnp.asarray(grid_index)
        if grid_index.shape != (batch,) or not jnp.issubdtype(grid_index.dtype, jnp.integer):
            raise ValueError(
                f"grid_index must be an integer array of shape ({batch},), got {grid_index.shape} {grid_index.dtype}"
            )
    if mesh is not None:
        axis = mesh.axis_names[0]
        if batch % mesh.shape[axis]:
            raise ValueError(f"batch {batch} is not divisible by the {mesh.shape[axis]} devices of mesh axis {axis!r}")
    config = _Config(sde, solver, ts, budget, dtype, shape, denoise, return_state, trajectory, mesh)
    leaves, treedef = jax.tree.flatten(model)
    is_array = [isinstance(l, (jax.Array, np.ndarray, np.generic)) for l in leaves]
    arrays = [l for l, a in zip(leaves, is_array) if a]
    statics = tuple(l for l, a in zip(leaves, is_array) if not a)
    args = (key, init, grid_index, sample_offset, arrays)
    # the same call with the trajectory, to locate the first non-finite step when the result is not finite
    rerun = lambda: sample(
        key,
        sde,
        user_model,
        solver,
        nfe,
        None if init is not None else shape,
        init,
        grid,
        denoise,
        kind,
        return_state,
        True,
        dtype,
        grid_index,
        mesh,
        sample_offset,
        False,
    )
    if any(isinstance(l, jax.core.Tracer) for l in jax.tree.leaves(args)):  # inside the user's jit/vmap
        _check_model_output(config, model, init)
        return _sample_impl(config, key, init, grid_index, sample_offset, model)
    try:
        cache_key = (config.static_key(), treedef, tuple(is_array), statics)
        hash(cache_key)
    except TypeError:  # an unhashable non-array leaf: no caching, still correct
        _check_model_output(config, model, init)
        out = jax.jit(lambda *a: _sample_impl(config, *a[:4], model))(key, init, grid_index, sample_offset)
        return _checked(out, config, check_finite, rerun)

    def build():
        _check_model_output(config, model, init)  # once per configuration

        def run(key, init, grid_index, sample_offset, arrays):
            CACHE.traces += 1
            it = iter(arrays)
            rebuilt = jax.tree.unflatten(
                treedef, [next(it) if a else s for a, s in zip(is_array, _refill(statics, is_array))]
            )
            return _sample_impl(config, key, init, grid_index, sample_offset, rebuilt)

        return jax.jit(run)

    out = CACHE.get(cache_key, build)(*args)
    return _checked(out, config, check_finite, rerun)


def _check_model_output(config: "_Config", model, init) -> None:
    """Raise ValueError before tracing when the model's output does not have the shape its kind needs."""
    sde, solver, dtype = config.sde, config.solver, config.dtype
    if init is None:
        state = jax.eval_shape(lambda: solver.prior(jax.random.key(0), sde, config.shape, dtype))
    else:
        state = jax.tree.map(lambda l: jax.ShapeDtypeStruct(l.shape, l.dtype), init)
    t = jax.ShapeDtypeStruct((), dtype)
    try:
        out = jax.eval_shape(model.fn, state, t)
    except Exception as e:  # the model cannot even be traced on these states
        raise ValueError(
            f"the model failed on states of shape {jax.tree.map(lambda l: l.shape, state)} at a scalar "
            f"time: {type(e).__name__}: {e}"
        ) from e
    want = sde.data_part(state) if model.kind == "x0" else state
    shape_of = lambda tree: jax.tree.map(lambda l: tuple(l.shape), tree)
    if jax.tree.structure(out) != jax.tree.structure(want) or shape_of(out) != shape_of(want):
        raise ValueError(
            f"the model returned {shape_of(out)} for states of shape {shape_of(state)}; a {model.kind!r} "
            f"model must return {shape_of(want)} (one prediction per sample, same shape as "
            f"{'the data' if model.kind == 'x0' else 'the state'})"
        )
    bad = [l.dtype for l in jax.tree.leaves(out) if not jnp.issubdtype(l.dtype, jnp.floating)]
    if bad:
        raise ValueError(f"the model returned {bad[0]} values; predictions must be floating point")


def _checked(out, config: "_Config", check_finite: bool, rerun):
    """Raise FloatingPointError naming the solver and the first step whose state was non-finite (found by a re-run
    with the trajectory; eager calls only)."""
    if not check_finite or all(bool(jnp.all(jnp.isfinite(l))) for l in jax.tree.leaves(out)):
        return out
    solver, ts = config.solver, config.ts
    _, path = rerun()
    bad = (
        np.asarray(jnp.any(~jnp.isfinite(path.reshape(path.shape[0], -1)), axis=1)) if path.ndim >= 2 else np.array([])
    )
    grid = ts if ts.ndim == 1 else ts[0]
    if bad.any():
        i = int(np.argmax(bad))
        where = f"at step {i + 1} of {len(bad)} (t = {grid[i]:.6g} → {grid[i + 1]:.6g})"
    else:
        where = "in the final denoising step" if config.denoise else "at the end"
    raise FloatingPointError(
        f"{solver.name!r} produced non-finite samples: the state first became non-finite {where}. The model returned "
        "NaN/inf there, or the step is unstable (try more NFE or another solver). Under jax.jit no check is made: "
        "wrap the call with jax.experimental.checkify to catch it there."
    )


def _refill(statics, is_array):
    """The static leaves in order, with placeholders where arrays go."""
    it = iter(statics)
    return [None if a else next(it) for a in is_array]


class _Config(NamedTuple):
    """Everything static about one sampling call (validated)."""

    sde: Any
    solver: Solver
    ts: np.ndarray
    budget: int | None
    dtype: Any
    shape: tuple | None
    denoise: bool
    return_state: bool
    trajectory: bool
    mesh: Any

    def static_key(self):
        return (
            self.sde,
            self.solver,
            self.ts.shape,
            self.ts.tobytes(),
            self.budget,
            str(self.dtype),
            self.shape,
            self.denoise,
            self.return_state,
            self.trajectory,
            self.mesh,
        )


class SamplerCache:
    """An LRU cache of compiled samplers (see :func:`sample`). ``maxsize`` entries; ``hits``, ``misses`` and
    ``traces`` (compilations of a cached sampler, including retraces for new argument shapes) are counted."""

    def __init__(self, maxsize: int = 64):
        self.maxsize = maxsize
        self.clear()

    def clear(self) -> None:
        """Drop every compiled sampler and reset the counters."""
        self.entries: OrderedDict = OrderedDict()
        self.hits = self.misses = self.traces = 0

    def get(self, key, build):
        """The compiled sampler for ``key`` (built by ``build()`` on a miss; the least recently used is evicted)."""
        if key in self.entries:
            self.hits += 1
            self.entries.move_to_end(key)
            return self.entries[key]
        self.misses += 1
        fn = self.entries[key] = build()
        while len(self.entries) > max(self.maxsize, 0):
            self.entries.popitem(last=False)
        return fn

    def info(self) -> dict:
        """``{"hits", "misses", "traces", "size", "maxsize"}``."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "traces": self.traces,
            "size": len(self.entries),
            "maxsize": self.maxsize,
        }


CACHE = SamplerCache()


def cache_info() -> dict:
    """Counters of the compiled-sampler cache of :func:`sample`: hits, misses, traces, size, maxsize."""
    return CACHE.info()


def clear_cache() -> None:
    """Drop every compiled sampler kept by :func:`sample` (e.g. to free device memory)."""
    CACHE.clear()


def _sample_impl(config: _Config, key, init, grid_index, sample_offset, model) -> Any:
    """The body of :func:`sample` after validation: pure in its arguments, traced once per configuration."""
    sde, solver, ts, budget, dtype, shape = (
        config.sde,
        config.solver,
        config.ts,
        config.budget,
        config.dtype,
        config.shape,
    )
    denoise, trajectory, mesh, return_state = config.denoise, config.trajectory, config.mesh, config.return_state
    per_sample = ts.ndim == 2
    batch = shape[0] if init is None else jax.tree.leaves(init)[0].shape[0]
    keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(sample_offset + jnp.arange(batch))
    shard = lambda tree: tree
    if mesh is not None:
        from jax.sharding import NamedSharding, PartitionSpec

        axis = mesh.axis_names[0]
        spec = lambda l: NamedSharding(mesh, PartitionSpec(axis, *([None] * (l.ndim - 1))))
        shard = lambda tree: jax.tree.map(lambda l: jax.lax.with_sharding_constraint(l, spec(l)), tree)
        keys = shard(keys)
    if init is None:
        prior_key = lambda k: jax.random.fold_in(k, 0x7FFFFFFF)
        y = jax.vmap(lambda k: solver.prior(prior_key(k), sde, (1,) + shape[1:], dtype))(keys)
        y = jax.tree.map(lambda l: l[:, 0], y)
    else:
        y = init
    y = shard(y)

    solve = lambda ctx, y, coefs: run_tables(solver, ctx, y, coefs, denoise, trajectory)

    if not per_sample:
        y, path = solve(Context(sde, model, keys), y, _to_device(_tables(sde, solver, ts, budget), dtype))
    else:
        rows = [_tables(sde, solver, row, budget) for row in ts]
        # coefficients equal on every row (step indices, Euler flags, …) stay unbatched under vmap, so that
        # lax.cond on them still skips the branch not taken
        shared = {k: v for k, v in rows[0].items() if all(np.array_equal(v, r[k]) for r in rows[1:])}
        table = _to_device({k: np.stack([r[k] for r in rows]) for k in rows[0] if k not in shared}, dtype)
        shared = _to_device(shared, dtype)

        def one(y_b, key_b, row):
            coefs = dict(shared, **jax.tree.map(lambda a: a[row], table))
            lift = lambda l: l[None]
            out, path = solve(Context(sde, model, key_b[None]), jax.tree.map(lift, y_b), coefs)
            return jax.tree.map(lambda l: l[0], out), (None if path is None else path[:, 0])

        y, path = jax.vmap(one)(y, keys, grid_index)
        if trajectory:
            path = jnp.moveaxis(path, 0, 1)
    out = shard(y if return_state else sde.data_part(y))
    return (out, path) if trajectory else out
