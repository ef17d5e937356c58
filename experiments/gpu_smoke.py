"""Smoke test and timings of the compiled samplers on whatever device JAX sees (run on the lent GPU).

For the 64-d digits test bed (exact score, batch 2000) and each deterministic solver at NFE 20: compile time,
median wall time of one jit-compiled ``dj.sample`` call (block_until_ready), samples/s, and the pathwise RMSE
against a float64 diffrax reference computed on the same device. Writes gpu_smoke.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import diffjax as dj
from diffjax import interop

SOLVERS = ["ddim", "dpmpp_2m", "dpmpp_3m", "unipc", "edm_heun", "ode_heun", "gddim", "euler_maruyama", "pc"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="experiments/results")
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--nfe", type=int, default=20)
    a = p.parse_args()
    dev = jax.devices()[0]
    sde, data = dj.VP(), dj.testbed.digits()
    score = data.score_fn(sde)
    y_t = sde.prior_sample(jax.random.key(1), (a.batch, 64))
    with jax.enable_x64(True):
        t0 = time.perf_counter()
        ref = np.asarray(interop.reference_sample(sde, score, jnp.asarray(y_t, jnp.float64), rtol=1e-8, atol=1e-8))
        ref_s = time.perf_counter() - t0
    rows = []
    for name in SOLVERS:
        nfe = a.nfe
        f = jax.jit(lambda k, y, name=name: dj.sample(k, sde, score, solver=name, nfe=nfe, init=y))
        t0 = time.perf_counter()
        x = jax.block_until_ready(f(jax.random.key(0), y_t))
        compile_s = time.perf_counter() - t0
        times = []
        for i in range(5):
            t0 = time.perf_counter()
            jax.block_until_ready(f(jax.random.key(i), y_t))
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        rows.append(
            {
                "solver": name,
                "nfe": nfe,
                "compile_s": compile_s,
                "median_s": med,
                "samples_per_s": a.batch / med,
                "finite": bool(jnp.all(jnp.isfinite(x))),
                "rmse_vs_ref": float(np.sqrt(np.mean((np.asarray(x) - ref) ** 2))),
            }
        )
        print(rows[-1], flush=True)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "gpu_smoke.json"), "w") as fh:
        json.dump(
            {
                "device": str(dev),
                "platform": dev.platform,
                "jax": jax.__version__,
                "batch": a.batch,
                "reference_seconds": ref_s,
                "rows": rows,
            },
            fh,
            indent=1,
        )


if __name__ == "__main__":
    main()
