"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from diffjax import interop


def prior_and_reference(sde, data, n, key):
    """``n`` prior draws (float64, and as float32 for the solvers) and their float64 Dopri8 PF-ODE solutions at
    t_min (rtol = atol = 1e-10): the pathwise reference every benchmark compares against."""
    with jax.enable_x64(True):
        y64 = sde.prior_sample(jax.random.fold_in(key, 1), (n,) + data.data_shape, jnp.float64)
        ref = np.asarray(interop.reference_sample(sde, data.score_fn(sde), y64, rtol=1e-10, atol=1e-10))
    return jax.tree.map(lambda l: jnp.asarray(l, jnp.float32), y64), ref


def nfe_to_reach(nfes, errs, target) -> float:
    """Smallest NFE (log-log interpolation) at which an error curve first reaches ``target``; inf if never."""
    nfes, errs = np.asarray(nfes, float), np.asarray(errs, float)
    for i in range(len(nfes)):
        if errs[i] <= target:
            if i == 0:
                return float(nfes[0])
            x0, x1, y0, y1 = np.log(nfes[i - 1]), np.log(nfes[i]), np.log(errs[i - 1]), np.log(errs[i])
            return float(np.exp(x0 + (np.log(target) - y0) * (x1 - x0) / (y1 - y0)))
    return float("inf")


def write_crosscheck(name: str, result: dict, failure: str) -> str:
    """Record a cross-check against original code: ``result`` (with ``max_rel_diff`` and ``tolerance``), plus the
    jax version and backend, to ``results/<name>``; exits with ``failure`` beyond the tolerance."""
    result = dict(result, jax=jax.__version__, backend=jax.default_backend())
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", name)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"max relative difference {result['max_rel_diff']:.2e} (tolerance {result['tolerance']:g}); wrote {out}")
    if result["max_rel_diff"] > result["tolerance"]:
        raise SystemExit(failure)
    return out
