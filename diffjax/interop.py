"""diffrax interop: the PF-ODE and reverse SDE of any diffusion as diffrax terms, an adaptive reference sampler
and exact log-likelihoods by the instantaneous change of variables.

    dy/dt = F y − ½ G Gᵀ ∇log p_t(y)                         (PF-ODE, ``pf_ode_term``)
    dy = [F y − ((1+λ²)/2) G Gᵀ ∇log p_t] dt + λ G dw̄        (``reverse_sde_terms``)
    log p_{t0}(y_{t0}) = log p_T(y_T) + ∫_{t0}^{T} ∇·f(y_t, t) dt  (``log_likelihood``)
"""

from __future__ import annotations

from typing import Any, Callable

import diffrax
import jax
import jax.numpy as jnp
import lineax
from jax.flatten_util import ravel_pytree

from .diffusions.base import LinearDiffusion
from .prediction import as_model


def pf_ode_term(sde: LinearDiffusion, score: Any, kind: str = "score") -> diffrax.ODETerm:
    """The probability-flow ODE of ``sde`` under ``score`` as a ``diffrax.ODETerm`` (batched states)."""
    model = as_model(sde, score, kind)
    return diffrax.ODETerm(lambda t, y, args: model.pf_drift(y, t))


def reverse_sde_terms(
    sde: LinearDiffusion,
    score: Any,
    key: jax.Array,
    y_like: Any,
    t0: float,
    t1: float,
    lam: float = 1.0,
    kind: str = "score",
    tol: float = 1e-3,
) -> diffrax.MultiTerm:
    """Reverse-time SDE terms (drift with λ, noise ``λ G dw``) on a virtual Brownian tree over [t1, t0]."""
    model = as_model(sde, score, kind)
    drift = diffrax.ODETerm(lambda t, y, args: sde.reverse_drift(y, t, model.score(y, t), lam=lam))
    shape = jax.tree.map(lambda l: jax.ShapeDtypeStruct(l.shape, l.dtype), y_like)
    bm = diffrax.VirtualBrownianTree(min(t0, t1), max(t0, t1), tol=tol, shape=shape, key=key)

    def noise(t, y, args):
        return lineax.FunctionLinearOperator(
            lambda z: jax.tree.map(lambda a: lam * a, sde.diffusion_apply(t, z)), shape
        )

    return diffrax.MultiTerm(drift, diffrax.ControlTerm(noise, bm))


def _solve(term, y0, t0, t1, solver, rtol, atol, max_steps):
    sol = diffrax.diffeqsolve(
        term,
        solver,
        t0=t0,
        t1=t1,
        dt0=(t1 - t0) / 100.0,
        y0=y0,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
    )
    return jax.tree.map(lambda l: l[0], sol.ys), sol.stats["num_steps"]


def reference_sample(
    sde: LinearDiffusion,
    score: Any,
    y_start: Any,
    t_start: float | None = None,
    t_end: float | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    solver: Any = None,
    kind: str = "score",
    max_steps: int = 100_000,
    return_state: bool = False,
) -> Any:
    """Integrate the PF-ODE from ``t_start`` (default T) to ``t_end`` (default t_min) with an adaptive diffrax
    solver (Dopri8 by default), each sample with its own step-size control. Returns the data part."""
    t0 = float(sde.T if t_start is None else t_start)
    t1 = float(sde.t_min if t_end is None else t_end)
    sde.check_time([t0, t1], "reference times")
    term = pf_ode_term(sde, score, kind)
    solver = solver or diffrax.Dopri8()
    one = lambda y: jax.tree.map(
        lambda l: l[0], _solve(term, jax.tree.map(lambda l: l[None], y), t0, t1, solver, rtol, atol, max_steps)[0]
    )
    y = jax.vmap(one)(y_start)
    return y if return_state else sde.data_part(y)


def log_likelihood(
    sde: LinearDiffusion,
    score: Any,
    x: Any,
    t_start: float | None = None,
    t_end: float | None = None,
    prior_logp: Callable[[Any], jax.Array] | None = None,
    exact: bool | None = None,
    key: jax.Array | None = None,
    num_probes: int = 1,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    solver: Any = None,
    kind: str = "score",
    max_steps: int = 100_000,
) -> jax.Array:
    """``log p_{t_start}(x)`` under the PF-ODE, per sample: integrate ``(y, ∫∇·f)`` from ``t_start`` (default
    t_min) to ``t_end`` (default T) and add the prior log-density there (``prior_logp``; default the diffusion's
    prior). The divergence is exact (``jacfwd``) when ``exact`` (default for states of ≤ 256 numbers) or a
    Hutchinson estimate with ``num_probes`` Rademacher probes drawn from ``key``.
    ``x`` is a batch of states (for CLD a state ``(x, v)``)."""
    t0 = float(sde.t_min if t_start is None else t_start)
    t1 = float(sde.T if t_end is None else t_end)
    sde.check_time([t0, t1], "likelihood times")
    model = as_model(sde, score, kind)
    prior_logp = prior_logp or sde.prior_logp
    one_state = jax.tree.map(lambda l: l[:1], x)
    flat0, unravel = ravel_pytree(one_state)
    dim = flat0.size
    exact = dim <= 256 if exact is None else exact
    if not exact and key is None:
        raise ValueError("the Hutchinson estimator needs a PRNG key (key=)")

    def f_flat(yf, t):
        y = unravel(yf)
        return ravel_pytree(model.pf_drift(y, t))[0]

    def per_sample(xf, probe):
        def vf(t, state, args):
            yf, _ = state
            if exact:
                jac = jax.jacfwd(lambda z: f_flat(z, t))(yf)
                return f_flat(yf, t), jnp.trace(jac)
            out, jvps = jax.vmap(lambda p: jax.jvp(lambda z: f_flat(z, t), (yf,), (p,)), out_axes=(None, 0))(probe)
            return out, jnp.mean(jnp.sum(probe * jvps, axis=1))

        (yT, div), _ = _solve(
            diffrax.ODETerm(vf),
            (xf, jnp.zeros((), xf.dtype)),
            t0,
            t1,
            solver or diffrax.Dopri5(),
            rtol,
            atol,
            max_steps,
        )
        return yT, div

    xs_flat = jax.vmap(lambda one: ravel_pytree(jax.tree.map(lambda l: l[None], one))[0])(x)
    n = xs_flat.shape[0]
    if exact:
        probes = jnp.zeros((n, 1, dim), xs_flat.dtype)
    else:
        probes = jax.random.rademacher(key, (n, num_probes, dim)).astype(xs_flat.dtype)
    yT, div = jax.vmap(lambda a, p: per_sample(a, p))(xs_flat, probes)
    yT = jax.vmap(lambda r: jax.tree.map(lambda l: l[0], unravel(r)))(yT)
    return prior_logp(yT) + div
