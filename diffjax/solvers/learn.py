"""Fitting a discretization to a model and a budget by differentiating through the compiled sampler.

``learn(key, sde, model, solver, nfe, data_shape)`` minimizes the pathwise error of the solver's endpoint
``x(t_min)`` against a teacher's endpoint from the same prior draws,

    L(θ) = E_{y_T ~ prior} ‖ Solve_θ(y_T) − Teacher(y_T) ‖²,

over θ = (the time grid, optional per-step corrections Δ of the solver's coefficient tables, optional corrections
of a multistep solver's weights on every earlier prediction, optional decoupled evaluation times). This is the
idea of LD3 (Tong et al., "Learning to Discretize Denoising Diffusion ODEs", ICLR
2025: learn the N timesteps by backpropagating through the solver to a teacher's endpoints, and, in its second
variant, the times at which the network is evaluated apart from the step boundaries) extended, as in S4S (Frankel
et al., 2025), with additive corrections to the solver's weights, initialized at zero so the starting point is the
base solver.

Full-history corrections (after the additive, zero-initialised corrections of Gaussian-surrogate solver search,
2025, which found S4S's unconstrained weights unstable at NFE 4) let step i of a multistep solver weight every
earlier prediction, not only its last few: ``Δ_ij = scale · s_i δ_ij`` on the prediction j steps back and
``−Σ_j Δ_ij`` on the current one (``s_i`` the step's total weight; :func:`history_correction`), so every corrected
step still integrates a constant prediction exactly.

Decoupled evaluation times move the network's input time at grid time ``t_i`` to ``t'_i`` with
``log ρ(t'_i) = log ρ(t_i) + ½ tanh(δ_i) w_i``, ``w_i`` the smaller of the two adjacent steps in ``log ρ`` (so the
``t'_i`` stay ordered, each within half a step of its grid time, never above T), ``δ`` initialized at zero; the
last time (the end of the grid) is not moved.

The grid is parameterized so that it is strictly decreasing between the fixed end points by construction: the
log noise-to-signal ratio ``log ρ = log(σ/α)`` moves from ``log ρ(T)`` to ``log ρ(t_min)`` in increments
``softmax(logits) · (log ρ(t_min) − log ρ(T))``, mapped back to times through the diffusion's exact ``t(ρ)``.
The solver's tables are computed from the traced grid by the solver's own formulas (``Solver.traceable``), so
the gradient reaches the times. One jitted update per optimizer step (optax), full batch over the fitting draws;
the held-out draws (another key) pick the best iterate (early stopping) and guarantee that the result is never
worse than the base solver on them, measured through ``dj.sample`` exactly as a user will run it.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..diffusions.base import ScalarDiffusion
from ..prediction import as_model
from . import registry
from .base import Context, Solver, xp_of
from .learned import Learned, _nested, base_solver, corrected_tables, diffusion_spec, shifted_model
from .schedules import on_grid, validate_grid

LEARN_PARTS = ("grid", "coefs", "history", "times")  # `what` joins them with '+': "grid", "grid+coefs", …


def parse_what(what: str) -> frozenset:
    """The parts of ``what`` ("grid+coefs+times" → {grid, coefs, times}), checked."""
    parts = what.split("+") if isinstance(what, str) else []
    if not parts or any(p not in LEARN_PARTS for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"what must join distinct parts of {LEARN_PARTS} with '+' (e.g. 'grid+coefs'), got {what!r}")
    return frozenset(parts)


def eval_times_of(sde: ScalarDiffusion, ts: Any, offsets: Any) -> Any:
    """The decoupled evaluation times for grid ``ts`` (``M + 1`` times) and offsets ``δ`` (``M``): module docstring.
    Traced for jax ``offsets``, float64 numpy otherwise."""
    xp = xp_of(offsets)
    lr = xp.log(on_grid(sde.rho, ts))
    d = xp.abs(xp.diff(lr))
    w = xp.concatenate([d[:1], xp.minimum(d[:-1], d[1:])])
    lr_eval = lr[:-1] + 0.5 * xp.tanh(offsets) * w
    lr_eval = xp.concatenate([xp.minimum(lr_eval[:1], lr[:1]), lr_eval[1:]])
    return xp.concatenate([on_grid(sde.t_of_rho, xp.exp(lr_eval)), ts[-1:]])


def history_correction(tables: dict, delta: Any, scale: float) -> dict:
    """The full-history correction of a multistep solver's ``pred`` weights (M steps, ``delta`` of shape (M, M)):

        Δ_ij = scale · s_i · δ_ij   (1 ≤ j ≤ i: the prediction j steps back),    Δ_i0 = −Σ_{j≥1} Δ_ij,

    ``s_i = Σ_j pred_ij`` the step's total weight (its first-order, DDIM-like part). Relative to the step and
    summing to zero, the corrected weights still integrate a constant prediction exactly (the step stays
    consistent however large δ grows), and ``δ = 0`` is the base solver. Traced for jax ``delta``."""
    pred = tables["pred"]
    xp = xp_of(pred, delta)
    m = delta.shape[0]
    lags = np.arange(m)
    mask = (lags[None, :] <= lags[:, None]) & (lags[None, :] >= 1)
    lagged = scale * xp.sum(pred, axis=1)[:, None] * delta * mask
    return {"pred": xp.concatenate([-xp.sum(lagged, axis=1, keepdims=True), lagged[:, 1:]], axis=1)}


def grid_from_logits(sde: ScalarDiffusion, logits: Any, t_start: float, t_end: float) -> Any:
    """The strictly decreasing grid ``t_0 = t_start > … > t_M = t_end`` whose log ρ increments are the softmax
    of ``logits`` times ``log ρ(t_end) − log ρ(t_start)`` (traced for jax ``logits``, float64 numpy otherwise)."""
    xp = xp_of(logits)
    lr0 = float(np.log(on_grid(sde.rho, np.float64(t_start))))
    lr1 = float(np.log(on_grid(sde.rho, np.float64(t_end))))
    z = logits - xp.max(logits)
    frac = xp.exp(z) / xp.sum(xp.exp(z))
    cum = xp.concatenate([0.0 * frac[:1], xp.cumsum(frac)[:-1]])
    ts_inner = on_grid(sde.t_of_rho, xp.exp(lr0 + cum[1:] * (lr1 - lr0)))
    one = 1.0 + 0.0 * frac[:1]
    return xp.concatenate([t_start * one, ts_inner, t_end * one])


def logits_of_grid(sde: ScalarDiffusion, ts: np.ndarray) -> np.ndarray:
    """Inverse of :func:`grid_from_logits` (up to a constant): the log of each step's share of ``Δ log ρ``."""
    lr = np.log(on_grid(sde.rho, np.asarray(ts, np.float64)))
    return np.log(np.diff(lr) / (lr[-1] - lr[0]))


def traced_tables(sde, solver: Solver, ts: Any, budget: int | None, corrections: dict | None, dtype) -> dict:
    """The solver's tables on a traced grid, plus corrections, ``t``, ``t_next`` and ``i``, in ``dtype``."""
    m = ts.shape[-1] - 1
    tables = dict(solver.coefficients(sde, ts, budget))
    if callable(corrections):  # corrections that depend on the (traced) base tables
        corrections = corrections(tables)
    tables = corrected_tables(solver, tables, corrections or {})
    tables = {k: jnp.asarray(v, dtype) for k, v in tables.items()}
    tables.update(t=ts[:-1].astype(dtype), t_next=ts[1:].astype(dtype), i=jnp.arange(m, dtype=jnp.int32))
    return tables


def differentiable_sampler(sde, model: Any, solver: Any, nfe: int, kind: str = "score", dtype=None):
    """``(solve, ts0, budget)``: ``solve(ts, corrections, y, eval_ts=None)`` runs ``solver`` from the states ``y``
    over the (traceable) grid ``ts`` with additive table ``corrections`` (a dict, may be empty) and the network
    evaluated at ``eval_ts`` (None: ``ts``), and returns the data part of the endpoint; differentiable in ``ts``, the
    corrections and ``eval_ts``. ``ts0`` is the solver's default grid."""
    from .driver import plan, run_tables

    base = registry.get(solver)
    _, ts0, budget = plan(sde, base, nfe)
    model = as_model(sde, model, kind)
    dtype = dtype or jnp.zeros(()).dtype
    dummy = jax.random.split(jax.random.key(0), 1)

    def solve(ts, corrections, y, eval_ts=None):
        tables = traced_tables(sde, base, ts, budget, corrections, dtype)
        used = model if eval_ts is None else shifted_model(model, ts, eval_ts)
        ctx = Context(sde, used, jnp.broadcast_to(dummy, (y.shape[0],)))
        return sde.data_part(run_tables(base, ctx, y, tables)[0])

    return solve, ts0, budget


def resolve_teacher(teacher: Any, nfe: int, dtype) -> Any:
    """``"auto"``: UniPC with ``max(100, 10·nfe)`` evaluations in float32 (its endpoint error on the 64-d digits
    test bed, 9e-5 at 100, is a few per cent of a learned NFE-10 solver's and 8× cheaper than the reference), the
    adaptive reference in float64; anything else is returned as given."""
    if isinstance(teacher, str) and teacher == "auto":
        return "reference" if jnp.dtype(dtype) == jnp.float64 else ("unipc", max(100, 10 * int(nfe)))
    return teacher


def _teacher(sde, model, kind, teacher, y):
    from ..interop import reference_sample
    from .driver import sample

    if teacher == "reference":
        tol = 1e-9 if y.dtype == jnp.float64 else 1e-5
        return reference_sample(sde, model, y, rtol=tol, atol=tol, kind=kind)
    if isinstance(teacher, tuple) and len(teacher) == 2:
        return sample(jax.random.key(0), sde, model, solver=teacher[0], nfe=int(teacher[1]), init=y, kind=kind)
    raise ValueError(f"teacher must be 'auto', 'reference' (adaptive diffrax) or a (solver, nfe) pair, got {teacher!r}")


def _rmse(a, b) -> float:
    return float(jnp.sqrt(jnp.mean((a - b) ** 2)))


def learn(
    key: jax.Array,
    sde: ScalarDiffusion,
    model: Any,
    solver: Any,
    nfe: int,
    data_shape: tuple[int, ...],
    *,
    kind: str = "score",
    what: str | None = None,
    init_grid: Any = "optimized",
    teacher: Any = "auto",
    num_fit: int = 512,
    num_heldout: int = 512,
    loss: str = "l2",
    soft_radius: float = 0.02,
    optimizer: Any = None,
    steps: int = 300,
    learning_rate: float = 0.05,
    coef_scale: float = 0.05,
    history_scale: float | None = None,
    eval_every: int = 10,
    patience: int = 10,
    batch_size: int | None = 128,
    dtype=None,
    progress: bool = True,
) -> Learned:
    """Fit ``solver``'s discretization for ``model`` on ``sde`` at ``nfe`` evaluations; returns a
    :class:`~diffjax.solvers.learned.Learned` solver that ``dj.sample(..., solver=learned, nfe=nfe)`` runs.

    Args:
      key: fitting draws use ``fold_in(key, 0)``, held-out draws ``fold_in(key, 1)``.
      sde, model, kind: the diffusion and the model (as for :func:`dj.sample`).
      solver: a deterministic, traceable solver (``ddim``, ``dpmpp_2m``, ``dpmpp_3m``, ``unipc``, ``unipc_2``,
        ``ipndm``, ``ipndm_v``, ``edm_heun``, ``ode_euler``, ``ode_heun`` or an instance of their classes).
      nfe: the evaluation budget (exactly spent by the result).
      data_shape: the shape of one sample.
      what: the parts fitted, joined by ``+``: ``"grid"`` (the times), ``"coefs"`` (table corrections),
        ``"history"`` (multistep solvers: corrections on every earlier prediction, :func:`history_correction`),
        ``"times"`` (decoupled evaluation times), e.g. ``"grid+coefs+times"`` (default: ``"grid+coefs"`` when
        the solver has learnable tables, else ``"grid"``; at ``nfe ≤ 5`` plus ``"+history"`` for multistep
        solvers and ``"+times"``).
      init_grid: ``"optimized"`` (default: the training-free dynamic-programming grid of
        :func:`diffjax.solvers.optimized_grid`, a few seconds, never worse than the default grid on its batch),
        ``"base"`` (the solver's default grid) or an explicit grid.
      teacher: ``"auto"`` (default: ``("unipc", max(100, 10·nfe))`` in float32, ``"reference"`` in float64),
        ``"reference"`` (adaptive diffrax Dopri8, tolerance 1e-5 in float32, 1e-9 in float64) or a
        ``(solver, nfe)`` pair, e.g. ``("unipc", 200)``.
      num_fit, num_heldout: prior draws to fit on and to select/validate on (never the same).
      loss: ``"l2"`` (pathwise squared error) or ``"soft"`` (LD3's relaxed teacher: each fitting draw may move
        within a ball of radius ``soft_radius·√d·prior_std`` around its latent; regularizes with few draws).
      optimizer: an optax transformation (default Adam, linear warm-up over the first 10 % of the steps to
        ``learning_rate``, then cosine decay to a tenth of it).
      steps, eval_every, patience: optimizer steps; held-out evaluation period; evaluations without improvement
        before stopping.
      batch_size: fitting draws per optimizer step, a new shuffle of all ``num_fit`` draws each epoch (None or
        ≥ ``num_fit``: every draw at every step). 128 of 512 fits digits at NFE 10 as well as the full batch in a
        quarter of the time.
      coef_scale: corrections are ``coef_scale × parameters`` (their step size relative to the grid logits').
      history_scale: the full-history corrections' ``scale`` (:func:`history_correction`; relative to each step's
        weight); default ``min(0.5, 5/M²)`` for M steps (0.2 at M = 5, 0.05 at M = 10: on the 256-d spectral
        mixture at NFE 10, 0.2 stopped early at a worse error, 3.9e-3, than no history, 1.9e-3; 0.05 reached 1.65e-3).
      dtype: sampling dtype (default: jax's default float).
      progress: a tqdm bar with the held-out error.
    """
    base = _learnable_base(sde, solver, what, loss)
    if what is None:  # measured (bench_learned): at NFE 3-5 the full history and the decoupled evaluation times
        # helped every multistep solver tried; at NFE 10 the times hurt and the history helped iPNDM, not UniPC
        what = "grid+coefs" if base.learnable else "grid"
        if nfe <= 5:
            what += ("+history" if _keeps_history(base) else "") + "+times"
    parts = parse_what(what)
    for name, v in (
        ("num_fit", num_fit),
        ("num_heldout", num_heldout),
        ("steps", steps),
        ("eval_every", eval_every),
        ("patience", patience),
        ("batch_size", 1 if batch_size is None else batch_size),
    ):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if history_scale is None:
        history_scale = min(0.5, 5.0 / base.num_steps(nfe) ** 2)
    for name, v, positive in (
        ("learning_rate", learning_rate, True),
        ("coef_scale", coef_scale, True),
        ("history_scale", history_scale, True),
        ("soft_radius", soft_radius, False),
    ):
        if not (isinstance(v, (int, float, np.number)) and np.isfinite(v) and (v > 0 if positive else v >= 0)):
            raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")
    data_shape = tuple(int(s) for s in data_shape)
    sde.check_data_shape(data_shape)
    dtype = dtype or jnp.zeros(()).dtype

    # 1. the start grid and the teacher's endpoints on the fitting and the held-out draws
    solve, _, budget = differentiable_sampler(sde, model, base, nfe, kind, dtype)
    ts0 = _start_grid(key, sde, model, kind, base, nfe, data_shape, init_grid)
    prior = lambda k, n: sde.prior_sample(k, (n,) + data_shape, dtype)
    y_fit, y_val = prior(jax.random.fold_in(key, 0), num_fit), prior(jax.random.fold_in(key, 1), num_heldout)
    teacher = resolve_teacher(teacher, nfe, dtype)
    t0 = time.perf_counter()
    target_fit = _teacher(sde, model, kind, teacher, y_fit)
    target_val = _teacher(sde, model, kind, teacher, y_val)
    teacher_s = time.perf_counter() - t0

    # 2. the fit: gradient steps on the fitting draws, the best iterate on the held-out draws
    t_start, t_end = float(ts0[0]), float(ts0[-1])
    ts0_traced = jnp.asarray(ts0, dtype)

    def endpoint(p, y):
        ts = grid_from_logits(sde, p["logits"].astype(dtype), t_start, t_end) if "grid" in parts else ts0_traced
        eval_ts = eval_times_of(sde, ts, p["eval"]) if "times" in parts else None
        return solve(ts, lambda tables: corrections_of(p, tables), y, eval_ts)

    def corrections_of(p, tables):
        """The additive table corrections of parameters ``p`` on the base ``tables`` (numpy or traced)."""
        corr = {k: coef_scale * v for k, v in p.get("corr", {}).items()}
        if "hist" in p:
            full = history_correction(tables, p["hist"], history_scale)
            corr = corrected_tables(base, corr, full) if corr else full
        return corr

    params = {"logits": jnp.asarray(logits_of_grid(sde, ts0), dtype)}
    if "times" in parts:
        params["eval"] = jnp.zeros((len(ts0) - 1,), dtype)
    if "coefs" in parts:
        tables = base.coefficients(sde, ts0, budget)
        params["corr"] = {k: jnp.zeros(np.shape(tables[k]), dtype) for k in base.learnable}
    if "history" in parts:
        params["hist"] = jnp.zeros((len(ts0) - 1, len(ts0) - 1), dtype)
    if loss == "soft":
        params["shift"] = jnp.zeros((num_fit,) + data_shape, dtype)
    radius = soft_radius * float(np.sqrt(np.prod(data_shape))) * float(sde.prior_std)
    t0 = time.perf_counter()
    best, start_err, history, done = _fit(
        endpoint,
        params,
        (y_fit, target_fit),
        (y_val, target_val),
        optimizer,
        steps,
        learning_rate,
        radius,
        eval_every,
        patience,
        f"learn {base.name} nfe={nfe}" if progress else None,
        batch_size,
        jax.random.fold_in(key, 3),
    )
    fit_s = time.perf_counter() - t0

    # 3. the result, kept only if it beats the base solver on the held-out draws through dj.sample
    times = grid_from_logits(sde, np.asarray(best["logits"], np.float64), t_start, t_end) if "grid" in parts else ts0
    eval_times = eval_times_of(sde, np.asarray(times), np.asarray(best["eval"], np.float64)) if "times" in parts else ()
    fitted = jax.tree.map(lambda v: np.asarray(v, np.float64), {k: v for k, v in best.items() if k in ("corr", "hist")})
    final = corrections_of(fitted, base.coefficients(sde, np.asarray(times, np.float64), budget))
    corrections = tuple((k, _nested(np.asarray(v, np.float64))) for k, v in final.items() if np.any(np.asarray(v) != 0))
    info = {
        "what": what,
        "teacher": teacher if isinstance(teacher, str) else list(teacher),
        "loss": loss,
        "num_fit": num_fit,
        "num_heldout": num_heldout,
        "batch_size": batch_size,
        **({"history_scale": history_scale} if "history" in parts else {}),
        "steps_run": done,
        "init_grid": init_grid if isinstance(init_grid, str) else "given",
        "teacher_seconds": teacher_s,
        "fit_seconds": fit_s,
        "heldout_history": history,
        "heldout_rmse_start": start_err,
    }
    times = validate_grid(sde, times)
    return _select(sde, model, kind, base, nfe, times, corrections, eval_times, info, y_val, target_val, dtype)


def _learnable_base(sde, solver, what, loss) -> Solver:
    """The base solver of a fit, checked: deterministic, traceable, runs on ``sde``; ``what`` and ``loss`` valid."""
    base = base_solver(sde, solver, "learned discretizations")
    if base.stochastic or not base.traceable:
        ok = [n for n in registry.available() if registry.get(n).traceable and not registry.get(n).stochastic]
        raise ValueError(
            f"cannot learn a discretization for {base.name!r}: it needs a deterministic solver whose "
            f"coefficients are traceable; accepted: {ok}"
        )
    base.check(sde)
    if what is not None and "coefs" in parse_what(what) and not base.learnable:
        raise ValueError(f"{base.name!r} has no learnable coefficient tables; use what='grid' (or 'grid+times')")
    if what is not None and "history" in parse_what(what) and not _keeps_history(base):
        multistep = [n for n in registry.available() if _keeps_history(registry.get(n))]
        raise ValueError(
            f"what='history' corrects a multistep solver's weights on all earlier predictions; {base.name!r} keeps "
            f"no history (multistep solvers: {multistep})"
        )
    if loss not in ("l2", "soft"):
        raise ValueError(f"loss must be 'l2' or 'soft', got {loss!r}")
    return base


def _keeps_history(solver: Solver) -> bool:
    """Whether ``solver`` weights earlier predictions (a multistep solver), so ``what="history"`` applies."""
    return "pred" in solver.history_tables


def _start_grid(key, sde, model, kind, base, nfe, data_shape, init_grid) -> np.ndarray:
    """The grid the fit starts from: the optimized grid, the solver's default (``"base"``) or a given one."""
    from .driver import plan

    ts0 = np.asarray(plan(sde, base, nfe)[1])
    if isinstance(init_grid, str) and init_grid == "optimized":
        from .grid_search import optimized_grid

        return np.asarray(
            optimized_grid(jax.random.fold_in(key, 2), sde, model, base, nfe, data_shape, kind=kind).times
        )
    if isinstance(init_grid, str) and init_grid == "base":
        return ts0
    given = validate_grid(sde, init_grid)
    if len(given) != len(ts0):
        raise ValueError(f"init_grid has {len(given) - 1} steps; {base.name!r} at nfe={nfe} needs {len(ts0) - 1}")
    return given


def _fit(
    endpoint, params, fit, heldout, optimizer, steps, learning_rate, radius, eval_every, patience, label, batch, key
):
    """Adam (warm-up, cosine decay) on the mean squared endpoint error over the fitting draws ``fit = (y,
    target)``, ``batch`` of them per step (each epoch a new permutation from ``key``); every ``eval_every`` steps
    the held-out RMSE selects the best iterate and stops the fit after ``patience`` evaluations without
    improvement. Returns ``(best, start error, history, steps run)``."""
    import optax

    (y_fit, target_fit), (y_val, target_val) = fit, heldout

    n = y_fit.shape[0]
    batch = n if batch is None or batch >= n else int(batch)

    per_epoch = n // batch

    def batch_indices(step):
        """The draws of (1-based) ``step``: a slice of its epoch's permutation (``key`` folded with the epoch's first
        step), computed in the compiled update — no host round trip."""
        epoch, k = jnp.divmod(step - 1, per_epoch)
        order = (
            jnp.arange(n) if batch == n else jax.random.permutation(jax.random.fold_in(key, epoch * per_epoch + 1), n)
        )
        return jax.lax.dynamic_slice(order, (k * batch,), (batch,))

    def objective(p, idx):
        y, target = y_fit[idx], target_fit[idx]
        if "shift" in p:  # LD3's soft teacher: each draw's own latent shift
            y = y + p["shift"][idx]
        return jnp.mean((endpoint(p, y) - target) ** 2)

    # warm-up: Adam's first steps move every parameter by the full rate; from a good start that overshoots
    warmup = max(1, steps // 10) if steps > 1 else 0  # a single step has no room for a warm-up
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup, steps, 0.1 * learning_rate)
    tx = optimizer or optax.adam(schedule)
    opt_state = tx.init(params)

    @jax.jit
    def update(p, s, step):
        loss_val, g = jax.value_and_grad(objective)(p, batch_indices(step))
        upd, s = tx.update(g, s, p)
        p = optax.apply_updates(p, upd)
        if "shift" in p:  # project every latent shift onto its ball
            norms = jnp.sqrt(jnp.sum(p["shift"] ** 2, axis=tuple(range(1, p["shift"].ndim)), keepdims=True))
            p = dict(p, shift=p["shift"] * jnp.minimum(1.0, radius / jnp.maximum(norms, 1e-30)))
        return p, s, loss_val

    heldout_rmse = jax.jit(lambda p: jnp.sqrt(jnp.mean((endpoint(p, y_val) - target_val) ** 2)))
    best, best_err = params, float(heldout_rmse(params))
    start_err, since = best_err, 0
    history = [(0, best_err)]
    bar = None
    if label is not None:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=label, dynamic_ncols=True)
    done = 0
    for step in range(1, steps + 1):
        params, opt_state, _ = update(params, opt_state, jnp.int32(step))
        done = step
        if step % eval_every == 0 or step == steps:
            err = float(heldout_rmse(params))
            history.append((step, err if np.isfinite(err) else None))
            if np.isfinite(err) and err < best_err:
                best, best_err, since = params, err, 0
            else:
                since += 1
            if bar is not None:
                bar.set_postfix(heldout=f"{err:.3e}", best=f"{best_err:.3e}")
            if since >= patience:
                if bar is not None:
                    bar.update(step - bar.n)
                break
        if bar is not None and step % 5 == 0:
            bar.update(step - bar.n)
    if bar is not None:
        bar.update(done - bar.n)
        bar.close()
    return best, start_err, history, done


def _select(sde, model, kind, base, nfe, times, corrections, eval_times, info, y_val, target_val, dtype) -> Learned:
    """The fitted solver if ``dj.sample`` with its float64-computed tables beats the base solver on the held-out
    draws, else the base solver on its own grid (``info["fallback"]`` says so)."""
    from .driver import plan, sample

    spec = diffusion_spec(sde)
    learned = Learned(
        base=base,
        times=tuple(float(t) for t in times),
        corrections=corrections,
        diffusion=spec,
        nfe_budget=int(nfe),
        eval_times=tuple(float(t) for t in eval_times),
        info=info,
    )
    run = lambda s: sample(
        jax.random.key(0), sde, model, solver=s, nfe=nfe, init=y_val, kind=kind, dtype=dtype, check_finite=False
    )
    base_err = _rmse(run(base), target_val)
    learned_err = _rmse(run(learned), target_val)
    info.update(heldout_rmse_base=base_err)
    if learned_err < base_err:
        info.update(heldout_rmse=learned_err)
        return learned
    info.update(heldout_rmse=base_err, fallback="the fitted discretization was not better on the held-out draws")
    times = np.asarray(plan(sde, base, nfe)[1])
    return Learned(
        base=base,
        times=tuple(float(t) for t in times),
        corrections=(),
        diffusion=spec,
        nfe_budget=int(nfe),
        info=info,
    )
